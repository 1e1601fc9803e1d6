//! Durability (#7): the agent killed at random moments while tasks launch and stop, and the
//! control plane away for two minutes while tasks exit and start. Afterwards every task's final
//! state is what its containers did, no task ran twice, every state change reached the control
//! plane exactly once and in order, and nothing leaked.
//!
//! Each container appends to a log on a host volume when it starts and when it ends (with the
//! code it exits with), so the tests know what really ran, independently of the agent.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use berth_e2e::{
    agent_db, check_event_history, container, leftovers, register, task_arn, task_events, task_id,
    task_main_pid, timeout, wait_running, wait_task, wait_until, EcsClient, TestEnv, TEST_IMAGE,
};
use serde_json::{json, Value};

const MODES: [&str; 4] = ["host", "none", "bridge", "awsvpc"];

/// A small deterministic generator: the seed is printed, so a failing run can be replayed.
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let seed = std::env::var("BERTH_CHAOS_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
            });
        eprintln!("chaos seed: {seed} (BERTH_CHAOS_SEED replays it)");
        Rng(seed | 1)
    }

    /// Uniform in [lo, hi).
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        lo + self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % (hi - lo).max(1)
    }
}

/// The container's script: it records its start, then either exits by itself with code 3
/// after `$LIFE` seconds or (LIFE 0) runs until SIGTERM, which it records and exits 143 on.
const SCRIPT: &str = r#"echo "start $TAG" >> /runs/log
trap 'echo "end $TAG 143" >> /runs/log; exit 143' TERM
if [ "$LIFE" -gt 0 ]; then
  sleep "$LIFE"
  echo "end $TAG 3" >> /runs/log
  exit 3
fi
while true; do sleep 1; done"#;

fn app() -> Value {
    json!({
        "name": "app",
        "image": TEST_IMAGE,
        "essential": true,
        "memory": 16,
        "stopTimeout": 3,
        "entryPoint": ["sh", "-c"],
        "command": [SCRIPT],
        "mountPoints": [{"sourceVolume": "runs", "containerPath": "/runs"}],
    })
}

async fn define(env: &TestEnv, mode: &str, runs: &Path) -> Result<String> {
    register(
        &env.api(),
        json!({
            "family": format!("chaos-{mode}-{}", env.id),
            "networkMode": mode,
            "containerDefinitions": [app()],
            "volumes": [{"name": "runs", "host": {"sourcePath": runs.display().to_string()}}],
        }),
    )
    .await
}

fn runs_dir(env: &TestEnv) -> Result<PathBuf> {
    let dir = env.dir().join("runs");
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// A test env with berth-cp and one connected agent (`configure` runs before they start), and
/// the host dir the containers record their runs in.
async fn started(name: &str, configure: impl FnOnce(&mut TestEnv)) -> Result<(TestEnv, PathBuf)> {
    let mut env = TestEnv::new(name)?;
    configure(&mut env);
    env.start_cp().await?;
    let code = env.create_activation(1)?;
    env.start_agent(Some(&code))?;
    env.wait_agent_connected().await?;
    let runs = runs_dir(&env)?;
    Ok((env, runs))
}

/// What the containers recorded: starts per tag, and the exit code each one recorded.
#[derive(Debug, Default)]
struct Runs {
    starts: HashMap<String, usize>,
    ends: HashMap<String, Vec<i64>>,
}

fn read_runs(dir: &Path) -> Result<Runs> {
    let text = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
    let mut runs = Runs::default();
    for line in text.lines() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        match parts.as_slice() {
            ["start", tag] => *runs.starts.entry(tag.to_string()).or_default() += 1,
            ["end", tag, code] => runs
                .ends
                .entry(tag.to_string())
                .or_default()
                .push(code.parse().context("exit code in the runs log")?),
            _ => bail!("unexpected line in the runs log: {line:?}"),
        }
    }
    Ok(runs)
}

