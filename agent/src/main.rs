//! The berth-agent binary: tracing, configuration, then the engine and the session until a
//! signal. Stopping the agent never stops tasks: they belong to containerd's shims.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use berth_agent::cgroups::{self, TaskCgroups};
use berth_agent::config::{self, Config, EXIT_BAD_CONFIG};
use berth_agent::engine::{Engine, EngineConfig};
use berth_agent::host;
use berth_agent::images::{
    canonical_name, CleanupPolicy, ImageProvider, PullBehavior, PullSettings, RegistryImages,
};
use berth_agent::introspection::{self, AgentIdentity};
use berth_agent::logs;
use berth_agent::model::NetworkMode;
use berth_agent::network::host::HostNetwork;
use berth_agent::network::DynNetworkDriver;
use berth_agent::registry::{RegistryClient, RegistryConfig};
use berth_agent::resources::Needs;
use berth_agent::runtime::containerd::{Containerd, ContainerdConfig};
use berth_agent::runtime::Runtime;
use berth_agent::sd_notify::Notifier;
use berth_agent::session::{self, SessionConfig, SessionError};
use berth_agent::store::Store;
use berth_agent::task_metadata;
use tokio::sync::watch;
use tracing::{error, info, warn};

/// Health checks running at once over all containers (each is a containerd exec).
const MAX_CONCURRENT_HEALTH_CHECKS: usize = 8;

const USAGE: &str = "usage: berth-agent [--config FILE]\n\
    Configuration: a TOML file (default /etc/berth/agent.toml if it exists), then BERTH_* \
    environment variables. Logging: BERTH_LOG or RUST_LOG, e.g. info,berth_agent=debug \
    (default info).";

