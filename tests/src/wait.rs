//! Waiting for conditions by polling, with generous deadlines: the tests assert on what happens,
//! never on how fast.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};

const POLL: Duration = Duration::from_millis(100);

/// A deadline of `secs` seconds, multiplied by BERTH_E2E_TIMEOUT_SCALE when that is set (for
/// slow machines, such as the emulated cgroup v2 guest).
pub fn timeout(secs: u64) -> Duration {
    let scale = std::env::var("BERTH_E2E_TIMEOUT_SCALE")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| *s > 0.0)
        .unwrap_or(1.0);
    Duration::from_secs_f64(secs as f64 * scale)
}

/// Calls `probe` until it returns `Ok(Some(value))` and returns the value. `Ok(None)` and
/// errors mean "not yet"; if `limit` passes first, the error names `what` and the last result.
pub async fn wait_until<T, F, Fut>(what: &str, limit: Duration, mut probe: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + limit;
    loop {
        let last = match probe().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => "the condition did not hold".to_owned(),
            Err(e) => format!("{e:#}"),
        };
        if Instant::now() >= deadline {
            return Err(anyhow!(
                "timed out after {limit:?} waiting for {what}; last: {last}"
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}
