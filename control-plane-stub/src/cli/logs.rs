//! `berthctl logs`: streams a container's log from berth-cp's Berth-specific logs endpoint to
//! stdout, byte for byte; the log driver the definition named goes to stderr.

use std::io::Write;

use super::{CliError, Client};
use crate::contract::{LOGS_PATH as PATH, LOG_DRIVER_HEADER};

pub struct LogsArgs<'a> {
    pub cluster: &'a str,
    pub task: &'a str,
    pub container: Option<&'a str>,
    pub follow: bool,
    pub tail: Option<u32>,
}

pub async fn stream(client: &Client, a: &LogsArgs<'_>) -> Result<(), CliError> {
    let mut query = vec![
        ("cluster", a.cluster.to_string()),
        ("task", a.task.to_string()),
    ];
    if let Some(c) = a.container {
        query.push(("container", c.to_string()));
    }
    if let Some(n) = a.tail {
        query.push(("tail", n.to_string()));
    }
    if a.follow {
        query.push(("follow", "true".into()));
    }
    let mut resp = client
        .http
        .get(format!("{}{PATH}", client.endpoint))
        .query(&query)
        .send()
        .await
        .map_err(|source| CliError::Connect {
            endpoint: client.endpoint.clone(),
            source,
        })?;
    let status = resp.status();
    if !status.is_success() {
        let message = resp.text().await.unwrap_or_default().trim().to_string();
        return Err(CliError::Logs(format!("HTTP {status}: {message}")));
    }
    if let Some(driver) = resp
        .headers()
        .get(LOG_DRIVER_HEADER)
        .and_then(|v| v.to_str().ok())
    {
        eprintln!("# logDriver {driver}: kept in the agent's local files");
    }
    let mut out = std::io::stdout().lock();
    loop {
        match resp.chunk().await {
            Ok(Some(bytes)) => {
                // A closed stdout (`| head`) ends the command quietly.
                if out.write_all(&bytes).and_then(|()| out.flush()).is_err() {
                    return Ok(());
                }
            }
            Ok(None) => return Ok(()),
            Err(e) => {
                return Err(CliError::Logs(format!(
                    "the log stream broke off: {e} (the agent may have disconnected)"
                )))
            }
        }
    }
}
