//! Container logs (issue #3): whatever logDriver a definition names, the agent keeps the
//! container's output in local, rotated files, and `berthctl logs` (or berth-cp's
//! `/berth/v1/logs`) reads it back through the control plane.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use berth_e2e::{bin, register, run_task, timeout, wait_status, wait_until, TestEnv, TEST_IMAGE};
use serde_json::{json, Value};

/// berth-cp and one agent that keeps stopped tasks (and so their logs) for a while, with the
/// given log rotation limits if any.
async fn env_with(name: &str, log_limits: Option<(u64, u32)>) -> Result<TestEnv> {
    let mut env = TestEnv::new(name)?;
    env.set_task_cleanup_wait_secs(600);
    if let Some((size, files)) = log_limits {
        env.set_agent_log_limits(size, files);
    }
    env.start_cp().await?;
    let code = env.create_activation(1)?;
    env.start_agent(Some(&code))?;
    env.wait_agent_connected().await?;
    Ok(env)
}

/// Registers a one-container definition running `script` with busybox sh; returns the task's
/// ARN once it was started.
async fn run_script(env: &TestEnv, family: &str, script: &str) -> Result<String> {
    register(
        &env.api(),
        json!({
            "family": family,
            "networkMode": "none",
            "containerDefinitions": [{
                "name": "app",
                "image": TEST_IMAGE,
                "essential": true,
                "memory": 64,
                "entryPoint": ["sh", "-c"],
                "command": [script],
                "logConfiguration": {"logDriver": "awslogs", "options": {"awslogs-group": "g"}}
            }]
        }),
    )
    .await?;
    run_task(env, family, Value::Null).await
}

fn berthctl(env: &TestEnv, args: &[&str]) -> Command {
    let mut cmd = Command::new(bin("berthctl"));
    cmd.args(["--endpoint", &env.api_url(), "--cluster", &env.cluster])
        .args(args);
    cmd
}

