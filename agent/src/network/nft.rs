//! The agent's nftables table, rendered whole from the active task networks and swapped in as
//! one transaction.
//!
//! The agent never edits single rules: `render` is a pure function of the configuration and the
//! networks, so what is on the host is always exactly what the store implies, a crash cannot
//! leave a half-updated rule set, and recovery is "render and apply again". `nft -f` runs a
//! script atomically, and the script starts by creating (if missing) and deleting the table, so
//! the old table is replaced in the same transaction and packets never see a gap.
//!
//! What the table does:
//! - nat prerouting and nat output: traffic to a local address (`fib daddr type local`, also
//!   127.0.0.1 from the host itself) goes through `port_dnat`, one DNAT rule per bridge-mode
//!   port binding, commented with the task id.
//! - nat prerouting, first: the task metadata endpoint, 169.254.170.2:80 from the bridge or
//!   task subnet, is DNATed to the agent's listener on that subnet's gateway address.
//! - nat postrouting: tasks' outbound traffic is masqueraded (bridge subnet leaving by another
//!   interface, task subnet leaving the subnet); the host's own 127.0.0.1:hostPort traffic that
//!   DNAT sent to the bridge is masqueraded to the bridge address (with `route_localnet` on the
//!   bridge, see `host`); and a bridge task reaching another bridge task through a host port is
//!   masqueraded too, or the answer would come straight back over the bridge with the wrong
//!   source.
//! - filter forward and filter output: traffic leaving by the host veth of an awsvpc task with
//!   ingress rules passes that task's chain: established traffic, then each rule, then drop.
//!
//! Host-mode port bindings are reservations only and get no rules.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use super::{Cidr, IngressProtocol, IngressRule, NetworkConfig, NetworkError, TaskNetwork};
use crate::model::NetworkMode;
use crate::netdef::{METADATA_ADDRESS, METADATA_PORT};

/// How long one `nft` run may take.
pub const NFT_TIMEOUT: Duration = Duration::from_secs(15);

/// nftables' longest comment.
const MAX_COMMENT: usize = 128;

/// `cidr` with its host bits cleared, as nft wants prefixes.
fn network(cidr: &Cidr) -> String {
    let mask = match cidr.prefix_len {
        0 => 0,
        n if n >= 32 => u32::MAX,
        n => u32::MAX << (32 - n),
    };
    let addr = Ipv4Addr::from(u32::from(cidr.addr) & mask);
    format!("{addr}/{}", cidr.prefix_len.min(32))
}

/// A string safe inside nft's double quotes (which have no escapes).
fn quoted(s: &str) -> String {
    let clean: String = s
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "-_.:/@+ ".contains(*c))
        .take(MAX_COMMENT)
        .collect();
    format!("\"{clean}\"")
}

/// The per-task ingress chain, named after the host veth (unique per task, and made of
/// characters nft accepts in identifiers).
fn ingress_chain(host_veth: &str) -> String {
    let clean: String = host_veth
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("task_{clean}")
}

fn ingress_rule(rule: &IngressRule) -> String {
    let source = network(&rule.source);
    let (from, to) = (
        rule.from_port.min(rule.to_port),
        rule.from_port.max(rule.to_port),
    );
    let ports = if from == to {
        from.to_string()
    } else {
        format!("{from}-{to}")
    };
    match rule.protocol {
        IngressProtocol::Tcp => format!("ip saddr {source} tcp dport {ports} accept"),
        IngressProtocol::Udp => format!("ip saddr {source} udp dport {ports} accept"),
        IngressProtocol::All => format!("ip saddr {source} accept"),
    }
}

