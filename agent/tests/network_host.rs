//! Task networking on the real host (root required; skipped with a note otherwise): the bridge,
//! gateway device and nftables table `init` makes, bridge and awsvpc tasks reachable in their
//! namespaces, DNAT from a host port on 127.0.0.1, awsvpc ingress rules, teardown and the sweep
//! of leftovers.
//!
//! Each test has names of its own: a random prefix `n<3 chars>` for task links and namespaces,
//! a bridge, gateway device and table named after it, subnets in 10.2xx.<random>.0/24 and a
//! namespace directory `/run/berth-test-netns-<prefix>` (never /run/netns). Everything is
//! removed on drop, also on failure. Traffic only goes to loopback or to addresses the test
//! gave inside namespaces it created.

use std::fs::File;
use std::io::{ErrorKind, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use berth_agent::model::NetworkMode;
use berth_agent::network::host::{first_host, HostNetwork};
use berth_agent::network::link::Netlink;
use berth_agent::network::plan::{host_veth_name, netns_name, peer_veth_name, task_mac};
use berth_agent::network::{
    netns, nft, Cidr, IngressProtocol, IngressRule, NetworkConfig, NetworkDriver, PortBinding,
    Protocol, TaskNetwork,
};
use tokio::io::AsyncReadExt;

fn is_root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    eprintln!("note: not root, skipping the host network test");
    false
}

fn random_prefix() -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut s = String::from("n");
    for _ in 0..3 {
        s.push(char::from(CHARS[fastrand::usize(..CHARS.len())]));
    }
    s
}

/// One test's names and driver; removes everything with its names on drop.
struct Env {
    prefix: String,
    cfg: NetworkConfig,
    driver: HostNetwork,
}

impl Env {
    /// `slot` keeps the tests of one run on distinct subnets: 10.(200+2·slot).r.0/24 for the
    /// bridge and 10.(201+2·slot).r.0/24 for awsvpc.
    fn new(slot: u8) -> Self {
        let prefix = random_prefix();
        let r = fastrand::u8(..);
        let cfg = NetworkConfig {
            bridge: format!("{prefix}br"),
            bridge_subnet: Cidr {
                addr: Ipv4Addr::new(10, 200 + 2 * slot, r, 0),
                prefix_len: 24,
            },
            gateway_device: format!("{prefix}gw"),
            task_subnet: Cidr {
                addr: Ipv4Addr::new(10, 201 + 2 * slot, r, 0),
                prefix_len: 24,
            },
            nft_table: format!("berth_test_{prefix}"),
            name_prefix: prefix.clone(),
            netns_dir: PathBuf::from(format!("/run/berth-test-netns-{prefix}")),
            dynamic_ports: (49153, 65535),
            reserved_tcp_ports: vec![],
            reserved_udp_ports: vec![],
        };
        let driver = HostNetwork::new(cfg.clone());
        Env {
            prefix,
            cfg,
            driver,
        }
    }

    fn task_id(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
    }

    /// A bridge or awsvpc network for task `name` with the `host`-th address of its subnet.
    fn net(&self, mode: NetworkMode, name: &str, host: u8) -> TaskNetwork {
        let task_id = self.task_id(name);
        let (subnet, prefix_len) = match mode {
            NetworkMode::Bridge => (self.cfg.bridge_subnet, 24),
            _ => (self.cfg.task_subnet, 32),
        };
        let o = subnet.addr.octets();
        TaskNetwork {
            mode,
            netns: Some(netns_name(&self.prefix, &task_id)),
            host_veth: Some(host_veth_name(&self.prefix, &task_id)),
            address: Some(Ipv4Addr::new(o[0], o[1], o[2], host)),
            prefix_len,
            gateway: Some(first_host(&subnet)),
            mac: Some(task_mac(&task_id)),
            bindings: vec![],
            ingress: None,
            task_id,
        }
    }

    fn netns_path(&self, net: &TaskNetwork) -> PathBuf {
        net.netns_path(&self.cfg).expect("a namespace")
    }

