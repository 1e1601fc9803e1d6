//! Every task definition in examples/ registers and runs on a real agent: the corpus is the
//! shapes AWS's documentation shows, so this is "your existing task definitions work here".

use std::path::PathBuf;

use anyhow::{bail, ensure, Context, Result};
use berth_e2e::{container, ctr, timeout, wait_until, EcsClient, TestEnv, TEST_IMAGE};
use serde_json::{json, Value};

/// The image name the examples use, as a user's definitions would.
const EXAMPLE_IMAGE: &str = "docker.io/library/busybox:latest";

#[derive(Clone, Copy, Debug, PartialEq)]
enum Outcome {
    /// Reaches RUNNING and stays there until stopped.
    Runs,
    /// Runs to completion: the essential container exits 0.
    Completes { essential: &'static str },
}

/// What each example does. A new example must be added here, so that it is tested.
const EXPECTED: &[(&str, Outcome)] = &[
    ("hello.json", Outcome::Runs),
    ("web-server-log-sidecar.json", Outcome::Runs),
    ("batch-job.json", Outcome::Completes { essential: "job" }),
    ("shared-task-volume.json", Outcome::Runs),
    ("depends-on-chain.json", Outcome::Runs),
    ("init-container.json", Outcome::Runs),
    ("restart-policy-worker.json", Outcome::Runs),
    ("hardened-service.json", Outcome::Runs),
    ("host-bind-mount.json", Outcome::Runs),
    ("migrated-from-aws.json", Outcome::Runs),
    (
        "scheduled-report.json",
        Outcome::Completes {
            essential: "report",
        },
    ),
    ("labelled-services.json", Outcome::Runs),
    ("web-bridge-ports.json", Outcome::Runs),
    ("awsvpc-app-and-sidecar.json", Outcome::Runs),
];

fn examples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

async fn status(api: &EcsClient, cluster: &str, arn: &str) -> Result<Value> {
    api.describe_task(cluster, arn).await
}

#[tokio::test]
async fn every_example_registers_and_runs() -> Result<()> {
    let mut files: Vec<String> = std::fs::read_dir(examples_dir())?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    files.sort();
    for f in &files {
        ensure!(
            EXPECTED.iter().any(|(n, _)| n == f),
            "examples/{f} is not listed in tests/tests/examples.rs EXPECTED"
        );
    }
    ensure!(files.len() >= 10, "the corpus needs at least 10 examples");

    let env = TestEnv::with_agent("examples").await?;
    ctr(
        &env.namespace,
        &["images", "tag", TEST_IMAGE, EXAMPLE_IMAGE],
    )
    .context("tagging the test image as the examples' image")?;
    let api = env.api();
    let cluster = env.cluster.clone();

    // Register and start them all at once: the agent runs them side by side.
    let mut started = Vec::new();
    for (file, outcome) in EXPECTED {
        let text = std::fs::read_to_string(examples_dir().join(file))?;
        let def: Value = serde_json::from_str(&text).with_context(|| file.to_string())?;
        let registered = api
            .call("RegisterTaskDefinition", def.clone())
            .await
            .with_context(|| format!("registering {file}"))?;
        let arn = registered["taskDefinition"]["taskDefinitionArn"]
            .as_str()
            .with_context(|| format!("{file}: {registered}"))?
            .to_owned();
        let run = api
            .call(
                "RunTask",
                json!({"cluster": cluster, "taskDefinition": arn, "startedBy": "examples-test"}),
            )
            .await
            .with_context(|| format!("running {file}"))?;
        let Some(task) = run["tasks"][0]["taskArn"].as_str() else {
            bail!("{file} was not placed: {run}");
        };
        started.push((*file, *outcome, task.to_owned()));
    }

    for (file, outcome, task) in &started {
        match outcome {
            Outcome::Runs => {
                let t = wait_until(&format!("{file} RUNNING"), timeout(120), || async {
                    let t = status(&api, &cluster, task).await?;
                    if t["lastStatus"] == "STOPPED" {
                        bail!("{file} stopped instead of running: {t}");
                    }
                    Ok((t["lastStatus"] == "RUNNING").then_some(t))
                })
                .await?;
                for c in t["containers"].as_array().into_iter().flatten() {
                    ensure!(c["runtimeId"].is_string(), "{file}: {c}");
                }
            }
            Outcome::Completes { essential } => {
                let t = wait_until(&format!("{file} STOPPED"), timeout(120), || async {
                    let t = status(&api, &cluster, task).await?;
                    Ok((t["lastStatus"] == "STOPPED").then_some(t))
                })
                .await?;
                let c = container(&t, essential).with_context(|| format!("{file}: {t}"))?;
                ensure!(c["exitCode"] == 0, "{file}: {essential} failed: {t}");
                ensure!(t["stopCode"] == "EssentialContainerExited", "{file}: {t}");
            }
        }
    }

    for (file, outcome, task) in &started {
        if *outcome == Outcome::Runs {
            api.call(
                "StopTask",
                json!({"cluster": cluster, "task": task, "reason": "examples test done"}),
            )
            .await
            .with_context(|| format!("stopping {file}"))?;
        }
    }
    for (file, _, task) in &started {
        let t = wait_until(&format!("{file} stopped"), timeout(120), || async {
            let t = status(&api, &cluster, task).await?;
            Ok((t["lastStatus"] == "STOPPED").then_some(t))
        })
        .await?;
        if t["stopCode"] == "UserInitiated" {
            ensure!(t["stoppedReason"] == "examples test done", "{file}: {t}");
        }
    }
    env.pass();
    Ok(())
}
