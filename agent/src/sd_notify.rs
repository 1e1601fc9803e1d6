//! systemd's service notification protocol (sd_notify(3)), for `Type=notify` units: a datagram
//! such as `READY=1` to the socket in `NOTIFY_SOCKET` (a path, or `@name` for an abstract
//! socket), and `WATCHDOG=1` pings at half of `WATCHDOG_USEC` when the unit has `WatchdogSec=`.
//! Without `NOTIFY_SOCKET` (not under systemd) every call does nothing. Best effort: a failed
//! send is logged, never an error, since the agent's work does not depend on it.

use std::collections::HashMap;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use tracing::debug;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Path(std::path::PathBuf),
    Abstract(Vec<u8>),
}

#[derive(Debug, Clone)]
pub struct Notifier {
    target: Option<Target>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// From the process's environment (`NOTIFY_SOCKET`, `WATCHDOG_USEC`, `WATCHDOG_PID`).
    pub fn from_env(env: &HashMap<String, String>) -> Self {
        let target = env.get("NOTIFY_SOCKET").and_then(|s| {
            if let Some(name) = s.strip_prefix('@') {
                Some(Target::Abstract(name.as_bytes().to_vec()))
            } else if s.starts_with('/') {
                Some(Target::Path(s.into()))
            } else {
                None
            }
        });
        // WATCHDOG_PID names the process the watchdog is for; another (a child) must not ping.
        let for_us = env
            .get("WATCHDOG_PID")
            .is_none_or(|pid| pid.parse::<u32>().ok() == Some(std::process::id()));
        let watchdog = env
            .get("WATCHDOG_USEC")
            .and_then(|us| us.parse::<u64>().ok())
            .filter(|us| *us > 0 && for_us && target.is_some())
            .map(|us| Duration::from_micros(us / 2));
        Self { target, watchdog }
    }

    /// How often to send `WATCHDOG=1`, when the unit asks for it.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog
    }

    /// Sends `state` (newline-separated `KEY=value` assignments).
    pub fn notify(&self, state: &str) {
        let Some(target) = &self.target else {
            return;
        };
        let sent = UnixDatagram::unbound().and_then(|socket| match target {
            Target::Path(path) => socket.send_to(state.as_bytes(), path),
            Target::Abstract(name) => {
                use std::os::linux::net::SocketAddrExt as _;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                socket.send_to_addr(state.as_bytes(), &addr)
            }
        });
        if let Err(e) = sent {
            debug!(error = %e, "sd_notify failed");
        }
    }

    /// Pings the watchdog for as long as the runtime runs, if the unit asks for it: a wedged
    /// runtime stops the pings and systemd restarts the agent.
    pub fn spawn_watchdog(&self) {
        let Some(every) = self.watchdog else {
            return;
        };
        let notifier = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                notifier.notify("WATCHDOG=1");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn states_reach_the_socket_and_nothing_happens_without_one() {
        let dir = std::env::temp_dir().join(format!("berth-notify-{}", fastrand::u64(..)));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::from_env(&env(&[("NOTIFY_SOCKET", path.to_str().unwrap())]));
        n.notify("READY=1\nSTATUS=registered");
        let mut buf = [0u8; 256];
        let len = socket.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=registered");
        assert_eq!(n.watchdog_interval(), None);
        Notifier::from_env(&env(&[])).notify("READY=1");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_watchdog_is_half_its_timeout_and_only_for_the_named_process() {
        let ours = std::process::id().to_string();
        let n = Notifier::from_env(&env(&[
            ("NOTIFY_SOCKET", "@berth-test"),
            ("WATCHDOG_USEC", "30000000"),
            ("WATCHDOG_PID", &ours),
        ]));
        assert_eq!(n.watchdog_interval(), Some(Duration::from_secs(15)));
        let other = Notifier::from_env(&env(&[
            ("NOTIFY_SOCKET", "@berth-test"),
            ("WATCHDOG_USEC", "30000000"),
            ("WATCHDOG_PID", "1"),
        ]));
        assert_eq!(other.watchdog_interval(), None);
        let no_socket = Notifier::from_env(&env(&[("WATCHDOG_USEC", "30000000")]));
        assert_eq!(no_socket.watchdog_interval(), None);
    }
}
