//! berth-bench: measurements of berth-agent and berth-cp against the host's containerd, through
//! the end-to-end harness (`TestEnv`: its own namespace, cluster, ports and temp dir, all removed
//! afterwards). Needs what the e2e tests need: root, containerd, busybox-static.
//!
//! ```sh
//! cargo run --release -p berth-e2e --bin berth-bench -- health
//! cargo run --release -p berth-e2e --bin berth-bench -- soak
//! cargo run --release -p berth-e2e --bin berth-bench -- pull
//! cargo run --release -p berth-e2e --bin berth-bench -- launch
//! cargo run --release -p berth-e2e --bin berth-bench -- scheduler
//! cargo run --release -p berth-e2e --bin berth-bench -- placement
//! cargo run --release -p berth-e2e --bin berth-bench -- services
//! ```
//!
//! `health` measures (i) how long a health status change takes from the end of the check that
//! decided it (berth.health.checkedAt, stamped by the agent) to berth-cp applying it
//! (berth.health.receivedAt) and to a client polling DescribeTasks every 100 ms seeing it, over
//! many HEALTHY/UNHEALTHY flips of containers that toggle /tmp/ok; and (ii) the agent's CPU
//! while 100 running containers are each checked every 5 s (`CMD true`), with containerd's and
//! the shims' for context. Any task that fails ends the run with an error and no figures.
//!
//! Options: `--flip-tasks N` (10), `--flips N` (60), `--cpu-containers N` (100, rounded up to
//! a multiple of 10), `--cpu-secs N` (60), `--baseline` (also measure the same containers without checks).
//!
//! `soak` (issue #7, `soak.rs`) runs `--cycles N` (1000) task cycles, `--batch N` (10) in
//! flight, across the four network modes, and samples the agent's RSS, PSS, open fds and
//! threads after the first 100 cycles and every 100 after that; it fails if any task did not
//! run and stop as expected or anything of the tasks is left afterwards.
//!
//! `pull` (issue #8, `pull.rs`) pulls a ~100 MB multi-layer image from a registry on loopback,
//! `--rounds N` (5) times each with Berth and with `ctr images pull --plain-http`.
//!
//! `launch` (issue #9, `launch.rs`) times task launches against the same containers launched
//! by a direct containerd client (`direct.rs`), sequentially, per network mode and in a burst,
//! with the agent talking to a minimal control plane in this process (`probe_cp.rs`); then
//! RunTask -> RUNNING through berth-cp, and the agent's memory idle and with 100 tasks, and
//! its CPU with them running.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use berth_e2e::procstat::{clock_ticks_per_sec, cmdline, cpu_ticks, find_processes, CpuTicks};
use berth_e2e::{
    berth_health, container_health, epoch_secs, health_check, now_epoch_secs, register, run_task,
    task_arn, wait_until, TestEnv, TEST_IMAGE,
};
use serde_json::{json, Value};

#[path = "berth-bench/direct.rs"]
mod direct;
#[path = "berth-bench/launch.rs"]
mod launch;
#[path = "berth-bench/placement.rs"]
mod placement;
#[path = "berth-bench/probe_cp.rs"]
mod probe_cp;
#[path = "berth-bench/pull.rs"]
mod pull;
#[path = "berth-bench/scheduler.rs"]
mod scheduler;
#[path = "berth-bench/services.rs"]
mod services;
#[path = "berth-bench/soak.rs"]
mod soak;

const USAGE: &str = "usage: berth-bench health [--flip-tasks N] [--flips N] \
                     [--cpu-containers N] [--cpu-secs N] [--baseline] | berth-bench soak \
                     [--cycles N] [--batch N] | berth-bench pull [--rounds N] | berth-bench \
                     launch [--tasks N] [--per-mode N] [--burst N] [--e2e N] [--cpu-secs N] \
                     [--warmup N] | berth-bench scheduler [--services N] [--tasks N] \
                     [--rounds N] | berth-bench services [--tasks N] [--rounds N] | \
                     berth-bench placement [--instances N] [--tasks N] [--rounds N]";

