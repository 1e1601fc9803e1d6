//! Acceptance tests of issue #4: what ECS promises about resources holds on a Berth host. The
//! tests read the cgroup files of running containers and of their task cgroup and compare EXACT
//! values, on cgroup v1 or v2 (detected at run time, so the same tests pass in a v2 guest).
//! Each env's agent uses a cgroup root of its own (`/berth-e2e-<id>`), removed with the env.

use anyhow::{ensure, Context, Result};
use berth_e2e::{
    cgroup_exists, cgroup_v2, container, read_cgroup, register_and_run, stop_and_wait, task_id,
    timeout, wait_running, wait_stopped, wait_until, TestEnv, TEST_IMAGE,
};
use serde_json::{json, Value};

const MIB: u64 = 1024 * 1024;
/// cgroup v1's "no limit" for memory files: LONG_MAX rounded down to a page.
const V1_UNLIMITED: &str = "9223372036854771712";
const OOM_REASON: &str = "OutOfMemoryError: Container killed due to memory usage";

fn sleeper(name: &str, extra: Value) -> Value {
    let mut c = json!({
        "name": name,
        "image": TEST_IMAGE,
        "essential": true,
        "command": ["sleep", "600"],
        "stopTimeout": 1
    });
    for (k, v) in extra.as_object().into_iter().flatten() {
        c[k] = v.clone();
    }
    c
}

fn bytes(mib: u64) -> String {
    (mib * MIB).to_string()
}

/// The hard and soft memory files of this host's cgroup version.
fn memory_files() -> (&'static str, &'static str) {
    if cgroup_v2() {
        ("memory.max", "memory.low")
    } else {
        ("memory.limit_in_bytes", "memory.soft_limit_in_bytes")
    }
}

#[tokio::test]
async fn cpu_shares_and_memory_limits_reach_container_cgroups() -> Result<()> {
    let env = TestEnv::with_agent("res-containers").await?;
    let v2 = cgroup_v2();
    // (name, cpu, shares after clamping, our v2 weight)
    let mut cpus = vec![
        ("cpu0", 0, 2, 1),
        ("cpu1", 1, 2, 1),
        ("cpu256", 256, 256, 25),
        ("cpu1024", 1024, 1024, 100),
    ];
    // 4096 units need four CPUs: placement (rightly) refuses it on a smaller host, where
    // agent/tests/containerd_cgroups.rs still checks its shares through the runtime.
    let cores = nix::unistd::sysconf(nix::unistd::SysconfVar::_NPROCESSORS_ONLN)
        .ok()
        .flatten()
        .unwrap_or(1);
    if cores >= 6 {
        cpus.push(("cpu4096", 4096, 4096, 400));
    } else {
        eprintln!("{cores} CPUs: the 4096-unit container is left out");
    }
    let mut containers: Vec<Value> = cpus
        .iter()
        .map(|(name, cpu, _, _)| sleeper(name, json!({"cpu": cpu, "memory": 16})))
        .collect();
    containers.push(sleeper("memonly", json!({"memory": 64})));
    containers.push(sleeper("resonly", json!({"memoryReservation": 32})));
    containers.push(sleeper(
        "both",
        json!({"memory": 128, "memoryReservation": 48}),
    ));
    let task = register_and_run(
        &env,
        json!({
            "family": format!("res-containers-{}", env.id),
            "networkMode": "none",
            "containerDefinitions": containers,
        }),
    )
    .await?;
    wait_running(&env, &task).await?;
    let task_cg = format!("{}/{}", env.cgroup_root(), task_id(&task));
    let cg = |name: &str| format!("{task_cg}/{}-{name}", task_id(&task));
    for &(name, _, shares, weight) in &cpus {
        if v2 {
            let got = read_cgroup("cpu", &cg(name), "cpu.weight")?;
            ensure!(
                got == weight.to_string(),
                "{name}: cpu.weight {got}, want {weight}"
            );
        } else {
            let got = read_cgroup("cpu", &cg(name), "cpu.shares")?;
            ensure!(
                got == shares.to_string(),
                "{name}: cpu.shares {got}, want {shares}"
            );
        }
    }
    let (hard, soft) = memory_files();
    let unlimited = if v2 { "max" } else { V1_UNLIMITED };
    let no_soft = if v2 { "0" } else { V1_UNLIMITED };
    for (name, want_hard, want_soft) in [
        ("memonly", bytes(64), no_soft.to_owned()),
        ("resonly", unlimited.to_owned(), bytes(32)),
        ("both", bytes(128), bytes(48)),
    ] {
        let got = read_cgroup("memory", &cg(name), hard)?;
        ensure!(got == want_hard, "{name}: {hard} {got}, want {want_hard}");
        let got = read_cgroup("memory", &cg(name), soft)?;
        ensure!(got == want_soft, "{name}: {soft} {got}, want {want_soft}");
    }
    // Without task-level cpu, the task cgroup's share is its containers' sum.
    let sum: u64 = cpus.iter().map(|c| c.2).sum::<u64>() + 3 * 2;
    if !v2 {
        let got = read_cgroup("cpu", &task_cg, "cpu.shares")?;
        ensure!(got == sum.to_string(), "task cpu.shares {got}, want {sum}");
        let got = read_cgroup("cpu", &task_cg, "cpu.cfs_quota_us")?;
        ensure!(got == "-1", "task cpu.cfs_quota_us {got}, want -1");
    } else {
        let got = read_cgroup("cpu", &task_cg, "cpu.max")?;
        ensure!(got == "max 100000", "task cpu.max {got}");
    }
    stop_and_wait(&env, &task).await?;
    wait_until("the task cgroup to be removed", timeout(60), || {
        let gone = !cgroup_exists(&task_cg);
        async move { Ok(gone.then_some(())) }
    })
    .await?;
    env.pass();
    Ok(())
}

