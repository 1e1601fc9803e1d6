//! berth-cp's command line: argument definitions and what each command does.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::{self, ConfigError, Settings};

/// Exit code for "bad configuration, do not restart" (EX_CONFIG; systemd RestartPreventExitStatus).
pub const EXIT_CONFIG: u8 = 78;

#[derive(Debug, Parser)]
#[command(name = "berth-cp", version, about = "Berth reference control plane")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the ECS-compatible API and the agent service.
    Serve(ServeArgs),
    /// Manage activation codes (works while serve is running).
    #[command(subcommand)]
    Activation(ActivationCommand),
    /// Manage container instances (works while serve is running).
    #[command(subcommand)]
    Instance(InstanceCommand),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML file with the same keys as the flags (data_dir, api_listen, ...).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Default /var/lib/berth-cp.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// ECS API address, default 127.0.0.1:7080.
    #[arg(long)]
    pub api_listen: Option<String>,
    /// Agent gRPC address, default 127.0.0.1:7081.
    #[arg(long)]
    pub grpc_listen: Option<String>,
    /// Default us-east-1.
    #[arg(long)]
    pub region: Option<String>,
    /// Default 000000000000.
    #[arg(long)]
    pub account: Option<String>,
    /// How often each agent session gets a fresh task manifest, in ms (default 60000).
    #[arg(long)]
    pub manifest_interval_ms: Option<u64>,
    /// How often the service scheduler looks at every service, in ms (default 1000).
    #[arg(long)]
    pub service_interval_ms: Option<u64>,
    /// How long a task without health checks runs before a service counts it healthy, in ms
    /// (default 40000, as ECS).
    #[arg(long)]
    pub service_settle_ms: Option<u64>,
    /// The service throttle's first wait, in ms, when a service's tasks keep failing to start
    /// (default 10000); it doubles with each further failure.
    #[arg(long)]
    pub service_throttle_base_ms: Option<u64>,
    /// The service throttle's longest wait, in ms (default 1620000: 27 minutes, as ECS).
    #[arg(long)]
    pub service_throttle_max_ms: Option<u64>,
    /// Once listening, write {"api":"IP:PORT","grpc":"IP:PORT"} here (atomically).
    #[arg(long)]
    pub ready_file: Option<PathBuf>,
    /// Allow listening on non-loopback addresses (the API can run containers as root).
    #[arg(long)]
    pub allow_non_loopback: bool,
}

#[derive(Debug, Subcommand)]
pub enum ActivationCommand {
    /// Create an activation code; prints only the code.
    Create {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        cluster: String,
        /// How many instances may register with it.
        #[arg(long, default_value_t = 1)]
        uses: i64,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 86_400)]
        expires_in: i64,
    },
    /// Revoke an activation code.
    Revoke {
        #[arg(long)]
        data_dir: PathBuf,
        code: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum InstanceCommand {
    /// Revoke an instance's credential; its session is refused at its next message.
    Revoke {
        #[arg(long)]
        data_dir: PathBuf,
        instance_id: String,
    },
}

impl ServeArgs {
    fn flag_settings(&self) -> Settings {
        Settings {
            data_dir: self.data_dir.clone(),
            api_listen: self.api_listen.clone(),
            grpc_listen: self.grpc_listen.clone(),
            region: self.region.clone(),
            account: self.account.clone(),
            heartbeat_interval_ms: None,
            manifest_interval_ms: self.manifest_interval_ms,
            service_interval_ms: self.service_interval_ms,
            service_settle_ms: self.service_settle_ms,
            service_throttle_base_ms: self.service_throttle_base_ms,
            service_throttle_max_ms: self.service_throttle_max_ms,
            allow_non_loopback: self.allow_non_loopback.then_some(true),
            ready_file: self.ready_file.clone(),
        }
    }
}

pub async fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::Activation(ActivationCommand::Create {
            data_dir,
            cluster,
            uses,
            expires_in,
        }) => report(
            crate::admin::create_activation(&data_dir, &cluster, uses, expires_in)
                .map(|code| println!("{code}")),
        ),
        Command::Activation(ActivationCommand::Revoke { data_dir, code }) => {
            report(crate::admin::revoke_activation(&data_dir, &code))
        }
        Command::Instance(InstanceCommand::Revoke {
            data_dir,
            instance_id,
        }) => report(crate::admin::revoke_instance(&data_dir, &instance_id)),
    }
}

fn report(r: Result<(), crate::admin::AdminError>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(crate::admin::AdminError::Invalid(m)) => {
            eprintln!("error: {m}");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: ServeArgs) -> ExitCode {
    let config = match config::load(args.config.as_deref(), args.flag_settings()) {
        Ok(c) => c,
        Err(
            e @ (ConfigError::Invalid(_) | ConfigError::Parse { .. } | ConfigError::Read { .. }),
        ) => {
            eprintln!("berth-cp: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match crate::server::run(&config, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("berth-cp: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        _ = term => tracing::info!("SIGTERM received"),
    }
}
