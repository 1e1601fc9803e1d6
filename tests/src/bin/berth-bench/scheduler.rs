//! `berth-bench scheduler` (issue #17): the pure service scheduler's time for a fleet's worth of
//! services — `--services N` (1000) services of `--tasks N` (10) tasks each, planned
//! `--rounds N` (20) times, in four states: steady (nothing to do), a rolling deployment half
//! way (old and new tasks, some healthy), a scale-up from nothing, and a scale-in by half over
//! spread keys (3 zones, 6 instances). No I/O: what is timed is
//! `scheduler::service::plan` over snapshots built beforehand.

use std::time::Instant;

use anyhow::{bail, ensure, Result};
use berth_cp::scheduler::service::{
    plan, Action, DeploymentConfiguration, DeploymentView, Rollout, ServiceView, TaskHealth,
    TaskView,
};

pub struct Options {
    services: usize,
    tasks: usize,
    rounds: usize,
}

pub fn parse(args: &[String]) -> Result<Options> {
    let mut o = Options {
        services: 1000,
        tasks: 10,
        rounds: 20,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || -> Result<usize> {
            let v = it
                .next()
                .ok_or_else(|| anyhow::anyhow!("{a} needs a number"))?;
            Ok(v.parse()?)
        };
        match a.as_str() {
            "--services" => o.services = value()?,
            "--tasks" => o.tasks = value()?,
            "--rounds" => o.rounds = value()?,
            other => bail!("unknown option {other}"),
        }
    }
    ensure!(
        o.services > 0 && o.tasks > 0 && o.rounds > 0,
        "every count must be at least 1"
    );
    Ok(o)
}

struct Snapshot {
    deployments: Vec<DeploymentView>,
    tasks: Vec<TaskView>,
}

fn task(service: usize, deployment: &str, i: usize, health: TaskHealth) -> TaskView {
    TaskView {
        id: format!("{service:04}-{deployment}-{i:03}"),
        deployment_id: deployment.to_string(),
        health,
        stopping: false,
        protected: false,
        draining: false,
        spread: Vec::new(),
    }
}

fn snapshots(o: &Options, state: &str) -> Vec<Snapshot> {
    (0..o.services)
        .map(|s| {
            let old = DeploymentView {
                id: "old".into(),
                rollout: Rollout::Completed,
                failed_tasks: 0,
            };
            let new = DeploymentView {
                id: "new".into(),
                rollout: Rollout::InProgress,
                failed_tasks: 1,
            };
            match state {
                "steady" => Snapshot {
                    deployments: vec![old],
                    tasks: (0..o.tasks)
                        .map(|i| task(s, "old", i, TaskHealth::Healthy))
                        .collect(),
                },
                "rolling" => {
                    let half = o.tasks / 2;
                    let mut tasks: Vec<TaskView> = (0..o.tasks)
                        .map(|i| task(s, "old", i, TaskHealth::Healthy))
                        .collect();
                    tasks.extend((0..half).map(|i| {
                        let h = if i % 2 == 0 {
                            TaskHealth::Healthy
                        } else {
                            TaskHealth::Starting
                        };
                        task(s, "new", i, h)
                    }));
                    Snapshot {
                        deployments: vec![new, old],
                        tasks,
                    }
                }
                // Twice the desired count, spread over 3 zones and 6 instances: the plan stops
                // half, each from where the service is most crowded.
                "scale-in" => Snapshot {
                    deployments: vec![old],
                    tasks: (0..2 * o.tasks)
                        .map(|i| {
                            let mut t = task(s, "old", i, TaskHealth::Healthy);
                            t.spread = vec![format!("zone-{}", i % 3), format!("i-{}", i % 6)];
                            t
                        })
                        .collect(),
                },
                _ => Snapshot {
                    deployments: vec![new],
                    tasks: Vec::new(),
                },
            }
        })
        .collect()
}

pub async fn run(o: Options) -> Result<()> {
    let config = DeploymentConfiguration {
        minimum_healthy_percent: 50,
        maximum_percent: 200,
        circuit_breaker: None,
    };
    println!(
        "berth-bench scheduler: {} services x {} tasks, {} rounds per state",
        o.services, o.tasks, o.rounds
    );
    for state in ["steady", "rolling", "scale-up", "scale-in"] {
        let snaps = snapshots(&o, state);
        let mut times = Vec::with_capacity(o.rounds);
        let mut actions = 0;
        for _ in 0..o.rounds {
            let started = Instant::now();
            actions = 0;
            for s in &snaps {
                let planned: Vec<Action> = plan(&ServiceView {
                    desired_count: o.tasks as u32,
                    config,
                    deployments: &s.deployments,
                    tasks: &s.tasks,
                });
                actions += planned.len();
            }
            times.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        // Sanity: each state asks for what it should.
        match state {
            "steady" => ensure!(actions == 0, "a steady fleet planned {actions} actions"),
            _ => ensure!(actions >= o.services, "{state}: only {actions} actions"),
        }
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        println!(
            "{state:>9}: median {median:.2} ms per pass over every service (min {:.2}, max {:.2}), {actions} actions; raw ms: {}",
            times[0],
            times[times.len() - 1],
            times.iter().map(|t| format!("{t:.2}")).collect::<Vec<_>>().join(" ")
        );
    }
    Ok(())
}
