use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    berth_cp::cli::run(berth_cp::cli::Cli::parse()).await
}
