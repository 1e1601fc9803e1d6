//! `berth-bench launch` (issue #9): how fast and how small the agent is, next to containerd
//! driven directly, in one run.
//!
//! Part 1 (the agent alone, through [`ProbeCp`], a minimal control plane in this process):
//! - sequential: N single-container tasks (network `none`, image present), one at a time; each
//!   timed from the payload leaving the probe to the agent's RUNNING report arriving, and each
//!   followed by the same container launched directly ([`Direct`]: lease, snapshot,
//!   Containers.Create, Tasks.Create, Tasks.Start, with the agent container's own OCI spec).
//!   Alternating keeps both launches under the same load (the same number of containers up).
//! - per network mode: host, none, bridge, awsvpc in turns, each timed as above.
//! - burst: N tasks in one payload until all are RUNNING, then N direct launches at once.
//!
//! Part 2 (the product, through berth-cp): RunTask at the ECS API until DescribeTasks (polled
//! every 5 ms) shows RUNNING, N times one after another; the agent's RSS and PSS idle after
//! registration and with the N tasks running; its CPU over `--cpu-secs` with them running.
//!
//! Every task is checked: one that stops, or does not reach RUNNING in time, ends the run with
//! an error and no figures.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use berth_e2e::procstat::{clock_ticks_per_sec, cpu_ticks, find_processes, CpuTicks};
use berth_e2e::{register, task_arn, timeout, wait_until, EcsClient, TestEnv, TEST_IMAGE};
use berth_proto::v1 as pb;
use serde_json::json;

use super::direct::{self, Direct, Template};
use super::probe_cp::ProbeCp;
use super::soak::{containerd_pid, kib_field};
use super::{machine, progress, run_time};

const USAGE: &str = "usage: berth-bench launch [--tasks N] [--per-mode N] [--burst N] \
                     [--e2e N] [--cpu-secs N] [--warmup N]";
const MODES: [&str; 4] = ["host", "none", "bridge", "awsvpc"];

pub struct Options {
    tasks: usize,
    per_mode: usize,
    burst: usize,
    e2e: usize,
    cpu_secs: u64,
    warmup: usize,
}

pub fn parse(args: &[String]) -> Result<Options> {
    let mut o = Options {
        tasks: 100,
        per_mode: 25,
        burst: 100,
        e2e: 100,
        cpu_secs: 60,
        warmup: 5,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || -> Result<u64> {
            it.next()
                .and_then(|v| v.parse().ok())
                .with_context(|| format!("{arg} needs a number; {USAGE}"))
        };
        match arg.as_str() {
            "--tasks" => o.tasks = value()? as usize,
            "--per-mode" => o.per_mode = value()? as usize,
            "--burst" => o.burst = value()? as usize,
            "--e2e" => o.e2e = value()? as usize,
            "--cpu-secs" => o.cpu_secs = value()?,
            "--warmup" => o.warmup = value()? as usize,
            _ => bail!("unknown argument {arg:?}; {USAGE}"),
        }
    }
    ensure!(
        o.tasks >= 1 && o.per_mode >= 1 && o.burst >= 1 && o.e2e >= 1 && o.cpu_secs >= 1,
        "every count must be at least 1; {USAGE}"
    );
    Ok(o)
}

pub async fn run(o: Options) -> Result<()> {
    let started = Instant::now();
    progress(format_args!("launch: part 1, the agent alone"));
    let agent = agent_alone(&o).await.context("part 1: the agent alone")?;
    let product = through_cp(&o).await.context("part 2: through berth-cp")?;
    // Everything succeeded: only now print figures.
    let mut out = String::new();
    writeln!(out, "# berth-bench launch")?;
    writeln!(out, "{}", machine())?;
    writeln!(
        out,
        "options: --tasks {} --per-mode {} --burst {} --e2e {} --cpu-secs {} --warmup {}",
        o.tasks, o.per_mode, o.burst, o.e2e, o.cpu_secs, o.warmup
    )?;
    out.push_str(&run_time(started));
    out.push_str(&agent.report());
    out.push_str(&product.report());
    print!("{out}");
    Ok(())
}

