//! hostname, dnsServers, dnsSearchDomains and extraHosts of a container definition.

use super::*;

/// ECS's dnsSearchDomains pattern: ^[a-zA-Z0-9-.]{0,253}[a-zA-Z0-9]$.
pub(super) fn valid_search_domain(s: &str) -> bool {
    (1..=254).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// hostname, dnsServers, dnsSearchDomains and extraHosts of one container.
pub(super) fn network_fields(
    p: &mut Problems,
    obj: &Map<String, Value>,
    f: &dyn Fn(&str) -> String,
    network_mode: &str,
) {
    let ipv4 = |s: &str| s.parse::<std::net::Ipv4Addr>().is_ok();
    if let Some(h) = opt_string(p, obj, "hostname", &f("hostname")) {
        if network_mode == "awsvpc" {
            p.client(
                &f("hostname"),
                format!("{h:?}: hostname is not supported when networkMode is awsvpc (as on ECS)"),
            );
        }
    }
    for (i, s) in opt_string_list(p, obj, "dnsServers", &f("dnsServers"))
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        if !ipv4(s) {
            p.invalid(
                &f(&format!("dnsServers[{i}]")),
                format!("{s:?} is not an IPv4 address"),
            );
        }
    }
    for (i, s) in opt_string_list(p, obj, "dnsSearchDomains", &f("dnsSearchDomains"))
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        if !valid_search_domain(s) {
            p.invalid(
                &f(&format!("dnsSearchDomains[{i}]")),
                format!("{s:?} is not a domain name (letters, digits, '-' and '.', at most 254)"),
            );
        }
    }
    match obj.get("extraHosts") {
        None | Some(Value::Null) => {}
        Some(Value::Array(hosts)) => {
            for (i, h) in hosts.iter().enumerate() {
                let path = f(&format!("extraHosts[{i}]"));
                let Some(h) = h.as_object() else {
                    p.invalid(&path, "must be an object {hostname, ipAddress}");
                    continue;
                };
                match opt_string(p, h, "hostname", &format!("{path}.hostname")) {
                    Some(n) if !n.trim().is_empty() && !n.contains(char::is_whitespace) => {}
                    Some(n) => p.invalid(
                        &format!("{path}.hostname"),
                        format!("{n:?} is not a host name"),
                    ),
                    None => p.client(&format!("{path}.hostname"), "required"),
                }
                match opt_string(p, h, "ipAddress", &format!("{path}.ipAddress")) {
                    Some(a) if ipv4(&a) => {}
                    Some(a) => p.invalid(
                        &format!("{path}.ipAddress"),
                        format!("{a:?} is not an IPv4 address"),
                    ),
                    None => p.client(&format!("{path}.ipAddress"), "required"),
                }
            }
        }
        Some(_) => p.invalid(&f("extraHosts"), "must be a list of {hostname, ipAddress}"),
    }
}
