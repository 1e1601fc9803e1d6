//! `berth-bench placement` (issue #18): the pure placement engine's time to place a batch of
//! `--tasks N` (100) copies on `--instances N` (1000) instances in 10 zones, each instance
//! already running 5 tasks, `--rounds N` (20) times per strategy set: the service default
//! (spread over zones, then instances), binpack on memory, random, and the service default
//! with a memberOf constraint and distinctInstance. No I/O: what is timed is
//! `scheduler::placement::place` over candidates built beforehand.

use std::collections::HashMap;
use std::time::Instant;

use anyhow::{bail, ensure, Result};
use berth_cp::domain::placement::{ConstraintSpec, Placement, StrategySpec};
use berth_cp::domain::taskdef::Needs;
use berth_cp::scheduler::placement::{place, Candidate, Request};

pub struct Options {
    instances: usize,
    tasks: usize,
    rounds: usize,
}

pub fn parse(args: &[String]) -> Result<Options> {
    let mut o = Options {
        instances: 1000,
        tasks: 100,
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
            "--instances" => o.instances = value()?,
            "--tasks" => o.tasks = value()?,
            "--rounds" => o.rounds = value()?,
            other => bail!("unknown option {other}"),
        }
    }
    ensure!(
        o.instances > 0 && o.tasks > 0 && o.rounds > 0,
        "every count must be at least 1"
    );
    Ok(o)
}

fn candidates(n: usize) -> Vec<Candidate> {
    (0..n)
        .map(|i| Candidate {
            instance_id: format!("{i:032x}"),
            instance_arn: format!(
                "arn:aws:ecs:us-east-1:000000000000:container-instance/c/{i:032x}"
            ),
            connected: true,
            active: true,
            network_modes: vec![
                "bridge".into(),
                "host".into(),
                "none".into(),
                "awsvpc".into(),
            ],
            registered: Needs {
                cpu: 8192,
                memory: 32768,
            },
            used: Needs {
                cpu: 5 * 256,
                memory: 5 * 512,
            },
            used_ports: Vec::new(),
            attributes: vec![
                ("ecs.availability-zone".into(), format!("zone-{}", i % 10)),
                ("ecs.instance-type".into(), "external".into()),
                ("tier".into(), if i % 2 == 0 { "a" } else { "b" }.into()),
            ],
            agent_version: "0.1.0".into(),
            registered_at_ms: 1_700_000_000_000,
            groups: HashMap::from([(format!("service:s{}", i % 50), 5)]),
            running_tasks: 5,
        })
        .collect()
}

pub async fn run(o: Options) -> Result<()> {
    let cands = candidates(o.instances);
    let spec = |kind: &str, field: &str| StrategySpec {
        kind: kind.into(),
        field: Some(field.into()),
    };
    let sets: Vec<(&str, Placement)> = vec![
        ("service default", Placement::new(&[], &[], &[], true)?),
        (
            "binpack memory",
            Placement::new(&[spec("binpack", "memory")], &[], &[], false)?,
        ),
        ("random", Placement::new(&[], &[], &[], false)?),
        (
            "default+memberOf+distinct",
            Placement::new(
                &[],
                &[
                    ConstraintSpec {
                        kind: "memberOf".into(),
                        expression: Some(
                            "attribute:tier == a and not(task:group == service:s7)".into(),
                        ),
                    },
                    ConstraintSpec {
                        kind: "distinctInstance".into(),
                        expression: None,
                    },
                ],
                &[],
                true,
            )?,
        ),
    ];
    println!(
        "berth-bench placement: {} tasks on {} instances, {} rounds per strategy set",
        o.tasks, o.instances, o.rounds
    );
    for (name, placement) in &sets {
        let mut times = Vec::with_capacity(o.rounds);
        let mut placed = 0;
        for round in 0..o.rounds {
            let req = Request {
                needs: Needs {
                    cpu: 256,
                    memory: 512,
                },
                ports: &[],
                network_mode: "bridge",
                required_attributes: &[],
                count: o.tasks,
                group: "service:bench",
                task_definition_arn: "arn:aws:ecs:us-east-1:000000000000:task-definition/bench:1",
                placement,
                seed: round as u64,
            };
            let started = Instant::now();
            let out = place(&req, &cands);
            times.push(started.elapsed().as_secs_f64() * 1000.0);
            placed = out.iter().filter(|r| r.is_ok()).count();
        }
        ensure!(
            placed == o.tasks,
            "{name}: only {placed} of {} placed",
            o.tasks
        );
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        println!(
            "{name:>26}: median {median:.2} ms per batch (min {:.2}, max {:.2}); raw ms: {}",
            times[0],
            times[times.len() - 1],
            times
                .iter()
                .map(|t| format!("{t:.2}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    Ok(())
}