// ------------------------------------------------------------------------------- part 1

struct AgentAlone {
    agent: Vec<Duration>,
    /// The agent's CPU time over the sequential pairs (its own launches and its idle work
    /// while the direct ones ran), in seconds.
    agent_cpu_secs: f64,
    direct: Vec<Duration>,
    per_mode: Vec<(&'static str, Vec<Duration>)>,
    burst_agent: Burst,
    burst_direct: Burst,
}

struct Burst {
    wall: Duration,
    each: Vec<Duration>,
}

async fn agent_alone(o: &Options) -> Result<AgentAlone> {
    let mut probe = ProbeCp::start().await?;
    let mut env = TestEnv::new("bench-launch")?;
    env.set_agent_endpoint(probe.addr);
    // The probe accepts any code; the agent needs one to register at all.
    env.start_agent(Some("BENCH"))?;
    probe
        .wait_connected(timeout(60))
        .await
        .with_context(|| format!("agent log:\n{}", env.agent(0).log()))?;
    let direct = Arc::new(Direct::connect(&env.containerd_socket(), &env.namespace).await?);
    let direct_dir = env.dir().join("direct");
    std::fs::create_dir_all(&direct_dir)?;
    let cgroup = format!("{}/direct", env.cgroup_root());
    let mut run = Run {
        tracker: Tracker::new(probe),
        env: &env,
        direct: direct.clone(),
        direct_dir,
        cgroup,
        direct_ids: Vec::new(),
        next_direct: 0,
    };
    let result = measure(o, &mut run).await;
    let cleanup = run.cleanup().await;
    let measured = result?;
    cleanup?;
    env.pass();
    Ok(measured)
}

async fn measure(o: &Options, run: &mut Run<'_>) -> Result<AgentAlone> {
    // Warm-up: the first launches pay for cold caches (the shim's and runc's pages, the
    // image's metadata) on either side.
    for _ in 0..o.warmup {
        let arn = run.agent_launch("none").await?.0;
        let t = run.template_of(&arn).await?;
        run.direct_launch(&t).await?;
    }
    run.stop_all().await?;
    progress(format_args!(
        "launch: warm-up done; {} sequential pairs",
        o.tasks
    ));

    let mut agent = Vec::new();
    let mut direct = Vec::new();
    let mut templates = Vec::new();
    let agent_pid = run.env.agent_pid(0);
    let cpu_before = cpu_ticks(agent_pid)?;
    for i in 0..o.tasks {
        let (arn, took) = run.agent_launch("none").await?;
        agent.push(took);
        let t = run.template_of(&arn).await?;
        direct.push(run.direct_launch(&t).await?);
        templates.push(t);
        if (i + 1) % 25 == 0 {
            progress(format_args!("launch: {} pairs", i + 1));
        }
    }
    let cpu = cpu_ticks(agent_pid)?.since(cpu_before);
    let agent_cpu_secs = (cpu.own + cpu.children) as f64 / clock_ticks_per_sec() as f64;
    run.stop_all().await?;

    let mut per_mode: Vec<(&'static str, Vec<Duration>)> =
        MODES.iter().map(|m| (*m, Vec::new())).collect();
    for _ in 0..o.per_mode {
        for (mode, times) in per_mode.iter_mut() {
            times.push(run.agent_launch(mode).await?.1);
        }
    }
    run.stop_all().await?;
    progress(format_args!("launch: per mode done; burst of {}", o.burst));

    let burst_agent = run.agent_burst(o.burst).await?;
    run.stop_all().await?;
    let burst_direct = run.direct_burst(o.burst, &templates).await?;
    run.stop_all().await?;
    Ok(AgentAlone {
        agent,
        agent_cpu_secs,
        direct,
        per_mode,
        burst_agent,
        burst_direct,
    })
}

struct Run<'a> {
    tracker: Tracker,
    env: &'a TestEnv,
    direct: Arc<Direct>,
    direct_dir: std::path::PathBuf,
    cgroup: String,
    /// Direct containers up, with their snapshotter.
    direct_ids: Vec<(String, String)>,
    next_direct: usize,
}

impl Run<'_> {
    /// One task through the agent; returns its ARN and the time from payload to RUNNING.
    async fn agent_launch(&mut self, mode: &str) -> Result<(String, Duration)> {
        let arn = new_arn();
        let sent = self
            .tracker
            .probe
            .send(vec![task_spec(&arn, mode)], vec![])?;
        self.tracker.sent(&arn);
        self.tracker
            .wait(|t| t.running_at(&arn).is_some(), timeout(120))
            .await
            .with_context(|| format!("{mode} task {arn}"))?;
        let at = self.tracker.running_at(&arn).expect("waited for it");
        Ok((arn, at - sent))
    }