#[tokio::test]
async fn task_level_cpu_memory_and_pids_limit_the_task_cgroup() -> Result<()> {
    let mut env = TestEnv::new("res-task")?;
    env.set_agent_pids_limit(Some(100));
    env.start_cp().await?;
    let code = env.create_activation(1)?;
    env.start_agent(Some(&code))?;
    env.wait_agent_connected().await?;
    let task = register_and_run(
        &env,
        json!({
            "family": format!("res-task-{}", env.id),
            "networkMode": "host",
            "cpu": "512",
            "memory": "256",
            "containerDefinitions": [sleeper("app", json!({}))],
        }),
    )
    .await?;
    wait_running(&env, &task).await?;
    let task_cg = format!("{}/{}", env.cgroup_root(), task_id(&task));
    if cgroup_v2() {
        let got = read_cgroup("cpu", &task_cg, "cpu.max")?;
        ensure!(got == "50000 100000", "cpu.max {got}");
    } else {
        let got = read_cgroup("cpu", &task_cg, "cpu.cfs_quota_us")?;
        ensure!(got == "50000", "cpu.cfs_quota_us {got}");
        let got = read_cgroup("cpu", &task_cg, "cpu.cfs_period_us")?;
        ensure!(got == "100000", "cpu.cfs_period_us {got}");
    }
    let (hard, _) = memory_files();
    let got = read_cgroup("memory", &task_cg, hard)?;
    ensure!(got == bytes(256), "task {hard} {got}");
    let got = read_cgroup("pids", &task_cg, "pids.max")?;
    ensure!(got == "100", "task pids.max {got}");
    // The container itself is below the task cgroup.
    let app = format!("{task_cg}/{}-app", task_id(&task));
    let got = read_cgroup("pids", &app, "cgroup.procs")?;
    ensure!(!got.is_empty(), "no process in {app}");
    stop_and_wait(&env, &task).await?;
    env.pass();
    Ok(())
}

#[tokio::test]
async fn an_oom_killed_container_is_reported_with_ecs_reason() -> Result<()> {
    let env = TestEnv::with_agent("res-oom").await?;
    let task = register_and_run(
        &env,
        json!({
            "family": format!("res-oom-{}", env.id),
            "networkMode": "none",
            "containerDefinitions": [{
                "name": "hog",
                "image": TEST_IMAGE,
                "essential": true,
                "memory": 32,
                "command": ["sh", "-c", "dd if=/dev/zero of=/dev/null bs=64M count=1"],
            }],
        }),
    )
    .await?;
    let stopped = wait_stopped(&env, &task).await?;
    let hog = container(&stopped, "hog").context("no container hog")?;
    ensure!(hog["exitCode"] == 137, "exit code: {hog}");
    ensure!(hog["reason"] == OOM_REASON, "reason: {hog}");
    env.pass();
    Ok(())
}
