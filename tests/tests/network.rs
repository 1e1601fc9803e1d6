//! Task networking with real traffic: the four ECS network modes (bridge, awsvpc, host, none),
//! host ports (dynamic and fixed, conflicts), security-group ingress, DNS files, and a leak
//! test over hundreds of start/stop cycles.
//!
//! Each env's agent has a `[network]` of its own (bridge, gateway device, subnets, nftables
//! table, name prefix, netns dir, port range; see `NetworkSettings`), removed with the env.
//! Traffic only goes to loopback, or to addresses inside namespaces the test or the env's own
//! agent created.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use berth_e2e::{
    bin, container, http_get, in_netns, register, run_task, start_task, stop_and_wait, task_id,
    tcp_connects, timeout, wait_http_body, wait_running, wait_stopped, wait_task, wait_until,
    TestEnv, TestNetns, TEST_IMAGE,
};
use serde_json::{json, Value};

/// berth-cp and one agent; stopped tasks' logs are kept when `keep_logs`.
async fn env_with(name: &str, keep_logs: bool) -> Result<TestEnv> {
    let mut env = TestEnv::new(name)?;
    if keep_logs {
        env.set_task_cleanup_wait_secs(600);
    }
    env.start_cp().await?;
    let code = env.create_activation(1)?;
    env.start_agent(Some(&code))?;
    env.wait_agent_connected().await?;
    Ok(env)
}

/// The body the test's web servers answer with (busybox httpd serves the file as it is).
fn body_for(env: &TestEnv) -> String {
    format!("hello-{}\n", env.id)
}

/// A shell script that serves `body` (without its newline, `echo` adds it) from /www with
/// busybox httpd on each of `ports`, the last one in the foreground.
fn serve_script(ports: &[u16], body: &str) -> String {
    let mut script = format!(
        "mkdir -p /www && echo '{}' > /www/index.html",
        body.trim_end()
    );
    for (i, port) in ports.iter().enumerate() {
        if i + 1 == ports.len() {
            script.push_str(&format!(" && exec httpd -f -p {port} -h /www"));
        } else {
            script.push_str(&format!(" && httpd -p {port} -h /www"));
        }
    }
    script
}

/// A container running `script` with busybox sh.
fn shell(name: &str, essential: bool, script: &str) -> Value {
    json!({
        "name": name,
        "image": TEST_IMAGE,
        "essential": essential,
        "memory": 32,
        "stopTimeout": 1,
        "entryPoint": ["sh", "-c"],
        "command": [script],
    })
}

/// A web server container on `ports`, with `mappings` as its portMappings.
fn web(env: &TestEnv, ports: &[u16], mappings: Value) -> Value {
    let mut c = shell("web", true, &serve_script(ports, &body_for(env)));
    c["portMappings"] = mappings;
    c
}

/// Registers a task definition of `mode` with `containers`; returns its ARN.
async fn define(env: &TestEnv, family: &str, mode: &str, containers: Vec<Value>) -> Result<String> {
    register(
        &env.api(),
        json!({
            "family": format!("{family}-{}", env.id),
            "networkMode": mode,
            "containerDefinitions": containers,
        }),
    )
    .await
}

/// RunTask's networkConfiguration for an awsvpc task with these security groups.
fn awsvpc_config(security_groups: &[&str]) -> Value {
    let mut cfg = json!({"subnets": []});
    if !security_groups.is_empty() {
        cfg["securityGroups"] = json!(security_groups);
    }
    json!({"networkConfiguration": {"awsvpcConfiguration": cfg}})
}

/// Waits until the task is RUNNING and its container `name` reports network bindings.
async fn wait_bound(env: &TestEnv, task: &str, name: &str) -> Result<Value> {
    wait_running(env, task).await?;
    wait_task(env, task, "networkBindings", 60, |t| {
        if t["lastStatus"] == "STOPPED" {
            bail!("the task stopped: {t}");
        }
        Ok(container(t, name)
            .and_then(|c| c["networkBindings"].as_array())
            .is_some_and(|b| !b.is_empty()))
    })
    .await
}

/// Waits until the task is RUNNING and its container `name` reports an address.
async fn wait_interface(env: &TestEnv, task: &str, name: &str) -> Result<Value> {
    wait_running(env, task).await?;
    wait_task(env, task, "an address", 60, |t| {
        if t["lastStatus"] == "STOPPED" {
            bail!("the task stopped: {t}");
        }
        Ok(container(t, name).is_some_and(|c| {
            c["networkInterfaces"]
                .as_array()
                .is_some_and(|b| !b.is_empty())
                || c["berth"]["privateIpv4Address"].is_string()
        }))
    })
    .await
}