/// Containers per task in the CPU part.
const PER_TASK: usize = 10;

struct Options {
    flip_tasks: usize,
    flips: usize,
    cpu_containers: usize,
    cpu_secs: u64,
    baseline: bool,
}

fn parse(args: &[String]) -> Result<Options> {
    let mut o = Options {
        flip_tasks: 10,
        flips: 60,
        cpu_containers: 100,
        cpu_secs: 60,
        baseline: false,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| -> Result<u64> {
            it.next()
                .and_then(|v| v.parse().ok())
                .with_context(|| format!("{name} needs a number; {USAGE}"))
        };
        match arg.as_str() {
            "--flip-tasks" => o.flip_tasks = value(arg)? as usize,
            "--flips" => o.flips = value(arg)? as usize,
            "--cpu-containers" => o.cpu_containers = value(arg)? as usize,
            "--cpu-secs" => o.cpu_secs = value(arg)?,
            "--baseline" => o.baseline = true,
            _ => bail!("unknown argument {arg:?}; {USAGE}"),
        }
    }
    ensure!(o.flip_tasks >= 1 && o.flips >= 1, "{USAGE}");
    ensure!(o.cpu_containers >= 1, "{USAGE}");
    // Whole tasks of PER_TASK containers.
    o.cpu_containers = o.cpu_containers.div_ceil(PER_TASK) * PER_TASK;
    ensure!(o.cpu_secs >= 1, "{USAGE}");
    Ok(o)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    enum Bench {
        Health(Options),
        Soak(soak::Options),
        Pull(pull::Options),
        Launch(launch::Options),
        Scheduler(scheduler::Options),
        Placement(placement::Options),
        Services(services::Options),
    }
    let bench = match args.first().map(String::as_str) {
        Some("health") => Bench::Health(parse(&args[1..])?),
        Some("soak") => Bench::Soak(soak::parse(&args[1..])?),
        Some("pull") => Bench::Pull(pull::parse(&args[1..])?),
        Some("launch") => Bench::Launch(launch::parse(&args[1..])?),
        Some("scheduler") => Bench::Scheduler(scheduler::parse(&args[1..])?),
        Some("placement") => Bench::Placement(placement::parse(&args[1..])?),
        Some("services") => Bench::Services(services::parse(&args[1..])?),
        _ => bail!("{USAGE}"),
    };
    // The processes log at `info`, as installed, unless BERTH_E2E_LOG says otherwise (the
    // tests' default adds debug logging, which costs CPU per check). Set before any thread
    // exists.
    if std::env::var_os("BERTH_E2E_LOG").is_none() {
        std::env::set_var("BERTH_E2E_LOG", "info");
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async {
            match bench {
                Bench::Health(o) => health(o).await,
                Bench::Soak(o) => soak::run(o).await,
                Bench::Pull(o) => pull::run(o).await,
                Bench::Launch(o) => launch::run(o).await,
                Bench::Scheduler(o) => scheduler::run(o).await,
                Bench::Placement(o) => placement::run(o).await,
                Bench::Services(o) => services::run(o).await,
            }
        })
}

/// The "total run time" line of a report.
fn run_time(started: Instant) -> String {
    format!("total run time: {:.0} s\n", started.elapsed().as_secs_f64())
}

/// Progress on stderr, with the seconds since the start.
fn progress(msg: std::fmt::Arguments<'_>) {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let start = START.get_or_init(Instant::now);
    eprintln!("[{:6.1} s] {msg}", start.elapsed().as_secs_f64());
}

async fn health(o: Options) -> Result<()> {
    let started = Instant::now();
    let flips = flip_delays(&o).await.context("health flips")?;
    let checked = agent_cpu(&o, true).await.context("agent CPU with checks")?;
    let baseline = if o.baseline {
        Some(
            agent_cpu(&o, false)
                .await
                .context("agent CPU without checks")?,
        )
    } else {
        None
    };
    // Everything succeeded: only now print figures.
    let mut out = String::new();
    writeln!(out, "# berth-bench health")?;
    writeln!(out, "{}", machine())?;
    writeln!(
        out,
        "options: --flip-tasks {} --flips {} --cpu-containers {} --cpu-secs {}{}",
        o.flip_tasks,
        o.flips,
        o.cpu_containers,
        o.cpu_secs,
        if o.baseline { " --baseline" } else { "" }
    )?;
    out.push_str(&run_time(started));
    out.push_str(&flips.report());
    out.push_str(&checked.report());
    if let Some(b) = &baseline {
        out.push_str(&b.report());
    }
    print!("{out}");
    Ok(())
}

