//! Task networking from the outside: each env's `[network]` names, subnets and ports (unique
//! per env and clear of this host's routes, links and listeners), the clean-up of whatever an
//! env's agents may have left on the host, and the tools the network tests use: HTTP over a
//! plain `TcpStream` with deadlines, running code inside a network namespace (on a thread of
//! its own that `setns()`s), and a client namespace with a veth pair that the test owns.
//!
//! Traffic rule: tests only talk to loopback, or to addresses that the test (or the env's own
//! agent, configured by the env) assigned inside namespaces and links they created.

use std::collections::HashSet;
use std::fmt;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{anyhow, bail, ensure, Context, Result};

use crate::wait::{timeout, wait_until};

/// An IPv4 network in CIDR notation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Subnet {
    pub addr: Ipv4Addr,
    pub prefix_len: u8,
}

impl Subnet {
    pub fn new(addr: Ipv4Addr, prefix_len: u8) -> Subnet {
        Subnet { addr, prefix_len }
    }

    /// `a.b.c.d/n`, or a bare address (a /32).
    pub fn parse(s: &str) -> Option<Subnet> {
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => (a, l.parse().ok()?),
            None => (s, 32),
        };
        if len > 32 {
            return None;
        }
        Some(Subnet {
            addr: addr.parse().ok()?,
            prefix_len: len,
        })
    }

    fn mask(&self) -> u32 {
        if self.prefix_len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix_len))
        }
    }

    /// The network address (host bits cleared).
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & self.mask())
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.network())
    }

    pub fn overlaps(&self, other: &Subnet) -> bool {
        self.contains(other.network()) || other.contains(self.network())
    }

    /// The `n`-th address of the network (0 is the network address itself).
    pub fn nth(&self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network()) + n)
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network(), self.prefix_len)
    }
}

/// An env's `[network]`: everything its agents create on the host is named or numbered from
/// here, so several envs (and the host's own network) never meet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkSettings {
    /// The bridge of bridge-mode tasks (`bb` + 6 characters of the env id).
    pub bridge: String,
    /// Bridge-mode addresses; the first host address is the bridge's own.
    pub bridge_subnet: Subnet,
    /// The dummy device holding the awsvpc gateway (`bg` + 6 characters of the env id).
    pub gateway_device: String,
    /// awsvpc task addresses.
    pub task_subnet: Subnet,
    /// The agent's nftables table (family ip).
    pub nft_table: String,
    /// Host links the agent creates are `<prefix>_<hex>`, namespaces `<prefix>-<task id>`.
    pub name_prefix: String,
    /// Where the agent bind-mounts task namespaces.
    pub netns_dir: PathBuf,
    /// Host ports the agent hands out for hostPort 0 (inclusive).
    pub dynamic_ports: (u16, u16),
    /// Not part of the agent's config: 100 more host ports of this env only, for tests that
    /// need fixed host ports (host mode, fixed hostPort mappings). Nothing listens on them.
    pub fixed_ports: (u16, u16),
    /// Not part of the agent's config: a /24 of this env only for links the test creates
    /// itself (see [`TestNetns`] and [`NetworkSettings::scratch_pair`]).
    pub scratch_subnet: Subnet,
}

/// The first /24 the envs use (10.100.0.0) and how many groups of four /24s there are up to
/// 10.199.255.0: bridge, task, scratch and one spare.
const SUBNET_BASE: u32 = 10 << 24 | 100 << 16;
const SUBNET_SLOTS: u64 = 100 * 256 / 4;
/// Port blocks of 200 (100 dynamic, 100 fixed) in 20000–59999.
const PORT_BASE: u64 = 20000;
const PORT_BLOCK: u64 = 200;
const PORT_BLOCKS: u64 = 40000 / PORT_BLOCK;
/// ECS_RESERVED_PORTS' defaults (the agent's too): no env may be given these.
const RESERVED_PORTS: &[u16] = &[22, 2375, 2376, 51678, 51679];

/// What the envs of this test process hold: (name prefix, subnet slot, port block).
static IN_USE: Mutex<Option<HashSet<String>>> = Mutex::new(None);

fn in_use_keys(net: &NetworkSettings) -> [String; 3] {
    [
        format!("prefix:{}", net.name_prefix),
        format!("subnet:{}", net.bridge_subnet),
        format!("ports:{}", net.dynamic_ports.0),
    ]
}