/// The host port bound to `container_port` of container `name`, checking the binding's shape.
fn host_port(task: &Value, name: &str, container_port: u16) -> Result<u16> {
    let c = container(task, name).with_context(|| format!("no container {name}: {task}"))?;
    let bindings = c["networkBindings"]
        .as_array()
        .with_context(|| format!("no networkBindings: {c}"))?;
    let b = bindings
        .iter()
        .find(|b| b["containerPort"] == container_port)
        .with_context(|| format!("no binding of port {container_port}: {c}"))?;
    ensure!(b["protocol"] == "tcp", "binding protocol: {b}");
    ensure!(
        b["bindIP"].as_str().is_some_and(|ip| !ip.is_empty()),
        "binding without bindIP: {b}"
    );
    let port = b["hostPort"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p != 0)
        .with_context(|| format!("binding without a host port: {b}"))?;
    Ok(port)
}

/// Container `name`'s address: an awsvpc task's from its first network interface (with an
/// attachmentId), a bridge task's from Berth's extension (ECS shows no interface for bridge).
fn interface_address(task: &Value, name: &str) -> Result<Ipv4Addr> {
    let c = container(task, name).with_context(|| format!("no container {name}: {task}"))?;
    let address = if task["attachments"]
        .as_array()
        .is_some_and(|a| !a.is_empty())
    {
        let iface = &c["networkInterfaces"][0];
        ensure!(
            iface["attachmentId"]
                .as_str()
                .is_some_and(|a| !a.is_empty()),
            "network interface without attachmentId: {c}"
        );
        &iface["privateIpv4Address"]
    } else {
        ensure!(
            c["networkInterfaces"] == serde_json::json!([]),
            "a bridge container with a network interface: {c}"
        );
        &c["berth"]["privateIpv4Address"]
    };
    address
        .as_str()
        .and_then(|a| a.parse().ok())
        .with_context(|| format!("no privateIpv4Address: {c}"))
}

/// The privateIPv4Address of the task's ElasticNetworkInterface attachment (awsvpc).
fn attachment_address(task: &Value) -> Result<Ipv4Addr> {
    let eni = task["attachments"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["type"] == "ElasticNetworkInterface")
        .with_context(|| format!("no ElasticNetworkInterface attachment: {task}"))?;
    eni["details"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|d| d["name"] == "privateIPv4Address")
        .and_then(|d| d["value"].as_str())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no privateIPv4Address detail: {eni}"))
}

/// The log of container `name` of `task` on the env's (only) agent.
fn container_log(env: &TestEnv, task: &str, name: &str) -> Result<String> {
    let path = env
        .agent_data_dir(0)
        .join("logs")
        .join(task_id(task))
        .join(format!("{name}.log"));
    std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
}

/// Runs a task of `td` until it stops, checks that container `name` exited 0, and returns
/// that container's output.
async fn run_to_completion(env: &TestEnv, td: &str, name: &str) -> Result<String> {
    let task = run_task(env, td, Value::Null).await?;
    let stopped = wait_stopped(env, &task).await?;
    ensure!(
        container(&stopped, name).and_then(|c| c["exitCode"].as_i64()) == Some(0),
        "{stopped}"
    );
    container_log(env, &task, name)
}