// ------------------------------------------------------------------------------- (i) flips

/// One observed change of a container's health status.
struct Flip {
    task: usize,
    to: String,
    checked_at: f64,
    received_at: f64,
    seen_at: f64,
}

struct FlipReport {
    flips: Vec<Flip>,
    tasks: usize,
}

impl FlipReport {
    fn report(&self) -> String {
        let ms = |f: &dyn Fn(&Flip) -> f64| -> Vec<f64> {
            self.flips.iter().map(|x| f(x) * 1000.0).collect()
        };
        let applied = ms(&|f| f.received_at - f.checked_at);
        let seen = ms(&|f| f.seen_at - f.checked_at);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "\n## (i) health change delay: {} flips of {} containers (interval 5 s, retries 1, \
             /tmp/ok toggled every 7 s)",
            self.flips.len(),
            self.tasks
        );
        let _ = writeln!(
            out,
            "checkedAt -> receivedAt (berth-cp applied it), ms: {}",
            summary(&applied)
        );
        let _ = writeln!(
            out,
            "checkedAt -> first seen by DescribeTasks polled every 100 ms, ms: {}",
            summary(&seen)
        );
        let _ = writeln!(out, "raw (task, to, applied ms, seen ms):");
        for (i, f) in self.flips.iter().enumerate() {
            let _ = writeln!(
                out,
                "  {} {:<9} {:8.1} {:8.1}",
                f.task, f.to, applied[i], seen[i]
            );
        }
        out
    }
}

/// Runs `o.flip_tasks` tasks whose container toggles /tmp/ok every 7 s and is checked every
/// 5 s with retries 1, polls DescribeTasks for all of them every 100 ms, and records each
/// health change until `o.flips` were seen.
async fn flip_delays(o: &Options) -> Result<FlipReport> {
    let env = TestEnv::with_agent("bench-health-flips").await?;
    let api = env.api();
    let td = register(
        &api,
        json!({
            "family": format!("bench-flip-{}", env.id),
            "networkMode": "none",
            "containerDefinitions": [{
                "name": "flip",
                "image": TEST_IMAGE,
                "essential": true,
                "memory": 16,
                "stopTimeout": 2,
                "command": ["sleep", "3600"],
                "healthCheck": health_check(&["CMD-SHELL", "test -f /tmp/ok"], 5, 2, 1, 0),
            }],
        }),
    )
    .await?;
    let mut tasks = Vec::new();
    for i in 0..o.flip_tasks {
        // Staggered, so that the toggles of different containers do not line up.
        let script = format!(
            "sleep {}; while true; do touch /tmp/ok; sleep 7; rm -f /tmp/ok; sleep 7; done",
            i % 7
        );
        let overrides = json!({"overrides": {"containerOverrides": [
            {"name": "flip", "command": ["sh", "-c", script]}
        ]}});
        tasks.push(run_task(&env, &td, overrides).await?);
    }
    progress(format_args!(
        "(i) {} tasks started; collecting flips",
        tasks.len()
    ));

    let limit = Duration::from_secs(120 + (o.flips as u64 * 14 / o.flip_tasks as u64) * 3);
    let deadline = Instant::now() + limit;
    let mut last: HashMap<String, String> = HashMap::new();
    let mut flips = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while flips.len() < o.flips {
        tick.tick().await;
        let out = api
            .call(
                "DescribeTasks",
                json!({"cluster": env.cluster, "tasks": tasks}),
            )
            .await?;
        let seen_at = now_epoch_secs();
        let listed = out["tasks"].as_array().cloned().unwrap_or_default();
        ensure!(listed.len() == tasks.len(), "DescribeTasks: {out}");
        for t in &listed {
            ensure_alive(t)?;
            let arn = task_arn(t)?;
            let index = tasks.iter().position(|a| *a == arn).unwrap_or_default();
            let Some(status) = container_health(t, "flip") else {
                continue;
            };
            let previous = last.insert(arn, status.to_owned());
            // Only a change seen by an earlier poll is timed: the first look may be late.
            if previous.as_deref().is_none_or(|p| p == status) {
                continue;
            }
            let h = berth_health(t, "flip")
                .with_context(|| format!("{status} without berth.health: {t}"))?;
            ensure!(h["status"] == status, "berth.health disagrees: {t}");
            let stamp =
                |field: &str| epoch_secs(&h[field]).with_context(|| format!("no {field} in {h}"));
            flips.push(Flip {
                task: index,
                to: status.to_owned(),
                checked_at: stamp("checkedAt")?,
                received_at: stamp("receivedAt")?,
                seen_at,
            });
            progress(format_args!("(i) {} of {} flips", flips.len(), o.flips));
        }
        ensure!(
            Instant::now() < deadline,
            "only {} of {} flips after {limit:?}",
            flips.len(),
            o.flips
        );
    }
    stop_all(&env, &tasks).await?;
    env.pass();
    Ok(FlipReport {
        flips,
        tasks: tasks.len(),
    })
}

