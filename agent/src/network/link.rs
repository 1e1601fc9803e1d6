//! Links, addresses and routes over rtnetlink, on the host or inside a task's namespace, and the
//! few sysctls task networking needs.
//!
//! rtnetlink rather than running `ip`: errors come back as errnos we can act on (a link that is
//! already gone is not a failure), there is no output to parse, and a connection opened inside a
//! namespace (see `netns::netlink_in`) configures it without any thread entering it. Every
//! request has a timeout, so a wedged kernel call fails a task instead of hanging its worker.

use std::fs::File;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::Duration;

use futures_util::stream::TryStreamExt;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags, LinkInfo, LinkMessage};
use rtnetlink::packet_route::route::RouteScope;
use rtnetlink::{Handle, LinkBridge, LinkDummy, LinkUnspec, LinkVeth, RouteMessageBuilder};

use super::plan::task_mac;
use super::{netns, NetworkError};

/// How long one netlink request may take.
pub const NETLINK_TIMEOUT: Duration = Duration::from_secs(10);

const ENODEV: i32 = libc::ENODEV;
const EOPNOTSUPP: i32 = libc::EOPNOTSUPP;

/// A link as the kernel lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// `veth`, `bridge`, `dummy`, …; None for links without one (loopback, physical NICs).
    pub kind: Option<String>,
    /// The MAC address, `aa:bb:cc:dd:ee:ff`, when the link has one.
    pub mac: Option<String>,
    pub up: bool,
}

/// An rtnetlink error, kept apart so callers can tell "no such device" from real failures.
#[derive(Debug)]
enum NlError {
    /// The kernel refused with this errno.
    Errno(i32),
    Other(String),
}

impl NlError {
    fn from_rtnetlink(e: rtnetlink::Error) -> Self {
        match e {
            rtnetlink::Error::NetlinkError(m) if m.raw_code() != 0 => {
                NlError::Errno(m.raw_code().abs())
            }
            other => NlError::Other(other.to_string()),
        }
    }

    fn message(&self) -> String {
        match self {
            NlError::Errno(errno) => std::io::Error::from_raw_os_error(*errno).to_string(),
            NlError::Other(m) => m.clone(),
        }
    }

    fn into_network(self, op: impl Into<String>) -> NetworkError {
        NetworkError::Netlink {
            op: op.into(),
            message: self.message(),
        }
    }
}