async fn run_tagged(
    api: &EcsClient,
    cluster: &str,
    td: &str,
    tag: &str,
    life: u64,
    mode: &str,
) -> Result<String> {
    let mut request = json!({
        "cluster": cluster,
        "taskDefinition": td,
        "overrides": {"containerOverrides": [{"name": "app", "environment": [
            {"name": "TAG", "value": tag},
            {"name": "LIFE", "value": life.to_string()},
        ]}]},
    });
    if mode == "awsvpc" {
        request["networkConfiguration"] = json!({"awsvpcConfiguration": {"subnets": []}});
    }
    // berth-cp places a task only on an instance whose agent is connected (it never queues
    // one): while the agent restarts, a user retries, and so does this.
    let deadline = Instant::now() + timeout(60);
    loop {
        let out = api
            .call("RunTask", request.clone())
            .await
            .context("RunTask")?;
        let failures = out["failures"].as_array().cloned().unwrap_or_default();
        if failures.is_empty() {
            return task_arn(&out["tasks"][0]);
        }
        let agent_away = failures.iter().all(|f| f["reason"] == "AGENT");
        ensure!(
            agent_away && Instant::now() < deadline,
            "RunTask failures: {out}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn stop(api: &EcsClient, cluster: &str, task: &str) -> Result<()> {
    api.call(
        "StopTask",
        json!({"cluster": cluster, "task": task, "reason": "chaos test"}),
    )
    .await
    .context("StopTask")?;
    Ok(())
}

async fn describe_all(api: &EcsClient, cluster: &str, arns: &[String]) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    for chunk in arns.chunks(100) {
        let resp = api
            .call("DescribeTasks", json!({"cluster": cluster, "tasks": chunk}))
            .await
            .context("DescribeTasks")?;
        out.extend(resp["tasks"].as_array().cloned().unwrap_or_default());
    }
    Ok(out)
}

async fn wait_all_stopped(api: &EcsClient, cluster: &str, arns: &[String]) -> Result<Vec<Value>> {
    wait_until("every task to be STOPPED", timeout(240), || async {
        let tasks = describe_all(api, cluster, arns).await?;
        let running: Vec<&str> = tasks
            .iter()
            .filter(|t| t["lastStatus"] != "STOPPED")
            .filter_map(|t| t["taskArn"].as_str())
            .collect();
        if tasks.len() == arns.len() && running.is_empty() {
            Ok(Some(tasks))
        } else {
            bail!(
                "{} of {} not STOPPED yet: {:?}",
                running.len(),
                arns.len(),
                &running[..running.len().min(5)]
            )
        }
    })
    .await
}

async fn wait_nothing_left(env: &TestEnv, ids: &[String]) -> Result<()> {
    wait_until("nothing left on the host", timeout(90), || async {
        let left = leftovers(env, ids)?;
        if left.is_empty() {
            Ok(Some(()))
        } else {
            bail!("left: {}", left.join("; "))
        }
    })
    .await
}

struct Launched {
    arn: String,
    tag: String,
    mode: &'static str,
    /// Exits by itself with 3; otherwise stopped with StopTask.
    exits_itself: bool,
}

/// The chaos test: 100 tasks launched over about 20 s across the four network modes, half of
/// them stopped through the API a few seconds after launch, while the agent is killed with
/// SIGKILL at random moments at least 20 times and restarted each time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_moments_loses_nothing_runs_nothing_twice_and_leaks_nothing() -> Result<()>
{
    const TASKS: usize = 100;
    const KILLS: usize = 20;
    let (mut env, runs) = started("chaos", |_| {}).await?;
    let mut tds = HashMap::new();
    for mode in MODES {
        tds.insert(mode, define(&env, mode, &runs).await?);
    }
    let api = env.api();
    let cluster = env.cluster.clone();
    let mut rng = Rng::new();
    let kill_delays: Vec<u64> = (0..KILLS).map(|_| rng.range(300, 1500)).collect();
    let down_times: Vec<u64> = (0..KILLS).map(|_| rng.range(0, 400)).collect();
    let lives: Vec<u64> = (0..TASKS).map(|_| rng.range(1, 4)).collect();
    let stop_after: Vec<u64> = (0..TASKS).map(|_| rng.range(500, 4000)).collect();
    let started = Instant::now();

    let launcher = async {
        let mut launched: Vec<Launched> = Vec::new();
        let mut due: Vec<(Instant, String)> = Vec::new();
        for i in 0..TASKS {
            let mode = MODES[i % MODES.len()];
            let exits_itself = i % 2 == 0;
            let tag = format!("t{i}");
            let life = if exits_itself { lives[i] } else { 0 };
            let arn = run_tagged(&api, &cluster, &tds[mode], &tag, life, mode)
                .await
                .with_context(|| format!("launching {tag} ({mode})"))?;
            if !exits_itself {
                due.push((
                    Instant::now() + Duration::from_millis(stop_after[i]),
                    arn.clone(),
                ));
            }
            launched.push(Launched {
                arn,
                tag,
                mode,
                exits_itself,
            });
            let now = Instant::now();
            for (_, arn) in due.iter().filter(|(at, _)| *at <= now) {
                stop(&api, &cluster, arn).await?;
            }
            due.retain(|(at, _)| *at > now);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        for (at, arn) in due {
            tokio::time::sleep_until(at.into()).await;
            stop(&api, &cluster, &arn).await?;
        }
        anyhow::Ok(launched)
    };
    let killer = async {
        for k in 0..KILLS {
            tokio::time::sleep(Duration::from_millis(kill_delays[k])).await;
            env.kill_agent(0).await?;
            tokio::time::sleep(Duration::from_millis(down_times[k])).await;
            env.restart_agent(0)?;
        }
        anyhow::Ok(KILLS)
    };
    let (launched, kills) = tokio::join!(launcher, killer);
    let (launched, kills) = (launched?, kills?);
    eprintln!(
        "{} tasks launched, agent killed {kills} times, in {:?}",
        launched.len(),
        started.elapsed()
    );
    ensure!(kills >= 20);

    let arns: Vec<String> = launched.iter().map(|l| l.arn.clone()).collect();
    let tasks = wait_all_stopped(&api, &cluster, &arns).await?;
    let by_arn: HashMap<String, &Value> = tasks
        .iter()
        .filter_map(|t| Some((t["taskArn"].as_str()?.to_owned(), t)))
        .collect();
    let recorded = read_runs(&runs)?;
    let mut problems = Vec::new();
    let mut never_started = 0;
    for l in &launched {
        let t = by_arn[&l.arn];
        let c = container(t, "app").with_context(|| format!("{}: no app container", l.tag))?;
        let starts = recorded.starts.get(&l.tag).copied().unwrap_or(0);
        let ends = recorded.ends.get(&l.tag).cloned().unwrap_or_default();
        let reported = c["exitCode"].as_i64();
        let stop_code = t["stopCode"].as_str().unwrap_or_default();
        if starts > 1 {
            problems.push(format!("{} ({}) ran {starts} times", l.tag, l.mode));
        }
        if ends.len() > 1 {
            problems.push(format!("{} ({}) ended {} times", l.tag, l.mode, ends.len()));
        }
        if l.exits_itself {
            // Nobody stops these: each must have run once and exited 3.
            if starts != 1 || ends != [3] || reported != Some(3) {
                problems.push(format!(
                    "{} ({}): starts {starts}, recorded ends {ends:?}, reported exit {reported:?}: {t}",
                    l.tag, l.mode
                ));
            }
            if stop_code != "EssentialContainerExited" {
                problems.push(format!(
                    "{} ({}): stop code {stop_code:?}: {t}",
                    l.tag, l.mode
                ));
            }
        } else {
            if stop_code != "UserInitiated" {
                problems.push(format!(
                    "{} ({}): stop code {stop_code:?}: {t}",
                    l.tag, l.mode
                ));
            }
            match (starts, ends.as_slice(), reported) {
                // Stopped before it started.
                (0, [], None) => never_started += 1,
                // SIGTERM, recorded by the container itself.
                (1, [143], Some(143)) => {}
                // Killed after the stop timeout, before its trap could record anything.
                (1, [], Some(137)) => {}
                other => problems.push(format!(
                    "{} ({}): (starts, recorded ends, reported exit) = {other:?}: {t}",
                    l.tag, l.mode
                )),
            }
        }
        // Every change reached the control plane exactly once, in order.
        match task_events(&env, &l.arn).await {
            Ok(events) => match check_event_history(&l.tag, &events, &["app"]) {
                Ok(stopped) => {
                    let applied = stopped["app"]["exitCode"].as_i64();
                    if applied != reported {
                        problems.push(format!(
                            "{}: the applied STOPPED change has exit {applied:?}, DescribeTasks {reported:?}",
                            l.tag
                        ));
                    }
                }
                Err(e) => problems.push(format!("{e:#}")),
            },
            Err(e) => problems.push(format!("{}: {e:#}", l.tag)),
        }
    }
    eprintln!(
        "{} tasks checked ({never_started} stopped before they started), {:?} since the first launch",
        launched.len(),
        started.elapsed()
    );
    ensure!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );

    let ids: Vec<String> = arns.iter().map(|a| task_id(a).to_owned()).collect();
    wait_nothing_left(&env, &ids).await?;
    env.pass();
    Ok(())
}

/// The outage test: berth-cp stopped for two minutes while tasks exit and start (a dependsOn
/// COMPLETE successor starts while it is away), and the agent itself restarted in the middle of
/// the outage. When berth-cp returns, DescribeTasks shows every change, in order, and the task
/// that ran throughout is the same process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_minute_control_plane_outage_loses_no_change() -> Result<()> {
    let (mut env, runs) = started("outage", |_| {}).await?;
    let api = env.api();
    let cluster = env.cluster.clone();

    let td = define(&env, "none", &runs).await?;
    let long = run_tagged(&api, &cluster, &td, "long", 0, "none").await?;
    let exits = run_tagged(&api, &cluster, &td, "exits", 20, "none").await?;
    let mut first = app();
    let mut second = app();
    for (c, name, tag, life, essential) in [
        (&mut first, "first", "first", "15", false),
        (&mut second, "second", "second", "0", true),
    ] {
        let o = c.as_object_mut().context("container definition")?;
        o.insert("name".into(), json!(name));
        o.insert("essential".into(), json!(essential));
        o.insert(
            "environment".into(),
            json!([{"name": "TAG", "value": tag}, {"name": "LIFE", "value": life}]),
        );
    }
    second["dependsOn"] = json!([{"containerName": "first", "condition": "COMPLETE"}]);
    let chain_td = register(
        &api,
        json!({
            "family": format!("outage-chain-{}", env.id),
            "networkMode": "none",
            "containerDefinitions": [first, second],
            "volumes": [{"name": "runs", "host": {"sourcePath": runs.display().to_string()}}],
        }),
    )
    .await?;
    let chain = berth_e2e::run_task(&env, &chain_td, Value::Null).await?;
    for t in [&long, &exits, &chain] {
        wait_running(&env, t).await?;
    }
    let long_pid = task_main_pid(&env.namespace, &runtime_id_of(&env, &long).await?)?;
    ensure!(long_pid.is_some(), "the long task has no process");

    let outage = Instant::now();
    env.stop_cp();
    // In the middle of the outage the agent restarts too: it must watch its tasks before it
    // can register again.
    tokio::time::sleep(Duration::from_secs(50)).await;
    env.kill_agent(0).await?;
    env.restart_agent(0)?;
    let rest = Duration::from_secs(120).saturating_sub(outage.elapsed());
    tokio::time::sleep(rest).await;
    let recorded = read_runs(&runs)?;
    ensure!(
        recorded.ends.get("exits") == Some(&vec![3])
            && recorded.ends.get("first") == Some(&vec![3])
            && recorded.starts.get("second") == Some(&1),
        "during the outage the exits and the start did not all happen: {recorded:?}"
    );
    env.start_cp().await?;
    eprintln!("berth-cp back after {:?}", outage.elapsed());
    env.wait_agent_connected().await?;

    let t = wait_task(&env, &exits, "the exited task STOPPED", 120, |t| {
        Ok(t["lastStatus"] == "STOPPED")
    })
    .await?;
    ensure!(berth_e2e::exit_code(&t, "app") == Some(3), "{t}");
    let c = wait_task(&env, &chain, "second RUNNING, first STOPPED", 120, |t| {
        Ok(
            container(t, "second").is_some_and(|c| c["lastStatus"] == "RUNNING")
                && container(t, "first").is_some_and(|c| c["lastStatus"] == "STOPPED"),
        )
    })
    .await?;
    ensure!(berth_e2e::exit_code(&c, "first") == Some(3), "{c}");
    let l = env.api().describe_task(&cluster, &long).await?;
    ensure!(l["lastStatus"] == "RUNNING", "the long task: {l}");
    ensure!(
        task_main_pid(&env.namespace, &runtime_id_of(&env, &long).await?)? == long_pid,
        "the long task's process changed"
    );

    // The changes arrived in order: first's exit before second's start, each once.
    let events = task_events(&env, &chain).await?;
    let position = |container: &str, status: &str| {
        events
            .iter()
            .position(|e| e["container"] == container && e["status"] == status)
    };
    let first_stopped = position("first", "STOPPED").context("first STOPPED not applied")?;
    let second_running = position("second", "RUNNING").context("second RUNNING not applied")?;
    ensure!(
        first_stopped < second_running,
        "second RUNNING applied before first STOPPED: {events:?}"
    );
    let exits_events = task_events(&env, &exits).await?;
    check_event_history("exits", &exits_events, &["app"])?;

    for t in [&long, &chain] {
        berth_e2e::stop_and_wait(&env, t).await?;
    }
    check_event_history("long", &task_events(&env, &long).await?, &["app"])?;
    check_event_history(
        "chain",
        &task_events(&env, &chain).await?,
        &["first", "second"],
    )?;
    let ids: Vec<String> = [&long, &exits, &chain]
        .iter()
        .map(|a| task_id(a).to_owned())
        .collect();
    wait_nothing_left(&env, &ids).await?;
    env.pass();
    Ok(())
}