// ------------------------------------------------------------------------------- (ii) CPU

struct CpuReport {
    checks: bool,
    /// From the first RunTask until every container was RUNNING (and HEALTHY).
    ready_secs: f64,
    containers: usize,
    wall_secs: f64,
    ticks_per_sec: u64,
    agent: CpuTicks,
    containerd: Option<CpuTicks>,
    shims: CpuTicks,
    shim_count: usize,
}

impl CpuReport {
    fn report(&self) -> String {
        let pct = |ticks: u64| ticks as f64 / self.ticks_per_sec as f64 / self.wall_secs * 100.0;
        let mut out = String::new();
        let what = if self.checks {
            "each checked every 5 s (CMD true)"
        } else {
            "without health checks (baseline)"
        };
        let _ = writeln!(
            out,
            "\n## (ii) CPU over {:.1} s with {} running containers {what}",
            self.wall_secs, self.containers
        );
        let _ = writeln!(
            out,
            "all RUNNING{} {:.1} s after the first RunTask; measured from 10 s later",
            if self.checks { " and HEALTHY" } else { "" },
            self.ready_secs
        );
        let _ = writeln!(
            out,
            "clock ticks/s {}; % of one core = ticks / ticks-per-s / wall s * 100",
            self.ticks_per_sec
        );
        let _ = writeln!(
            out,
            "berth-agent utime+stime: {} ticks = {:.2} % of one core (waited-for children: {} \
             ticks)",
            self.agent.own,
            pct(self.agent.own),
            self.agent.children
        );
        match self.containerd {
            Some(c) => {
                let _ = writeln!(
                    out,
                    "containerd utime+stime: {} ticks = {:.2} % (children: {} ticks)",
                    c.own,
                    pct(c.own),
                    c.children
                );
            }
            None => {
                let _ = writeln!(out, "containerd: not found");
            }
        }
        let _ = writeln!(
            out,
            "{} shims of the namespace, utime+stime: {} ticks = {:.2} %; their waited-for \
             children (runc, the checks): {} ticks = {:.2} %",
            self.shim_count,
            self.shims.own,
            pct(self.shims.own),
            self.shims.children,
            pct(self.shims.children)
        );
        if self.checks {
            let expected = self.containers as f64 * self.wall_secs / 5.0;
            let _ = writeln!(
                out,
                "about {expected:.0} checks in the window: agent {:.3} ms CPU per check",
                self.agent.own as f64 / self.ticks_per_sec as f64 * 1000.0 / expected
            );
        }
        out
    }
}

