//! Acceptance tests of issue #3's container-definition and volume fields: what a task
//! definition says reaches the container's process, proven through the ECS API. The containers
//! report by exit code (a failed check exits non-zero) or by writing into a host directory the
//! test created under its own temp dir and bind-mounted as a volume.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use berth_e2e::{
    exit_code, register, run_task, timeout, wait_stopped, wait_until, TestEnv, TEST_IMAGE,
};
use serde_json::{json, Value};

/// Registers a task definition (network mode none) and runs one task of it to its end.
async fn run_to_stop(
    env: &TestEnv,
    family: &str,
    containers: Value,
    volumes: Value,
) -> Result<Value> {
    run_with_overrides(env, family, containers, volumes, Value::Null).await
}

async fn run_with_overrides(
    env: &TestEnv,
    family: &str,
    containers: Value,
    volumes: Value,
    overrides: Value,
) -> Result<Value> {
    let family = format!("{family}-{}", env.id);
    let arn = register(
        &env.api(),
        json!({
            "family": family,
            "networkMode": "none",
            "containerDefinitions": containers,
            "volumes": volumes,
        }),
    )
    .await?;
    let task = run_task(env, &arn, json!({"overrides": overrides})).await?;
    wait_stopped(env, &task).await
}

/// A container running `script` in sh.
fn sh(name: &str, script: &str) -> Value {
    json!({
        "name": name,
        "image": TEST_IMAGE,
        "essential": true,
        "memory": 64,
        "command": ["sh", "-c", script],
        "stopTimeout": 2
    })
}

/// A host directory under the test's temp dir that any container user may write to.
fn host_dir(env: &TestEnv, name: &str) -> Result<PathBuf> {
    let dir = env.dir().join(name);
    std::fs::create_dir_all(&dir)?;
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o777))?;
    Ok(dir)
}

fn read(dir: &Path, file: &str) -> Result<String> {
    std::fs::read_to_string(dir.join(file)).with_context(|| format!("reading {file}"))
}

#[tokio::test]
async fn environment_command_and_users_reach_the_process() -> Result<()> {
    let env = TestEnv::with_agent("fields-users").await?;
    // Each check exits 9 when what the process sees is not what the definition says.
    let cases = [
        (
            "env-and-uid",
            json!({"user": "1000", "environment": [{"name": "X", "value": "y"}]}),
            r#"test "$X" = y && test "$(id -u)" = 1000 || exit 9"#,
        ),
        (
            "by-name",
            json!({"user": "app"}),
            r#"test "$(id -u):$(id -g)" = 1000:1000 || exit 9"#,
        ),
        (
            "nobody",
            json!({"user": "nobody"}),
            r#"test "$(id -u):$(id -g)" = 65534:65534 || exit 9"#,
        ),
        (
            "name-and-group",
            json!({"user": "app:nobody"}),
            r#"test "$(id -u):$(id -g)" = 1000:65534 || exit 9"#,
        ),
        (
            "root-by-default",
            json!({}),
            r#"test "$(id -u)" = 0 || exit 9"#,
        ),
    ];
    for (name, fields, script) in cases {
        let mut c = sh("main", script);
        for (k, v) in fields.as_object().unwrap() {
            c[k] = v.clone();
        }
        let stopped = run_to_stop(&env, name, json!([c]), json!([])).await?;
        assert_eq!(exit_code(&stopped, "main"), Some(0), "{name}: {stopped}");
    }
    env.pass();
    Ok(())
}

