//! `berth-bench services` (issue #17): services through berth-cp and a real agent on the host's
//! containerd, next to what a user would do by hand on the same machine in the same run.
//!
//! Per round (`--rounds N`, 3), with `--tasks N` (30) tasks of a busybox `sleep` (network
//! `none`, image present, settle period 0 so that a RUNNING task counts as healthy at once):
//! - by hand: RunTask for each task (N calls, one task each), then DescribeTasks polled every
//!   50 ms until all are RUNNING; then every task stopped and gone from containerd;
//! - service: CreateService with desiredCount N, then DescribeServices polled every 50 ms until
//!   it is stable (one deployment, COMPLETED, runningCount N);
//! - rolling update: UpdateService to a new revision (minimumHealthyPercent 100,
//!   maximumPercent 200), until stable again with every task on the new revision; then the
//!   service is deleted with force and drained.
//!
//! Every round checks what it measures (counts, revisions); any failure ends the run with an
//! error and no figures.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use berth_e2e::{register, task_arn, timeout, wait_until, EcsClient, TestEnv, TEST_IMAGE};
use serde_json::{json, Value};

use super::{machine, progress, run_time};

const USAGE: &str = "usage: berth-bench services [--tasks N] [--rounds N]";
const POLL: Duration = Duration::from_millis(50);

pub struct Options {
    tasks: usize,
    rounds: usize,
}

pub fn parse(args: &[String]) -> Result<Options> {
    let mut o = Options {
        tasks: 30,
        rounds: 3,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || -> Result<usize> {
            it.next()
                .and_then(|v| v.parse().ok())
                .with_context(|| format!("{arg} needs a number; {USAGE}"))
        };
        match arg.as_str() {
            "--tasks" => o.tasks = value()?,
            "--rounds" => o.rounds = value()?,
            _ => bail!("unknown argument {arg:?}; {USAGE}"),
        }
    }
    ensure!(
        o.tasks >= 1 && o.rounds >= 1,
        "every count must be at least 1; {USAGE}"
    );
    Ok(o)
}

struct Round {
    by_hand: Duration,
    create: Duration,
    rolling: Duration,
}

pub async fn run(o: Options) -> Result<()> {
    let started = Instant::now();
    let mut env = TestEnv::new("bench-services")?;
    env.set_cp_service_settle_ms(0);
    env.start_cp().await?;
    let code = env.create_activation(1)?;
    env.start_agent(Some(&code))?;
    env.wait_agent_connected().await?;
    let api = env.api();
    let family = format!("bench-svc-{}", env.id);
    let definition = |seconds: u32| {
        json!({
            "family": family,
            "networkMode": "none",
            "containerDefinitions": [{
                "name": "app", "image": TEST_IMAGE, "memory": 16, "stopTimeout": 1,
                "command": ["sleep", seconds.to_string()]
            }]
        })
    };
    let mut rounds = Vec::new();
    for round in 0..o.rounds {
        // Two revisions per round: the service starts on the first, rolls to the second.
        let first = register(&api, definition(3600 + round as u32 * 2)).await?;
        let second = register(&api, definition(3601 + round as u32 * 2)).await?;
        let by_hand = by_hand(&env, &api, &first, o.tasks).await?;
        let (create, rolling) = service(&env, &api, round, &first, &second, o.tasks).await?;
        progress(format_args!(
            "services: round {}: by hand {:.0} ms, service {:.0} ms, rolling update {:.0} ms",
            round + 1,
            ms(by_hand),
            ms(create),
            ms(rolling)
        ));
        rounds.push(Round {
            by_hand,
            create,
            rolling,
        });
    }
    env.pass();

    let median = |f: fn(&Round) -> Duration| {
        let mut v: Vec<f64> = rounds.iter().map(|r| ms(f(r))).collect();
        v.sort_by(f64::total_cmp);
        (v[v.len() / 2], v)
    };
    let (hand, hand_raw) = median(|r| r.by_hand);
    let (create, create_raw) = median(|r| r.create);
    let (rolling, rolling_raw) = median(|r| r.rolling);
    let raw = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.0}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!(
        "berth-bench services: {} tasks, {} rounds; {}",
        o.tasks,
        o.rounds,
        machine()
    );
    println!(
        "  {} RunTask + all RUNNING:     median {hand:.0} ms (raw ms: {})",
        o.tasks,
        raw(&hand_raw)
    );
    println!(
        "  CreateService {} -> stable:    median {create:.0} ms (raw ms: {}); {:.2}x by hand",
        o.tasks,
        raw(&create_raw),
        create / hand
    );
    println!(
        "  rolling update of {} -> stable: median {rolling:.0} ms (raw ms: {})",
        o.tasks,
        raw(&rolling_raw)
    );
    print!("{}", run_time(started));
    Ok(())
}