/// Runs berthctl to completion; its stdout.
fn berthctl_out(env: &TestEnv, args: &[&str]) -> Result<String> {
    let out = berthctl(env, args).output().context("running berthctl")?;
    ensure!(
        out.status.success(),
        "berthctl {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

fn numbered(prefix: &str, range: std::ops::Range<u32>) -> String {
    range.map(|i| format!("{prefix} {i}\n")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_is_read_back_whole_tail_and_over_http() -> Result<()> {
    let env = env_with("logs-read", None).await?;
    let task = run_script(
        &env,
        "logs-read",
        // stdout and stderr are two pipes read by one logger: their relative order is only
        // defined when the writes are apart in time.
        "i=0; while [ $i -lt 20 ]; do echo \"out $i\"; i=$((i+1)); done; sleep 1; echo \"err 0\" >&2",
    )
    .await?;
    wait_status(&env, &task, "STOPPED").await?;

    let all = berthctl_out(&env, &["logs", &task])?;
    let want = format!("{}err 0\n", numbered("out", 0..20));
    ensure!(all == want, "berthctl logs printed {all:?}, want {want:?}");
    let id = task.rsplit('/').next().unwrap_or_default();
    let tail = berthctl_out(&env, &["logs", id, "app", "--tail", "3"])?;
    ensure!(
        tail == "out 18\nout 19\nerr 0\n",
        "--tail 3 printed {tail:?}"
    );

    // The endpoint itself, with the driver the definition named.
    let http = reqwest::Client::new();
    let url = format!("{}/berth/v1/logs", env.api_url());
    let resp = http
        .get(&url)
        .query(&[
            ("cluster", env.cluster.as_str()),
            ("task", &task),
            ("tail", "2"),
        ])
        .send()
        .await?;
    ensure!(resp.status() == 200, "HTTP {}", resp.status());
    ensure!(
        resp.headers()
            .get("x-berth-log-driver")
            .is_some_and(|v| v == "awslogs"),
        "log driver header: {:?}",
        resp.headers()
    );
    let body = resp.text().await?;
    ensure!(body == "out 19\nerr 0\n", "HTTP tail 2: {body:?}");

    let missing = http
        .get(&url)
        .query(&[("cluster", env.cluster.as_str()), ("task", "no-such-task")])
        .send()
        .await?;
    ensure!(
        missing.status() == 404,
        "unknown task: HTTP {}",
        missing.status()
    );
    let wrong = http
        .get(&url)
        .query(&[
            ("cluster", env.cluster.as_str()),
            ("task", &task),
            ("container", "nope"),
        ])
        .send()
        .await?;
    ensure!(
        wrong.status() == 404,
        "unknown container: HTTP {}",
        wrong.status()
    );
    env.pass();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_shows_lines_written_after_the_request() -> Result<()> {
    let env = env_with("logs-follow", None).await?;
    let task = run_script(
        &env,
        "logs-follow",
        "i=0; while [ $i -lt 40 ]; do echo \"tick $i\"; i=$((i+1)); sleep 0.2; done",
    )
    .await?;
    wait_status(&env, &task, "RUNNING").await?;
    // What is there before following (retried: the first tick may not be written yet).
    let before = wait_until("a first line", timeout(30), || {
        let out = berthctl_out(&env, &["logs", &task]);
        async move { Ok(out.ok().filter(|o| !o.is_empty())) }
    })
    .await?;
    let last_before: u32 = before
        .lines()
        .last()
        .and_then(|l| l.strip_prefix("tick "))
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("unexpected log {before:?}"))?;
    ensure!(
        last_before < 30,
        "the container ran ahead too far: {before:?}"
    );

    let mut child = berthctl(&env, &["logs", &task, "--follow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child.stdout.take().context("no stdout")?;
    let target = last_before + 5;
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            lines.push(line);
        }
        lines
    });
    // The container writes until tick 39 and exits; the follow then ends by itself.
    let deadline = Instant::now() + timeout(60);
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("berthctl logs --follow did not end after the container stopped");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let lines = reader
        .join()
        .map_err(|_| anyhow::anyhow!("reader panicked"))?;
    ensure!(status.success(), "berthctl logs --follow: {status}");
    let want: Vec<String> = (0..40).map(|i| format!("tick {i}")).collect();
    ensure!(lines == want, "followed {lines:?}");
    ensure!(
        lines.iter().any(|l| l == &format!("tick {target}")),
        "no line written after the request"
    );
    env.pass();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_keeps_bounded_files_and_the_newest_data() -> Result<()> {
    let env = env_with("logs-rotate", Some((1, 3))).await?;
    // About 6 MiB of numbered 100-byte lines, then a marker.
    let pad = "x".repeat(88);
    let script = format!(
        "i=0; while [ $i -lt 60000 ]; do printf 'l %06d {pad}\\n' $i; i=$((i+1)); done; echo last-line"
    );
    let task = run_script(&env, "logs-rotate", &script).await?;
    wait_status(&env, &task, "STOPPED").await?;

    let id = task.rsplit('/').next().unwrap_or_default();
    let dir = env.agent_data_dir(0).join("logs").join(id);
    let mut files: Vec<(String, u64)> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .map(|e| {
            let e = e?;
            Ok((
                e.file_name().to_string_lossy().into_owned(),
                e.metadata()?.len(),
            ))
        })
        .collect::<Result<_>>()?;
    files.sort();
    ensure!(
        files.len() == 3 && files[0].0 == "app.log" && files[2].0 == "app.log.2",
        "want app.log, app.log.1, app.log.2: {files:?}"
    );
    for (name, size) in &files {
        ensure!(
            *size <= 1024 * 1024,
            "{name} is {size} bytes, over the 1 MiB limit"
        );
    }

    let tail = berthctl_out(&env, &["logs", &task, "--tail", "2"])?;
    ensure!(
        tail == format!("l 059999 {pad}\nlast-line\n"),
        "--tail 2 printed {tail:?}"
    );
    // The whole log: what the three files keep, contiguous and in order.
    let all = berthctl_out(&env, &["logs", &task])?;
    let numbers: Vec<u32> = all
        .lines()
        .filter_map(|l| l.strip_prefix("l ")?.get(..6)?.parse().ok())
        .collect();
    ensure!(
        numbers.windows(2).all(|w| w[1] == w[0] + 1),
        "lines missing or out of order"
    );
    ensure!(numbers.last() == Some(&59_999) && all.ends_with("last-line\n"));
    ensure!(
        numbers.len() > 25_000,
        "only {} lines kept in three files of 1 MiB",
        numbers.len()
    );
    env.pass();
    Ok(())
}