/// Runs berthctl against the env's API and cluster; its stdout, or an error with stderr.
fn berthctl(env: &TestEnv, args: &[&str]) -> Result<String> {
    let out = Command::new(bin("berthctl"))
        .args(["--endpoint", &env.api_url(), "--cluster", &env.cluster])
        .args(args)
        .output()
        .context("running berthctl")?;
    ensure!(
        out.status.success(),
        "berthctl {args:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// Waits until nothing accepts connections on `addr` any more (a stopped task's port).
async fn wait_closed(addr: SocketAddr, secs: u64) -> Result<()> {
    wait_until(
        &format!("{addr} to refuse connections"),
        timeout(secs),
        || async move {
            let r = tokio::task::spawn_blocking(move || tcp_connects(addr, Duration::from_secs(2)))
                .await?;
            Ok(r.is_err().then_some(()))
        },
    )
    .await
}

/// A bridge-mode web task on 8080 mapped to `host_port` (0: dynamic); returns its ARN.
async fn run_bridge_web(env: &TestEnv, family: &str, host_port: u16) -> Result<String> {
    let td = define(
        env,
        family,
        "bridge",
        vec![web(
            env,
            &[8080],
            json!([{"containerPort": 8080, "hostPort": host_port, "protocol": "tcp"}]),
        )],
    )
    .await?;
    run_task(env, &td, Value::Null).await
}

/// (a) bridge mode, hostPort 0: the agent picks a port from its dynamic range and the task
/// answers on 127.0.0.1:<hostPort>; after the stop, the port is closed again.
#[tokio::test]
async fn bridge_dynamic_port_answers_on_loopback() -> Result<()> {
    let env = env_with("net-bridge-dyn", false).await?;
    let task = run_bridge_web(&env, "bridge-dyn", 0).await?;
    let running = wait_bound(&env, &task, "web").await?;
    let port = host_port(&running, "web", 8080)?;
    let net = env.network();
    ensure!(
        net.is_dynamic_port(port),
        "host port {port} is not in the dynamic range {:?}",
        net.dynamic_ports
    );
    wait_http_body(loopback(port), &body_for(&env), 30).await?;
    stop_and_wait(&env, &task).await?;
    wait_closed(loopback(port), 30)
        .await
        .context("the stopped task's host port must be closed")?;
    env.pass();
    Ok(())
}

/// (b) the same task reached the way outside traffic comes in: from another namespace (the
/// test's own, behind a veth pair), to a host address, on the host port.
#[tokio::test]
async fn bridge_port_answers_from_another_namespace() -> Result<()> {
    let env = env_with("net-bridge-ns", false).await?;
    let (host_ip, ns_ip) = env.network().scratch_pair(0);
    let client = TestNetns::create(
        &format!("berth-e2e-{}-client", env.id),
        &format!("bc{}h", &env.id[..8]),
        &format!("bc{}p", &env.id[..8]),
        host_ip,
        ns_ip,
    )?;
    let task = run_bridge_web(&env, "bridge-ns", 0).await?;
    let running = wait_bound(&env, &task, "web").await?;
    let port = host_port(&running, "web", 8080)?;
    let addr = SocketAddr::from((host_ip, port));
    let body = body_for(&env);
    let netns = client.path();
    wait_until(
        &format!("GET http://{addr}/ from {}", client.name),
        timeout(30),
        || {
            let netns = netns.clone();
            let body = body.clone();
            async move {
                let resp =
                    in_netns(&netns, move || http_get(addr, "/", Duration::from_secs(2))).await??;
                ensure!(
                    resp.status == 200 && resp.body == body,
                    "answered {} {:?}",
                    resp.status,
                    resp.body
                );
                Ok(Some(()))
            }
        },
    )
    .await?;
    stop_and_wait(&env, &task).await?;
    drop(client);
    env.pass();
    Ok(())
}

/// (c) the host reaches a bridge task's own address (from the env's bridge subnet) directly.
#[tokio::test]
async fn bridge_task_address_is_reachable_from_the_host() -> Result<()> {
    let env = env_with("net-bridge-ip", false).await?;
    let task = run_bridge_web(&env, "bridge-ip", 0).await?;
    let running = wait_interface(&env, &task, "web").await?;
    let ip = interface_address(&running, "web")?;
    let net = env.network();
    ensure!(
        net.bridge_subnet.contains(ip)
            && ip != net.bridge_gateway()
            && ip != net.bridge_subnet.network(),
        "{ip} is not a task address of the bridge subnet {}",
        net.bridge_subnet
    );
    wait_http_body(SocketAddr::from((ip, 8080)), &body_for(&env), 30).await?;
    stop_and_wait(&env, &task).await?;
    env.pass();
    Ok(())
}

/// (d) awsvpc: the task's containers share one namespace (a second container reaches the web
/// server on 127.0.0.1), and the task's own address answers from the host.
#[tokio::test]
async fn awsvpc_containers_share_localhost_and_the_task_address() -> Result<()> {
    let env = env_with("net-awsvpc", false).await?;
    let body = body_for(&env);
    let probe = format!(
        "i=0; while [ $i -lt 30 ]; do \
           if wget -q -O - http://127.0.0.1:8080/ | grep -qx '{}'; then exit 0; fi; \
           i=$((i+1)); sleep 1; \
         done; exit 1",
        body.trim_end()
    );
    let td = define(
        &env,
        "awsvpc",
        "awsvpc",
        vec![
            web(
                &env,
                &[8080],
                json!([{"containerPort": 8080, "protocol": "tcp"}]),
            ),
            shell("probe", false, &probe),
        ],
    )
    .await?;
    let task = run_task(&env, &td, awsvpc_config(&[])).await?;
    let probed = wait_task(&env, &task, "the probe container to exit", 90, |t| {
        if t["lastStatus"] == "STOPPED" {
            bail!("the task stopped: {t}");
        }
        Ok(container(t, "probe").is_some_and(|c| !c["exitCode"].is_null()))
    })
    .await?;
    let code = container(&probed, "probe").and_then(|c| c["exitCode"].as_i64());
    ensure!(
        code == Some(0),
        "the probe container could not GET 127.0.0.1:8080 (exit code {code:?}): {probed}"
    );
    ensure!(probed["lastStatus"] == "RUNNING", "{probed}");
    let ip = attachment_address(&probed)?;
    let net = env.network();
    ensure!(
        net.task_subnet.contains(ip) && ip != net.task_gateway() && ip != net.task_subnet.network(),
        "{ip} is not a task address of the task subnet {}",
        net.task_subnet
    );
    for name in ["web", "probe"] {
        let iface = interface_address(&probed, name)?;
        ensure!(
            iface == ip,
            "{name}'s networkInterfaces say {iface}, the attachment {ip}"
        );
    }
    ensure!(
        net.task_netns(task_id(&task)).exists(),
        "no namespace {} for the task",
        net.task_netns(task_id(&task)).display()
    );
    wait_http_body(SocketAddr::from((ip, 8080)), &body, 30).await?;
    stop_and_wait(&env, &task).await?;
    env.pass();
    Ok(())
}

/// (e) awsvpc with a security group that allows tcp 8080 only: 8080 answers, 9090 (which
/// listens: the task's own namespace reaches it on loopback) does not, neither from the host
/// nor from another namespace routed through the host.
#[tokio::test]
async fn awsvpc_security_group_limits_ingress() -> Result<()> {
    let env = env_with("net-ingress", false).await?;
    let group = format!("web-{}", env.id);
    berthctl(
        &env,
        &[
            "create-security-group",
            "--name",
            &group,
            "--ingress",
            "tcp:8080:0.0.0.0/0",
        ],
    )?;
    let (host_ip, ns_ip) = env.network().scratch_pair(1);
    let client = TestNetns::create(
        &format!("berth-e2e-{}-client", env.id),
        &format!("bc{}h", &env.id[..8]),
        &format!("bc{}p", &env.id[..8]),
        host_ip,
        ns_ip,
    )?;
    berth_e2e::run_cmd(
        "ip",
        &[
            "-n",
            &client.name,
            "route",
            "add",
            &env.network().task_subnet.to_string(),
            "via",
            &host_ip.to_string(),
        ],
    )?;
    let td = define(
        &env,
        "ingress",
        "awsvpc",
        vec![web(
            &env,
            &[9090, 8080],
            json!([
                {"containerPort": 8080, "protocol": "tcp"},
                {"containerPort": 9090, "protocol": "tcp"}
            ]),
        )],
    )
    .await?;
    let task = run_task(&env, &td, awsvpc_config(&[&group])).await?;
    let running = wait_running(&env, &task).await?;
    let ip = attachment_address(&running)?;
    let body = body_for(&env);
    wait_http_body(SocketAddr::from((ip, 8080)), &body, 30).await?;

    // 9090 listens: the task's own namespace reaches it on loopback.
    let netns = env.network().task_netns(task_id(&task));
    wait_until("9090 on the task's loopback", timeout(30), || {
        let netns = netns.clone();
        async move {
            let resp = in_netns(&netns, || {
                http_get(loopback(9090), "/", Duration::from_secs(2))
            })
            .await??;
            Ok((resp.status == 200).then_some(()))
        }
    })
    .await?;

    let limit = Duration::from_secs(2);
    let blocked = SocketAddr::from((ip, 9090));
    let allowed = SocketAddr::from((ip, 8080));
    let from_host = tokio::task::spawn_blocking(move || tcp_connects(blocked, limit)).await?;
    ensure!(
        from_host.is_err(),
        "the host connected to {blocked}, which the security group does not allow"
    );
    let (to_allowed, to_blocked) = in_netns(&client.path(), move || {
        (
            http_get(allowed, "/", limit).map(|r| r.body),
            tcp_connects(blocked, limit),
        )
    })
    .await?;
    let got = to_allowed.with_context(|| format!("GET http://{allowed}/ from {}", client.name))?;
    ensure!(got == body, "{allowed} answered {got:?} to {}", client.name);
    ensure!(
        to_blocked.is_err(),
        "{} connected to {blocked}, which the security group does not allow",
        client.name
    );
    stop_and_wait(&env, &task).await?;
    drop(client);
    env.pass();
    Ok(())
}

/// (f) none: a container sees loopback only, and no routes. No traffic at all.
#[tokio::test]
async fn none_mode_has_loopback_only() -> Result<()> {
    let env = env_with("net-none", true).await?;
    let td = define(
        &env,
        "none",
        "none",
        vec![shell(
            "app",
            true,
            "ip -o link; echo '--- routes'; ip route; echo '--- end'",
        )],
    )
    .await?;
    let log = run_to_completion(&env, &td, "app").await?;
    let (links, rest) = log
        .split_once("--- routes\n")
        .with_context(|| format!("unexpected output: {log:?}"))?;
    let (routes, _) = rest
        .split_once("--- end")
        .with_context(|| format!("unexpected output: {log:?}"))?;
    let names: Vec<&str> = links
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n))
        .collect();
    ensure!(
        names == ["lo"],
        "links in a none-mode task: {names:?} ({log:?})"
    );
    ensure!(
        routes.trim().is_empty(),
        "routes in a none-mode task: {routes:?}"
    );
    env.pass();
    Ok(())
}