impl NetworkSettings {
    /// The settings that follow from an env id (at least 10 hex digits).
    pub fn derive(id: &str) -> NetworkSettings {
        let n = u64::from_str_radix(&id[..10.min(id.len())], 16).unwrap_or(0);
        let slot = (n % SUBNET_SLOTS) as u32;
        let block = (n / SUBNET_SLOTS) % PORT_BLOCKS;
        let net24 = |i: u32| Subnet::new(Ipv4Addr::from(SUBNET_BASE + (slot * 4 + i) * 256), 24);
        let start = (PORT_BASE + block * PORT_BLOCK) as u16;
        NetworkSettings {
            bridge: format!("bb{}", &id[..6]),
            bridge_subnet: net24(0),
            gateway_device: format!("bg{}", &id[..6]),
            task_subnet: net24(1),
            nft_table: format!("berth_e2e_{id}"),
            name_prefix: format!("e{}", &id[..4]),
            netns_dir: PathBuf::from(format!("/run/berth-e2e-{id}-netns")),
            dynamic_ports: (start, start + 99),
            fixed_ports: (start + 100, start + 199),
            scratch_subnet: net24(2),
        }
    }

    /// Derives the settings of `id` and claims them for this process, unless another env of
    /// this process holds any of them, or the host already has a route, link or listener in
    /// their way; None then (the caller picks another id).
    pub(crate) fn claim(id: &str) -> Option<NetworkSettings> {
        let net = NetworkSettings::derive(id);
        let (first, last) = (u64::from(net.dynamic_ports.0), u64::from(net.fixed_ports.1));
        if RESERVED_PORTS
            .iter()
            .any(|&p| (first..=last).contains(&u64::from(p)))
        {
            return None;
        }
        // A host without `ip` (a minimal guest) has nothing of these in the way that the
        // harness could see; its agent then runs host and none tasks only.
        let links = host_links().unwrap_or_default();
        if links.iter().any(|l| {
            *l == net.bridge
                || *l == net.gateway_device
                || l.starts_with(&format!("{}_", net.name_prefix))
        }) {
            return None;
        }
        let routes = host_routes().unwrap_or_default();
        let ours = [
            net.bridge_subnet,
            net.task_subnet,
            net.scratch_subnet,
            Subnet::new(net.scratch_subnet.nth(256), 24),
        ];
        if routes.iter().any(|r| ours.iter().any(|s| s.overlaps(r))) {
            return None;
        }
        let listening = listening_tcp_ports();
        if listening
            .iter()
            .any(|&p| (first..=last).contains(&u64::from(p)))
        {
            return None;
        }
        if net.netns_dir.exists() {
            return None;
        }
        let mut guard = IN_USE.lock().unwrap_or_else(|e| e.into_inner());
        let held = guard.get_or_insert_with(HashSet::new);
        let keys = in_use_keys(&net);
        if keys.iter().any(|k| held.contains(k)) {
            return None;
        }
        held.extend(keys);
        Some(net)
    }

    /// Gives back what [`NetworkSettings::claim`] took.
    pub(crate) fn release(&self) {
        let mut guard = IN_USE.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(held) = guard.as_mut() {
            for k in in_use_keys(self) {
                held.remove(&k);
            }
        }
    }

    /// The `[network]` section of an agent config.
    pub fn agent_toml(&self) -> String {
        format!(
            "\n[network]\nbridge = {bridge:?}\nbridge_subnet = \"{bs}\"\ngateway_device = {gw:?}\n\
             task_subnet = \"{ts}\"\nnft_table = {table:?}\nname_prefix = {prefix:?}\n\
             netns_dir = {dir:?}\ndynamic_ports = \"{p0}-{p1}\"\n",
            bridge = self.bridge,
            bs = self.bridge_subnet,
            gw = self.gateway_device,
            ts = self.task_subnet,
            table = self.nft_table,
            prefix = self.name_prefix,
            dir = self.netns_dir.display().to_string(),
            p0 = self.dynamic_ports.0,
            p1 = self.dynamic_ports.1,
        )
    }

    /// The bridge's own address (the bridge-mode gateway).
    pub fn bridge_gateway(&self) -> Ipv4Addr {
        self.bridge_subnet.nth(1)
    }

    /// The awsvpc gateway on the gateway device.
    pub fn task_gateway(&self) -> Ipv4Addr {
        self.task_subnet.nth(1)
    }

    /// The `i`-th (0..64) /30 of the scratch subnet: (host side, namespace side), both /30.
    pub fn scratch_pair(&self, i: u32) -> (Ipv4Addr, Ipv4Addr) {
        assert!(i < 64, "the scratch /24 has 64 /30s");
        (
            self.scratch_subnet.nth(4 * i + 1),
            self.scratch_subnet.nth(4 * i + 2),
        )
    }

