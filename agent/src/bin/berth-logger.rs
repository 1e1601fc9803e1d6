//! berth-logger: the per-container logger that containerd's shim starts for a `binary://` stdio
//! URI (see `berth_agent::logs::logger`). A binary of its own, with nothing but the logger
//! linked in, because one runs per container: its private memory (relocated data, heap, the
//! two copying threads) is what each container costs, and the agent's executable carries ten
//! times the data. `berth-agent` in logger mode remains the fallback when this file is missing.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !berth_agent::logs::logger::is_logger_invocation(&args) {
        eprintln!(
            "berth-logger: started by containerd's shim for a container's stdio, not by hand \
             (it needs berth-log-path and the shim's pipes)"
        );
        return ExitCode::from(2);
    }
    ExitCode::from(berth_agent::logs::logger::run(&args) as u8)
}