    async fn template_of(&self, arn: &str) -> Result<Template> {
        let id = self
            .tracker
            .runtime_id(arn)
            .with_context(|| format!("task {arn} reported RUNNING without a runtime id"))?;
        self.direct.template_of(id).await
    }

    fn next_direct_id(&mut self) -> String {
        self.next_direct += 1;
        format!("direct-{}", self.next_direct)
    }

    async fn direct_launch(&mut self, t: &Template) -> Result<Duration> {
        let id = self.next_direct_id();
        let log = direct::log_path(&self.direct_dir, &id);
        // Recorded first: a launch that fails half-way is removed with the rest.
        self.direct_ids
            .push((id.clone(), t.snapshotter().to_owned()));
        self.direct.launch(&id, t, &self.cgroup, &log).await
    }

    async fn agent_burst(&mut self, n: usize) -> Result<Burst> {
        let arns: Vec<String> = (0..n).map(|_| new_arn()).collect();
        let specs = arns.iter().map(|a| task_spec(a, "none")).collect();
        let sent = self.tracker.probe.send(specs, vec![])?;
        for a in &arns {
            self.tracker.sent(a);
        }
        self.tracker
            .wait(
                |t| arns.iter().all(|a| t.running_at(a).is_some()),
                timeout(600),
            )
            .await
            .context("burst")?;
        let each: Vec<Duration> = arns
            .iter()
            .map(|a| self.tracker.running_at(a).expect("waited for it") - sent)
            .collect();
        Ok(Burst {
            wall: each.iter().max().copied().unwrap_or_default(),
            each,
        })
    }

    async fn direct_burst(&mut self, n: usize, templates: &[Template]) -> Result<Burst> {
        ensure!(!templates.is_empty(), "no templates for the direct burst");
        let mut set = tokio::task::JoinSet::new();
        let started = Instant::now();
        for i in 0..n {
            let id = self.next_direct_id();
            let t = templates[i % templates.len()].clone();
            self.direct_ids
                .push((id.clone(), t.snapshotter().to_owned()));
            let log = direct::log_path(&self.direct_dir, &id);
            let (direct, cgroup) = (self.direct.clone(), self.cgroup.clone());
            set.spawn(async move {
                direct.launch(&id, &t, &cgroup, &log).await?;
                Ok::<_, anyhow::Error>(started.elapsed())
            });
        }
        let mut each = Vec::new();
        while let Some(done) = set.join_next().await {
            each.push(done.context("a direct launch panicked")??);
        }
        Ok(Burst {
            wall: started.elapsed(),
            each,
        })
    }