/// The containerd id of the task's `app` container, from DescribeTasks' runtimeId.
async fn runtime_id_of(env: &TestEnv, task: &str) -> Result<String> {
    let t = env.api().describe_task(&env.cluster, task).await?;
    container(&t, "app")
        .and_then(|c| c["runtimeId"].as_str())
        .map(str::to_owned)
        .with_context(|| format!("no runtimeId for app in {t}"))
}

/// The stopped reason the agent's store holds for `task`, if any.
fn stored_stopped_reason(agent_data_dir: &Path, task: &str) -> Result<Option<String>> {
    let conn = agent_db(agent_data_dir)?;
    let reason: Option<Option<String>> = conn
        .query_row(
            "SELECT json_extract(state, '$.stopped_reason') FROM tasks WHERE arn = ?1",
            [task],
            |r| r.get(0),
        )
        .ok();
    Ok(reason.flatten())
}

/// Copies a directory tree (`cp -a`), replacing `to`.
fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    let _ = std::fs::remove_dir_all(to);
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .context("running cp")?;
    ensure!(
        status.success(),
        "cp -a {} {} failed",
        from.display(),
        to.display()
    );
    Ok(())
}

/// The task manifest makes both sides agree after either lost its state (restored from a
/// backup): a task the control plane no longer knows is stopped by the agent, and a task the
/// control plane placed that the agent never received is reported STOPPED, each after the
/// grace period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_task_manifest_reconciles_both_sides_after_a_restore() -> Result<()> {
    let (mut env, runs) = started("manifest", |env| {
        env.set_cp_manifest_interval_ms(500);
        env.set_manifest_grace_secs(2);
    })
    .await?;
    let api = env.api();
    let cluster = env.cluster.clone();
    let td = define(&env, "none", &runs).await?;
    let kept = run_tagged(&api, &cluster, &td, "kept", 0, "none").await?;
    wait_running(&env, &kept).await?;

    // 1. The control plane goes back to a backup taken before `forgotten` was placed.
    env.stop_cp();
    let cp_backup = env.dir().join("cp-backup");
    copy_dir(&env.cp_data_dir(), &cp_backup)?;
    env.start_cp().await?;
    env.wait_agent_connected().await?;
    let forgotten = run_tagged(&api, &cluster, &td, "forgotten", 0, "none").await?;
    wait_running(&env, &forgotten).await?;
    env.stop_cp();
    copy_dir(&cp_backup, &env.cp_data_dir())?;
    env.start_cp().await?;
    env.wait_agent_connected().await?;
    let data = env.agent_data_dir(0);
    wait_until(
        "the agent to stop the forgotten task",
        timeout(60),
        || async {
            let reason = stored_stopped_reason(&data, &forgotten)?;
            let gone = !env
                .containerd_containers()?
                .iter()
                .any(|c| c.starts_with(task_id(&forgotten)));
            Ok((gone && reason.as_deref().is_some_and(|r| r.contains("manifest"))).then_some(()))
        },
    )
    .await?;
    let runs_log = read_runs(&runs)?;
    ensure!(
        runs_log.ends.get("forgotten") == Some(&vec![143]),
        "the forgotten task was not stopped with SIGTERM: {runs_log:?}"
    );
    let k = env.api().describe_task(&cluster, &kept).await?;
    ensure!(k["lastStatus"] == "RUNNING", "the listed task: {k}");

    // 2. The agent goes back to a backup taken before `lost` was placed: it never received it.
    env.kill_agent(0).await?;
    let agent_backup = env.dir().join("agent-backup");
    copy_dir(&data, &agent_backup)?;
    env.restart_agent(0)?;
    env.wait_agent_connected().await?;
    let lost = run_tagged(&api, &cluster, &td, "lost", 0, "none").await?;
    wait_running(&env, &lost).await?;
    env.kill_agent(0).await?;
    copy_dir(&agent_backup, &data)?;
    env.restart_agent(0)?;
    let t = wait_task(&env, &lost, "the lost task reported STOPPED", 60, |t| {
        Ok(t["lastStatus"] == "STOPPED")
    })
    .await?;
    ensure!(
        t["stopCode"] == "TaskFailedToStart"
            && t["stoppedReason"]
                .as_str()
                .is_some_and(|r| r.contains("no record")),
        "{t}"
    );
    // Its container, which the restored agent knew nothing of, is gone too.
    wait_until(
        "the lost task's container to be removed",
        timeout(60),
        || async {
            Ok((!env
                .containerd_containers()?
                .iter()
                .any(|c| c.starts_with(task_id(&lost))))
            .then_some(()))
        },
    )
    .await?;
    // The task the control plane always knew kept running through all of it.
    let k = env.api().describe_task(&cluster, &kept).await?;
    ensure!(k["lastStatus"] == "RUNNING", "the listed task: {k}");
    ensure!(
        read_runs(&runs)?.starts.get("kept") == Some(&1),
        "the listed task ran more than once"
    );
    berth_e2e::stop_and_wait(&env, &kept).await?;
    let ids: Vec<String> = [&kept, &forgotten, &lost]
        .iter()
        .map(|a| task_id(a).to_owned())
        .collect();
    wait_nothing_left(&env, &ids).await?;
    env.pass();
    Ok(())
}

