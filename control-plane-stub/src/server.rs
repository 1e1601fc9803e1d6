//! Binds both listeners and runs the ECS API and the agent service until told to stop.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use berth_proto::v1::agent_service_server::AgentServiceServer;
use thiserror::Error;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;

use crate::agents::service::AgentApi;
use crate::app::{ControlPlane, ServiceSettings};
use crate::clock::now_ms;
use crate::config::Config;
use crate::domain::ids::Arns;
use crate::scheduler::service::ThrottleSettings;
use crate::sd_notify::Notifier;
use crate::state::{SqliteStore, Store, StoreError};

/// How long open connections get to finish once shutdown starts.
const DRAIN_DEADLINE: Duration = Duration::from_secs(5);

#[derive(Debug, Error)]
pub enum ServerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("binding {what} listener on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("writing ready file {path}: {source}")]
    ReadyFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what} server: {message}")]
    Serve { what: &'static str, message: String },
}

pub struct RunningServer {
    pub api_addr: SocketAddr,
    pub grpc_addr: SocketAddr,
    cp: Arc<ControlPlane>,
    stop: watch::Sender<bool>,
    api: JoinHandle<Result<(), ServerError>>,
    grpc: JoinHandle<Result<(), ServerError>>,
    services: JoinHandle<()>,
}

/// Opens the state, binds, announces the real addresses, and starts serving.
pub async fn start(config: &Config) -> Result<RunningServer, ServerError> {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&config.data_dir)?);
    // ECS users expect a "default" cluster to exist.
    store.ensure_cluster("default", now_ms())?;
    let bind = |what: &'static str, addr: SocketAddr| async move {
        tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind { what, addr, source })
    };
    let api_listener = bind("API", config.api_listen).await?;
    let grpc_listener = bind("gRPC", config.grpc_listen).await?;
    let local = |l: &tokio::net::TcpListener, what, addr| {
        l.local_addr()
            .map_err(|source| ServerError::Bind { what, addr, source })
    };
    let api_addr = local(&api_listener, "API", config.api_listen)?;
    let grpc_addr = local(&grpc_listener, "gRPC", config.grpc_listen)?;

    let cp = ControlPlane::new(
        store,
        Arns::new(&config.region, &config.account),
        config.heartbeat_interval_ms,
        config.manifest_interval_ms,
        // What DiscoverPollEndpoint answers: the address agents reach berth-cp's sessions at.
        format!("http://{grpc_addr}"),
        // Where exec sessions' streams connect (ExecuteCommand's streamUrl).
        api_addr.to_string(),
        ServiceSettings {
            settle_ms: config.service_settle_ms,
            throttle: ThrottleSettings {
                base_ms: i64::from(config.service_throttle_base_ms),
                max_ms: i64::from(config.service_throttle_max_ms),
                ..ThrottleSettings::default()
            },
        },
    );

    let (stop, stopped) = watch::channel(false);
    let wait = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let router = crate::api::router(cp.clone());
    let api_stop = wait(stopped.clone());
    let api = tokio::spawn(async move {
        axum::serve(api_listener, router)
            .with_graceful_shutdown(api_stop)
            .await
            .map_err(|e| ServerError::Serve {
                what: "API",
                message: e.to_string(),
            })
    });
    let services = tokio::spawn(service_loop(
        cp.clone(),
        Duration::from_millis(u64::from(config.service_interval_ms)),
        wait(stopped.clone()),
    ));
    let grpc_service = AgentServiceServer::new(AgentApi::new(cp.agents.clone()));
    let grpc_stop = wait(stopped);
    let grpc = tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(grpc_service)
            .serve_with_incoming_shutdown(
                // Without TCP_NODELAY a payload written while an earlier small write waits
                // for the agent's delayed ACK sits in Nagle's buffer for up to 40 ms: that was
                // a third of RunTask -> RUNNING (BENCHMARKS.md, issue #9).
                TcpIncoming::from(grpc_listener).with_nodelay(Some(true)),
                grpc_stop,
            )
            .await
            .map_err(|e| ServerError::Serve {
                what: "gRPC",
                message: e.to_string(),
            })
    });

    tracing::info!(api = %api_addr, grpc = %grpc_addr, data_dir = %config.data_dir.display(), "berth-cp serving");
    if let Some(path) = &config.ready_file {
        write_ready_file(path, api_addr, grpc_addr)?;
    }
    Ok(RunningServer {
        api_addr,
        grpc_addr,
        cp,
        stop,
        api,
        grpc,
        services,
    })
}

/// The service controller's loop: a pass after every applied agent report or service change
/// (several coalesce into one), and every `every` besides; one pass at a time, off the async
/// workers (the store blocks).
async fn service_loop(
    cp: Arc<ControlPlane>,
    every: Duration,
    stopped: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            _ = cp.agents.changed.notified() => {}
            _ = tokio::time::sleep(every) => {}
        }
        let controller = cp.controller.clone();
        let started = std::time::Instant::now();
        if let Err(e) = tokio::task::spawn_blocking(move || controller.reconcile_all()).await {
            tracing::error!("service controller pass panicked: {e}");
        }
        cp.metrics.controller_pass(started.elapsed());
    }
}

/// Written atomically so a watcher never reads half a file.
fn write_ready_file(path: &Path, api: SocketAddr, grpc: SocketAddr) -> Result<(), ServerError> {
    let err = |source| ServerError::ReadyFile {
        path: path.to_path_buf(),
        source,
    };
    let body = serde_json::json!({"api": api.to_string(), "grpc": grpc.to_string()}).to_string();
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, body).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

impl RunningServer {
    /// Stops accepting, ends the agent sessions (they reconnect to the next instance of us), and
    /// waits for in-flight requests up to a deadline.
    pub async fn shutdown(self) -> Result<(), ServerError> {
        let _ = self.stop.send(true);
        self.cp
            .agents
            .sessions
            .close_all("berth-cp is shutting down");
        let join = |h: JoinHandle<Result<(), ServerError>>, what| async move {
            match tokio::time::timeout(DRAIN_DEADLINE, h).await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => Err(ServerError::Serve {
                    what,
                    message: e.to_string(),
                }),
                Err(_) => {
                    tracing::warn!("{what} server did not drain within {DRAIN_DEADLINE:?}");
                    Ok(())
                }
            }
        };
        if tokio::time::timeout(DRAIN_DEADLINE, self.services)
            .await
            .is_err()
        {
            tracing::warn!("the service controller did not stop within {DRAIN_DEADLINE:?}");
        }
        let api = join(self.api, "API").await;
        let grpc = join(self.grpc, "gRPC").await;
        tracing::info!("berth-cp stopped");
        api.and(grpc)
    }
}

/// Runs until `shutdown` resolves.
pub async fn run(
    config: &Config,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ServerError> {
    let notifier = Notifier::from_env(&std::env::vars().collect());
    let server = start(config).await?;
    notifier.notify(&format!(
        "READY=1\nSTATUS=serving the API on {} and agents on {}",
        server.api_addr, server.grpc_addr
    ));
    notifier.spawn_watchdog();
    shutdown.await;
    tracing::info!("shutting down");
    notifier.notify("STOPPING=1");
    server.shutdown().await
}