fn main() -> ExitCode {
    // Started by containerd's shim as a container's logger (see `berth_agent::logs`).
    let args: Vec<String> = std::env::args().skip(1).collect();
    if logs::logger::is_logger_invocation(&args) {
        return ExitCode::from(logs::logger::run(&args) as u8);
    }
    let env: std::collections::HashMap<String, String> = std::env::vars().collect();
    let filter = match config::log_filter(&env) {
        Ok(f) => f,
        Err(message) => {
            eprintln!("berth-agent: {message}");
            return ExitCode::from(EXIT_BAD_CONFIG as u8);
        }
    };
    // Colour only for a person at a terminal: journald and log files get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none();
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_target(false)
                .with_ansi(ansi)
                .with_writer(std::io::stderr),
        )
        .with(filter)
        .init();

    let cfg = match parse_args()
        .and_then(|path| config::load(path.as_deref(), &env).map_err(|e| e.to_string()))
    {
        Ok(cfg) => cfg,
        Err(message) => {
            eprintln!("berth-agent: {message}");
            return ExitCode::from(EXIT_BAD_CONFIG as u8);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("berth-agent: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let notifier = Notifier::from_env(&env);
    match runtime.block_on(run(cfg, notifier)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            let refused = e.downcast_ref::<SessionError>().is_some_and(|s| {
                matches!(s, SessionError::Refused(_) | SessionError::NoActivationCode)
            });
            if refused {
                ExitCode::from(EXIT_BAD_CONFIG as u8)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn parse_args() -> Result<Option<PathBuf>, String> {
    let mut args = std::env::args().skip(1);
    let mut path = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--config" | "-c" => {
                path = Some(PathBuf::from(args.next().ok_or("--config needs a file")?))
            }
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            "--version" | "-V" => {
                println!("berth-agent {}", env!("CARGO_PKG_VERSION"));
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    let default = PathBuf::from("/etc/berth/agent.toml");
    Ok(path.or_else(|| default.exists().then_some(default)))
}

async fn run(cfg: Config, notifier: Notifier) -> anyhow::Result<()> {
    let (shutdown_tx, shutdown) = watch::channel(false);
    let on_signal = notifier.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        info!("signal received: leaving tasks running and shutting down");
        on_signal.notify("STOPPING=1");
        let _ = shutdown_tx.send(true);
    });
    notifier.spawn_watchdog();

    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("creating data dir {}", cfg.data_dir.display()))?;
    let store = Arc::new(Store::open(&cfg.data_dir.join("agent.db"))?);
    let containerd = Arc::new(connect_containerd(&cfg, shutdown.clone()).await?);
    let version = containerd.version().await.unwrap_or_default();
    // Before registering: the network modes this instance offers depend on it.
    let network = init_network(&cfg, &store).await;
    let modes: &[&str] = match &network {
        Ok(_) => NetworkMode::SUPPORTED,
        Err(_) => &["host", "none"],
    };
    let host = host::read(&cfg, &version, modes);

    let session_cfg = SessionConfig {
        endpoint: cfg.endpoint.clone(),
        cluster: cfg.cluster.clone(),
        activation_code: cfg.activation_code.clone(),
    };
    // Before the engine: recovered tasks may create containers at once.
    let stdio = logs::init_stdio(cfg.logs.max_size_mib, cfg.logs.max_files);
    info!(?stdio, "container logs");
    let cgroups = Arc::new(cgroups::FsCgroups::new("/sys/fs/cgroup"));
    info!(root = %cfg.cgroups.root, v2 = cgroups.is_v2(), "task cgroups");
    let images = image_provider(&cfg, &containerd)?;
    let containerd_for_cleanup = Arc::clone(&containerd);
    // Served on the bridge and gateway addresses, which exist only with task networking.
    let task_metadata = network.is_ok();
    let engine = Engine::new(
        Arc::clone(&containerd),
        images,
        Arc::clone(&cgroups) as Arc<dyn TaskCgroups>,
        network,
        Arc::clone(&store),
        EngineConfig {
            logs_dir: cfg.data_dir.join("logs"),
            volumes_dir: cfg.data_dir.join("volumes"),
            task_cleanup_wait: Duration::from_secs(cfg.task_cleanup_wait_secs),
            cgroup_root: cfg.cgroups.root.clone(),
            cpu_period_us: cfg.cgroups.cpu_period_us,
            pids_limit: cfg.cgroups.pids_limit,
            registered: Needs {
                cpu: host.cpu_units.max(0) as u64,
                memory_mib: host.memory_mib.max(0) as u64,
            },
            network: cfg.network.clone(),
            health_dir: cfg.data_dir.join("health"),
            max_concurrent_checks: MAX_CONCURRENT_HEALTH_CHECKS,
            manifest_grace: Duration::from_secs(cfg.manifest_grace_secs),
            task_metadata,
        },
    );
    // The engine runs before registration: after a restart during a control-plane outage,
    // recovered tasks are watched (exits, health, restarts) and their changes queued in the
    // outbox while registration keeps retrying.
    engine.start().await?;
    let identity = Arc::new(AgentIdentity::new(&cfg.cluster));
    // Registered before: the ARN is known, and the agent is doing its work (its tasks are
    // recovered and watched), whether or not the control plane answers now.
    let known_arn = store
        .credential()
        .ok()
        .flatten()
        .map(|c| c.container_instance_arn);
    if let Some(arn) = &known_arn {
        let _ = identity.container_instance_arn.set(arn.clone());
    }
    serve_introspection(
        &cfg,
        introspection::Sources {
            identity: Arc::clone(&identity),
            store: Arc::clone(&store),
            metrics: Arc::clone(engine.metrics()),
            cgroups: Arc::clone(&cgroups) as Arc<dyn TaskCgroups>,
        },
        &shutdown,
    );
    if task_metadata {
        let facts = task_metadata::HostFacts {
            cluster: cfg.cluster.clone(),
            availability_zone: cfg.instance.availability_zone.clone(),
            memory_bytes: host.memory_mib.max(0) as u64 * 1024 * 1024,
            online_cpus: std::thread::available_parallelism().map_or(1, |n| n.get() as u64),
        };
        serve_task_metadata(&cfg, facts, &store, &cgroups, &shutdown);
    }
    if cfg.images.cleanup_enabled {
        spawn_image_cleanup(&cfg, &containerd_for_cleanup, &store);
    }
    if let Some(arn) = &known_arn {
        notifier.notify(&format!(
            "READY=1\nSTATUS=running as {arn}; connecting to the control plane"
        ));
    }
    let credential =
        match session::register(&session_cfg, &store, &host, &version, shutdown.clone()).await {
            Ok(c) => c,
            Err(SessionError::ShuttingDown) => {
                engine.drain(Duration::from_secs(5)).await;
                info!("stopped before the control plane was reached; tasks left running");
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
    let _ = identity
        .container_instance_arn
        .set(credential.container_instance_arn.clone());
    notifier.notify(&format!(
        "READY=1\nSTATUS=registered as {}",
        credential.container_instance_arn
    ));
    let log_service = logs::serve::LogService::new(Arc::clone(&store), cfg.data_dir.join("logs"));
    // FIFOs of execs a previous agent ran: their processes are removed with the tasks' checks.
    let _ = std::fs::remove_dir_all(cfg.data_dir.join("exec"));
    let exec_service = berth_agent::exec::ExecService::new(
        Arc::clone(&containerd),
        Arc::clone(&store),
        cfg.data_dir.join("exec"),
    );
    let result = session::run(
        session_cfg,
        credential,
        Arc::clone(&engine),
        store,
        log_service,
        exec_service,
        shutdown,
    )
    .await;
    engine.drain(Duration::from_secs(5)).await;
    result?;
    info!("stopped");
    Ok(())
}

/// Sets up the host side of task networking (bridge, gateway device, nftables table) for the
/// networks the store's tasks hold, and removes leftovers of a crash. A host where this fails
/// still runs host and none tasks: the error is logged and given as the reason bridge and
/// awsvpc tasks fail.
async fn init_network(cfg: &Config, store: &Store) -> Result<Arc<dyn DynNetworkDriver>, String> {
    let states = store
        .unfinished_tasks()
        .map_err(|e| format!("cannot read the store: {e}"))?;
    let active = berth_agent::engine::active_networks(&states);
    let driver = HostNetwork::new(cfg.network.clone());
    match DynNetworkDriver::init(&driver, &active).await {
        Ok(()) => {
            info!(bridge = %cfg.network.bridge, table = %cfg.network.nft_table,
                active = active.len(), "task networking ready");
            Ok(Arc::new(driver))
        }
        Err(e) => {
            error!(error = %e, "task networking unavailable: bridge and awsvpc tasks will fail");
            Err(e.to_string())
        }
    }
}

/// The introspection API and `/metrics`, where `[introspection] listen` says. A port already
/// taken costs the API, not the agent: tasks matter more than a read-only view of them.
fn serve_introspection(
    cfg: &Config,
    sources: introspection::Sources,
    shutdown: &watch::Receiver<bool>,
) {
    let Some(addr) = cfg.introspection_listen else {
        return;
    };
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        if let Some(listener) = listen(addr, "introspection API", shutdown.clone()).await {
            introspection::serve(listener, sources, shutdown).await;
        }
    });
}

/// The task metadata endpoint on the bridge address and the awsvpc gateway, where the
/// nftables table sends tasks' 169.254.170.2:80. As with introspection, an address that cannot
/// be bound costs the endpoint, not the agent.
fn serve_task_metadata(
    cfg: &Config,
    host: task_metadata::HostFacts,
    store: &Arc<Store>,
    cgroups: &Arc<cgroups::FsCgroups>,
    shutdown: &watch::Receiver<bool>,
) {
    let sources = Arc::new(task_metadata::Sources {
        host,
        store: Arc::clone(store),
        cgroups: Arc::clone(cgroups) as Arc<dyn TaskCgroups>,
    });
    for gateway in [
        cfg.network.bridge_subnet.gateway(),
        cfg.network.task_subnet.gateway(),
    ] {
        let addr = std::net::SocketAddr::from((gateway, task_metadata::METADATA_PORT));
        let (sources, shutdown) = (Arc::clone(&sources), shutdown.clone());
        tokio::spawn(async move {
            if let Some(listener) = listen(addr, "task metadata endpoint", shutdown.clone()).await {
                task_metadata::serve(listener, sources, shutdown).await;
            }
        });
    }
}

/// Binds `addr`, waiting up to 30 s while it is in use (the agent this one replaces may still
/// be closing its sockets); None, with the reason logged, if it cannot.
async fn listen(
    addr: std::net::SocketAddr,
    what: &str,
    mut shutdown: watch::Receiver<bool>,
) -> Option<tokio::net::TcpListener> {
    for attempt in 0..30 {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => return Some(listener),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                if attempt == 0 {
                    warn!(%addr, "{what}: the address is in use; retrying for 30 s");
                }
            }
            Err(e) => {
                error!(%addr, error = %e, "{what} not served: cannot listen");
                return None;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.changed() => return None,
        }
    }
    error!(%addr, "{what} not served: the address stayed in use");
    None
}

/// Registries and the pull policy of `[images]`.
fn image_provider(
    cfg: &Config,
    containerd: &Arc<Containerd>,
) -> anyhow::Result<Arc<dyn ImageProvider>> {
    let credentials = cfg.images.credentials.clone().into_iter().collect();
    let client = RegistryClient::new(RegistryConfig {
        insecure: cfg.images.insecure_registries.clone(),
        credentials,
    })
    .context("setting up the registry client")?;
    let settings = PullSettings {
        behavior: PullBehavior::parse(&cfg.images.pull_behavior).unwrap_or_default(),
        parallel_layers: cfg.images.parallel_layer_downloads,
        attempts: cfg.images.pull_attempts,
    };
    info!(behavior = settings.behavior.as_str(), insecure = ?cfg.images.insecure_registries, "image pulls");
    Ok(RegistryImages::new(
        client,
        Arc::clone(containerd),
        settings,
    ))
}

/// Removes unused images this agent pulled, as `[images]` says.
fn spawn_image_cleanup(cfg: &Config, containerd: &Arc<Containerd>, store: &Arc<Store>) {
    let policy = CleanupPolicy {
        minimum_age_ms: cfg.images.minimum_image_age_secs.saturating_mul(1000),
        per_cycle: cfg.images.images_per_cycle,
        pinned: cfg
            .images
            .pinned
            .iter()
            .map(|p| canonical_name(p))
            .collect(),
    };
    let store = Arc::clone(store);
    let in_use = move || match store.unfinished_tasks() {
        Ok(tasks) => Some(
            tasks
                .iter()
                .flat_map(|t| t.spec.containers.iter().map(|c| canonical_name(&c.image)))
                .collect(),
        ),
        Err(e) => {
            warn!(error = %e, "image cleanup: cannot read the store; skipping this cycle");
            None
        }
    };
    tokio::spawn(berth_agent::images::run_cleanup(
        Arc::clone(containerd),
        policy,
        Duration::from_secs(cfg.images.cleanup_interval_secs),
        in_use,
    ));
}

/// containerd may start after us (or restart): wait for it rather than fail.
async fn connect_containerd(
    cfg: &Config,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<Containerd> {
    let ccfg = ContainerdConfig {
        socket: cfg.containerd.socket.clone(),
        namespace: cfg.containerd.namespace.clone(),
        snapshotter: cfg.containerd.snapshotter.clone(),
        call_timeout: cfg.containerd.call_timeout(),
    };
    let mut backoff = session::Backoff::new(Duration::from_secs(10));
    loop {
        match Containerd::connect(ccfg.clone()).await {
            Ok(c) => match c.version().await {
                Ok(v) => {
                    info!(containerd = %v, namespace = %ccfg.namespace, "connected to containerd");
                    return Ok(c);
                }
                Err(e) => warn!(error = %e, "containerd is not answering; retrying"),
            },
            Err(e) => warn!(error = %e, "retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff.next_delay()) => {}
            _ = shutdown.changed() => anyhow::bail!("shut down before containerd was reachable"),
        }
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