    /// Stops every task sent so far and removes every direct container; waits until the
    /// agent has reported them all STOPPED and removed their containers.
    async fn stop_all(&mut self) -> Result<()> {
        let to_stop = self.tracker.unstopped();
        if !to_stop.is_empty() {
            let stops = to_stop
                .iter()
                .map(|arn| pb::StopTask {
                    task_arn: arn.clone(),
                    reason: "benchmark done".into(),
                })
                .collect();
            self.tracker.expect_stops(&to_stop);
            self.tracker.probe.send(vec![], stops)?;
        }
        let mut removals = tokio::task::JoinSet::new();
        for (id, snapshotter) in std::mem::take(&mut self.direct_ids) {
            let direct = self.direct.clone();
            removals.spawn(async move { direct.remove(&id, &snapshotter).await });
        }
        while let Some(done) = removals.join_next().await {
            done.context("a direct removal panicked")??;
        }
        self.tracker
            .wait(
                |t| to_stop.iter().all(|a| t.stopped.contains(a)),
                timeout(300),
            )
            .await
            .context("stopping the tasks")?;
        let env = self.env;
        wait_until(
            "the agent to remove its containers",
            timeout(120),
            || async { Ok(env.containerd_containers()?.is_empty().then_some(())) },
        )
        .await
    }

    /// Best effort, also after a failure: stop what is up.
    async fn cleanup(&mut self) -> Result<()> {
        self.stop_all().await
    }
}

// ------------------------------------------------------------------------------- tracking

/// What the agent reported about the tasks sent, as the changes arrive.
struct Tracker {
    probe: ProbeCp,
    sent: Vec<String>,
    running: HashMap<String, Instant>,
    runtime_ids: HashMap<String, String>,
    expected_stops: HashSet<String>,
    stopped: HashSet<String>,
}

impl Tracker {
    fn new(probe: ProbeCp) -> Tracker {
        Tracker {
            probe,
            sent: Vec::new(),
            running: HashMap::new(),
            runtime_ids: HashMap::new(),
            expected_stops: HashSet::new(),
            stopped: HashSet::new(),
        }
    }

    fn sent(&mut self, arn: &str) {
        self.sent.push(arn.to_owned());
    }

    fn running_at(&self, arn: &str) -> Option<Instant> {
        self.running.get(arn).copied()
    }

    fn runtime_id(&self, arn: &str) -> Option<&str> {
        self.runtime_ids.get(arn).map(String::as_str)
    }

    fn unstopped(&self) -> Vec<String> {
        self.sent
            .iter()
            .filter(|a| !self.stopped.contains(*a) && !self.expected_stops.contains(*a))
            .cloned()
            .collect()
    }

    fn expect_stops(&mut self, arns: &[String]) {
        self.expected_stops.extend(arns.iter().cloned());
    }

    fn apply(&mut self, arrived: super::probe_cp::Arrived) -> Result<()> {
        use pb::state_change::Change;
        match arrived.change {
            Change::Task(t) => {
                if t.status == pb::TaskStatus::Running as i32 {
                    self.running.entry(t.task_arn).or_insert(arrived.at);
                } else if t.status == pb::TaskStatus::Stopped as i32 {
                    if !self.expected_stops.contains(&t.task_arn) {
                        bail!(
                            "task {} stopped unasked: {} {}",
                            t.task_arn,
                            t.stop_code,
                            t.stopped_reason
                        );
                    }
                    self.stopped.insert(t.task_arn);
                }
            }
            Change::Container(c) => {
                if c.status == pb::ContainerStatus::Stopped as i32
                    && !self.expected_stops.contains(&c.task_arn)
                {
                    bail!(
                        "container {} of task {} stopped unasked: exit {:?} {}",
                        c.container_name,
                        c.task_arn,
                        c.exit_code,
                        c.reason
                    );
                }
                if !c.runtime_id.is_empty() {
                    self.runtime_ids.insert(c.task_arn, c.runtime_id);
                }
            }
        }
        Ok(())
    }

    async fn wait(&mut self, done: impl Fn(&Tracker) -> bool, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        while !done(self) {
            let left = deadline.saturating_duration_since(Instant::now());
            let arrived = self.probe.next_change(left).await?;
            self.apply(arrived)?;
        }
        Ok(())
    }
}