/// The nft script that replaces the agent's table (family ip, `cfg.nft_table`) with one for
/// `nets`: `table ip T {}` and `delete table ip T` first, so it applies whether or not the
/// table exists, then the whole table.
pub fn render(cfg: &NetworkConfig, nets: &[TaskNetwork]) -> String {
    let table = &cfg.nft_table;
    let bridge = quoted(&cfg.bridge);
    let bridge_net = network(&cfg.bridge_subnet);
    let task_net = network(&cfg.task_subnet);

    let mut dnat = Vec::new();
    let mut ingress = Vec::new();
    for net in nets {
        match net.mode {
            NetworkMode::Bridge => {
                let Some(address) = net.address else { continue };
                for b in &net.bindings {
                    dnat.push(format!(
                        "{} dport {} dnat to {address}:{} comment {}",
                        b.protocol.as_str(),
                        b.host_port,
                        b.container_port,
                        quoted(&net.task_id)
                    ));
                }
            }
            NetworkMode::Awsvpc => {
                if let (Some(veth), Some(rules)) = (&net.host_veth, &net.ingress) {
                    ingress.push((veth.as_str(), net.task_id.as_str(), rules));
                }
            }
            NetworkMode::Host | NetworkMode::None => {}
        }
    }

    let mut s = String::new();
    let _ = writeln!(s, "table ip {table} {{}}");
    let _ = writeln!(s, "delete table ip {table}");
    let _ = writeln!(s, "table ip {table} {{");
    let chain = |s: &mut String, name: &str, hook: Option<&str>, rules: &[String]| {
        let _ = writeln!(s, "\tchain {name} {{");
        if let Some(hook) = hook {
            let _ = writeln!(s, "\t\t{hook}; policy accept;");
        }
        for rule in rules {
            let _ = writeln!(s, "\t\t{rule}");
        }
        let _ = writeln!(s, "\t}}");
    };
    let to_dnat = vec!["fib daddr type local jump port_dnat".to_string()];
    // The task metadata endpoint: tasks' 169.254.170.2:80 is the agent on their gateway.
    let metadata = |from: &str, gateway: Ipv4Addr| {
        format!(
            "ip saddr {from} ip daddr {METADATA_ADDRESS} tcp dport 80 dnat to {gateway}:{METADATA_PORT}"
        )
    };
    let mut prerouting = vec![
        metadata(&bridge_net, cfg.bridge_subnet.gateway()),
        metadata(&task_net, cfg.task_subnet.gateway()),
    ];
    prerouting.extend(to_dnat.iter().cloned());
    chain(
        &mut s,
        "nat_prerouting",
        Some("type nat hook prerouting priority dstnat"),
        &prerouting,
    );
    chain(
        &mut s,
        "nat_output",
        Some("type nat hook output priority -100"),
        &to_dnat,
    );
    chain(&mut s, "port_dnat", None, &dnat);
    chain(
        &mut s,
        "nat_postrouting",
        Some("type nat hook postrouting priority srcnat"),
        &[
            format!("ip saddr {bridge_net} ip daddr != {bridge_net} oifname != {bridge} masquerade"),
            format!("oifname {bridge} ip saddr {bridge_net} ip daddr {bridge_net} ct status dnat masquerade"),
            format!("ip saddr {task_net} ip daddr != {task_net} masquerade"),
            format!("oifname {bridge} ip saddr 127.0.0.0/8 masquerade"),
        ],
    );
    let jumps: Vec<String> = ingress
        .iter()
        .map(|(veth, _, _)| format!("oifname {} jump {}", quoted(veth), ingress_chain(veth)))
        .collect();
    chain(
        &mut s,
        "filter_forward",
        Some("type filter hook forward priority filter"),
        &jumps,
    );
    chain(
        &mut s,
        "filter_output",
        Some("type filter hook output priority filter"),
        &jumps,
    );
    for (veth, task_id, rules) in &ingress {
        let mut body = vec!["ct state established,related accept".to_string()];
        body.extend(rules.iter().map(ingress_rule));
        body.push(format!("drop comment {}", quoted(task_id)));
        chain(&mut s, &ingress_chain(veth), None, &body);
    }
    let _ = writeln!(s, "}}");
    s
}