/// (g) host mode: the task's server is on the host's own network.
#[tokio::test]
async fn host_mode_serves_on_the_host() -> Result<()> {
    let env = env_with("net-host", false).await?;
    let port = env.network().fixed_ports.0;
    let td = define(
        &env,
        "host",
        "host",
        vec![web(
            &env,
            &[port],
            json!([{"containerPort": port, "hostPort": port, "protocol": "tcp"}]),
        )],
    )
    .await?;
    let task = run_task(&env, &td, Value::Null).await?;
    let running = wait_bound(&env, &task, "web").await?;
    let bound = host_port(&running, "web", port)?;
    ensure!(bound == port, "host mode bound {bound}, not {port}");
    wait_http_body(loopback(port), &body_for(&env), 30).await?;
    stop_and_wait(&env, &task).await?;
    wait_closed(loopback(port), 30).await?;
    env.pass();
    Ok(())
}

/// (h) two bridge tasks that want the same fixed host port on the only instance: the second
/// RunTask fails with RESOURCE:PORTS. Once the first stops, the port is free again.
#[tokio::test]
async fn a_taken_host_port_fails_run_task_with_resource_ports() -> Result<()> {
    let env = env_with("net-ports", false).await?;
    let port = env.network().fixed_ports.0 + 1;
    let first = run_bridge_web(&env, "ports", port).await?;
    let running = wait_bound(&env, &first, "web").await?;
    ensure!(host_port(&running, "web", 8080)? == port, "{running}");
    wait_http_body(loopback(port), &body_for(&env), 30).await?;

    let out = env
        .api()
        .call(
            "RunTask",
            json!({"cluster": env.cluster, "taskDefinition": format!("ports-{}", env.id)}),
        )
        .await
        .context("RunTask")?;
    ensure!(
        out["tasks"].as_array().is_none_or(|t| t.is_empty()),
        "a second task on host port {port} was started: {out}"
    );
    let reason = out["failures"][0]["reason"].as_str().unwrap_or_default();
    ensure!(
        reason.starts_with("RESOURCE:PORTS"),
        "RunTask failure reason {reason:?}, want RESOURCE:PORTS: {out}"
    );

    stop_and_wait(&env, &first).await?;
    let again = run_task(&env, &format!("ports-{}", env.id), Value::Null)
        .await
        .context("the port must be free once the first task stopped")?;
    wait_bound(&env, &again, "web").await?;
    wait_http_body(loopback(port), &body_for(&env), 30).await?;
    stop_and_wait(&env, &again).await?;
    env.pass();
    Ok(())
}