/// Awaits one request with the timeout.
async fn timed<T, F>(fut: F) -> Result<T, NlError>
where
    F: Future<Output = Result<T, rtnetlink::Error>>,
{
    match tokio::time::timeout(NETLINK_TIMEOUT, fut).await {
        Ok(result) => result.map_err(NlError::from_rtnetlink),
        Err(_) => Err(NlError::Other(format!(
            "no answer within {NETLINK_TIMEOUT:?}"
        ))),
    }
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(mac: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = mac.split(':');
    for byte in out.iter_mut() {
        let part = parts.next()?;
        if part.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

fn format_mac(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn to_link(msg: LinkMessage) -> Link {
    let mut link = Link {
        index: msg.header.index,
        name: String::new(),
        kind: None,
        mac: None,
        up: msg.header.flags.contains(LinkFlags::Up),
    };
    for attr in msg.attributes {
        match attr {
            LinkAttribute::IfName(name) => link.name = name,
            LinkAttribute::Address(bytes) if bytes.len() == 6 => {
                link.mac = Some(format_mac(&bytes));
            }
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    if let LinkInfo::Kind(kind) = info {
                        link.kind = Some(kind.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    link
}

/// Writes a sysctl through /proc/sys; `path` is relative to it with slashes
/// (`net/ipv4/ip_forward`), so device names with dots need no escaping.
pub fn sysctl(path: &str, value: &str) -> Result<(), NetworkError> {
    let full = Path::new("/proc/sys").join(path);
    std::fs::write(&full, value)
        .map_err(|e| NetworkError::Io(format!("sysctl {path}={value}: {e}")))
}

/// One rtnetlink connection, to the host's namespace or a task's. The connection task ends
/// when this is dropped.
pub struct Netlink {
    handle: Handle,
    conn: tokio::task::JoinHandle<()>,
}

impl Drop for Netlink {
    fn drop(&mut self) {
        self.conn.abort();
    }
}

impl Netlink {
    /// A connection in the agent's own namespace (must be called inside a tokio runtime).
    pub fn host() -> Result<Self, NetworkError> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(|e| NetworkError::Netlink {
            op: "open socket".into(),
            message: e.to_string(),
        })?;
        Ok(Self {
            handle,
            conn: tokio::spawn(conn),
        })
    }

    /// A connection inside the namespace mounted at `path`.
    pub async fn in_netns(path: &Path) -> Result<Self, NetworkError> {
        let (conn, handle) = netns::netlink_in(path).await?;
        Ok(Self {
            handle,
            conn: tokio::spawn(conn),
        })
    }

    async fn find(&self, name: &str) -> Result<Option<Link>, NlError> {
        let mut stream = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute();
        match timed(stream.try_next()).await {
            Ok(msg) => Ok(msg.map(to_link)),
            Err(NlError::Errno(ENODEV)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The link called `name`, if there is one.
    pub async fn link(&self, name: &str) -> Result<Option<Link>, NetworkError> {
        self.find(name)
            .await
            .map_err(|e| e.into_network(format!("get link {name}")))
    }

    async fn index(&self, name: &str, op: &str) -> Result<u32, NetworkError> {
        match self.find(name).await {
            Ok(Some(link)) => Ok(link.index),
            Ok(None) => Err(NetworkError::Netlink {
                op: op.to_string(),
                message: format!("no link {name}"),
            }),
            Err(e) => Err(e.into_network(op)),
        }
    }

    /// Every link in this namespace.
    pub async fn links(&self) -> Result<Vec<Link>, NetworkError> {
        let stream = self.handle.link().get().execute();
        let msgs: Vec<LinkMessage> = timed(stream.try_collect())
            .await
            .map_err(|e| e.into_network("list links"))?;
        Ok(msgs.into_iter().map(to_link).collect())
    }

    /// The IPv4 addresses on link `name`, with their prefix lengths.
    pub async fn addresses(&self, name: &str) -> Result<Vec<(Ipv4Addr, u8)>, NetworkError> {
        let op = format!("list addresses of {name}");
        let index = self.index(name, &op).await?;
        let stream = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute();
        let msgs: Vec<_> = timed(stream.try_collect())
            .await
            .map_err(|e| e.into_network(op.clone()))?;
        let mut out = Vec::new();
        for msg in msgs {
            if msg.header.index != index {
                continue;
            }
            for attr in &msg.attributes {
                if let AddressAttribute::Address(IpAddr::V4(ip)) = attr {
                    out.push((*ip, msg.header.prefix_len));
                }
            }
        }
        Ok(out)
    }

    /// Makes sure a bridge `name` exists with `address/prefix_len` and is up.
    pub async fn ensure_bridge(
        &self,
        name: &str,
        address: Ipv4Addr,
        prefix_len: u8,
    ) -> Result<(), NetworkError> {
        let op = format!("create bridge {name}");
        match self.find(name).await.map_err(|e| e.into_network(&op))? {
            Some(link) if link.kind.as_deref() == Some("bridge") => {}
            Some(link) => {
                return Err(NetworkError::Netlink {
                    op,
                    message: format!(
                        "{name} exists and is a {}, not a bridge",
                        link.kind.as_deref().unwrap_or("plain link")
                    ),
                })
            }
            None => {
                // A fixed MAC: otherwise the bridge takes the lowest of its ports' MACs, which
                // changes as tasks come and go and leaves stale gateway entries in the tasks'
                // ARP caches.
                let mac = parse_mac(&task_mac(&format!("bridge {name}"))).unwrap_or_default();
                let bridge = LinkBridge::new(name).address(mac.to_vec()).build();
                timed(self.handle.link().add(bridge).execute())
                    .await
                    .map_err(|e| e.into_network(&op))?
            }
        }
        self.add_address(name, address, prefix_len).await?;
        self.set_up(name).await
    }

    /// Makes sure a dummy device `name` exists holding `address/32` and is up. On kernels built
    /// without dummy devices an empty bridge stands in: it holds a local address just as well.
    pub async fn ensure_dummy(&self, name: &str, address: Ipv4Addr) -> Result<(), NetworkError> {
        let op = format!("create dummy device {name}");
        match self.find(name).await.map_err(|e| e.into_network(&op))? {
            Some(link) if matches!(link.kind.as_deref(), Some("dummy") | Some("bridge")) => {}
            Some(link) => {
                return Err(NetworkError::Netlink {
                    op,
                    message: format!(
                        "{name} exists and is a {}, not a dummy device",
                        link.kind.as_deref().unwrap_or("plain link")
                    ),
                })
            }
            None => {
                match timed(
                    self.handle
                        .link()
                        .add(LinkDummy::new(name).build())
                        .execute(),
                )
                .await
                {
                    Ok(()) => {}
                    Err(NlError::Errno(EOPNOTSUPP)) => {
                        tracing::warn!(
                            device = name,
                            "kernel has no dummy devices; using an empty bridge instead"
                        );
                        timed(
                            self.handle
                                .link()
                                .add(LinkBridge::new(name).build())
                                .execute(),
                        )
                        .await
                        .map_err(|e| e.into_network(&op))?;
                    }
                    Err(e) => return Err(e.into_network(&op)),
                }
            }
        }
        self.add_address(name, address, 32).await?;
        self.set_up(name).await
    }

    /// Creates the veth pair `name` <-> `peer`, both here and down.
    pub async fn create_veth(&self, name: &str, peer: &str) -> Result<(), NetworkError> {
        timed(
            self.handle
                .link()
                .add(LinkVeth::new(name, peer).build())
                .execute(),
        )
        .await
        .map_err(|e| e.into_network(format!("create veth {name}/{peer}")))
    }

    async fn set(
        &self,
        name: &str,
        op: String,
        build: impl FnOnce(u32) -> LinkMessage,
    ) -> Result<(), NetworkError> {
        let index = self.index(name, &op).await?;
        timed(self.handle.link().set(build(index)).execute())
            .await
            .map_err(|e| e.into_network(op))
    }

    /// Sets link `name`'s MAC address (`aa:bb:cc:dd:ee:ff`).
    pub async fn set_mac(&self, name: &str, mac: &str) -> Result<(), NetworkError> {
        let op = format!("set MAC of {name} to {mac}");
        let Some(bytes) = parse_mac(mac) else {
            return Err(NetworkError::Netlink {
                op,
                message: "not a MAC address".into(),
            });
        };
        self.set(name, op, |i| {
            LinkUnspec::new_with_index(i)
                .address(bytes.to_vec())
                .build()
        })
        .await
    }

    /// Moves link `name` into the namespace open as `netns`.
    pub async fn move_to_netns(&self, name: &str, netns: &File) -> Result<(), NetworkError> {
        let fd = netns.as_raw_fd();
        self.set(name, format!("move {name} into a namespace"), |i| {
            LinkUnspec::new_with_index(i).setns_by_fd(fd).build()
        })
        .await
    }

    /// Renames link `name` (which must be down).
    pub async fn rename(&self, name: &str, new_name: &str) -> Result<(), NetworkError> {
        self.set(name, format!("rename {name} to {new_name}"), |i| {
            LinkUnspec::new_with_index(i).name(new_name).build()
        })
        .await
    }

    /// Brings link `name` up.
    pub async fn set_up(&self, name: &str) -> Result<(), NetworkError> {
        self.set(name, format!("set {name} up"), |i| {
            LinkUnspec::new_with_index(i).up().build()
        })
        .await
    }

    /// Attaches link `name` to the bridge `master`.
    pub async fn set_master(&self, name: &str, master: &str) -> Result<(), NetworkError> {
        let op = format!("attach {name} to {master}");
        let master_index = self.index(master, &op).await?;
        self.set(name, op, |i| {
            LinkUnspec::new_with_index(i)
                .controller(master_index)
                .build()
        })
        .await
    }

    /// Adds `address/prefix_len` to link `name`; an address already there is replaced, so this
    /// can run again.
    pub async fn add_address(
        &self,
        name: &str,
        address: Ipv4Addr,
        prefix_len: u8,
    ) -> Result<(), NetworkError> {
        let op = format!("add {address}/{prefix_len} to {name}");
        let index = self.index(name, &op).await?;
        let request = self
            .handle
            .address()
            .add(index, IpAddr::V4(address), prefix_len)
            .replace();
        timed(request.execute())
            .await
            .map_err(|e| e.into_network(op))
    }

    /// `default via gateway dev device [onlink]` (replacing any default route).
    pub async fn add_default_route(
        &self,
        gateway: Ipv4Addr,
        device: &str,
        onlink: bool,
    ) -> Result<(), NetworkError> {
        let op = format!("add default route via {gateway} dev {device}");
        let index = self.index(device, &op).await?;
        let mut route = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(Ipv4Addr::UNSPECIFIED, 0)
            .gateway(gateway)
            .output_interface(index);
        if onlink {
            route = route.onlink();
        }
        timed(self.handle.route().add(route.build()).replace().execute())
            .await
            .map_err(|e| e.into_network(op))
    }

    /// `destination/prefix_len dev device scope link src source` (replacing an equal route).
    pub async fn add_device_route(
        &self,
        destination: Ipv4Addr,
        prefix_len: u8,
        device: &str,
        source: Ipv4Addr,
    ) -> Result<(), NetworkError> {
        let op = format!("add route {destination}/{prefix_len} dev {device} src {source}");
        let index = self.index(device, &op).await?;
        let route = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(destination, prefix_len)
            .output_interface(index)
            .pref_source(source)
            .scope(RouteScope::Link)
            .build();
        timed(self.handle.route().add(route).replace().execute())
            .await
            .map_err(|e| e.into_network(op))
    }

    /// Deletes link `name` (a veth's peer goes with it, wherever it is). Returns whether there
    /// was one; a missing link is not an error.
    pub async fn delete_link(&self, name: &str) -> Result<bool, NetworkError> {
        let op = format!("delete link {name}");
        let Some(link) = self.find(name).await.map_err(|e| e.into_network(&op))? else {
            return Ok(false);
        };
        match timed(self.handle.link().del(link.index).execute()).await {
            Ok(()) => Ok(true),
            Err(NlError::Errno(ENODEV)) => Ok(false),
            Err(e) => Err(e.into_network(op)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_parse_and_format() {
        assert_eq!(
            parse_mac("02:aB:00:ff:10:9c"),
            Some([0x02, 0xab, 0x00, 0xff, 0x10, 0x9c])
        );
        assert_eq!(
            format_mac(&[0x02, 0xab, 0, 0xff, 0x10, 0x9c]),
            "02:ab:00:ff:10:9c"
        );
        for bad in [
            "",
            "02:ab:00:ff:10",
            "02:ab:00:ff:10:9c:00",
            "2:ab:00:ff:10:9c",
            "zz:ab:00:ff:10:9c",
        ] {
            assert_eq!(parse_mac(bad), None, "{bad}");
        }
    }
}
