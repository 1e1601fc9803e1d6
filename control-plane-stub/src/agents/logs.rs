//! Routing of agents' LogChunks to the HTTP request that asked for them, by request id (the
//! endpoint is `api::berth::logs`).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use berth_proto::v1 as pb;
use tokio::sync::mpsc;

struct Route {
    instance_id: String,
    session_id: u64,
    tx: mpsc::UnboundedSender<pb::LogChunk>,
}

/// Open log requests: request id -> where its chunks go.
#[derive(Default)]
pub struct LogRouter {
    routes: Mutex<HashMap<String, Route>>,
}

impl LogRouter {
    fn routes(&self) -> MutexGuard<'_, HashMap<String, Route>> {
        self.routes.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn open(
        &self,
        request_id: &str,
        instance_id: &str,
        session_id: u64,
    ) -> mpsc::UnboundedReceiver<pb::LogChunk> {
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

    /// A chunk from `instance_id`'s agent. Chunks of unknown (finished) requests are dropped,
    /// and an agent can only answer its own requests.
    pub fn deliver(&self, instance_id: &str, chunk: pb::LogChunk) {
        let mut routes = self.routes();
        let Some(route) = routes.get(&chunk.request_id) else {
            tracing::debug!(request = %chunk.request_id, "dropping a log chunk nobody waits for");
            return;
        };
        if route.instance_id != instance_id {
            tracing::warn!(request = %chunk.request_id, "dropping a log chunk from the wrong instance");
            return;
        }
        let last = chunk.eof || !chunk.error.is_empty();
        let id = chunk.request_id.clone();
        if route.tx.send(chunk).is_err() || last {
            routes.remove(&id);
        }
    }

    /// The session `session_id` of `instance_id` ended: its requests will get no more chunks.
    /// Dropping their senders ends their HTTP responses (as errors).
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
}