/// N RunTask calls, then polls until every task is RUNNING; stops them all afterwards.
async fn by_hand(env: &TestEnv, api: &EcsClient, td: &str, n: usize) -> Result<Duration> {
    let started = Instant::now();
    let mut arns = Vec::new();
    for _ in 0..n {
        let out = api
            .call(
                "RunTask",
                json!({"cluster": env.cluster, "taskDefinition": td}),
            )
            .await
            .context("RunTask")?;
        arns.push(task_arn(&out["tasks"][0]).with_context(|| format!("RunTask: {out}"))?);
    }
    let deadline = Instant::now() + timeout(300);
    loop {
        let mut running = 0;
        for chunk in arns.chunks(100) {
            let d = api
                .call(
                    "DescribeTasks",
                    json!({"cluster": env.cluster, "tasks": chunk}),
                )
                .await?;
            for t in d["tasks"].as_array().context("tasks")? {
                match t["lastStatus"].as_str() {
                    Some("RUNNING") => running += 1,
                    Some("STOPPED") => bail!("a task stopped: {t}"),
                    _ => {}
                }
            }
        }
        if running == n {
            break;
        }
        ensure!(Instant::now() < deadline, "{running} of {n} RUNNING");
        tokio::time::sleep(POLL).await;
    }
    let took = started.elapsed();
    for arn in &arns {
        api.call(
            "StopTask",
            json!({"cluster": env.cluster, "task": arn, "reason": "benchmark round done"}),
        )
        .await?;
    }
    wait_gone(env).await?;
    Ok(took)
}

/// CreateService -> stable, then a rolling update -> stable; the service deleted afterwards.
async fn service(
    env: &TestEnv,
    api: &EcsClient,
    round: usize,
    first: &str,
    second: &str,
    n: usize,
) -> Result<(Duration, Duration)> {
    let name = format!("bench-{round}");
    let started = Instant::now();
    api.call(
        "CreateService",
        json!({"cluster": env.cluster, "serviceName": name, "taskDefinition": first,
               "desiredCount": n, "launchType": "EXTERNAL"}),
    )
    .await?;
    wait_stable(api, &env.cluster, &name, first).await?;
    let create = started.elapsed();

    let started = Instant::now();
    api.call(
        "UpdateService",
        json!({"cluster": env.cluster, "service": name, "taskDefinition": second}),
    )
    .await?;
    wait_stable(api, &env.cluster, &name, second).await?;
    let rolling = started.elapsed();

    api.call(
        "DeleteService",
        json!({"cluster": env.cluster, "service": name, "force": true}),
    )
    .await?;
    wait_until("the service to drain", timeout(300), || async {
        let s = describe(api, &env.cluster, &name).await?;
        Ok((s["status"] == "INACTIVE").then_some(()))
    })
    .await?;
    wait_gone(env).await?;
    Ok((create, rolling))
}

async fn describe(api: &EcsClient, cluster: &str, name: &str) -> Result<Value> {
    let d = api
        .call(
            "DescribeServices",
            json!({"cluster": cluster, "services": [name]}),
        )
        .await?;
    Ok(d["services"][0].clone())
}

/// Polls until the service has one COMPLETED deployment of `td` with every task running.
async fn wait_stable(api: &EcsClient, cluster: &str, name: &str, td: &str) -> Result<()> {
    let deadline = Instant::now() + timeout(300);
    loop {
        let s = describe(api, cluster, name).await?;
        let d = s["deployments"].as_array().context("deployments")?;
        if d.len() == 1
            && d[0]["rolloutState"] == "COMPLETED"
            && s["runningCount"] == s["desiredCount"]
            && s["taskDefinition"].as_str() == Some(td)
        {
            return Ok(());
        }
        ensure!(
            d.first().is_none_or(|p| p["rolloutState"] != "FAILED"),
            "the deployment failed: {s}"
        );
        ensure!(Instant::now() < deadline, "{name} not stable: {s}");
        tokio::time::sleep(POLL).await;
    }
}

async fn wait_gone(env: &TestEnv) -> Result<()> {
    wait_until("the round's containers to go", timeout(300), || async {
        Ok(env.containerd_containers()?.is_empty().then_some(()))
    })
    .await
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