fn new_arn() -> String {
    format!(
        "arn:aws:ecs:us-east-1:000000000000:task/bench/{}",
        uuid::Uuid::new_v4().simple()
    )
}

/// The one container of every task: `sleep` as PID 1 ignores SIGTERM, so a short stop
/// timeout keeps the stops between the parts short.
fn container_definition() -> serde_json::Value {
    json!({
        "name": "app",
        "image": TEST_IMAGE,
        "essential": true,
        "memory": 16,
        "stopTimeout": 1,
        "command": ["sleep", "3600"],
    })
}

/// One task of [`container_definition`] as berth-cp would send it.
fn task_spec(arn: &str, mode: &str) -> pb::TaskSpec {
    let definition = container_definition();
    pb::TaskSpec {
        task_arn: arn.to_owned(),
        family: "bench".into(),
        revision: 1,
        desired_status: pb::TaskStatus::Running as i32,
        network_mode: mode.to_owned(),
        containers: vec![pb::ContainerSpec {
            name: "app".into(),
            image: TEST_IMAGE.into(),
            essential: true,
            command: vec!["sleep".into(), "3600".into()],
            has_command: true,
            memory_mib: 16,
            stop_timeout_seconds: 1,
            definition_json: definition.to_string(),
            ..Default::default()
        }],
        created_at_ms: (berth_e2e::now_epoch_secs() * 1000.0) as i64,
        ..Default::default()
    }
}

// ------------------------------------------------------------------------------- part 2

struct ThroughCp {
    e2e: Vec<Duration>,
    /// The RunTask call alone (its answer is PROVISIONING/PENDING).
    run_task: Vec<Duration>,
    idle: Memory,
    loaded: Memory,
    loggers: Memory,
    cpu: Cpu,
    tasks: usize,
}

#[derive(Default, Clone, Copy)]
struct Memory {
    rss_kib: u64,
    pss_kib: u64,
    anon_kib: u64,
    file_kib: u64,
    processes: usize,
}

impl Memory {
    fn of(pid: u32) -> Result<Memory> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .with_context(|| format!("reading /proc/{pid}/status"))?;
        let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
            .with_context(|| format!("reading /proc/{pid}/smaps_rollup"))?;
        Ok(Memory {
            rss_kib: kib_field(&status, "VmRSS:")?,
            pss_kib: kib_field(&rollup, "Pss:")?,
            anon_kib: kib_field(&status, "RssAnon:")?,
            file_kib: kib_field(&status, "RssFile:")?,
            processes: 1,
        })
    }

    fn plus(self, o: Memory) -> Memory {
        Memory {
            rss_kib: self.rss_kib + o.rss_kib,
            pss_kib: self.pss_kib + o.pss_kib,
            anon_kib: self.anon_kib + o.anon_kib,
            file_kib: self.file_kib + o.file_kib,
            processes: self.processes + o.processes,
        }
    }
}

struct Cpu {
    secs: f64,
    agent_ticks: u64,
    containerd_ticks: Option<u64>,
    hz: u64,
}

