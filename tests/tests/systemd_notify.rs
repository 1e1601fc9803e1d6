//! systemd's notification protocol (issue #22): berth-cp and berth-agent started as a
//! `Type=notify` unit with `WatchdogSec=` starts them (NOTIFY_SOCKET and WATCHDOG_USEC, a
//! socket the test listens on) say READY when they are, ping the watchdog, and say STOPPING on
//! SIGTERM; a restarted agent is READY with its control plane unreachable.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use berth_e2e::TestEnv;

/// A socket in the role of systemd's notify socket.
struct NotifySocket(UnixDatagram);

impl NotifySocket {
    fn bind(path: &Path) -> Result<Self> {
        let socket = UnixDatagram::bind(path).with_context(|| format!("binding {path:?}"))?;
        socket.set_read_timeout(Some(Duration::from_millis(200)))?;
        Ok(Self(socket))
    }

    /// Reads messages until one satisfies `want`; what was read, in order.
    fn wait_for(&self, what: &str, secs: u64, want: impl Fn(&str) -> bool) -> Result<String> {
        let deadline = Instant::now() + berth_e2e::timeout(secs);
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            match self.0.recv(&mut buf) {
                Ok(n) => {
                    let message = String::from_utf8_lossy(&buf[..n]).into_owned();
                    if want(&message) {
                        return Ok(message);
                    }
                    seen.push(message);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(e.into()),
            }
        }
        bail!("no {what} within {secs} s; got {seen:?}")
    }
}

fn has_line(message: &str, line: &str) -> bool {
    message.lines().any(|l| l == line)
}

#[tokio::test]
async fn both_services_notify_readiness_the_watchdog_and_stopping() -> Result<()> {
    let mut env = TestEnv::new("sd-notify")?;
    let cp_socket_path = env.dir().join("cp-notify.sock");
    let agent_socket_path = env.dir().join("agent-notify.sock");
    let cp_socket = NotifySocket::bind(&cp_socket_path)?;
    let agent_socket = NotifySocket::bind(&agent_socket_path)?;
    // 400 ms: a ping every 200 ms.
    env.set_cp_env("NOTIFY_SOCKET", cp_socket_path.to_str().context("path")?);
    env.set_cp_env("WATCHDOG_USEC", "400000");
    env.set_agent_env("NOTIFY_SOCKET", agent_socket_path.to_str().context("path")?);
    env.set_agent_env("WATCHDOG_USEC", "400000");

    let addrs = env.start_cp().await?;
    let ready = cp_socket.wait_for("berth-cp's READY", 30, |m| has_line(m, "READY=1"))?;
    let api = addrs.api.to_string();
    if !ready.contains(&api) {
        bail!("berth-cp's STATUS does not name its API address {api}: {ready:?}");
    }
    cp_socket.wait_for("berth-cp's watchdog ping", 10, |m| m == "WATCHDOG=1")?;

    let code = env.create_activation(1)?;
    let agent = env.start_agent(Some(&code))?;
    let ready = agent_socket.wait_for("the agent's READY", 60, |m| has_line(m, "READY=1"))?;
    let arn = env.wait_agent_connected().await?;
    if !ready.contains("STATUS=registered as ") {
        bail!("the agent's READY comes with its registration: {ready:?}");
    }
    agent_socket.wait_for("the agent's watchdog ping", 10, |m| m == "WATCHDOG=1")?;

    env.agent(agent).stop(berth_e2e::timeout(10));
    agent_socket.wait_for("the agent's STOPPING", 10, |m| m == "STOPPING=1")?;

    // A restart without the control plane: ready as soon as its tasks are watched.
    env.stop_cp();
    cp_socket.wait_for("berth-cp's STOPPING", 10, |m| m == "STOPPING=1")?;
    env.restart_agent(agent)?;
    let ready = agent_socket.wait_for("the restarted agent's READY", 60, |m| {
        has_line(m, "READY=1")
    })?;
    if !ready.contains("connecting to the control plane") {
        bail!("the restarted agent's READY: {ready:?} (instance {arn})");
    }
    env.pass();
    Ok(())
}
