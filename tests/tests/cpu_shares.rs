//! CPU acceptance tests of issue #4: ECS `cpu` units really divide CPU time on a Berth host.
//! Unlike tests/resources.rs, which compares the cgroup files with exact values, these run
//! spinning containers and measure the CPU time their task cgroups use over a window (v1
//! cpuacct.usage, v2 cpu.stat usage_usec), so they check what the kernel makes of the files.
//! They assert on ratios of CPU time within a window, never on wall-clock latency.
//!
//! Shares only divide a CPU that is contended: the two tasks of the shares test are pinned to
//! one CPU. A task definition cannot pin, so the test does, with sched_setaffinity on each
//! container's threads once the tasks run; unlike a cpuset written below the agent's tree (and,
//! on v2, `+cpuset` delegated from the root down), it leaves nothing behind: it dies with the
//! processes, on v1 and v2 alike.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use berth_e2e::{
    cgroup_exists, cgroup_threads, cgroup_v2, cpu_usage_ns, read_cgroup, register_and_run, task_id,
    timeout, wait_running, wait_until, TestEnv, TEST_IMAGE,
};
use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
use nix::unistd::Pid;
use serde_json::{json, Value};

/// Time for the scheduler to settle after pinning (PELT load averages take some 100 ms).
const SETTLE: Duration = Duration::from_secs(1);
/// The measurement window.
const WINDOW: Duration = Duration::from_secs(5);

/// StopTask, STOPPED, and the task cgroup gone.
async fn stop_and_wait(env: &TestEnv, task: &str) -> Result<()> {
    berth_e2e::stop_and_wait(env, task).await?;
    let cg = task_cgroup(env, task);
    wait_until("the task cgroup to be removed", timeout(60), || {
        let gone = !cgroup_exists(&cg);
        async move { Ok(gone.then_some(())) }
    })
    .await
}

fn task_cgroup(env: &TestEnv, task: &str) -> String {
    format!("{}/{}", env.cgroup_root(), task_id(task))
}

fn container_cgroup(env: &TestEnv, task: &str, name: &str) -> String {
    format!("{}/{}-{name}", task_cgroup(env, task), task_id(task))
}

/// A busybox shell that spins on one CPU forever (`:` is a builtin: no forks).
fn spinner(name: &str, extra: Value) -> Value {
    let mut c = json!({
        "name": name,
        "image": TEST_IMAGE,
        "essential": true,
        "command": ["sh", "-c", "while :; do :; done"],
        "stopTimeout": 1
    });
    for (k, v) in extra.as_object().into_iter().flatten() {
        c[k] = v.clone();
    }
    c
}

/// The first CPU this process may run on (usually 0).
fn first_allowed_cpu() -> Result<usize> {
    let mine = sched_getaffinity(Pid::from_raw(0)).context("sched_getaffinity")?;
    (0..CpuSet::count())
        .find(|&c| mine.is_set(c).unwrap_or(false))
        .context("this process may run on no CPU")
}

/// Pins every thread of the container cgroup `cg` to `cpu`; returns how many there were.
async fn pin_container(cg: &str, cpu: usize) -> Result<usize> {
    let threads = wait_until(&format!("a process in {cg}"), timeout(30), || {
        let threads = cgroup_threads(cg);
        async move { Ok(threads.ok().filter(|t| !t.is_empty())) }
    })
    .await?;
    let mut set = CpuSet::new();
    set.set(cpu).context("CpuSet::set")?;
    for &tid in &threads {
        let pid = Pid::from_raw(tid);
        sched_setaffinity(pid, &set).with_context(|| format!("pinning thread {tid} of {cg}"))?;
        let got = sched_getaffinity(pid).with_context(|| format!("affinity of {tid}"))?;
        ensure!(
            (0..CpuSet::count()).all(|c| got.is_set(c).unwrap_or(false) == (c == cpu)),
            "thread {tid} of {cg} is not pinned to CPU {cpu} alone"
        );
    }
    Ok(threads.len())
}

/// The CPU time each cgroup uses over [`WINDOW`], and the window's real length.
async fn measure(cgroups: &[&str]) -> Result<(Vec<u64>, Duration)> {
    let read = || -> Result<Vec<u64>> { cgroups.iter().map(|cg| cpu_usage_ns(cg)).collect() };
    let (before, start) = (read()?, Instant::now());
    tokio::time::sleep(WINDOW).await;
    let (after, window) = (read()?, start.elapsed());
    let used = before
        .iter()
        .zip(&after)
        .map(|(b, a)| a.saturating_sub(*b))
        .collect();
    Ok((used, window))
}