/// Runs `o.cpu_containers` containers (tasks of 10), each checked every 5 s with `CMD true`
/// when `checks`, waits until all run (and are HEALTHY), and measures the agent's, containerd's
/// and the shims' CPU time over `o.cpu_secs`.
async fn agent_cpu(o: &Options, checks: bool) -> Result<CpuReport> {
    let name = if checks {
        "bench-health-cpu"
    } else {
        "bench-health-base"
    };
    let mut env = TestEnv::with_agent(name).await?;
    let api = env.api();
    let containers: Vec<Value> = (0..PER_TASK)
        .map(|i| {
            let mut c = json!({
                "name": format!("c{i}"),
                "image": TEST_IMAGE,
                "essential": true,
                "memory": 16,
                "stopTimeout": 2,
                "command": ["sleep", "3600"],
            });
            if checks {
                c["healthCheck"] = health_check(&["CMD", "true"], 5, 2, 1, 0);
            }
            c
        })
        .collect();
    let td = register(
        &api,
        json!({
            "family": format!("bench-cpu-{}", env.id),
            "networkMode": "none",
            "containerDefinitions": containers,
        }),
    )
    .await?;
    let mut tasks: Vec<String> = Vec::new();
    let wanted = o.cpu_containers / PER_TASK;
    let run_at = Instant::now();
    while tasks.len() < wanted {
        let count = (wanted - tasks.len()).min(10);
        let out = api
            .call(
                "RunTask",
                json!({"cluster": env.cluster, "taskDefinition": td, "count": count}),
            )
            .await?;
        ensure!(
            out["failures"].as_array().is_none_or(|f| f.is_empty()),
            "RunTask failures: {out}"
        );
        for t in out["tasks"].as_array().into_iter().flatten() {
            tasks.push(task_arn(t)?);
        }
    }
    let phase = if checks { "ii" } else { "ii, baseline" };
    progress(format_args!(
        "({phase}) {} containers in {} tasks started; waiting for them to run{}",
        o.cpu_containers,
        tasks.len(),
        if checks { " and be HEALTHY" } else { "" }
    ));
    wait_until(
        "every container RUNNING (and HEALTHY)",
        Duration::from_secs(300),
        || all_up(&env, &tasks, checks),
    )
    .await?;
    let ready_secs = run_at.elapsed().as_secs_f64();
    progress(format_args!("({phase}) all up; measuring"));
    // Let the first checks (at a random point of the first interval) settle.
    tokio::time::sleep(Duration::from_secs(10)).await;

    let agent_pid = env.agent(0).pid();
    let containerd_pid = find_processes(|comm, _| comm == "containerd")
        .first()
        .copied();
    let shim_marker = format!("-namespace {} ", env.namespace);
    let shim_pids = find_processes(|comm, cmd| {
        comm.starts_with("containerd-shim") && format!("{cmd} ").contains(&shim_marker)
    });
    ensure!(!shim_pids.is_empty(), "no shims of {} found", env.namespace);
    let shims = |pids: &[u32]| -> Result<CpuTicks> {
        pids.iter().try_fold(CpuTicks::default(), |sum, pid| {
            Ok(sum.plus(cpu_ticks(*pid).with_context(|| cmdline(*pid))?))
        })
    };
    let t0 = Instant::now();
    let agent0 = cpu_ticks(agent_pid)?;
    let containerd0 = containerd_pid.map(cpu_ticks).transpose()?;
    let shims0 = shims(&shim_pids)?;
    tokio::time::sleep(Duration::from_secs(o.cpu_secs)).await;
    let agent1 = cpu_ticks(agent_pid)?;
    let containerd1 = containerd_pid.map(cpu_ticks).transpose()?;
    let shims1 = shims(&shim_pids)?;
    let wall_secs = t0.elapsed().as_secs_f64();
    ensure!(
        env.agent(0).exited().is_none(),
        "berth-agent exited during the measurement"
    );
    // Still all running (and healthy): otherwise the figures would mean nothing.
    all_up(&env, &tasks, checks)
        .await?
        .context("not every container was still RUNNING (and HEALTHY) after the measurement")?;
    progress(format_args!("({phase}) measured; stopping the tasks"));
    stop_all(&env, &tasks).await?;
    env.pass();
    Ok(CpuReport {
        checks,
        ready_secs,
        containers: o.cpu_containers,
        wall_secs,
        ticks_per_sec: clock_ticks_per_sec(),
        agent: agent1.since(agent0),
        containerd: containerd1.zip(containerd0).map(|(b, a)| b.since(a)),
        shims: shims1.since(shims0),
        shim_count: shim_pids.len(),
    })
}