    /// Whether `port` is in the dynamic range.
    pub fn is_dynamic_port(&self, port: u16) -> bool {
        (self.dynamic_ports.0..=self.dynamic_ports.1).contains(&port)
    }

    /// The path of a task's namespace, as the agent names it (`<prefix>-<task id>`).
    pub fn task_netns(&self, task_id: &str) -> PathBuf {
        self.netns_dir
            .join(format!("{}-{task_id}", self.name_prefix))
    }

    /// The host links whose names start with `<prefix>_` (the agent's veths).
    pub fn agent_links(&self) -> Result<Vec<String>> {
        let start = format!("{}_", self.name_prefix);
        Ok(host_links()?
            .into_iter()
            .filter(|l| l.starts_with(&start))
            .collect())
    }

    /// The files in the netns dir (none when the dir does not exist).
    pub fn netns_files(&self) -> Vec<String> {
        std::fs::read_dir(&self.netns_dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    }

    /// `nft -j list table ip <table>`, or None when there is no such table.
    pub fn nft_table_json(&self) -> Result<Option<String>> {
        let out = Command::new("nft")
            .args(["-j", "list", "table", "ip", &self.nft_table])
            .output()
            .context("cannot run nft")?;
        if out.status.success() {
            return Ok(Some(String::from_utf8_lossy(&out.stdout).into_owned()));
        }
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("No such file") || err.contains("does not exist") {
            return Ok(None);
        }
        bail!(
            "nft list table ip {} failed: {}",
            self.nft_table,
            err.trim()
        )
    }

    /// Mount points below the netns dir (namespace bind mounts left behind).
    pub fn netns_mounts(&self) -> Vec<String> {
        let below = format!("{}/", self.netns_dir.display());
        mount_points()
            .into_iter()
            .filter(|m| m.starts_with(&below))
            .collect()
    }

    /// How often the netns dir itself is a mount point (an agent may bind-mount it onto
    /// itself to make it a shared mount, as `ip netns` does with /run/netns: once).
    pub fn netns_dir_mounts(&self) -> usize {
        let dir = self.netns_dir.display().to_string();
        mount_points().iter().filter(|m| **m == dir).count()
    }

    /// Removes everything an agent with these settings may have left on the host: its nftables
    /// table, bridge, gateway device, `<prefix>_` links, and the namespaces in the netns dir
    /// (unmounted, removed) with the dir. Best effort: returns what could not be removed.
    pub fn remove_leftovers(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Ok(Some(_)) = self.nft_table_json() {
            if let Err(e) = run("nft", &["delete", "table", "ip", &self.nft_table]) {
                problems.push(format!("{e:#}"));
            }
        }
        let mut links: Vec<String> = self.agent_links().unwrap_or_default();
        let existing = host_links().unwrap_or_default();
        for dev in [&self.bridge, &self.gateway_device] {
            if existing.contains(dev) {
                links.push(dev.clone());
            }
        }
        for link in &links {
            // A veth's peer goes with it: the second delete of a pair may find nothing.
            if let Err(e) = run("ip", &["link", "del", link]) {
                if host_links().unwrap_or_default().contains(link) {
                    problems.push(format!("{e:#}"));
                }
            }
        }
        for name in self.netns_files() {
            let path = self.netns_dir.join(&name);
            if let Err(e) = remove_netns_file(&path) {
                problems.push(format!("{}: {e:#}", path.display()));
            }
        }
        if self.netns_dir.exists() {
            while nix::mount::umount2(&self.netns_dir, nix::mount::MntFlags::MNT_DETACH).is_ok() {}
            if let Err(e) = std::fs::remove_dir(&self.netns_dir) {
                problems.push(format!("{}: {e}", self.netns_dir.display()));
            }
        }
        problems
    }
}

/// Each task's network phase as the agent's store (`<data_dir>/agent.db`, read only) records
/// it: (task ARN, phase), phase being `NotNeeded`, `Pending`, `Planned`, `Up` or `Released`
/// (`Planned` and `Up` hold an address and host ports).
pub fn stored_network_phases(agent_data_dir: &Path) -> Result<Vec<(String, String)>> {
    let conn = crate::agent_store::agent_db(agent_data_dir)?;
    let mut stmt = conn.prepare(
        "SELECT arn, COALESCE(json_extract(state, '$.network_phase'), '') FROM tasks ORDER BY arn",
    )?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("reading the tasks of {}", agent_data_dir.display()))?;
    Ok(rows)
}

