//! `berthctl audit`: the audit log (who ran which command in which task, and how it ended).

use clap::Subcommand;
use serde_json::Value;

use super::table::{render, s, utc};
use super::{CliError, Client, Output};
use crate::contract::AUDIT_PATH;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Print the audit log, oldest first.
    Audit {
        /// Only records after this id (the last id of a previous page).
        #[arg(long, default_value_t = 0)]
        after: i64,
        /// At most this many records (1 to 1000).
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

pub(super) async fn execute(
    client: &Client,
    output: Output,
    command: &AuditCommand,
) -> Result<String, CliError> {
    let AuditCommand::Audit { after, limit } = command;
    let v = client
        .berth(
            reqwest::Method::GET,
            &format!("{AUDIT_PATH}?after={after}&limit={limit}"),
            None,
        )
        .await?;
    Ok(match output {
        Output::Json => serde_json::to_string_pretty(&v).unwrap_or_default(),
        Output::Table => table(&v),
    })
}

fn table(v: &Value) -> String {
    let events = v["events"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            vec![
                s(&e["id"]),
                utc(&e["at"]),
                s(&e["principal"]),
                s(&e["action"]),
                s(&e["resource"]),
                e["detail"].to_string(),
            ]
        })
        .collect();
    let mut out = render(
        &[
            "ID",
            "AT (UTC)",
            "PRINCIPAL",
            "ACTION",
            "RESOURCE",
            "DETAIL",
        ],
        &rows,
    );
    if let Some(next) = v["nextAfter"].as_i64() {
        out.push_str(&format!("\n(more: --after {next})"));
    }
    out
}