    fn table(&self) -> String {
        let out = std::process::Command::new("nft")
            .args(["list", "table", "ip", &self.cfg.nft_table])
            .output()
            .expect("run nft");
        assert!(
            out.status.success(),
            "nft list table: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    async fn cleanup(prefix: String, cfg: NetworkConfig) {
        if let Err(e) = nft::delete_table(&cfg.nft_table).await {
            eprintln!("cleanup: {e}");
        }
        match Netlink::host() {
            Ok(nl) => {
                for link in nl.links().await.unwrap_or_default() {
                    let ours = link.name.starts_with(&format!("{prefix}_"))
                        || link.name == cfg.bridge
                        || link.name == cfg.gateway_device;
                    if ours {
                        if let Err(e) = nl.delete_link(&link.name).await {
                            eprintln!("cleanup: {e}");
                        }
                    }
                }
            }
            Err(e) => eprintln!("cleanup: {e}"),
        }
        for name in netns::list(&cfg.netns_dir).unwrap_or_default() {
            if let Err(e) = netns::delete(&cfg.netns_dir, &name).await {
                eprintln!("cleanup: {e}");
            }
        }
        // `netns::create` made the directory a mount of itself.
        for _ in 0..4 {
            if nix::mount::umount2(&cfg.netns_dir, nix::mount::MntFlags::MNT_DETACH).is_err() {
                break;
            }
        }
        let _ = std::fs::remove_dir(&cfg.netns_dir);
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        // Drop may run on a runtime thread (a failing test); clean up on a runtime of its own.
        let (prefix, cfg) = (self.prefix.clone(), self.cfg.clone());
        let done = std::thread::spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt.block_on(Env::cleanup(prefix, cfg)),
                Err(e) => eprintln!("cleanup: no runtime: {e}"),
            }
        })
        .join();
        if done.is_err() {
            eprintln!("cleanup panicked");
        }
    }
}

