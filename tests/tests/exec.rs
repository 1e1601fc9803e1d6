//! ExecuteCommand and `berthctl exec` (issues #18, #22) against a real agent and containerd:
//! commands run in a task's container with its stdin, stdout, stderr or a terminal, exit with
//! their status, are refused unless the task enabled them, and die with their user.

use std::io::Write;
use std::process::{Command, Stdio};

use anyhow::{bail, ensure, Context, Result};
use berth_e2e::{
    container, register, run_task, task_pids, timeout, wait_running, wait_until, TestEnv,
    TEST_IMAGE,
};
use serde_json::{json, Value};

async fn env(name: &str) -> Result<TestEnv> {
    let mut env = TestEnv::new(name)?;
    env.start_cp().await?;
    let code = env.create_activation(1)?;
    env.start_agent(Some(&code))?;
    env.wait_agent_connected().await?;
    Ok(env)
}

/// Two long-running containers, `app` and `side` (with GREETING set).
async fn register_two(env: &TestEnv, family: &str) -> Result<String> {
    let sleeper = |name: &str| {
        json!({
            "name": name,
            "image": TEST_IMAGE,
            "essential": true,
            "memory": 32,
            "entryPoint": ["sleep", "600"],
            "environment": [{"name": "GREETING", "value": format!("hello from {name}")}]
        })
    };
    register(
        &env.api(),
        json!({
            "family": family,
            "networkMode": "none",
            "containerDefinitions": [sleeper("app"), sleeper("side")]
        }),
    )
    .await
}

fn berthctl(env: &TestEnv, args: &[&str]) -> Command {
    let mut cmd = Command::new(berth_e2e::bin("berthctl"));
    cmd.args(["--endpoint", &env.api_url(), "--cluster", &env.cluster])
        .args(args);
    cmd
}

struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `berthctl exec ARGS`, with `stdin` on its stdin; its status and output.
fn exec(env: &TestEnv, args: &[&str], stdin: &[u8]) -> Result<Ran> {
    let mut child = berthctl(env, &[&["exec"], args].concat())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running berthctl exec")?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(stdin)
        .context("writing berthctl's stdin")?;
    let out = child.wait_with_output()?;
    Ok(Ran {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// The audit log, through `berthctl audit`.
fn audit(env: &TestEnv) -> Result<Vec<Value>> {
    let out = berthctl(env, &["--output", "json", "audit", "--limit", "1000"]).output()?;
    ensure!(
        out.status.success(),
        "berthctl audit: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout)?;
    Ok(v["events"].as_array().cloned().unwrap_or_default())
}

/// The audit records of one session: its ExecuteCommand and its end.
fn session_records<'a>(events: &'a [Value], command_word: &str) -> Result<(&'a Value, &'a Value)> {
    let started = events
        .iter()
        .find(|e| {
            e["action"] == "ExecuteCommand"
                && e["detail"]["command"].as_array().is_some_and(|c| {
                    c.iter()
                        .any(|w| w.as_str().is_some_and(|w| w.contains(command_word)))
                })
        })
        .with_context(|| format!("no ExecuteCommand record of {command_word:?}: {events:#?}"))?;
    let id = &started["detail"]["sessionId"];
    let ended = events
        .iter()
        .find(|e| e["action"] == "ExecSessionEnded" && &e["detail"]["sessionId"] == id)
        .with_context(|| format!("no end recorded for {started}: {events:#?}"))?;
    Ok((started, ended))
}

async fn api_error(env: &TestEnv, request: Value) -> Result<(String, String)> {
    match env.api().call("ExecuteCommand", request).await {
        Ok(v) => bail!("ExecuteCommand succeeded: {v}"),
        Err(e) => Ok((e.code, e.message)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_run_in_the_container_with_its_stdio_a_terminal_and_their_status() -> Result<()> {
    let env = env("exec-run").await?;
    let def = register_two(&env, "exec-run").await?;
    let task = run_task(&env, &def, json!({"enableExecuteCommand": true})).await?;
    let described = wait_running(&env, &task).await?;
    ensure!(
        described["enableExecuteCommand"] == true,
        "DescribeTasks: {described}"
    );

    // ExecuteCommand's answer has ECS's shape; its stream is berth-cp's.
    let answer = env
        .api()
        .call(
            "ExecuteCommand",
            json!({"cluster": env.cluster, "task": task, "container": "side",
                   "command": "true", "interactive": true}),
        )
        .await?;
    ensure!(answer["taskArn"] == task.as_str(), "{answer}");
    ensure!(
        answer["containerName"] == "side" && answer["interactive"] == true,
        "{answer}"
    );
    let arn = answer["containerArn"].as_str().unwrap_or_default();
    ensure!(arn.contains(":container/"), "{answer}");
    let session = &answer["session"];
    ensure!(
        session["sessionId"]
            .as_str()
            .is_some_and(|s| s.starts_with("ecs-execute-command-")),
        "{answer}"
    );
    ensure!(
        session["streamUrl"]
            .as_str()
            .is_some_and(|u| u.starts_with("ws://127.0.0.1:") && u.contains("/berth/v1/exec/")),
        "{answer}"
    );
    ensure!(
        session["tokenValue"]
            .as_str()
            .is_some_and(|t| t.len() >= 32),
        "{answer}"
    );

    // stdout, stderr and the exit status, in the named container's environment.
    let ran = exec(
        &env,
        &[
            &task,
            "--container",
            "side",
            "--",
            "sh",
            "-c",
            "echo \"$GREETING\"; echo oops >&2; exit 5",
        ],
        b"",
    )?;
    ensure!(ran.code == Some(5), "status {:?}: {}", ran.code, ran.stderr);
    ensure!(ran.stdout == "hello from side\n", "{:?}", ran.stdout);
    ensure!(ran.stderr.contains("oops\n"), "{:?}", ran.stderr);

    // -i: stdin reaches the command, and its end ends it.
    let ran = exec(
        &env,
        &[
            "-i",
            &task,
            "--container",
            "app",
            "--",
            "sh",
            "-c",
            "while read l; do echo \"got $l\"; done",
        ],
        b"one\ntwo\n",
    )?;
    ensure!(ran.code == Some(0), "status {:?}: {}", ran.code, ran.stderr);
    ensure!(ran.stdout == "got one\ngot two\n", "{:?}", ran.stdout);

    // Without -i the command reads end-of-file at once.
    let ran = exec(
        &env,
        &[&task, "--container", "app", "--", "cat"],
        b"ignored\n",
    )?;
    ensure!(
        ran.code == Some(0) && ran.stdout.is_empty(),
        "{:?} {:?}",
        ran.code,
        ran.stdout
    );

    // -t: a terminal, of 24x80 when berthctl has none itself.
    let ran = exec(
        &env,
        &[
            "-t",
            &task,
            "--container",
            "app",
            "--",
            "sh",
            "-c",
            "tty; stty size; echo TERM=$TERM",
        ],
        b"",
    )?;
    ensure!(ran.code == Some(0), "status {:?}: {}", ran.code, ran.stderr);
    ensure!(ran.stdout.contains("/dev/pts/"), "{:?}", ran.stdout);
    ensure!(ran.stdout.contains("24 80"), "{:?}", ran.stdout);
    ensure!(ran.stdout.contains("TERM=xterm"), "{:?}", ran.stdout);

    // A program that does not exist: an error, not a hang.
    let ran = exec(
        &env,
        &[&task, "--container", "app", "--", "no-such-program"],
        b"",
    )?;
    ensure!(ran.code == Some(1), "status {:?}", ran.code);
    ensure!(ran.stderr.contains("no-such-program"), "{:?}", ran.stderr);

    // A task of two containers needs the container named.
    let (code, message) = api_error(
        &env,
        json!({"cluster": env.cluster, "task": task, "command": "ls", "interactive": true}),
    )
    .await?;
    ensure!(code == "InvalidParameterException", "{code}: {message}");
    ensure!(message.contains("Container name is required"), "{message}");

    // Every session is in the audit log: who, what, where, and how it ended.
    let events = audit(&env)?;
    let (started, ended) = session_records(&events, "GREETING")?;
    ensure!(
        started["principal"] == "anonymous",
        "berthctl signs nothing yet: {started}"
    );
    ensure!(started["resource"] == task.as_str(), "{started}");
    ensure!(started["detail"]["container"] == "side", "{started}");
    ensure!(started["detail"]["command"][0] == "sh", "{started}");
    ensure!(ended["detail"]["exitCode"] == 5, "{ended}");
    let (_, ended) = session_records(&events, "no-such-program")?;
    ensure!(
        ended["detail"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("no-such-program")),
        "{ended}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_is_refused_unless_enabled_and_dies_with_its_user() -> Result<()> {
    let env = env("exec-refuse").await?;
    let def = register_two(&env, "exec-refuse").await?;
    let plain = run_task(&env, &def, Value::Null).await?;
    let enabled = run_task(&env, &def, json!({"enableExecuteCommand": true})).await?;
    wait_running(&env, &plain).await?;
    let running = wait_running(&env, &enabled).await?;

    let request = |task: &str, container: &str, command: &str, interactive: bool| {
        json!({"cluster": env.cluster, "task": task, "container": container,
               "command": command, "interactive": interactive})
    };
    let (code, message) = api_error(&env, request(&plain, "app", "ls", true)).await?;
    ensure!(code == "InvalidParameterException", "{code}: {message}");
    ensure!(
        message.contains("execute command was not enabled"),
        "{message}"
    );
    let ran = exec(&env, &[&plain, "--container", "app", "--", "ls"], b"")?;
    ensure!(
        ran.code == Some(1) && ran.stderr.contains("not enabled"),
        "{:?} {:?}",
        ran.code,
        ran.stderr
    );

    for (req, expected) in [
        (
            request(&enabled, "app", "ls", false),
            "Interactive is the only mode",
        ),
        (
            request(&enabled, "db", "ls", true),
            "does not exist in the task",
        ),
        (
            request(&enabled, "app", "echo 'open", true),
            "unterminated quote",
        ),
        (request(&enabled, "app", "  ", true), "empty"),
        (request("no-such-task", "app", "ls", true), "not found"),
    ] {
        let (code, message) = api_error(&env, req).await?;
        ensure!(code == "InvalidParameterException", "{code}: {message}");
        ensure!(message.contains(expected), "{expected:?} in {message}");
    }

    // A user who goes away (berthctl killed) takes the command with them.
    let runtime_id = container(&running, "app")
        .and_then(|c| c["runtimeId"].as_str())
        .with_context(|| format!("no runtimeId: {running}"))?
        .to_owned();
    let ns = env.namespace.clone();
    let count = |ns: String, id: String| async move { anyhow::Ok(task_pids(&ns, &id)?.len()) };
    let alone = count(ns.clone(), runtime_id.clone()).await?;
    let mut child = berthctl(
        &env,
        &["exec", &enabled, "--container", "app", "--", "sleep", "600"],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()?;
    wait_until(
        "the exec's sleep to run in the container",
        timeout(30),
        || {
            let (ns, id) = (ns.clone(), runtime_id.clone());
            async move { Ok((count(ns, id).await? > alone).then_some(())) }
        },
    )
    .await?;
    child.kill()?;
    child.wait()?;
    wait_until("the exec's sleep to be killed", timeout(30), || {
        let (ns, id) = (ns.clone(), runtime_id.clone());
        async move { Ok((count(ns, id).await? == alone).then_some(())) }
    })
    .await?;
    let events = audit(&env)?;
    let (_, ended) = session_records(&events, "600")?;
    ensure!(ended["detail"]["abandoned"] == true, "{ended}");
    ensure!(
        !events.iter().any(|e| e["resource"] == plain.as_str()),
        "refused commands are not sessions: {events:#?}"
    );

    // The stopped task takes no command.
    env.api()
        .call("StopTask", json!({"cluster": env.cluster, "task": enabled}))
        .await?;
    let (code, message) = api_error(&env, request(&enabled, "app", "ls", true)).await?;
    ensure!(code == "InvalidParameterException", "{code}: {message}");
    ensure!(message.contains("not running"), "{message}");
    Ok(())
}

/// A stand-in for AWS's Session Manager plugin, which the aws CLI runs with ExecuteCommand's
/// session: it records its arguments (the real plugin would speak Systems Manager's protocol,
/// which berth-cp's stream is not).
const PLUGIN: &str = "#!/bin/sh\n[ $# -eq 0 ] && exit 0\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done > \"$0.args\"\n";

const BOTO3_EXEC: &str = r#"
import json, sys
import boto3, botocore
url, cluster, task, plain = sys.argv[1:5]
ecs = boto3.client("ecs", endpoint_url=url, region_name="us-east-1",
                   aws_access_key_id="berth", aws_secret_access_key="berth")
ok = ecs.execute_command(cluster=cluster, task=task, container="app",
                         command="ls /", interactive=True)
ok.pop("ResponseMetadata")
errors = {}
for name, kwargs in {
    "not_enabled": dict(task=plain, container="app", command="ls", interactive=True),
    "not_interactive": dict(task=task, container="app", command="ls", interactive=False),
    "no_container": dict(task=task, command="ls", interactive=True),
}.items():
    try:
        ecs.execute_command(cluster=cluster, **kwargs)
        errors[name] = None
    except botocore.exceptions.ClientError as e:
        errors[name] = [e.response["Error"]["Code"], e.response["Error"]["Message"]]
print(json.dumps({"ok": ok, "errors": errors}))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_aws_cli_and_boto3_get_ecs_shaped_sessions_and_errors() -> Result<()> {
    let env = env("exec-clients").await?;
    let def = register_two(&env, "exec-clients").await?;
    let plain = run_task(&env, &def, Value::Null).await?;
    let task = run_task(&env, &def, json!({"enableExecuteCommand": true})).await?;
    wait_running(&env, &plain).await?;
    let running = wait_running(&env, &task).await?;

    // boto3: the response's shape, and ECS's error codes.
    let seen = tokio::task::spawn_blocking({
        let home = env.dir().join("boto3-home");
        let (url, cluster, task, plain) = (
            env.api_url(),
            env.cluster.clone(),
            task.clone(),
            plain.clone(),
        );
        move || berth_e2e::boto3(&home, BOTO3_EXEC, &[&url, &cluster, &task, &plain])
    })
    .await??;
    let ok = &seen["ok"];
    ensure!(
        ok["taskArn"] == task.as_str() && ok["containerName"] == "app",
        "{seen:#}"
    );
    ensure!(ok["interactive"] == true, "{seen:#}");
    for field in ["sessionId", "streamUrl", "tokenValue"] {
        ensure!(ok["session"][field].is_string(), "{field}: {seen:#}");
    }
    let errors = &seen["errors"];
    for (name, words) in [
        ("not_enabled", "not enabled"),
        ("not_interactive", "Interactive"),
        ("no_container", "Container name is required"),
    ] {
        ensure!(
            errors[name][0] == "InvalidParameterException",
            "{name}: {errors:#}"
        );
        let message = errors[name][1].as_str().unwrap_or_default();
        ensure!(message.contains(words), "{name}: {message}");
    }

    // The aws CLI: execute-command hands the session to the plugin, with the target it built
    // from DescribeTasks.
    let bin_dir = env.dir().join("plugin-bin");
    std::fs::create_dir_all(&bin_dir)?;
    let plugin = bin_dir.join("session-manager-plugin");
    std::fs::write(&plugin, PLUGIN)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o755))?;
    let aws =
        berth_e2e::AwsCli::new(&env.api_url(), &env.dir().join("aws"))?.with_path_prefix(&bin_dir);
    aws.ecs(&[
        "execute-command",
        "--cluster",
        &env.cluster,
        "--task",
        &task,
        "--container",
        "app",
        "--command",
        "ls /",
        "--interactive",
    ])?;
    let args = std::fs::read_to_string(bin_dir.join("session-manager-plugin.args"))
        .context("the plugin was not run")?;
    let args: Vec<&str> = args.lines().collect();
    ensure!(args.len() == 6 && args[2] == "StartSession", "{args:?}");
    let session: Value = serde_json::from_str(args[0])?;
    ensure!(
        session["streamUrl"]
            .as_str()
            .is_some_and(|u| u.starts_with("ws://")),
        "{session}"
    );
    let runtime_id = container(&running, "app")
        .and_then(|c| c["runtimeId"].as_str())
        .context("runtimeId")?;
    let task_id = task.rsplit('/').next().unwrap_or_default();
    let target: Value = serde_json::from_str(args[4])?;
    ensure!(
        target["Target"] == format!("ecs:{}_{task_id}_{runtime_id}", env.cluster),
        "{target}"
    );
    // The aws CLI reports the API's refusals.
    let refused = aws
        .ecs(&[
            "execute-command",
            "--cluster",
            &env.cluster,
            "--task",
            &plain,
            "--container",
            "app",
            "--command",
            "ls",
            "--interactive",
        ])
        .unwrap_err()
        .to_string();
    ensure!(
        refused.contains("InvalidParameterException") && refused.contains("not enabled"),
        "{refused}"
    );
    // The signed requests' access key is their principal in the audit log.
    let events = audit(&env)?;
    let principals: Vec<&Value> = events
        .iter()
        .filter(|e| e["action"] == "ExecuteCommand")
        .map(|e| &e["principal"])
        .collect();
    ensure!(
        principals.len() == 2 && principals.iter().all(|p| *p == "berth"),
        "boto3's and the aws CLI's sessions: {events:#?}"
    );
    Ok(())
}