/// Some(()) once every task is RUNNING with every container RUNNING (and HEALTHY when
/// `healthy`); an error as soon as one stopped.
async fn all_up(env: &TestEnv, tasks: &[String], healthy: bool) -> Result<Option<()>> {
    let mut up = true;
    for chunk in tasks.chunks(100) {
        let out = env
            .api()
            .call(
                "DescribeTasks",
                json!({"cluster": env.cluster, "tasks": chunk}),
            )
            .await?;
        let listed = out["tasks"].as_array().cloned().unwrap_or_default();
        ensure!(listed.len() == chunk.len(), "DescribeTasks: {out}");
        for t in &listed {
            ensure_alive(t)?;
            up &= t["lastStatus"] == "RUNNING";
            for c in t["containers"].as_array().into_iter().flatten() {
                up &= c["lastStatus"] == "RUNNING";
                if healthy {
                    ensure!(
                        c["healthStatus"] != "UNHEALTHY",
                        "a `CMD true` check failed: {t}"
                    );
                    up &= c["healthStatus"] == "HEALTHY";
                }
            }
        }
    }
    Ok(up.then_some(()))
}

/// Fails for a task that stopped or is stopping: a benchmark run with a failed task has no
/// figures.
fn ensure_alive(t: &Value) -> Result<()> {
    ensure!(
        t["lastStatus"] != "STOPPED" && t["desiredStatus"] != "STOPPED",
        "a task failed: {t}"
    );
    Ok(())
}

/// Stops every task and waits until they are STOPPED and containerd holds no container.
async fn stop_all(env: &TestEnv, tasks: &[String]) -> Result<()> {
    let api = env.api();
    for task in tasks {
        api.call(
            "StopTask",
            json!({"cluster": env.cluster, "task": task, "reason": "benchmark done"}),
        )
        .await?;
    }
    wait_until("every task STOPPED", Duration::from_secs(300), || async {
        for chunk in tasks.chunks(100) {
            let out = api
                .call(
                    "DescribeTasks",
                    json!({"cluster": env.cluster, "tasks": chunk}),
                )
                .await?;
            let all_stopped = out["tasks"]
                .as_array()
                .into_iter()
                .flatten()
                .all(|t| t["lastStatus"] == "STOPPED");
            if !all_stopped {
                return Ok(None);
            }
        }
        Ok(Some(()))
    })
    .await?;
    wait_until(
        "containerd to hold no containers",
        Duration::from_secs(300),
        || async { Ok(env.containerd_containers()?.is_empty().then_some(())) },
    )
    .await
}

// ------------------------------------------------------------------------------- output

/// "median X, p99 Y, min, max" of `values` (nearest-rank percentiles).
fn summary(values: &[f64]) -> String {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = |p: f64| -> f64 {
        let n = v.len();
        let i = ((p / 100.0) * n as f64).ceil() as usize;
        v[i.clamp(1, n) - 1]
    };
    if v.is_empty() {
        return "no values".to_owned();
    }
    format!(
        "median {:.1}, p99 {:.1}, min {:.1}, max {:.1} (n = {})",
        rank(50.0),
        rank(99.0),
        v[0],
        v[v.len() - 1],
        v.len()
    )
}

/// nproc, memory, kernel and CPU model of this host.
fn machine() -> String {
    let nproc = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "unknown".to_owned());
    let cgroup = if berth_e2e::cgroup_v2() { "v2" } else { "v1" };
    format!(
        "machine: nproc {nproc}, memory {:.1} GiB, kernel {}, cpu {model}, cgroup {cgroup}",
        mem_kib as f64 / 1024.0 / 1024.0,
        kernel.trim()
    )
}