/// A TCP server inside a namespace that answers every connection with "hello"; stops on drop
/// (so nothing keeps the namespace alive after the test).
struct Listener {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Listener {
    fn start(netns: &Path, port: u16) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let (path, stopped) = (netns.to_path_buf(), stop.clone());
        let thread = std::thread::spawn(move || {
            let bound = (|| -> Result<TcpListener, String> {
                let ns = File::open(&path).map_err(|e| format!("open {}: {e}", path.display()))?;
                nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(|e| format!("setns: {e}"))?;
                let l = TcpListener::bind((Ipv4Addr::UNSPECIFIED, port))
                    .map_err(|e| format!("bind {port}: {e}"))?;
                l.set_nonblocking(true).map_err(|e| e.to_string())?;
                Ok(l)
            })();
            let listener = match bound {
                Ok(l) => {
                    let _ = tx.send(Ok(()));
                    l
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            while !stopped.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut conn, _)) => {
                        let _ = conn.set_nonblocking(false);
                        let _ = conn.write_all(b"hello");
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(_) => break,
                }
            }
        });
        rx.recv().expect("listener thread").expect("listener bound");
        Listener {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What a TCP server at `addr` says, within `within`.
async fn fetch(addr: SocketAddr, within: Duration) -> Result<String, String> {
    let talk = async {
        let mut s = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let mut out = String::new();
        s.read_to_string(&mut out)
            .await
            .map_err(|e| format!("read {addr}: {e}"))?;
        Ok(out)
    };
    tokio::time::timeout(within, talk)
        .await
        .unwrap_or_else(|_| Err(format!("{addr}: no answer within {within:?}")))
}

const REACH: Duration = Duration::from_secs(5);
const BLOCKED: Duration = Duration::from_secs(2);

fn at(ip: Ipv4Addr, port: u16) -> SocketAddr {
    SocketAddr::from((ip, port))
}

async fn assert_gone(env: &Env, net: &TaskNetwork) {
    let nl = Netlink::host().expect("netlink");
    let veth = net.host_veth.as_deref().expect("a veth");
    assert_eq!(nl.link(veth).await.expect("get link"), None, "{veth} left");
    let peer = peer_veth_name(&env.prefix, &net.task_id);
    assert_eq!(nl.link(&peer).await.expect("get link"), None, "{peer} left");
    let path = env.netns_path(net);
    assert!(!path.exists(), "{} left", path.display());
    let table = env.table();
    assert!(!table.contains(&net.task_id), "rules left:\n{table}");
    assert!(!table.contains(veth), "rules left:\n{table}");
}

#[tokio::test]
async fn init_creates_the_bridge_the_gateway_device_and_the_table() {
    if !is_root() {
        return;
    }
    let env = Env::new(1);
    env.driver.init(&[]).await.expect("init");
    // Again: everything is there already.
    env.driver.init(&[]).await.expect("init again");

    let nl = Netlink::host().expect("netlink");
    let bridge = nl
        .link(&env.cfg.bridge)
        .await
        .expect("get")
        .expect("bridge");
    assert_eq!(bridge.kind.as_deref(), Some("bridge"));
    assert!(bridge.up);
    assert_eq!(
        nl.addresses(&env.cfg.bridge).await.expect("addresses"),
        [(first_host(&env.cfg.bridge_subnet), 24)]
    );
    let gw = nl
        .link(&env.cfg.gateway_device)
        .await
        .expect("get")
        .expect("gateway device");
    assert!(gw.up);
    assert_eq!(
        nl.addresses(&env.cfg.gateway_device)
            .await
            .expect("addresses"),
        [(first_host(&env.cfg.task_subnet), 32)]
    );
    let sysctl = |p: &str| std::fs::read_to_string(Path::new("/proc/sys").join(p)).expect(p);
    assert_eq!(sysctl("net/ipv4/ip_forward").trim(), "1");
    assert_eq!(
        sysctl(&format!("net/ipv4/conf/{}/route_localnet", env.cfg.bridge)).trim(),
        "1"
    );
    let table = env.table();
    for chain in [
        "nat_prerouting",
        "nat_output",
        "port_dnat",
        "nat_postrouting",
        "filter_forward",
        "filter_output",
    ] {
        assert!(
            table.contains(&format!("chain {chain} ")),
            "{chain}:\n{table}"
        );
    }
}

#[tokio::test]
async fn a_bridge_task_is_reachable_at_its_address_and_through_its_host_port() {
    if !is_root() {
        return;
    }
    let env = Env::new(2);
    env.driver.init(&[]).await.expect("init");
    let host_port = fastrand::u16(20000..30000);
    let mut net = env.net(NetworkMode::Bridge, "web", 2);
    net.bindings = vec![PortBinding {
        container: "web".into(),
        protocol: Protocol::Tcp,
        container_port: 8080,
        host_port,
    }];
    // A crash between creating the namespace file and mounting on it left an empty file.
    let path = env.netns_path(&net);
    std::fs::create_dir_all(&env.cfg.netns_dir).expect("netns dir");
    File::create(&path).expect("empty namespace file");
    let nl = Netlink::host().expect("netlink");
    let bridge_mac = nl
        .link(&env.cfg.bridge)
        .await
        .expect("get")
        .expect("bridge")
        .mac;

    env.driver.setup(&net).await.expect("setup");
    // Again, as after a crash part-way: the veth is made anew, the namespace kept.
    env.driver.setup(&net).await.expect("setup again");

    // The bridge keeps its MAC when ports join, so tasks' ARP entries for it stay right.
    let bridge = nl
        .link(&env.cfg.bridge)
        .await
        .expect("get")
        .expect("bridge");
    assert_eq!(bridge.mac, bridge_mac);
    assert!(
        netns::is_mounted(&path),
        "{} is no namespace",
        path.display()
    );
    let inner = Netlink::in_netns(&path)
        .await
        .expect("netlink in the namespace");
    let eth0 = inner.link("eth0").await.expect("get").expect("eth0");
    assert_eq!(eth0.mac, net.mac);
    assert!(eth0.up);
    let address = net.address.expect("address");
    assert_eq!(
        inner.addresses("eth0").await.expect("addresses"),
        [(address, 24)]
    );
    let table = env.table();
    assert!(
        table.contains(&format!("tcp dport {host_port} dnat to {address}:8080")),
        "{table}"
    );

    {
        let _server = Listener::start(&path, 8080);
        assert_eq!(fetch(at(address, 8080), REACH).await, Ok("hello".into()));
        assert_eq!(
            fetch(at(Ipv4Addr::LOCALHOST, host_port), REACH).await,
            Ok("hello".into())
        );
    }

    env.driver.teardown(&net).await.expect("teardown");
    assert_gone(&env, &net).await;
    assert!(fetch(at(Ipv4Addr::LOCALHOST, host_port), BLOCKED)
        .await
        .is_err());
    // Nothing left to remove is no error.
    env.driver.teardown(&net).await.expect("teardown again");
}

#[tokio::test]
async fn awsvpc_tasks_are_routed_and_their_ingress_rules_enforced() {
    if !is_root() {
        return;
    }
    let env = Env::new(3);
    env.driver.init(&[]).await.expect("init");

    let open = env.net(NetworkMode::Awsvpc, "open", 2);
    let mut guarded = env.net(NetworkMode::Awsvpc, "guarded", 3);
    guarded.ingress = Some(vec![IngressRule {
        protocol: IngressProtocol::Tcp,
        from_port: 8080,
        to_port: 8080,
        source: Cidr {
            addr: Ipv4Addr::UNSPECIFIED,
            prefix_len: 0,
        },
    }]);
    env.driver.setup(&open).await.expect("setup open");
    env.driver.setup(&guarded).await.expect("setup guarded");

    let inner = Netlink::in_netns(&env.netns_path(&guarded))
        .await
        .expect("netlink in the namespace");
    let eth0 = inner.link("eth0").await.expect("get").expect("eth0");
    assert_eq!(eth0.mac, guarded.mac);
    let (open_ip, guarded_ip) = (
        open.address.expect("address"),
        guarded.address.expect("address"),
    );
    assert_eq!(
        inner.addresses("eth0").await.expect("addresses"),
        [(guarded_ip, 32)]
    );

    {
        let _open = Listener::start(&env.netns_path(&open), 9090);
        let _allowed = Listener::start(&env.netns_path(&guarded), 8080);
        let _denied = Listener::start(&env.netns_path(&guarded), 9090);
        assert_eq!(fetch(at(open_ip, 9090), REACH).await, Ok("hello".into()));
        assert_eq!(fetch(at(guarded_ip, 8080), REACH).await, Ok("hello".into()));
        let denied = fetch(at(guarded_ip, 9090), BLOCKED).await;
        assert!(denied.is_err(), "port 9090 should be blocked: {denied:?}");
    }

    env.driver
        .teardown(&guarded)
        .await
        .expect("teardown guarded");
    assert_gone(&env, &guarded).await;
    env.driver.teardown(&open).await.expect("teardown open");
    assert_gone(&env, &open).await;
}

#[tokio::test]
async fn init_sweeps_what_no_active_task_owns() {
    if !is_root() {
        return;
    }
    let env = Env::new(4);
    env.driver.init(&[]).await.expect("init");
    let kept = env.net(NetworkMode::Bridge, "kept", 2);
    env.driver.setup(&kept).await.expect("setup");

    // What a crashed agent left: a namespace and a veth pair of a task no longer in the store.
    let gone = env.task_id("gone");
    let dir = &env.cfg.netns_dir;
    netns::create(dir, &netns_name(&env.prefix, &gone))
        .await
        .expect("leftover namespace");
    let nl = Netlink::host().expect("netlink");
    let (gone_veth, gone_peer) = (
        host_veth_name(&env.prefix, &gone),
        peer_veth_name(&env.prefix, &gone),
    );
    nl.create_veth(&gone_veth, &gone_peer)
        .await
        .expect("leftover veth");
    // And a namespace that is not the agent's.
    netns::create(dir, "other").await.expect("other namespace");

    // A restarted agent whose store has only `kept`.
    let restarted = HostNetwork::new(env.cfg.clone());
    restarted
        .init(std::slice::from_ref(&kept))
        .await
        .expect("init");
    assert_eq!(nl.link(&gone_veth).await.expect("get"), None);
    assert_eq!(nl.link(&gone_peer).await.expect("get"), None);
    let names = netns::list(dir).expect("list");
    assert_eq!(
        names,
        {
            let mut want = vec![netns_name(&env.prefix, &kept.task_id), "other".to_string()];
            want.sort();
            want
        },
        "namespaces after the sweep"
    );
    let kept_veth = kept.host_veth.as_deref().expect("veth");
    assert!(nl.link(kept_veth).await.expect("get").is_some());

    // With nothing active, the kept task's pieces go too.
    restarted.init(&[]).await.expect("init");
    assert_eq!(nl.link(kept_veth).await.expect("get"), None);
    assert_eq!(netns::list(dir).expect("list"), ["other"]);
}