/// (i) the agent writes each task's /etc/resolv.conf and /etc/hosts and sets its hostname
/// from dnsServers, dnsSearchDomains, extraHosts and hostname.
#[tokio::test]
async fn bridge_task_gets_its_dns_files_and_hostname() -> Result<()> {
    let env = env_with("net-dns", true).await?;
    let mut app = shell(
        "app",
        true,
        "cat /etc/resolv.conf; echo '--- hosts'; cat /etc/hosts; echo '--- hostname'; hostname",
    );
    app["dnsServers"] = json!(["10.1.2.3"]);
    app["dnsSearchDomains"] = json!(["corp.example"]);
    app["extraHosts"] = json!([{"hostname": "db", "ipAddress": "10.9.9.9"}]);
    app["hostname"] = json!("web-1");
    let td = define(&env, "dns", "bridge", vec![app]).await?;
    let log = run_to_completion(&env, &td, "app").await?;
    let (resolv, rest) = log
        .split_once("--- hosts\n")
        .with_context(|| format!("unexpected output: {log:?}"))?;
    let (hosts, hostname) = rest
        .split_once("--- hostname\n")
        .with_context(|| format!("unexpected output: {log:?}"))?;
    let words = |l: &str| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
    let resolv_lines: Vec<Vec<String>> = resolv.lines().map(words).collect();
    ensure!(
        resolv_lines.contains(&vec!["nameserver".into(), "10.1.2.3".into()]),
        "resolv.conf: {resolv:?}"
    );
    ensure!(
        !resolv_lines
            .iter()
            .any(|l| l.first().is_some_and(|w| w == "nameserver") && l[1..] != ["10.1.2.3"]),
        "resolv.conf names other servers: {resolv:?}"
    );
    ensure!(
        resolv_lines
            .iter()
            .any(|l| l.first().is_some_and(|w| w == "search")
                && l.iter().any(|w| w == "corp.example")),
        "resolv.conf: {resolv:?}"
    );
    let host_lines: Vec<Vec<String>> = hosts.lines().map(words).collect();
    ensure!(
        host_lines
            .iter()
            .any(|l| l.first().is_some_and(|a| a == "10.9.9.9") && l.iter().any(|w| w == "db")),
        "/etc/hosts has no 10.9.9.9 db: {hosts:?}"
    );
    ensure!(
        host_lines
            .iter()
            .any(|l| l.first().is_some_and(|a| a == "127.0.0.1")
                && l.iter().any(|w| w == "localhost")),
        "/etc/hosts has no localhost: {hosts:?}"
    );
    ensure!(hostname.trim() == "web-1", "hostname printed {hostname:?}");
    env.pass();
    Ok(())
}