/// The mount points of this process's mount namespace.
fn mount_points() -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .map(str::to_owned)
        .collect()
}

/// Unmounts (lazily) and removes a namespace file.
fn remove_netns_file(path: &Path) -> Result<()> {
    // Unmounting repeatedly: a namespace may have been mounted more than once.
    while nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH).is_ok() {}
    std::fs::remove_file(path).with_context(|| format!("removing {}", path.display()))
}

/// Runs a command; its stdout, or an error with its stderr.
pub fn run(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("cannot run {program}"))?;
    if !out.status.success() {
        bail!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The names of the host's links (`eth0`, not `eth0@if5`).
pub fn host_links() -> Result<Vec<String>> {
    Ok(run("ip", &["-o", "link", "show"])?
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).trim().to_owned())
        .collect())
}

/// The destinations of every IPv4 route of the host, in any table, but the default routes.
pub fn host_routes() -> Result<Vec<Subnet>> {
    const TYPES: &[&str] = &[
        "unicast",
        "local",
        "broadcast",
        "multicast",
        "anycast",
        "blackhole",
        "unreachable",
        "prohibit",
        "throw",
        "nat",
    ];
    let text = run("ip", &["-4", "-o", "route", "show", "table", "all"])?;
    let mut routes = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let mut dest = words.next().unwrap_or_default();
        if TYPES.contains(&dest) {
            dest = words.next().unwrap_or_default();
        }
        if dest == "default" {
            continue;
        }
        if let Some(s) = Subnet::parse(dest) {
            routes.push(s);
        }
    }
    Ok(routes)
}

/// The TCP ports something on the host listens on (IPv4 and IPv6).
fn listening_tcp_ports() -> Vec<u16> {
    let mut ports = Vec::new();
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // local_address is ADDR:PORT in hex; st 0A is LISTEN.
            if fields.len() > 3 && fields[3] == "0A" {
                if let Some(port) = fields[1]
                    .rsplit(':')
                    .next()
                    .and_then(|p| u16::from_str_radix(p, 16).ok())
                {
                    ports.push(port);
                }
            }
        }
    }
    ports
}

/// An HTTP answer: the status code and the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub body: String,
}

/// `GET path` over HTTP/1.0 on a plain `TcpStream`: connecting, writing and reading each have
/// `limit`. Blocking: call it from a thread (or through [`http_get_async`]).
pub fn http_get(addr: SocketAddr, path: &str, limit: Duration) -> Result<HttpResponse> {
    let mut stream = TcpStream::connect_timeout(&addr, limit)
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(limit))?;
    stream.set_write_timeout(Some(limit))?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .with_context(|| format!("sending to {addr}"))?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .with_context(|| format!("reading from {addr}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .with_context(|| format!("no HTTP header from {addr}: {text:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no HTTP status from {addr}: {head:?}"))?;
    Ok(HttpResponse {
        status,
        body: body.to_owned(),
    })
}

/// [`http_get`] on a blocking thread.
pub async fn http_get_async(addr: SocketAddr, path: &str, limit: Duration) -> Result<HttpResponse> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || http_get(addr, &path, limit))
        .await
        .map_err(|e| anyhow!("the HTTP thread failed: {e}"))?
}

/// Polls `GET /` on `addr` (2 s per attempt) until it answers 200 with `body`, for up to `secs`
/// (scaled); a container that is RUNNING may not listen yet.
pub async fn wait_http_body(addr: SocketAddr, body: &str, secs: u64) -> Result<()> {
    wait_until(
        &format!("GET http://{addr}/ to answer {body:?}"),
        timeout(secs),
        || async move {
            let resp = http_get_async(addr, "/", Duration::from_secs(2)).await?;
            ensure!(
                resp.status == 200 && resp.body == body,
                "answered {} {:?}",
                resp.status,
                resp.body
            );
            Ok(Some(()))
        },
    )
    .await
}

/// Whether a TCP connection to `addr` can be opened within `limit`.
pub fn tcp_connects(addr: SocketAddr, limit: Duration) -> std::io::Result<()> {
    TcpStream::connect_timeout(&addr, limit).map(drop)
}

