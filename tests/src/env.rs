//! One test's world: a unique id, a temp dir, a containerd namespace, a berth-cp and any number
//! of berth-agents. Dropping it stops the processes, empties and removes the namespace and
//! deletes the temp dir; unless the test reached [`TestEnv::pass`], it also prints the logs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use serde_json::{json, Value};

use crate::bins::bin;
use crate::containerd;
use crate::ecs::EcsClient;
use crate::net::NetworkSettings;
use crate::private_containerd::PrivateContainerd;
use crate::process::Proc;
use crate::wait::{timeout, wait_until};

/// The addresses berth-cp listens on, from its ready file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpAddrs {
    pub api: SocketAddr,
    pub grpc: SocketAddr,
}

pub struct TestEnv {
    /// Short and unique; part of every name below.
    pub id: String,
    pub cluster: String,
    pub namespace: String,
    dir: PathBuf,
    cp: Option<Proc>,
    cp_addrs: Option<CpAddrs>,
    cp_runs: usize,
    agents: Vec<Proc>,
    image_imported: bool,
    /// `[logs]` of agents started from now on: (max_size_mib, max_files).
    agent_log_limits: Option<(u64, u32)>,
    /// `task_cleanup_wait_secs` of agents started from now on: 0 unless a test sets it, so
    /// stopped tasks leave containerd at once.
    task_cleanup_wait_secs: u64,
    /// `[cgroups] root` of every agent of this env: unique per env, removed on drop.
    cgroup_root: String,
    /// `[cgroups] pids_limit` of agents started from now on.
    pids_limit: Option<u64>,
    /// `[network]` of agents started from now on: unique per env (see [`NetworkSettings`]).
    network: NetworkSettings,
    /// Every `[network]` an agent of this env was started with: what the drop cleans up.
    networks_used: Vec<NetworkSettings>,
    /// What the id claimed in this process (given back on drop).
    claimed_network: NetworkSettings,
    /// How many times each agent has been started (its logs are `agent-N.log`, then
    /// `agent-N-runK.log`).
    agent_runs: std::collections::HashMap<usize, usize>,
    /// The env's own containerd, if [`TestEnv::use_private_containerd`] was called: the
    /// agents use it instead of the host's, and the drop cleans it up.
    private_containerd: Option<PrivateContainerd>,
    /// `[containerd] call_timeout_secs` of agents started from now on (the agent's default
    /// unless set).
    containerd_call_timeout_secs: Option<u64>,
    /// berth-cp's `heartbeat_interval_ms` (its default unless set), from its next start.
    cp_heartbeat_interval_ms: Option<u64>,
    /// berth-cp's `--manifest-interval-ms` (its default unless set), from its next start.
    cp_manifest_interval_ms: Option<u64>,
    cp_service_settle_ms: Option<u64>,
    /// `[tasks] manifest_grace_secs` of agents started from now on.
    manifest_grace_secs: Option<u64>,
    /// The `[images]` table (its lines, without the header) of agents started from now on.
    agent_images_toml: Option<String>,
    /// The control plane agents started from now on connect to, instead of this env's
    /// berth-cp (a benchmark's own minimal control plane).
    agent_endpoint: Option<SocketAddr>,
    /// The fleet's hosts ([`TestEnv::start_host`]): agents with a namespace, cgroup root and
    /// network of their own, each cleaned up (and its network claim released) on drop.
    hosts: Vec<Host>,
    /// The `[instance]` section of the next agent's config ([`TestEnv::start_host_in`]).
    next_instance_toml: Option<String>,
    /// Agent `index`'s introspection port, on 127.0.0.1: one of its network's fixed ports.
    introspection_ports: Vec<u16>,
    /// Environment variables of agents started (or restarted) from now on, and of berth-cp's
    /// next start: what systemd would set (NOTIFY_SOCKET, WATCHDOG_USEC).
    agent_env: Vec<(String, String)>,
    cp_env: Vec<(String, String)>,
    passed: bool,
}