const MODES: [&str; 4] = ["bridge", "awsvpc", "host", "none"];
const LEAK_BATCHES: usize = 20;
const LEAK_BATCH: usize = 10;

/// (j) 200 tasks (50 per mode), started and stopped ten at a time; afterwards the host holds
/// nothing of them: no namespace (file or mount), no link with the env's prefix, no nftables
/// rule naming a task or its address, no container. Bridge tasks map three dynamic ports each,
/// 150 in all from a range of 100, so ports must be given back; host tasks reserve fixed
/// ports that later batches reuse; half the awsvpc tasks have a security group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_leaks_after_many_task_cycles() -> Result<()> {
    let env = env_with("net-leaks", false).await?;
    let started = Instant::now();
    let group = format!("leak-{}", env.id);
    berthctl(
        &env,
        &[
            "create-security-group",
            "--name",
            &group,
            "--ingress",
            "tcp:8080:10.0.0.0/8",
        ],
    )?;
    let sleeper = |name: &str| {
        json!({
            "name": name,
            "image": TEST_IMAGE,
            "essential": true,
            "memory": 16,
            "stopTimeout": 1,
            "command": ["sleep", "600"],
        })
    };
    let mut bridge_app = sleeper("app");
    bridge_app["portMappings"] = json!([
        {"containerPort": 8080, "hostPort": 0, "protocol": "tcp"},
        {"containerPort": 8081, "hostPort": 0, "protocol": "tcp"},
        {"containerPort": 8082, "hostPort": 0, "protocol": "tcp"},
    ]);
    let bridge_td = define(&env, "leak-bridge", "bridge", vec![bridge_app]).await?;
    let mut awsvpc_app = sleeper("app");
    awsvpc_app["portMappings"] = json!([{"containerPort": 8080, "protocol": "tcp"}]);
    let awsvpc_td = define(&env, "leak-awsvpc", "awsvpc", vec![awsvpc_app]).await?;
    let none_td = define(&env, "leak-none", "none", vec![sleeper("app")]).await?;
    let mut host_tds = Vec::new();
    for k in 0..LEAK_BATCH as u16 {
        let port = env.network().fixed_ports.0 + k;
        let mut app = sleeper("app");
        app["portMappings"] = json!([{"containerPort": port, "hostPort": port, "protocol": "tcp"}]);
        host_tds.push(define(&env, &format!("leak-host-{k}"), "host", vec![app]).await?);
    }

    let mut all_ids: Vec<String> = Vec::new();
    let mut all_addrs: Vec<Ipv4Addr> = Vec::new();
    let mut awsvpc_seen = 0;
    for batch in 0..LEAK_BATCHES {
        let mut tasks: Vec<(String, &str)> = Vec::new();
        for k in 0..LEAK_BATCH {
            let mode = MODES[(batch * LEAK_BATCH + k) % MODES.len()];
            let (td, extra) = match mode {
                "bridge" => (bridge_td.clone(), Value::Null),
                "awsvpc" => {
                    awsvpc_seen += 1;
                    let groups: &[&str] = if awsvpc_seen % 2 == 0 { &[&group] } else { &[] };
                    (awsvpc_td.clone(), awsvpc_config(groups))
                }
                "host" => (host_tds[k].clone(), Value::Null),
                _ => (none_td.clone(), Value::Null),
            };
            let task = start_task(&env, &td, extra)
                .await
                .with_context(|| format!("batch {batch}, {mode} task {k}"))?;
            tasks.push((berth_e2e::task_arn(&task)?, mode));
        }
        let mut ports = Vec::new();
        let mut addrs: Vec<Option<Ipv4Addr>> = Vec::new();
        for (task, mode) in &tasks {
            wait_running(&env, task)
                .await
                .with_context(|| format!("batch {batch}: {mode} task {task}"))?;
            all_ids.push(task_id(task).to_owned());
            if *mode == "bridge" {
                let running = wait_bound(&env, task, "app").await?;
                for p in [8080, 8081, 8082] {
                    let hp = host_port(&running, "app", p)?;
                    ensure!(
                        env.network().is_dynamic_port(hp),
                        "batch {batch}: host port {hp} outside {:?}",
                        env.network().dynamic_ports
                    );
                    ports.push(hp);
                }
            }
            if *mode == "bridge" || *mode == "awsvpc" {
                let running = wait_interface(&env, task, "app").await?;
                let addr = interface_address(&running, "app")?;
                all_addrs.push(addr);
                addrs.push(Some(addr));
            } else {
                addrs.push(None);
            }
        }
        let distinct: std::collections::HashSet<_> = ports.iter().collect();
        ensure!(
            distinct.len() == ports.len(),
            "batch {batch}: host ports handed out twice: {ports:?}"
        );
        if batch == 0 {
            check_first_batch(&env, &tasks, &addrs)?;
        }
        for (task, _) in &tasks {
            env.api()
                .call(
                    "StopTask",
                    json!({"cluster": env.cluster, "task": task, "reason": "leak test"}),
                )
                .await
                .context("StopTask")?;
        }
        for (task, mode) in &tasks {
            wait_stopped(&env, task)
                .await
                .with_context(|| format!("batch {batch}: {mode} task {task}"))?;
        }
        eprintln!(
            "batch {batch}: {} tasks started and stopped, {:?} so far",
            tasks.len(),
            started.elapsed()
        );
    }
    ensure!(all_ids.len() == LEAK_BATCHES * LEAK_BATCH);

    let net = env.network().clone();
    let ids = all_ids.clone();
    let addrs = all_addrs.clone();
    wait_until("every task's network to be gone", timeout(60), || {
        let net = net.clone();
        let ids = ids.clone();
        let addrs = addrs.clone();
        let env = &env;
        async move {
            let mut left = Vec::new();
            let files = net.netns_files();
            if !files.is_empty() {
                left.push(format!("namespace files {files:?}"));
            }
            let mounts = net.netns_mounts();
            if !mounts.is_empty() {
                left.push(format!("namespace mounts {mounts:?}"));
            }
            let dir_mounts = net.netns_dir_mounts();
            if dir_mounts > 1 {
                left.push(format!(
                    "{} mounted {dir_mounts} times",
                    net.netns_dir.display()
                ));
            }
            let links = net.agent_links()?;
            if !links.is_empty() {
                left.push(format!("links {links:?}"));
            }
            if let Some(table) = net.nft_table_json()? {
                let named: Vec<&String> = ids.iter().filter(|id| table.contains(*id)).collect();
                if !named.is_empty() {
                    left.push(format!("nftables rules naming tasks {named:?}"));
                }
                let addressed: Vec<&Ipv4Addr> = addrs
                    .iter()
                    .filter(|a| table.contains(&format!("\"{a}\"")))
                    .collect();
                if !addressed.is_empty() {
                    left.push(format!(
                        "nftables rules naming task addresses {addressed:?}"
                    ));
                }
            }
            let containers = env.containerd_containers()?;
            if !containers.is_empty() {
                left.push(format!("containers {containers:?}"));
            }
            if left.is_empty() {
                Ok(Some(()))
            } else {
                bail!("left: {}", left.join("; "))
            }
        }
    })
    .await?;

    // The agent's store holds no address or port lease any more: every task's network is
    // released (host, bridge and awsvpc) or was never needed (none).
    let phases = berth_e2e::stored_network_phases(&env.agent_data_dir(0))?;
    ensure!(
        phases.len() == all_ids.len(),
        "the agent's store knows {} tasks, {} ran",
        phases.len(),
        all_ids.len()
    );
    let held: Vec<&(String, String)> = phases
        .iter()
        .filter(|(_, p)| p != "Released" && p != "NotNeeded")
        .collect();
    ensure!(
        held.is_empty(),
        "networks still held in the agent's store: {held:?}"
    );
    let released = phases.iter().filter(|(_, p)| p == "Released").count();
    ensure!(
        released == all_ids.len() * 3 / 4,
        "{released} released networks in the agent's store, want one per host, bridge and \
         awsvpc task ({}): {phases:?}",
        all_ids.len() * 3 / 4
    );
    eprintln!(
        "{} tasks in {:?}; nothing left",
        all_ids.len(),
        started.elapsed()
    );
    env.pass();
    Ok(())
}