/// Runs `f` in the network namespace `netns` (a file such as /run/netns/NAME): on a new thread
/// that `setns()`s into it and ends with `f`, so no other code ever runs in that namespace.
pub async fn in_netns<T, F>(netns: &Path, f: F) -> Result<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let path = netns.to_owned();
    let thread = std::thread::spawn(move || -> Result<T> {
        let file = std::fs::File::open(&path)
            .with_context(|| format!("opening the namespace {}", path.display()))?;
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
            .with_context(|| format!("setns into {}", path.display()))?;
        Ok(f())
    });
    tokio::task::spawn_blocking(move || thread.join())
        .await
        .map_err(|e| anyhow!("joining the namespace thread: {e}"))?
        .map_err(|_| anyhow!("the thread in {} panicked", netns.display()))?
}

/// A network namespace (`ip netns add`, so under /run/netns) and a veth pair of the test's
/// own: the host side and the namespace side each with an address the test chose, in a /30.
/// Dropping it removes both, also when the test fails.
pub struct TestNetns {
    pub name: String,
    pub host_veth: String,
    pub ns_veth: String,
    pub host_addr: Ipv4Addr,
    pub ns_addr: Ipv4Addr,
}

impl TestNetns {
    /// Creates the namespace `name` and the pair `host_veth` (in the host, `host_addr`/30) and
    /// `ns_veth` (in the namespace, `ns_addr`/30), both up, with loopback up inside.
    pub fn create(
        name: &str,
        host_veth: &str,
        ns_veth: &str,
        host_addr: Ipv4Addr,
        ns_addr: Ipv4Addr,
    ) -> Result<TestNetns> {
        run("ip", &["netns", "add", name])?;
        // From here on, Drop removes whatever was created.
        let guard = TestNetns {
            name: name.to_owned(),
            host_veth: host_veth.to_owned(),
            ns_veth: ns_veth.to_owned(),
            host_addr,
            ns_addr,
        };
        run(
            "ip",
            &[
                "link", "add", host_veth, "type", "veth", "peer", "name", ns_veth, "netns", name,
            ],
        )?;
        run(
            "ip",
            &["addr", "add", &format!("{host_addr}/30"), "dev", host_veth],
        )?;
        run("ip", &["link", "set", host_veth, "up"])?;
        run(
            "ip",
            &[
                "-n",
                name,
                "addr",
                "add",
                &format!("{ns_addr}/30"),
                "dev",
                ns_veth,
            ],
        )?;
        run("ip", &["-n", name, "link", "set", ns_veth, "up"])?;
        run("ip", &["-n", name, "link", "set", "lo", "up"])?;
        Ok(guard)
    }

    /// The namespace's file, for [`in_netns`].
    pub fn path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.name)
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        if host_links().unwrap_or_default().contains(&self.host_veth) {
            if let Err(e) = run("ip", &["link", "del", &self.host_veth]) {
                eprintln!("cleanup: {e:#}");
            }
        }
        if self.path().exists() {
            if let Err(e) = run("ip", &["netns", "del", &self.name]) {
                eprintln!("cleanup: {e:#}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_settings_fit_the_limits() {
        for id in ["0000000000", "ffffffffff", "a1b2c3d4e5", "1234567890"] {
            let n = NetworkSettings::derive(id);
            assert_eq!(n.bridge.len(), 8);
            assert_eq!(n.gateway_device.len(), 8);
            assert_eq!(n.name_prefix.len(), 5);
            for s in [n.bridge_subnet, n.task_subnet, n.scratch_subnet] {
                assert_eq!(s.prefix_len, 24);
                let [a, b, _, d] = s.addr.octets();
                assert!(a == 10 && (100..=199).contains(&b) && d == 0, "{s}");
            }
            assert!(!n.bridge_subnet.overlaps(&n.task_subnet));
            assert!(n.dynamic_ports.0 >= 20000 && n.fixed_ports.1 <= 59999);
            assert_eq!(n.dynamic_ports.1 - n.dynamic_ports.0, 99);
            assert_eq!(n.fixed_ports.0, n.dynamic_ports.1 + 1);
        }
    }

    #[test]
    fn subnets() {
        let s = Subnet::parse("10.1.2.0/24").unwrap();
        assert!(s.contains("10.1.2.77".parse().unwrap()));
        assert!(!s.contains("10.1.3.1".parse().unwrap()));
        assert!(s.overlaps(&Subnet::parse("10.0.0.0/8").unwrap()));
        assert!(!s.overlaps(&Subnet::parse("10.1.3.0/24").unwrap()));
        assert_eq!(s.nth(1).to_string(), "10.1.2.1");
        assert_eq!(Subnet::parse("10.1.2.3").unwrap().prefix_len, 32);
    }
}