/// How many CFS periods the cgroup was throttled in so far (cpu.stat, v1 and v2).
fn nr_throttled(cg: &str) -> Result<u64> {
    let stat = read_cgroup("cpu", cg, "cpu.stat")?;
    stat.lines()
        .find_map(|l| l.strip_prefix("nr_throttled ")?.trim().parse().ok())
        .with_context(|| format!("no nr_throttled in {cg}/cpu.stat: {stat:?}"))
}

#[tokio::test]
async fn cpu_units_divide_one_contended_cpu_by_their_shares() -> Result<()> {
    let env = TestEnv::with_agent("cpu-shares").await?;
    let mut tasks = Vec::new();
    for units in [256, 768] {
        let name = format!("spin{units}");
        let task = register_and_run(
            &env,
            json!({
                "family": format!("cpu-shares-{units}-{}", env.id),
                "networkMode": "none",
                "containerDefinitions": [spinner(&name, json!({"cpu": units, "memory": 32}))],
            }),
        )
        .await?;
        tasks.push((task, name));
    }
    for (task, _) in &tasks {
        wait_running(&env, task).await?;
    }
    let cpu = first_allowed_cpu()?;
    for (task, name) in &tasks {
        pin_container(&container_cgroup(&env, task, name), cpu).await?;
    }
    tokio::time::sleep(SETTLE).await;
    let (small, large) = (
        task_cgroup(&env, &tasks[0].0),
        task_cgroup(&env, &tasks[1].0),
    );
    let (used, window) = measure(&[&small, &large]).await?;
    let (a, b) = (used[0] as f64, used[1] as f64);
    let ratio = b / a.max(1.0);
    let cores = (a + b) / window.as_nanos() as f64;
    // What the kernel was told: the task cgroups' shares (v1) or weights (v2).
    let file = if cgroup_v2() {
        "cpu.weight"
    } else {
        "cpu.shares"
    };
    let weights = format!(
        "{file} {} vs {}",
        read_cgroup("cpu", &small, file)?,
        read_cgroup("cpu", &large, file)?
    );
    eprintln!(
        "cgroup {}: 256 units {:.3} s, 768 units {:.3} s of CPU {cpu} in {window:.2?} \
         ({cores:.2} cores in all): ratio {ratio:.3} (want 3 +-15 %), {weights}",
        if cgroup_v2() { "v2" } else { "v1" },
        a / 1e9,
        b / 1e9,
    );
    ensure!(
        (0.85 * 3.0..=1.15 * 3.0).contains(&ratio),
        "768 vs 256 cpu units used CPU time in the ratio {ratio:.3}, not 3 +-15 % \
         ({a} ns vs {b} ns over {window:?}, {weights}, {cores:.2} cores together: above ~1 \
         the pinning did not hold)"
    );
    for (task, _) in &tasks {
        stop_and_wait(&env, task).await?;
    }
    env.pass();
    Ok(())
}

#[tokio::test]
async fn task_level_cpu_caps_a_spinning_task_at_its_quota() -> Result<()> {
    let env = TestEnv::with_agent("cpu-quota").await?;
    let task = register_and_run(
        &env,
        json!({
            "family": format!("cpu-quota-{}", env.id),
            "networkMode": "none",
            "cpu": "512",
            "memory": "128",
            "containerDefinitions": [spinner("spin", json!({}))],
        }),
    )
    .await?;
    wait_running(&env, &task).await?;
    let cg = task_cgroup(&env, &task);
    wait_until("the spinner in its cgroup", timeout(30), || {
        let threads = cgroup_threads(&container_cgroup(&env, &task, "spin"));
        async move { Ok(threads.ok().filter(|t| !t.is_empty()).map(|_| ())) }
    })
    .await?;
    tokio::time::sleep(SETTLE).await;
    let throttled_before = nr_throttled(&cg)?;
    let (used, window) = measure(&[&cg]).await?;
    // Only a diagnostic: tells a quota that held from a task that other load starved.
    let throttled = nr_throttled(&cg)? - throttled_before;
    let share = used[0] as f64 / window.as_nanos() as f64;
    eprintln!(
        "cgroup {}: task cpu 512 used {:.3} s of CPU in {window:.2?}: {share:.3} of a core \
         (want 0.35..0.65), throttled in {throttled} periods",
        if cgroup_v2() { "v2" } else { "v1" },
        used[0] as f64 / 1e9,
    );
    ensure!(
        (0.35..=0.65).contains(&share),
        "a task with cpu 512 used {share:.3} of a core over {window:?}, not about half \
         (throttled in {throttled} of ~{} periods)",
        window.as_millis() / 100
    );
    stop_and_wait(&env, &task).await?;
    env.pass();
    Ok(())
}