/// While the first batch runs, what the leak check looks for must be there, or it would
/// prove nothing: a namespace per bridge and awsvpc task under the env's netns dir, a link
/// with the env's prefix each, and the nftables table naming each bridge task (its id or its
/// address: its DNAT rules).
fn check_first_batch(
    env: &TestEnv,
    tasks: &[(String, &str)],
    addrs: &[Option<Ipv4Addr>],
) -> Result<()> {
    let net = env.network();
    let namespaced: Vec<&String> = tasks
        .iter()
        .filter(|(_, m)| *m == "bridge" || *m == "awsvpc")
        .map(|(t, _)| t)
        .collect();
    let files = net.netns_files();
    for task in &namespaced {
        let want = net.task_netns(task_id(task));
        ensure!(
            want.exists(),
            "no namespace {} while the task runs; the dir holds {files:?}",
            want.display()
        );
    }
    ensure!(
        files.len() == namespaced.len(),
        "{} namespaced tasks run, the netns dir holds {files:?}",
        namespaced.len()
    );
    let links = net.agent_links()?;
    ensure!(
        links.len() >= namespaced.len(),
        "{} namespaced tasks run, the host has links {links:?}",
        namespaced.len()
    );
    let table = net
        .nft_table_json()?
        .with_context(|| format!("no nftables table {} while tasks run", net.nft_table))?;
    for ((task, mode), addr) in tasks.iter().zip(addrs) {
        if *mode != "bridge" {
            continue;
        }
        let id = task_id(task);
        let addr = addr.context("a bridge task without an address")?;
        ensure!(
            table.contains(id) || table.contains(&format!("\"{addr}\"")),
            "the nftables table names neither bridge task {id} nor its address {addr}"
        );
    }
    Ok(())
}

