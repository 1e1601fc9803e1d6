//! Routing of agents' answers on the session (LogChunks, ExecOutputs) to the HTTP request or
//! exec stream that asked for them, by request id (the endpoints are `api::berth::logs` and
//! `api::berth::exec`).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use berth_proto::v1 as pb;
use tokio::sync::mpsc;

/// An agent's answer to one request.
pub trait Reply: Send + 'static {
    fn request_id(&self) -> &str;
    /// The request gets nothing after this one.
    fn is_last(&self) -> bool;
}

impl Reply for pb::LogChunk {
    fn request_id(&self) -> &str {
        &self.request_id
    }
    fn is_last(&self) -> bool {
        self.eof || !self.error.is_empty()
    }
}

impl Reply for pb::ExecOutput {
    fn request_id(&self) -> &str {
        &self.exec_id
    }
    fn is_last(&self) -> bool {
        self.exit_code.is_some() || !self.error.is_empty()
    }
}

struct Route<M> {
    instance_id: String,
    session_id: u64,
    tx: mpsc::UnboundedSender<M>,
}

/// Open requests: request id -> where its answers go.
pub struct Replies<M> {
    routes: Mutex<HashMap<String, Route<M>>>,
}

/// Log requests waiting for their agent's chunks.
pub type LogRouter = Replies<pb::LogChunk>;
/// Exec sessions waiting for their agent's output.
pub type ExecRouter = Replies<pb::ExecOutput>;

impl<M> Default for Replies<M> {
    fn default() -> Self {
        Self {
            routes: Mutex::new(HashMap::new()),
        }
    }
}

impl<M: Reply> Replies<M> {
    fn routes(&self) -> MutexGuard<'_, HashMap<String, Route<M>>> {
        self.routes.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn open(
        &self,
        request_id: &str,
        instance_id: &str,
        session_id: u64,
    ) -> mpsc::UnboundedReceiver<M> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.routes().insert(
            request_id.to_string(),
            Route {
                instance_id: instance_id.to_string(),
                session_id,
                tx,
            },
        );
        rx
    }

    pub fn close(&self, request_id: &str) {
        self.routes().remove(request_id);
    }

    /// An answer from `instance_id`'s agent. Answers to unknown (finished) requests are
    /// dropped, and an agent can only answer its own requests.
    pub fn deliver(&self, instance_id: &str, reply: M) {
        let mut routes = self.routes();
        let Some(route) = routes.get(reply.request_id()) else {
            tracing::debug!(request = %reply.request_id(), "dropping an answer nobody waits for");
            return;
        };
        if route.instance_id != instance_id {
            tracing::warn!(request = %reply.request_id(), "dropping an answer from the wrong instance");
            return;
        }
        let last = reply.is_last();
        let id = reply.request_id().to_string();
        if route.tx.send(reply).is_err() || last {
            routes.remove(&id);
        }
    }

    /// The session `session_id` of `instance_id` ended: its requests will get no more answers.
    /// Dropping their senders ends their responses (as errors).
    pub fn session_ended(&self, instance_id: &str, session_id: u64) {
        self.routes()
            .retain(|_, r| !(r.instance_id == instance_id && r.session_id == session_id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_go_to_their_request_only() {
        let r = LogRouter::default();
        let mut rx = r.open("req", "i-1", 7);
        let chunk = |eof| pb::LogChunk {
            request_id: "req".into(),
            data: b"x".to_vec(),
            eof,
            error: String::new(),
        };
        r.deliver("i-2", chunk(false));
        assert!(rx.try_recv().is_err(), "another instance cannot answer");
        r.deliver("i-1", chunk(false));
        assert_eq!(rx.try_recv().unwrap().data, b"x");
        r.session_ended("i-1", 6);
        r.deliver("i-1", chunk(true));
        assert!(rx.try_recv().unwrap().eof);
        assert!(r.routes().is_empty(), "the last chunk closes the route");
        let _rx2 = r.open("req2", "i-1", 7);
        r.session_ended("i-1", 7);
        assert!(r.routes().is_empty());
    }

    #[test]
    fn an_exit_or_an_error_is_an_execs_last_output() {
        let r = ExecRouter::default();
        let mut rx = r.open("e1", "i-1", 1);
        let out = |exit_code, error: &str| pb::ExecOutput {
            exec_id: "e1".into(),
            exit_code,
            error: error.into(),
            ..Default::default()
        };
        r.deliver("i-1", out(None, ""));
        assert!(r.routes().contains_key("e1"));
        r.deliver("i-1", out(Some(0), ""));
        assert_eq!(rx.try_recv().unwrap().exit_code, None);
        assert_eq!(rx.try_recv().unwrap().exit_code, Some(0));
        assert!(r.routes().is_empty());
        let _rx = r.open("e1", "i-1", 1);
        r.deliver("i-1", out(None, "no such container"));
        assert!(r.routes().is_empty());
    }
}