async fn through_cp(o: &Options) -> Result<ThroughCp> {
    // Page-cache pages of a freshly built binary are dirty until written back, and smaps
    // counts them as the process's own (Private_Dirty): write them back first.
    nix::unistd::sync();
    let mut env = TestEnv::with_agent("bench-e2e").await?;
    let agent = env.agent(0).pid();
    // Idle after registration: let start-up work (the first manifest, the orphan sweep) end.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let idle = Memory::of(agent)?;
    progress(format_args!(
        "launch: berth-cp env up, agent idle RSS {} KiB; {} RunTasks",
        idle.rss_kib, o.e2e
    ));
    let api = env.api();
    let td = register(
        &api,
        json!({
            "family": format!("bench-{}", env.id),
            "networkMode": "none",
            "containerDefinitions": [container_definition()],
        }),
    )
    .await?;
    let mut e2e = Vec::new();
    let mut run_task_calls = Vec::new();
    let mut arns = Vec::new();
    let result: Result<()> = async {
        for _ in 0..o.e2e {
            let started = Instant::now();
            // One client throughout, as an SDK keeps its connections.
            let out = api
                .call(
                    "RunTask",
                    json!({"cluster": env.cluster, "taskDefinition": td}),
                )
                .await
                .context("RunTask")?;
            run_task_calls.push(started.elapsed());
            let arn = task_arn(&out["tasks"][0]).with_context(|| format!("RunTask: {out}"))?;
            arns.push(arn.clone());
            wait_running_polled(&api, &env.cluster, &arn).await?;
            e2e.push(started.elapsed());
        }
        Ok(())
    }
    .await;
    let measured = match result {
        Ok(()) => measure_loaded(&env, &api, agent, o.cpu_secs, &arns).await,
        Err(e) => Err(e),
    };
    // Stop what was started whatever happened; the env's drop removes the rest.
    for arn in &arns {
        let _ = api
            .call(
                "StopTask",
                json!({"cluster": env.cluster, "task": arn, "reason": "benchmark done"}),
            )
            .await;
    }
    let (loaded, loggers, cpu) = measured?;
    wait_until("the benchmark's tasks to stop", timeout(300), || async {
        Ok(env.containerd_containers()?.is_empty().then_some(()))
    })
    .await?;
    env.pass();
    Ok(ThroughCp {
        e2e,
        run_task: run_task_calls,
        idle,
        loaded,
        loggers,
        cpu,
        tasks: arns.len(),
    })
}

async fn measure_loaded(
    env: &TestEnv,
    api: &EcsClient,
    agent: u32,
    cpu_secs: u64,
    arns: &[String],
) -> Result<(Memory, Memory, Cpu)> {
    tokio::time::sleep(Duration::from_secs(5)).await;
    let loaded = Memory::of(agent)?;
    let dir = env.dir().display().to_string();
    let loggers = find_processes(|_, cmd| cmd.contains("berth-log-path") && cmd.contains(&dir))
        .into_iter()
        .filter_map(|pid| Memory::of(pid).ok())
        .fold(
            Memory {
                processes: 0,
                ..Memory::default()
            },
            Memory::plus,
        );
    progress(format_args!(
        "launch: {} tasks running, agent RSS {} KiB; {cpu_secs} s of CPU",
        arns.len(),
        loaded.rss_kib
    ));
    let containerd = containerd_pid();
    let before = (
        cpu_ticks(agent)?,
        containerd.and_then(|p| cpu_ticks(p).ok()),
    );
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(cpu_secs)).await;
    let secs = started.elapsed().as_secs_f64();
    // Its own threads and any child it ran and waited for.
    let total = |t: CpuTicks| t.own + t.children;
    let agent_ticks = total(cpu_ticks(agent)?.since(before.0));
    let containerd_ticks = match (containerd, before.1) {
        (Some(p), Some(b)) => cpu_ticks(p).ok().map(|now| total(now.since(b))),
        _ => None,
    };
    // Still all running after the quiet minute.
    for arn in arns {
        let task = describe(api, &env.cluster, arn).await?;
        ensure!(
            task["lastStatus"] == "RUNNING",
            "task {arn} is {} after the CPU measurement: {task}",
            task["lastStatus"]
        );
    }
    Ok((
        loaded,
        loggers,
        Cpu {
            secs,
            agent_ticks,
            containerd_ticks,
            hz: clock_ticks_per_sec(),
        },
    ))
}

async fn describe(api: &EcsClient, cluster: &str, arn: &str) -> Result<serde_json::Value> {
    let out = api
        .call("DescribeTasks", json!({"cluster": cluster, "tasks": [arn]}))
        .await
        .context("DescribeTasks")?;
    Ok(out["tasks"][0].clone())
}

