//! A small HTTP/1.1 server for the agent's local read-only endpoints (introspection): GET and
//! HEAD only, request bodies ignored. Each connection has a deadline for its headers and for its
//! whole life, and there is a cap on connections, so an idle or half-sent client cannot hold
//! the agent's resources (the agent is sized in single MiBs).

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tracing::{debug, info, warn};

/// Connections served at once; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 32;
/// From a connection's first byte to the end of a request's headers.
const HEADER_DEADLINE: Duration = Duration::from_secs(5);
/// The longest a connection (with keep-alive, several requests) stays open.
const CONNECTION_DEADLINE: Duration = Duration::from_secs(30);

/// What a handler answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl Reply {
    /// JSON, as the ECS agent's endpoints answer.
    pub fn json(status: u16, body: String) -> Self {
        Self {
            status,
            content_type: "application/json",
            body,
        }
    }
}

/// Answers a GET of `path` with its `query` string (undecoded, without the `?`) from `peer`
/// (the client's address: DNAT keeps a task's own). Called on a blocking thread: it may read
/// the agent's store.
pub type Handler = Arc<dyn Fn(&str, Option<&str>, IpAddr) -> Reply + Send + Sync>;

/// Serves `listener` with `handler` until `shutdown` turns true. `name` goes into the logs.
pub async fn serve(
    listener: TcpListener,
    name: &'static str,
    handler: Handler,
    mut shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, "{name} listening");
    }
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&slots).acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => return,
            },
            _ = shutdown.changed() => return,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and the like: back off instead of spinning.
                    warn!(error = %e, "{name}: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let handler = Arc::clone(&handler);
        tokio::spawn(async move {
            let _permit = permit;
            let client = peer.ip();
            let service =
                hyper::service::service_fn(move |req| answer(req, client, Arc::clone(&handler)));
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_DEADLINE)
                .serve_connection(TokioIo::new(stream), service);
            match tokio::time::timeout(CONNECTION_DEADLINE, connection).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => debug!(%peer, error = %e, "{name}: connection ended"),
                Err(_) => debug!(%peer, "{name}: connection closed at its deadline"),
            }
        });
    }
}

async fn answer(
    req: Request<Incoming>,
    peer: IpAddr,
    handler: Handler,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Ok(respond(Reply::json(
            405,
            r#"{"error":"only GET is served here"}"#.into(),
        )));
    }
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    let answered =
        tokio::task::spawn_blocking(move || handler(&path, query.as_deref(), peer)).await;
    Ok(match answered {
        Ok(reply) => respond(reply),
        Err(e) => {
            warn!(error = %e, "an HTTP handler failed");
            respond(Reply::json(500, "{}".into()))
        }
    })
}

fn respond(reply: Reply) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(reply.body)));
    *response.status_mut() =
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(reply.content_type),
    );
    response
}