#[tokio::test]
async fn run_task_overrides_reach_the_process() -> Result<()> {
    let env = TestEnv::with_agent("fields-overrides").await?;
    let mut c = sh("main", "exit 9");
    c["environment"] =
        json!([{"name": "O", "value": "definition"}, {"name": "KEEP", "value": "k"}]);
    let overrides = json!({"containerOverrides": [{
        "name": "main",
        "command": ["sh", "-c", r#"test "$O" = override && test "$KEEP" = k || exit 8"#],
        "environment": [{"name": "O", "value": "override"}]
    }]});
    let stopped = run_with_overrides(&env, "overrides", json!([c]), json!([]), overrides).await?;
    assert_eq!(exit_code(&stopped, "main"), Some(0), "{stopped}");
    env.pass();
    Ok(())
}

#[tokio::test]
async fn read_only_root_file_system() -> Result<()> {
    let env = TestEnv::with_agent("fields-readonly").await?;
    // The write to / must fail and the tmpfs must stay writable.
    let mut c = sh(
        "main",
        "if touch /x 2>/dev/null; then exit 9; fi; touch /scratch/x || exit 8",
    );
    c["readonlyRootFilesystem"] = json!(true);
    c["linuxParameters"] = json!({"tmpfs": [{"containerPath": "/scratch", "size": 8}]});
    let stopped = run_to_stop(&env, "readonly", json!([c]), json!([])).await?;
    assert_eq!(exit_code(&stopped, "main"), Some(0), "{stopped}");
    // The control: without the flag the same write succeeds.
    let c = sh("main", "touch /x || exit 9; exit 3");
    let stopped = run_to_stop(&env, "writable", json!([c]), json!([])).await?;
    assert_eq!(exit_code(&stopped, "main"), Some(3), "{stopped}");
    env.pass();
    Ok(())
}

#[tokio::test]
async fn bind_mount_and_task_volume_shared_by_two_containers() -> Result<()> {
    let env = TestEnv::with_agent("fields-volumes").await?;
    let out = host_dir(&env, "out")?;
    std::fs::write(out.join("from-host"), "hello from the host\n")?;
    let mut writer = sh(
        "writer",
        "cat /out/from-host > /shared/msg && echo written > /out/writer",
    );
    writer["essential"] = json!(false);
    writer["mountPoints"] = json!([
        {"sourceVolume": "out", "containerPath": "/out"},
        {"sourceVolume": "shared", "containerPath": "/shared"}
    ]);
    // The reader waits for the writer's file, then copies it out through its read-only view.
    let mut reader = sh(
        "reader",
        "i=0; while [ ! -s /shared/msg ]; do i=$((i+1)); [ $i -gt 60 ] && exit 7; sleep 1; done; \
         if echo x > /shared/other 2>/dev/null; then exit 9; fi; \
         cat /shared/msg > /out/reader",
    );
    reader["mountPoints"] = json!([
        {"sourceVolume": "out", "containerPath": "/out"},
        {"sourceVolume": "shared", "containerPath": "/shared", "readOnly": true}
    ]);
    let volumes = json!([
        {"name": "out", "host": {"sourcePath": out.display().to_string()}},
        {"name": "shared"}
    ]);
    let stopped = run_to_stop(&env, "volumes", json!([writer, reader]), volumes).await?;
    assert_eq!(exit_code(&stopped, "writer"), Some(0), "{stopped}");
    assert_eq!(exit_code(&stopped, "reader"), Some(0), "{stopped}");
    assert_eq!(read(&out, "writer")?, "written\n");
    assert_eq!(read(&out, "reader")?, "hello from the host\n");

    // The task volume goes with the task's containers; the host directory stays.
    let task_id = stopped["taskArn"]
        .as_str()
        .unwrap_or_default()
        .rsplit('/')
        .next();
    let volume_dir = env
        .dir()
        .join("agent-1-data/volumes")
        .join(task_id.unwrap_or_default());
    wait_until(
        "the task's containers and volumes to go",
        timeout(60),
        || {
            let volume_dir = volume_dir.clone();
            let env = &env;
            async move {
                Ok((env.containerd_containers()?.is_empty() && !volume_dir.exists()).then_some(()))
            }
        },
    )
    .await?;
    assert!(out.join("reader").is_file());
    env.pass();
    Ok(())
}

#[tokio::test]
async fn bad_user_and_missing_mount_source_fail_to_start() -> Result<()> {
    let env = TestEnv::with_agent("fields-failures").await?;
    let mut c = sh("main", "true");
    c["user"] = json!("nosuchuser");
    let stopped = run_to_stop(&env, "baduser", json!([c]), json!([])).await?;
    assert_eq!(stopped["stopCode"], "TaskFailedToStart", "{stopped}");
    let reason = stopped["stoppedReason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("CannotCreateContainerError") && reason.contains("nosuchuser"),
        "stoppedReason {reason:?}"
    );

    let missing = env.dir().join("no-such-dir");
    let mut c = sh("main", "true");
    c["mountPoints"] = json!([{"sourceVolume": "data", "containerPath": "/data"}]);
    let volumes = json!([{"name": "data", "host": {"sourcePath": missing.display().to_string()}}]);
    let stopped = run_to_stop(&env, "badmount", json!([c]), volumes).await?;
    assert_eq!(stopped["stopCode"], "TaskFailedToStart", "{stopped}");
    let reason = stopped["stoppedReason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("bad mount source") && reason.contains("no-such-dir"),
        "stoppedReason {reason:?}"
    );
    assert!(!missing.exists(), "the missing source is not created");
    env.pass();
    Ok(())
}