/// One host of a fleet: what its agent was started with beyond the env's own settings.
struct Host {
    agent: usize,
    namespace: String,
    cgroup_root: String,
    network: NetworkSettings,
}

impl TestEnv {
    /// A fresh world with nothing running yet. `name` only makes the temp dir recognisable.
    pub fn new(name: &str) -> Result<TestEnv> {
        let (id, network) = claim_fresh_network()?;
        let dir = std::env::temp_dir().join(format!("berth-e2e-{name}-{id}"));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(TestEnv {
            cgroup_root: format!("/berth-e2e-{id}"),
            cluster: format!("e2e-{id}"),
            namespace: format!("berth-e2e-{id}"),
            id,
            dir,
            cp: None,
            cp_addrs: None,
            cp_runs: 0,
            agents: Vec::new(),
            image_imported: false,
            agent_log_limits: None,
            task_cleanup_wait_secs: 0,
            pids_limit: None,
            claimed_network: network.clone(),
            network,
            networks_used: Vec::new(),
            agent_runs: Default::default(),
            private_containerd: None,
            containerd_call_timeout_secs: None,
            cp_heartbeat_interval_ms: None,
            cp_manifest_interval_ms: None,
            cp_service_settle_ms: None,
            manifest_grace_secs: None,
            agent_images_toml: None,
            agent_endpoint: None,
            hosts: Vec::new(),
            next_instance_toml: None,
            introspection_ports: Vec::new(),
            agent_env: Vec::new(),
            cp_env: Vec::new(),
            passed: false,
        })
    }

    /// berth-cp, one activated berth-agent, and the agent's container instance connected.
    pub async fn with_agent(name: &str) -> Result<TestEnv> {
        let mut env = TestEnv::new(name)?;
        env.start_cp().await?;
        let code = env.create_activation(1)?;
        env.start_agent(Some(&code))?;
        env.wait_agent_connected().await?;
        Ok(env)
    }

    /// How long agents started after this call keep a stopped task's containers and logs.
    pub fn set_task_cleanup_wait_secs(&mut self, secs: u64) {
        self.task_cleanup_wait_secs = secs;
    }

    /// The cgroup root of this env's agents (`[cgroups] root`): `/berth-e2e-<id>` unless set;
    /// whatever it is, it is removed when the env is dropped.
    pub fn cgroup_root(&self) -> &str {
        &self.cgroup_root
    }

    /// The cgroup root of agents started after this call.
    pub fn set_cgroup_root(&mut self, root: &str) {
        self.cgroup_root = root.to_owned();
    }

    /// The `[network]` of this env's agents: bridge, gateway device, subnets, nftables table,
    /// name prefix, netns dir and dynamic ports, all unique to the env (plus ports and a subnet
    /// for the test's own use).
    pub fn network(&self) -> &NetworkSettings {
        &self.network
    }

    /// The `[network]` of agents started after this call. Whatever agents were started with
    /// is removed from the host when the env is dropped.
    pub fn set_network(&mut self, network: NetworkSettings) {
        self.network = network;
    }

    /// `pids.max` of each task cgroup, for agents started after this call.
    pub fn set_agent_pids_limit(&mut self, limit: Option<u64>) {
        self.pids_limit = limit;
    }

    /// Container log rotation of agents started after this call.
    pub fn set_agent_log_limits(&mut self, max_size_mib: u64, max_files: u32) {
        self.agent_log_limits = Some((max_size_mib, max_files));
    }

    /// The data dir of the agent with index `index` (as [`TestEnv::start_agent`] returned it).
    pub fn agent_data_dir(&self, index: usize) -> PathBuf {
        self.dir.join(format!("agent-{}-data", index + 1))
    }