/// An agent killed with SIGKILL and started again keeps a bridge task's network (the task
/// goes on answering on its host port; its lease and port stay taken), removes what no task
/// owns — a namespace and a veth pair named with its prefix, as a crash between creating and
/// recording would leave — and still takes the task's network down when the task stops.
#[tokio::test]
async fn an_agent_crash_keeps_task_networks_and_sweeps_orphans() -> Result<()> {
    let mut env = env_with("net-crash", false).await?;
    let task = run_bridge_web(&env, "crash", 0).await?;
    let running = wait_bound(&env, &task, "web").await?;
    let port = host_port(&running, "web", 8080)?;
    let body = body_for(&env);
    wait_http_body(loopback(port), &body, 30).await?;

    env.kill_agent(0).await?;
    let net = env.network().clone();
    // What a crash part-way through a setup leaves: a mounted namespace file and a veth pair.
    let orphan_ns = net
        .netns_dir
        .join(format!("{}-orphan{}", net.name_prefix, env.id));
    std::fs::create_dir_all(&net.netns_dir)?;
    std::fs::write(&orphan_ns, b"")?;
    let ns_arg = format!("--net={}", orphan_ns.display());
    berth_e2e::net::run("unshare", &[&ns_arg, "true"])?;
    let host_end = format!(
        "{}_{}",
        net.name_prefix,
        &"0123456789abcdef"[..14 - net.name_prefix.len()]
    );
    let peer_end = format!(
        "{}_{}",
        net.name_prefix,
        &"fedcba9876543210"[..14 - net.name_prefix.len()]
    );
    berth_e2e::net::run(
        "ip",
        &[
            "link", "add", &host_end, "type", "veth", "peer", "name", &peer_end,
        ],
    )?;
    ensure!(
        net.agent_links()?.contains(&host_end),
        "the orphan veth was not created"
    );
    // The task never noticed.
    wait_http_body(loopback(port), &body, 10).await?;

    env.restart_agent(0)?;
    wait_until("the orphans to be swept", timeout(60), || {
        let net = net.clone();
        let orphan_ns = orphan_ns.clone();
        let (host_end, peer_end) = (host_end.clone(), peer_end.clone());
        async move {
            let links = net.agent_links()?;
            let gone =
                !orphan_ns.exists() && !links.contains(&host_end) && !links.contains(&peer_end);
            Ok(gone.then_some(()))
        }
    })
    .await?;
    // The task's own namespace and veth survived the sweep, and so did its DNAT rule.
    ensure!(
        net.task_netns(task_id(&task)).exists(),
        "the running task's namespace was swept"
    );
    wait_http_body(loopback(port), &body, 30).await?;
    let again = wait_running(&env, &task).await?;
    ensure!(
        host_port(&again, "web", 8080)? == port,
        "the task's host port changed across the restart: {again}"
    );

    stop_and_wait(&env, &task).await?;
    wait_closed(loopback(port), 30).await?;
    wait_until("the task's network to be gone", timeout(30), || {
        let net = net.clone();
        async move {
            let left = net.netns_files().len() + net.agent_links()?.len();
            Ok((left == 0).then_some(()))
        }
    })
    .await?;
    env.pass();
    Ok(())
}