/// Polls DescribeTasks every 5 ms, as an impatient client would, until `arn` is RUNNING.
async fn wait_running_polled(api: &EcsClient, cluster: &str, arn: &str) -> Result<()> {
    let deadline = Instant::now() + timeout(120);
    loop {
        let task = describe(api, cluster, arn).await?;
        match task["lastStatus"].as_str() {
            Some("RUNNING") => return Ok(()),
            Some("STOPPED") => bail!("task {arn} stopped: {task}"),
            _ => {}
        }
        ensure!(Instant::now() < deadline, "task {arn} not RUNNING: {task}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

// ------------------------------------------------------------------------------- report

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Nearest-rank percentile of sorted `v`.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

struct Stats {
    median: f64,
    p99: f64,
    min: f64,
    max: f64,
    mean: f64,
}

fn stats(v: &[Duration]) -> Stats {
    let mut s: Vec<f64> = v.iter().copied().map(ms).collect();
    s.sort_by(f64::total_cmp);
    Stats {
        median: percentile(&s, 50.0),
        p99: percentile(&s, 99.0),
        min: s.first().copied().unwrap_or(f64::NAN),
        max: s.last().copied().unwrap_or(f64::NAN),
        mean: s.iter().sum::<f64>() / s.len().max(1) as f64,
    }
}

fn stats_row(name: &str, v: &[Duration]) -> String {
    let s = stats(v);
    format!(
        "| {name} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |\n",
        v.len(),
        s.median,
        s.p99,
        s.min,
        s.mean,
        s.max
    )
}

const STATS_HEADER: &str = "| series | n | median ms | p99 ms | min ms | mean ms | max ms |\n\
                            |---|---|---|---|---|---|---|\n";

/// Every sample in ms, in the order measured, ten to a line.
fn raw(name: &str, v: &[Duration]) -> String {
    let mut out = format!("{name} (ms, in order):\n");
    for chunk in v.chunks(10) {
        let line: Vec<String> = chunk.iter().map(|d| format!("{:.1}", ms(*d))).collect();
        out.push_str(&format!("  {}\n", line.join(" ")));
    }
    out
}

impl AgentAlone {
    fn report(&self) -> String {
        let (a, d) = (stats(&self.agent), stats(&self.direct));
        let mut out = String::new();
        let _ = writeln!(
            out,
            "\n## launch latency, sequential, network none: agent (payload -> RUNNING report) \
             vs direct containerd client (lease, Snapshots.Prepare, Containers.Create, \
             Tasks.Create, Tasks.Start)\n"
        );
        out.push_str(STATS_HEADER);
        out.push_str(&stats_row("agent", &self.agent));
        out.push_str(&stats_row("direct", &self.direct));
        let _ = writeln!(
            out,
            "\nratio agent/direct: median {:.3} (overhead {:+.1} ms), p99 {:.3}",
            a.median / d.median,
            a.median - d.median,
            a.p99 / d.p99
        );
        // Each pair ran back to back under the same load: the median of their differences is
        // the overhead with less of the machine's drift in it than a difference of medians.
        let mut diffs: Vec<f64> = self
            .agent
            .iter()
            .zip(&self.direct)
            .map(|(a, d)| ms(*a) - ms(*d))
            .collect();
        diffs.sort_by(f64::total_cmp);
        let _ = writeln!(
            out,
            "per pair (agent - direct): median {:+.1} ms, p99 {:+.1} ms",
            percentile(&diffs, 50.0),
            percentile(&diffs, 99.0)
        );
        let _ = writeln!(
            out,
            "agent CPU time over the {} pairs: {:.2} s, {:.1} ms per launch",
            self.agent.len(),
            self.agent_cpu_secs,
            self.agent_cpu_secs * 1000.0 / self.agent.len().max(1) as f64
        );
        let _ = writeln!(out, "\n## launch latency per network mode (agent)\n");
        out.push_str(STATS_HEADER);
        for (mode, v) in &self.per_mode {
            out.push_str(&stats_row(mode, v));
        }
        let (ba, bd) = (&self.burst_agent, &self.burst_direct);
        let _ = writeln!(
            out,
            "\n## burst: {} tasks at once until all RUNNING (agent: one payload; direct: {} \
             concurrent launches)\n",
            ba.each.len(),
            bd.each.len()
        );
        let _ = writeln!(
            out,
            "agent wall {:.0} ms, direct wall {:.0} ms, ratio {:.3}",
            ms(ba.wall),
            ms(bd.wall),
            ba.wall.as_secs_f64() / bd.wall.as_secs_f64()
        );
        out.push('\n');
        out.push_str(STATS_HEADER);
        out.push_str(&stats_row("agent, each task's time to RUNNING", &ba.each));
        out.push_str(&stats_row(
            "direct, each launch's time to started",
            &bd.each,
        ));
        out.push_str("\n### raw\n\n```\n");
        out.push_str(&raw("agent sequential", &self.agent));
        out.push_str(&raw("direct sequential", &self.direct));
        for (mode, v) in &self.per_mode {
            out.push_str(&raw(&format!("agent {mode}"), v));
        }
        let mut each = ba.each.clone();
        each.sort();
        out.push_str(&raw("agent burst, sorted", &each));
        let mut each = bd.each.clone();
        each.sort();
        out.push_str(&raw("direct burst, sorted", &each));
        out.push_str("```\n");
        out
    }
}

impl ThroughCp {
    fn report(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "\n## end to end: RunTask -> RUNNING in DescribeTasks (polled every 5 ms), \
             sequential, network none\n"
        );
        out.push_str(STATS_HEADER);
        out.push_str(&stats_row("RunTask -> RUNNING", &self.e2e));
        out.push_str(&stats_row("of which the RunTask call", &self.run_task));
        let _ = writeln!(out, "\n## agent memory\n");
        let _ = writeln!(
            out,
            "| when | RSS KiB | PSS KiB | RssAnon KiB | RssFile KiB |\n|---|---|---|---|---|"
        );
        for (when, m) in [
            ("idle after registration".to_owned(), self.idle),
            (format!("{} tasks running", self.tasks), self.loaded),
        ] {
            let _ = writeln!(
                out,
                "| {when} | {} | {} | {} | {} |",
                m.rss_kib, m.pss_kib, m.anon_kib, m.file_kib
            );
        }
        let _ = writeln!(
            out,
            "\nfor context, the {} log processes the shims run for these containers (the \
             berth-logger binary): PSS {} KiB in all, {:.0} KiB each",
            self.loggers.processes,
            self.loggers.pss_kib,
            self.loggers.pss_kib as f64 / self.loggers.processes.max(1) as f64
        );
        let c = &self.cpu;
        let pct = |ticks: u64| ticks as f64 / c.hz as f64 / c.secs * 100.0;
        let _ = writeln!(
            out,
            "\n## agent CPU, {} tasks running, no health checks, {:.1} s\n",
            self.tasks, c.secs
        );
        let _ = writeln!(
            out,
            "agent: {} ticks of 1/{} s = {:.3} % of a core",
            c.agent_ticks,
            c.hz,
            pct(c.agent_ticks)
        );
        if let Some(t) = c.containerd_ticks {
            let _ = writeln!(
                out,
                "containerd (context): {t} ticks = {:.3} % of a core",
                pct(t)
            );
        }
        out.push_str("\n### raw\n\n```\n");
        out.push_str(&raw("RunTask -> RUNNING", &self.e2e));
        out.push_str(&raw("RunTask call", &self.run_task));
        out.push_str("```\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
        assert!(percentile(&[], 50.0).is_nan());
    }

    #[test]
    fn bad_options_are_refused() {
        let args = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
        assert!(parse(&args("--tasks 0")).is_err());
        assert!(parse(&args("--tasks")).is_err());
        assert!(parse(&args("--nope 3")).is_err());
        let o = parse(&args("--tasks 10 --cpu-secs 5")).unwrap();
        assert_eq!((o.tasks, o.cpu_secs, o.burst), (10, 5, 100));
    }
}