/// Runs `nft -f -` with `script` on stdin (one atomic transaction).
pub async fn apply(script: &str) -> Result<(), NetworkError> {
    let mut child = tokio::process::Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| NetworkError::Nft(format!("cannot run nft: {e}")))?;
    let run = async {
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(script.as_bytes())
                .await
                .map_err(|e| NetworkError::Nft(format!("writing the script to nft: {e}")))?;
        }
        child
            .wait_with_output()
            .await
            .map_err(|e| NetworkError::Nft(format!("waiting for nft: {e}")))
    };
    let output = tokio::time::timeout(NFT_TIMEOUT, run)
        .await
        .map_err(|_| NetworkError::Nft(format!("nft did not finish within {NFT_TIMEOUT:?}")))??;
    if output.status.success() {
        Ok(())
    } else {
        Err(NetworkError::Nft(format!(
            "nft -f - failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

/// Deletes the table `name` (family ip); a missing table is not an error.
pub async fn delete_table(name: &str) -> Result<(), NetworkError> {
    apply(&format!("table ip {name} {{}}\ndelete table ip {name}\n")).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::{PortBinding, Protocol};

    fn cidr(a: [u8; 4], prefix_len: u8) -> Cidr {
        Cidr {
            addr: Ipv4Addr::from(a),
            prefix_len,
        }
    }

    fn cfg() -> NetworkConfig {
        NetworkConfig {
            bridge: "berth0".into(),
            bridge_subnet: cidr([172, 31, 0, 0], 24),
            gateway_device: "berth-gw".into(),
            task_subnet: cidr([172, 30, 0, 0], 22),
            nft_table: "berth".into(),
            name_prefix: "bt".into(),
            netns_dir: "/run/netns".into(),
            dynamic_ports: (49153, 65535),
            reserved_tcp_ports: vec![],
            reserved_udp_ports: vec![],
        }
    }

    fn net(mode: NetworkMode, task_id: &str) -> TaskNetwork {
        TaskNetwork {
            mode,
            task_id: task_id.into(),
            netns: None,
            host_veth: None,
            address: None,
            prefix_len: 0,
            gateway: None,
            mac: None,
            bindings: vec![],
            ingress: None,
        }
    }

    fn binding(protocol: Protocol, host_port: u16, container_port: u16) -> PortBinding {
        PortBinding {
            container: "web".into(),
            protocol,
            container_port,
            host_port,
        }
    }

    /// The lines of chain `name` (without the header and braces).
    fn chain<'a>(script: &'a str, name: &str) -> Vec<&'a str> {
        let header = format!("chain {name} {{");
        let mut lines = script.lines().skip_while(|l| l.trim() != header);
        assert!(lines.next().is_some(), "no chain {name} in:\n{script}");
        lines
            .take_while(|l| l.trim() != "}")
            .map(str::trim)
            .collect()
    }

    #[test]
    fn an_empty_table_replaces_the_old_one_atomically() {
        let s = render(&cfg(), &[]);
        let mut lines = s.lines();
        assert_eq!(lines.next(), Some("table ip berth {}"));
        assert_eq!(lines.next(), Some("delete table ip berth"));
        assert_eq!(lines.next(), Some("table ip berth {"));
        assert_eq!(s.lines().last(), Some("}"));
        assert_eq!(
            chain(&s, "nat_prerouting"),
            [
                "type nat hook prerouting priority dstnat; policy accept;",
                "ip saddr 172.31.0.0/24 ip daddr 169.254.170.2 tcp dport 80 dnat to 172.31.0.1:51679",
                "ip saddr 172.30.0.0/22 ip daddr 169.254.170.2 tcp dport 80 dnat to 172.30.0.1:51679",
                "fib daddr type local jump port_dnat"
            ]
        );
        assert_eq!(
            chain(&s, "nat_output"),
            [
                "type nat hook output priority -100; policy accept;",
                "fib daddr type local jump port_dnat"
            ]
        );
        assert!(chain(&s, "port_dnat").is_empty());
        assert_eq!(
            chain(&s, "nat_postrouting"),
            [
                "type nat hook postrouting priority srcnat; policy accept;",
                "ip saddr 172.31.0.0/24 ip daddr != 172.31.0.0/24 oifname != \"berth0\" masquerade",
                "oifname \"berth0\" ip saddr 172.31.0.0/24 ip daddr 172.31.0.0/24 ct status dnat masquerade",
                "ip saddr 172.30.0.0/22 ip daddr != 172.30.0.0/22 masquerade",
                "oifname \"berth0\" ip saddr 127.0.0.0/8 masquerade",
            ]
        );
        assert_eq!(
            chain(&s, "filter_forward"),
            ["type filter hook forward priority filter; policy accept;"]
        );
        assert_eq!(
            chain(&s, "filter_output"),
            ["type filter hook output priority filter; policy accept;"]
        );
    }

    #[test]
    fn bridge_bindings_are_dnated_and_host_bindings_are_not() {
        let mut bridge = net(NetworkMode::Bridge, "task-1");
        bridge.address = Some(Ipv4Addr::new(172, 31, 0, 5));
        bridge.bindings = vec![
            binding(Protocol::Tcp, 8080, 80),
            binding(Protocol::Udp, 5353, 53),
        ];
        let mut host = net(NetworkMode::Host, "task-2");
        host.bindings = vec![binding(Protocol::Tcp, 9090, 9090)];
        let s = render(&cfg(), &[bridge, host]);
        assert_eq!(
            chain(&s, "port_dnat"),
            [
                "tcp dport 8080 dnat to 172.31.0.5:80 comment \"task-1\"",
                "udp dport 5353 dnat to 172.31.0.5:53 comment \"task-1\"",
            ]
        );
        assert!(!s.contains("9090"));
        assert!(!s.contains("task-2"));
    }

    #[test]
    fn awsvpc_tasks_with_rules_get_an_ingress_chain() {
        let mut open = net(NetworkMode::Awsvpc, "open");
        open.host_veth = Some("bt_aaaaaaaaaaaa".into());
        let mut guarded = net(NetworkMode::Awsvpc, "guarded");
        guarded.host_veth = Some("bt_bbbbbbbbbbbb".into());
        guarded.ingress = Some(vec![
            IngressRule {
                protocol: IngressProtocol::Tcp,
                from_port: 80,
                to_port: 80,
                source: cidr([10, 0, 0, 7], 8),
            },
            IngressRule {
                protocol: IngressProtocol::Udp,
                from_port: 2000,
                to_port: 1000,
                source: cidr([0, 0, 0, 0], 0),
            },
            IngressRule {
                protocol: IngressProtocol::All,
                from_port: 0,
                to_port: 0,
                source: cidr([192, 168, 1, 1], 32),
            },
        ]);
        let s = render(&cfg(), &[open, guarded]);
        let jump = "oifname \"bt_bbbbbbbbbbbb\" jump task_bt_bbbbbbbbbbbb";
        assert_eq!(chain(&s, "filter_forward")[1..], [jump]);
        assert_eq!(chain(&s, "filter_output")[1..], [jump]);
        assert_eq!(
            chain(&s, "task_bt_bbbbbbbbbbbb"),
            [
                "ct state established,related accept",
                "ip saddr 10.0.0.0/8 tcp dport 80 accept",
                "ip saddr 0.0.0.0/0 udp dport 1000-2000 accept",
                "ip saddr 192.168.1.1/32 accept",
                "drop comment \"guarded\"",
            ]
        );
        assert!(!s.contains("aaaaaaaaaaaa"));
        assert!(chain(&s, "port_dnat").is_empty());
    }

    #[test]
    fn no_rules_means_drop_all_but_established() {
        let mut t = net(NetworkMode::Awsvpc, "t");
        t.host_veth = Some("bt_cccccccccccc".into());
        t.ingress = Some(vec![]);
        let s = render(&cfg(), &[t]);
        assert_eq!(
            chain(&s, "task_bt_cccccccccccc"),
            ["ct state established,related accept", "drop comment \"t\""]
        );
    }

    #[test]
    fn comments_cannot_break_out_of_their_quotes() {
        let mut t = net(NetworkMode::Bridge, "evil\" ; drop\n}");
        t.address = Some(Ipv4Addr::new(172, 31, 0, 9));
        t.bindings = vec![binding(Protocol::Tcp, 1, 2)];
        let s = render(&cfg(), &[t]);
        assert_eq!(
            chain(&s, "port_dnat"),
            ["tcp dport 1 dnat to 172.31.0.9:2 comment \"evil  drop\""]
        );
        let long = "x".repeat(300);
        assert_eq!(quoted(&long).len(), MAX_COMMENT + 2);
    }
}