/// The reports the agent's store still holds for the control plane.
fn queued_reports(agent_data_dir: &Path) -> Result<i64> {
    let conn = agent_db(agent_data_dir)?;
    Ok(conn.query_row("SELECT COUNT(*) FROM outbox", [], |r| r.get(0))?)
}

/// SIGTERM while changes are being produced: the agent exits cleanly (0), after the control
/// plane acked what it had queued, and leaves its tasks running; the next agent carries on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_flushes_pending_changes_and_leaves_tasks_running() -> Result<()> {
    let (mut env, runs) = started("sigterm", |_| {}).await?;
    let api = env.api();
    let cluster = env.cluster.clone();
    let td = define(&env, "none", &runs).await?;
    let long = run_tagged(&api, &cluster, &td, "long", 0, "none").await?;
    wait_running(&env, &long).await?;
    let pid = task_main_pid(&env.namespace, &runtime_id_of(&env, &long).await?)?;
    // Ten tasks start at once, so the agent is busy launching when the signal comes.
    let mut burst = Vec::new();
    for i in 0..10 {
        burst.push(run_tagged(&api, &cluster, &td, &format!("b{i}"), 0, "none").await?);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let status = env.agent(0).stop(Duration::from_secs(20));
    ensure!(
        status.success(),
        "berth-agent exited with {status} on SIGTERM"
    );
    ensure!(
        queued_reports(&env.agent_data_dir(0))? == 0,
        "the agent left on SIGTERM with reports the control plane had not acked"
    );
    ensure!(
        task_main_pid(&env.namespace, &runtime_id_of(&env, &long).await?)? == pid,
        "the long task's process did not outlive the agent"
    );
    env.restart_agent(0)?;
    for t in burst.iter().chain([&long]) {
        wait_running(&env, t).await?;
    }
    for t in burst.iter().chain([&long]) {
        stop(&api, &cluster, t).await?;
    }
    let arns: Vec<String> = burst.iter().chain([&long]).cloned().collect();
    wait_all_stopped(&api, &cluster, &arns).await?;
    let recorded = read_runs(&runs)?;
    for i in 0..10 {
        ensure!(
            recorded.starts.get(&format!("b{i}")) == Some(&1),
            "b{i} did not run exactly once: {recorded:?}"
        );
    }
    for t in &arns {
        check_event_history(t, &task_events(&env, t).await?, &["app"])?;
    }
    let ids: Vec<String> = arns.iter().map(|a| task_id(a).to_owned()).collect();
    wait_nothing_left(&env, &ids).await?;
    env.pass();
    Ok(())
}