    /// The test's temp dir (logs, data dirs, scratch files).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn cp_data_dir(&self) -> PathBuf {
        self.dir.join("cp-data")
    }

    /// Starts berth-cp and waits for its ready file. The first run listens on free ports; a
    /// later run (a restart) listens on the same ports as the first, with the same data dir.
    pub async fn start_cp(&mut self) -> Result<CpAddrs> {
        if self.cp.as_mut().is_some_and(|cp| cp.exited().is_none()) {
            bail!("berth-cp is already running");
        }
        self.cp_runs += 1;
        let ready = self.dir.join("cp-ready.json");
        let _ = std::fs::remove_file(&ready);
        let (api, grpc) = match self.cp_addrs {
            Some(a) => (a.api.to_string(), a.grpc.to_string()),
            None => ("127.0.0.1:0".to_owned(), "127.0.0.1:0".to_owned()),
        };
        let mut cmd = Command::new(bin("berth-cp"));
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(self.cp_data_dir())
            .args(["--api-listen", &api, "--grpc-listen", &grpc])
            .arg("--ready-file")
            .arg(&ready)
            .env("RUST_LOG", log_filter())
            .env("NO_COLOR", "1")
            .envs(self.cp_env.iter().map(|(k, v)| (k, v)));
        if let Some(ms) = self.cp_manifest_interval_ms {
            cmd.args(["--manifest-interval-ms", &ms.to_string()]);
        }
        if let Some(ms) = self.cp_service_settle_ms {
            cmd.args(["--service-settle-ms", &ms.to_string()]);
        }
        if let Some(config) = self.cp_config_file()? {
            cmd.arg("--config").arg(config);
        }
        let log = self.dir.join(format!("cp-{}.log", self.cp_runs));
        self.cp = Some(Proc::spawn("berth-cp", cmd, &log)?);
        let cp = self.cp.as_mut().expect("just set");

        let limit = timeout(60);
        let deadline = std::time::Instant::now() + limit;
        let addrs = loop {
            if let Some(status) = cp.exited() {
                bail!(
                    "berth-cp exited ({status}) before it was ready:\n{}",
                    cp.log()
                );
            }
            if let Some(addrs) = read_ready_file(&ready) {
                break addrs;
            }
            if std::time::Instant::now() >= deadline {
                bail!("berth-cp wrote no ready file in {limit:?}:\n{}", cp.log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        if let Some(first) = self.cp_addrs {
            if first != addrs {
                bail!("berth-cp restarted on {addrs:?}, not on the ports it was given ({first:?})");
            }
        }
        self.cp_addrs = Some(addrs);
        Ok(addrs)
    }

    /// Stops berth-cp (SIGTERM, then SIGKILL after a grace period).
    pub fn stop_cp(&mut self) -> Option<ExitStatus> {
        self.cp.as_mut().map(|cp| cp.stop(timeout(10)))
    }

    pub fn cp(&mut self) -> &mut Proc {
        self.cp.as_mut().expect("berth-cp was started")
    }

    pub fn cp_addrs(&self) -> CpAddrs {
        self.cp_addrs.expect("berth-cp was started")
    }

    /// The URL of the ECS API, for the AWS CLI's --endpoint-url.
    pub fn api_url(&self) -> String {
        format!("http://{}", self.cp_addrs().api)
    }

    pub fn api(&self) -> EcsClient {
        EcsClient::new(self.api_url())
    }

    /// `berth-cp activation create` for this env's cluster; returns the code.
    pub fn create_activation(&self, uses: u32) -> Result<String> {
        let out = Command::new(bin("berth-cp"))
            .args(["activation", "create", "--data-dir"])
            .arg(self.cp_data_dir())
            .args(["--cluster", &self.cluster, "--uses", &uses.to_string()])
            .env("RUST_LOG", "warn")
            .output()
            .context("cannot run berth-cp activation create")?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            bail!(
                "berth-cp activation create failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stderr),
                stdout
            );
        }
        let code = stdout.trim();
        if code.is_empty() || code.contains(char::is_whitespace) {
            bail!("berth-cp activation create printed {stdout:?}, not one activation code");
        }
        Ok(code.to_owned())
    }

    /// Writes an agent config for this env (its own data dir, the env's namespace) and starts
    /// berth-agent with it; returns the agent's index for [`TestEnv::agent`]. The test image
    /// is imported into the namespace first.
    pub fn start_agent(&mut self, activation_code: Option<&str>) -> Result<usize> {
        if !self.image_imported {
            match &self.private_containerd {
                Some(c) => containerd::import_test_image_at(c.socket(), &self.namespace)?,
                None => containerd::import_test_image(&self.namespace)?,
            }
            self.image_imported = true;
        }
        if !self.networks_used.contains(&self.network) {
            self.networks_used.push(self.network.clone());
        }
        let (namespace, cgroup_root, network) = (
            self.namespace.clone(),
            self.cgroup_root.clone(),
            self.network.clone(),
        );
        self.spawn_agent(activation_code, &namespace, &cgroup_root, &network)
    }

    /// Starts one more host of a fleet: a berth-agent against this env's berth-cp with its
    /// own data dir, its own containerd namespace (`<namespace>-h<k>`, the test image imported
    /// into it), its own cgroup root (`<cgroup root>/h<k>`) and its own `[network]` (bridge,
    /// nftables table, netns dir, ports and subnets, claimed like an env's). Returns the
    /// agent's index, for [`TestEnv::agent`] and [`TestEnv::host_namespace`]. Dropping the env
    /// purges the namespace, removes the cgroups and the network's leftovers and releases the
    /// claim. Agents from [`TestEnv::start_agent`] keep the env's own settings.
    pub fn start_host(&mut self, activation_code: Option<&str>) -> Result<usize> {
        self.start_host_in(activation_code, "default", &[])
    }

    /// [`TestEnv::start_host`] with the host's `[instance]`: its availability zone and custom
    /// attributes, as placement sees them.
    pub fn start_host_in(
        &mut self,
        activation_code: Option<&str>,
        zone: &str,
        attributes: &[(&str, &str)],
    ) -> Result<usize> {
        let mut instance = format!("\n[instance]\navailability_zone = {zone:?}\n");
        if !attributes.is_empty() {
            instance.push_str("\n[instance.attributes]\n");
            for (name, value) in attributes {
                instance.push_str(&format!("{name:?} = {value:?}\n"));
            }
        }
        self.next_instance_toml = Some(instance);
        ensure!(
            self.private_containerd.is_none(),
            "fleet hosts use the host's containerd"
        );
        let k = self.hosts.len() + 1;
        let namespace = format!("{}-h{k}", self.namespace);
        let cgroup_root = format!("{}/h{k}", self.cgroup_root.trim_end_matches('/'));
        let (_, network) = claim_fresh_network()?;
        // Registered before anything can fail, so the drop cleans up and releases it.
        self.hosts.push(Host {
            agent: usize::MAX,
            namespace: namespace.clone(),
            cgroup_root: cgroup_root.clone(),
            network: network.clone(),
        });
        containerd::import_test_image(&namespace)?;
        let index = self.spawn_agent(activation_code, &namespace, &cgroup_root, &network)?;
        self.hosts.last_mut().expect("just pushed").agent = index;
        Ok(index)
    }

    /// The containerd namespace of agent `index`: its host's, if it was started with
    /// [`TestEnv::start_host`], else the env's.
    pub fn host_namespace(&self, index: usize) -> &str {
        self.hosts
            .iter()
            .find(|h| h.agent == index)
            .map_or(self.namespace.as_str(), |h| h.namespace.as_str())
    }

    /// The `[network]` of agent `index` (its host's, or the env's).
    pub fn host_network(&self, index: usize) -> &NetworkSettings {
        self.hosts
            .iter()
            .find(|h| h.agent == index)
            .map_or(&self.network, |h| &h.network)
    }

    fn spawn_agent(
        &mut self,
        activation_code: Option<&str>,
        namespace: &str,
        cgroup_root: &str,
        network: &NetworkSettings,
    ) -> Result<usize> {
        let n = self.agents.len() + 1;
        let config = self.dir.join(format!("agent-{n}.toml"));
        // From the top of the network's fixed ports, which tests take from the bottom.
        let introspection_port = network.fixed_ports.1 - ((n - 1) % 50) as u16;
        let mut toml = self.agent_config(n, activation_code, namespace, cgroup_root, network);
        toml.push_str(&format!(
            "\n[introspection]\nlisten = \"127.0.0.1:{introspection_port}\"\n"
        ));
        std::fs::write(&config, toml)?;
        self.introspection_ports.push(introspection_port);
        self.next_instance_toml = None;
        let mut cmd = Command::new(bin("berth-agent"));
        cmd.arg("--config")
            .arg(&config)
            .env("RUST_LOG", log_filter());
        // The config file is the whole truth: nothing from the caller's environment may
        // override it.
        for var in [
            "BERTH_CLUSTER",
            "BERTH_ENDPOINT",
            "BERTH_DATA_DIR",
            "BERTH_ACTIVATION_CODE",
            "BERTH_CONTAINERD_SOCKET",
            "BERTH_CONTAINERD_NAMESPACE",
            "BERTH_RESERVED_MEMORY_MIB",
            "BERTH_TASK_CLEANUP_WAIT_SECS",
            "BERTH_LOG_MAX_SIZE_MIB",
            "BERTH_LOG_MAX_FILES",
            "BERTH_LOG",
            "BERTH_AVAILABILITY_ZONE",
            "BERTH_INSTANCE_TYPE",
            "BERTH_INSTANCE_ATTRIBUTES",
            "BERTH_INTROSPECTION_LISTEN",
        ] {
            cmd.env_remove(var);
        }
        cmd.envs(self.agent_env.iter().map(|(k, v)| (k, v)));
        let log = self.dir.join(format!("agent-{n}.log"));
        self.agents
            .push(Proc::spawn(&format!("berth-agent-{n}"), cmd, &log)?);
        Ok(n - 1)
    }

    /// Kills agent `index` with SIGKILL (no drain, no flush: a crash) and waits for it to die.
    pub async fn kill_agent(&mut self, index: usize) -> Result<()> {
        let agent = &mut self.agents[index];
        let status = Command::new("kill")
            .args(["-KILL", &agent.pid().to_string()])
            .status()
            .context("running kill")?;
        ensure!(status.success(), "kill -KILL {} failed", agent.pid());
        agent.wait_exit(Duration::from_secs(10)).await?;
        Ok(())
    }

    /// Starts agent `index` again with the same config and data dir (its credential and tasks),
    /// as systemd would after a crash.
    pub fn restart_agent(&mut self, index: usize) -> Result<()> {
        let n = index + 1;
        let config = self.dir.join(format!("agent-{n}.toml"));
        let mut cmd = Command::new(bin("berth-agent"));
        cmd.arg("--config")
            .arg(&config)
            .env("RUST_LOG", log_filter());
        for (var, _) in std::env::vars() {
            if var.starts_with("BERTH_") {
                cmd.env_remove(var);
            }
        }
        cmd.envs(self.agent_env.iter().map(|(k, v)| (k, v)));
        let runs = self.agent_runs.entry(index).or_insert(1);
        *runs += 1;
        let log = self.dir.join(format!("agent-{n}-run{runs}.log"));
        let mut previous = std::mem::replace(
            &mut self.agents[index],
            Proc::spawn(&format!("berth-agent-{n}"), cmd, &log)?,
        );
        previous.stop(Duration::from_secs(1));
        Ok(())
    }

    fn agent_config(
        &self,
        n: usize,
        activation_code: Option<&str>,
        namespace: &str,
        cgroup_root: &str,
        network: &NetworkSettings,
    ) -> String {
        let data_dir = self.dir.join(format!("agent-{n}-data"));
        let mut toml = format!(
            "cluster = {cluster:?}\nendpoint = \"http://{grpc}\"\ndata_dir = {data_dir:?}\n",
            cluster = self.cluster,
            grpc = self.agent_endpoint.unwrap_or_else(|| self.cp_addrs().grpc),
            data_dir = data_dir.display().to_string(),
        );
        if let Some(code) = activation_code {
            toml.push_str(&format!("activation_code = {code:?}\n"));
        }
        toml.push_str(&format!(
            "task_cleanup_wait_secs = {}\n",
            self.task_cleanup_wait_secs
        ));
        toml.push_str(&format!(
            "\n[containerd]\nsocket = {socket:?}\nnamespace = {ns:?}\nsnapshotter = \"overlayfs\"\n\
             \n[resources]\nreserved_memory_mib = 256\n",
            socket = self.containerd_socket(),
            ns = namespace,
        ));
        if let Some(secs) = self.containerd_call_timeout_secs {
            // The key belongs in [containerd], which [resources] has closed: it goes after the
            // snapshotter line.
            let at = toml
                .find("snapshotter = \"overlayfs\"\n")
                .map(|i| i + "snapshotter = \"overlayfs\"\n".len())
                .expect("the [containerd] table was just written");
            toml.insert_str(at, &format!("call_timeout_secs = {secs}\n"));
        }
        toml.push_str(&format!("\n[cgroups]\nroot = {cgroup_root:?}\n"));
        if let Some(limit) = self.pids_limit {
            toml.push_str(&format!("pids_limit = {limit}\n"));
        }
        if let Some((max_size_mib, max_files)) = self.agent_log_limits {
            toml.push_str(&format!(
                "\n[logs]\nmax_size_mib = {max_size_mib}\nmax_files = {max_files}\n"
            ));
        }
        toml.push_str(&network.agent_toml());
        if let Some(instance) = &self.next_instance_toml {
            toml.push_str(instance);
        }
        if let Some(secs) = self.manifest_grace_secs {
            toml.push_str(&format!("\n[tasks]\nmanifest_grace_secs = {secs}\n"));
        }
        // Tests send traffic to loopback only: unless a test sets up its own registry, images
        // are the ones imported into the namespace, and the agent must not ask docker.io.
        let images = self
            .agent_images_toml
            .as_deref()
            .unwrap_or("pull_behavior = \"prefer-cached\"");
        toml.push_str(&format!("\n[images]\n{images}\n"));
        toml
    }

    /// Sets `key` in the environment of agents started from now on.
    pub fn set_agent_env(&mut self, key: &str, value: &str) {
        self.agent_env.push((key.into(), value.into()));
    }

    /// Sets `key` in berth-cp's environment from its next start.
    pub fn set_cp_env(&mut self, key: &str, value: &str) {
        self.cp_env.push((key.into(), value.into()));
    }

    /// Where agent `index` serves the ECS agent's introspection API: `http://127.0.0.1:PORT`.
    pub fn introspection_url(&self, index: usize) -> String {
        format!("http://127.0.0.1:{}", self.introspection_ports[index])
    }

    pub fn agent(&mut self, index: usize) -> &mut Proc {
        &mut self.agents[index]
    }

    pub fn agent_pid(&self, index: usize) -> u32 {
        self.agents[index].pid()
    }

    /// Waits until the cluster has a container instance whose agent is connected; returns its
    /// ARN.
    pub async fn wait_agent_connected(&self) -> Result<String> {
        let api = self.api();
        let cluster = self.cluster.as_str();
        wait_until("a connected container instance", timeout(60), || {
            let api = api.clone();
            async move {
                let list = api
                    .call("ListContainerInstances", json!({"cluster": cluster}))
                    .await?;
                let arns: Vec<Value> = list["containerInstanceArns"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                if arns.is_empty() {
                    return Ok(None);
                }
                let described = api
                    .call(
                        "DescribeContainerInstances",
                        json!({"cluster": cluster, "containerInstances": arns}),
                    )
                    .await?;
                let connected = described["containerInstances"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|ci| ci["agentConnected"] == Value::Bool(true));
                Ok(connected.and_then(|ci| ci["containerInstanceArn"].as_str().map(str::to_owned)))
            }
        })
        .await
    }

    /// The containers in this env's containerd namespace.
    pub fn containerd_containers(&self) -> Result<Vec<String>> {
        match &self.private_containerd {
            Some(c) => containerd::containers_at(c.socket(), &self.namespace),
            None => containerd::containers(&self.namespace),
        }
    }

    /// Gives this env a containerd of its own (see [`PrivateContainerd`]), started now: agents
    /// started after this call use it (`[containerd] socket`), the test image is imported into
    /// it, and dropping the env removes it with everything in it. A test may then stop, kill,
    /// restart or freeze it ([`TestEnv::private_containerd`]) without disturbing other tests.
    pub fn use_private_containerd(&mut self) -> Result<()> {
        ensure!(
            self.agents.is_empty(),
            "use_private_containerd must come before the first agent is started"
        );
        ensure!(
            self.private_containerd.is_none(),
            "this env already has a private containerd"
        );
        self.private_containerd = Some(PrivateContainerd::new(&self.id, &self.dir)?);
        self.image_imported = false;
        Ok(())
    }

    /// The env's private containerd; panics unless [`TestEnv::use_private_containerd`] was
    /// called.
    pub fn private_containerd(&mut self) -> &mut PrivateContainerd {
        self.private_containerd
            .as_mut()
            .expect("use_private_containerd was called")
    }

    /// The containerd socket of this env's agents: the private one, if any, else the host's.
    pub fn containerd_socket(&self) -> String {
        match &self.private_containerd {
            Some(c) => c.socket().to_owned(),
            None => containerd::socket(),
        }
    }

    /// `ctr -a <the env's containerd> -n <the env's namespace> ARGS...`.
    pub fn ctr(&self, args: &[&str]) -> Result<String> {
        containerd::ctr_at(&self.containerd_socket(), &self.namespace, args)
    }

    /// `[containerd] call_timeout_secs` (the deadline of every containerd call) of agents
    /// started after this call.
    pub fn set_containerd_call_timeout_secs(&mut self, secs: u64) {
        self.containerd_call_timeout_secs = Some(secs);
    }

    /// Agents started from now on connect to `grpc` instead of this env's berth-cp.
    pub fn set_agent_endpoint(&mut self, grpc: SocketAddr) {
        self.agent_endpoint = Some(grpc);
    }

    /// The `[images]` table of agents started after this call: its key lines, without the
    /// `[images]` header (sub-tables such as `[images.credentials."host"]` may follow).
    pub fn set_agent_images_toml(&mut self, lines: &str) {
        self.agent_images_toml = Some(lines.to_owned());
    }

    /// How often berth-cp sends each agent its task manifest, from its next start.
    pub fn set_cp_manifest_interval_ms(&mut self, ms: u64) {
        self.cp_manifest_interval_ms = Some(ms);
    }

    /// berth-cp's `service_settle_ms` (how long a service task without health checks runs
    /// before it counts as healthy), from its next start.
    pub fn set_cp_service_settle_ms(&mut self, ms: u64) {
        self.cp_service_settle_ms = Some(ms);
    }

    /// How long agents started after this call let the task manifest disagree with them
    /// before they act (`[tasks] manifest_grace_secs`).
    pub fn set_manifest_grace_secs(&mut self, secs: u64) {
        self.manifest_grace_secs = Some(secs);
    }

    /// berth-cp's `heartbeat_interval_ms` (what it tells agents in Welcome), from its next
    /// start.
    pub fn set_cp_heartbeat_interval_ms(&mut self, ms: u64) {
        self.cp_heartbeat_interval_ms = Some(ms);
    }

    /// berth-cp's config file, for the settings it takes only from a file; None if none is
    /// set.
    fn cp_config_file(&self) -> Result<Option<PathBuf>> {
        let Some(ms) = self.cp_heartbeat_interval_ms else {
            return Ok(None);
        };
        let path = self.dir.join("cp.toml");
        std::fs::write(&path, format!("heartbeat_interval_ms = {ms}\n"))
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(Some(path))
    }

    /// Marks the test as passed: the logs are not printed when the env is dropped.
    pub fn pass(mut self) {
        self.passed = true;
    }

    fn print_logs(&self) {
        let mut logs: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .collect();
        logs.sort();
        for path in logs {
            let text = std::fs::read(&path)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let skip = lines.len().saturating_sub(LOG_TAIL_LINES);
            eprintln!("----- {} ({} lines) -----", path.display(), lines.len());
            if skip > 0 {
                eprintln!("[... {skip} earlier lines ...]");
            }
            for line in &lines[skip..] {
                eprintln!("{line}");
            }
        }
    }
}

const LOG_TAIL_LINES: usize = 400;

impl Drop for TestEnv {
    fn drop(&mut self) {
        for agent in &mut self.agents {
            agent.stop(Duration::from_secs(10));
        }
        self.stop_cp();
        if !self.passed {
            self.print_logs();
        }
        // Its tasks, containers, shims, mounts and dirs (also when a test left it frozen or
        // down); before the cgroups and networks below, as the namespace purge is.
        drop(self.private_containerd.take());
        if let Err(e) = containerd::purge_namespace(&self.namespace, Duration::from_secs(30)) {
            eprintln!("cleanup: {e:#}");
        }
        for host in &self.hosts {
            if let Err(e) = containerd::purge_namespace(&host.namespace, Duration::from_secs(30)) {
                eprintln!("cleanup: {e:#}");
            }
        }
        // After the containers: their cgroups are gone with them, the tasks' may be left.
        for host in &self.hosts {
            if let Err(e) = crate::cgroups::remove_cgroup_tree(&host.cgroup_root) {
                eprintln!("cleanup: cgroup {}: {e:#}", host.cgroup_root);
            }
        }
        if let Err(e) = crate::cgroups::remove_cgroup_tree(&self.cgroup_root) {
            eprintln!("cleanup: cgroup {}: {e:#}", self.cgroup_root);
        }
        // After the containers too: their namespaces are no longer in use. Tasks' namespaces,
        // veths and nftables rules, the bridge and the gateway device go.
        for network in &self.networks_used {
            for problem in network.remove_leftovers() {
                eprintln!("cleanup: network: {problem}");
            }
        }
        for host in &self.hosts {
            for problem in host.network.remove_leftovers() {
                eprintln!("cleanup: network: {problem}");
            }
            host.network.release();
        }
        self.claimed_network.release();
        if std::env::var_os("BERTH_E2E_KEEP").is_some() {
            eprintln!("kept {}", self.dir.display());
        } else if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("cleanup: cannot remove {}: {e}", self.dir.display());
        }
    }
}

/// A fresh id and the network settings it claims: the id picks the network names, subnets and
/// ports, and an id whose picks another env of this process holds, or the host uses, is passed
/// over.
fn claim_fresh_network() -> Result<(String, NetworkSettings)> {
    for _ in 0..100 {
        let id = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
        if let Some(network) = NetworkSettings::claim(&id) {
            return Ok((id, network));
        }
    }
    bail!("no free network settings for a test env after 100 ids")
}

fn log_filter() -> String {
    std::env::var("BERTH_E2E_LOG")
        .unwrap_or_else(|_| "info,berth_agent=debug,berth_cp=debug".to_owned())
}

fn read_ready_file(path: &Path) -> Option<CpAddrs> {
    let text = std::fs::read_to_string(path).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    Some(CpAddrs {
        api: v["api"].as_str()?.parse().ok()?,
        grpc: v["grpc"].as_str()?.parse().ok()?,
    })
}
