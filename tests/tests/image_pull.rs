//! Image pulls (#8) from a real registry on loopback (Debian's docker-registry), with the test
//! images built offline as OCI layouts and pushed with skopeo: a multi-layer image pulled and
//! run, by tag and by digest; credentials accepted and refused; an unknown tag's reason; ten
//! tasks on one image download each layer once; cleanup removes only unused images.

use std::collections::HashMap;

use anyhow::{ensure, Context, Result};
use berth_e2e::{
    container, container_log, ctr, layout_with_unique_layer, multilayer_layout, push_layout,
    register, run_task, start_task, stop_and_wait, task_arn, task_events, timeout, wait_stopped,
    wait_until, TestEnv, TestRegistry, MULTILAYER_CHECK_SCRIPT,
};
use serde_json::{json, Value};

/// berth-cp and one agent whose `[images]` table is `images` (key lines).
async fn env_with_images(name: &str, images: &str) -> Result<TestEnv> {
    let mut env = TestEnv::new(name)?;
    env.set_agent_images_toml(images);
    env.set_task_cleanup_wait_secs(0);
    env.start_cp().await?;
    let code = env.create_activation(1)?;
    env.start_agent(Some(&code))?;
    env.wait_agent_connected().await?;
    Ok(env)
}

/// A one-container task definition running `script` in `image`.
async fn define(env: &TestEnv, family: &str, image: &str, script: &str) -> Result<String> {
    register(
        &env.api(),
        json!({
            "family": format!("{family}-{}", env.id),
            "networkMode": "none",
            "containerDefinitions": [{
                "name": "app",
                "image": image,
                "essential": true,
                "memory": 32,
                "stopTimeout": 1,
                "entryPoint": ["sh", "-c"],
                "command": [script],
            }],
        }),
    )
    .await
}

/// The image records in the env's namespace.
fn images(env: &TestEnv) -> Result<Vec<String>> {
    Ok(ctr(&env.namespace, &["images", "ls", "-q"])?
        .lines()
        .map(str::to_owned)
        .collect())
}

fn stopped_reason(t: &Value) -> String {
    t["stoppedReason"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_layer_image_is_pulled_by_tag_and_by_digest_and_runs() -> Result<()> {
    let registry = TestRegistry::start("pull")?;
    let layout = multilayer_layout()?;
    let digest = push_layout(&registry, &layout.dir, "berth/multi:v1")?;
    let env = env_with_images(
        "pull",
        &format!("insecure_registries = [{:?}]", registry.host()),
    )
    .await?;

    let by_tag = registry.image_ref("berth/multi:v1");
    let by_digest = format!("{}/berth/multi@{digest}", registry.host());
    for (what, image) in [("tag", &by_tag), ("digest", &by_digest)] {
        let td = define(
            &env,
            &format!("pull-{what}"),
            image,
            MULTILAYER_CHECK_SCRIPT,
        )
        .await?;
        let task = run_task(&env, &td, Value::Null).await?;
        let t = wait_stopped(&env, &task).await?;
        ensure!(
            berth_e2e::exit_code(&t, "app") == Some(0),
            "by {what}: the layers were not all applied in order: {t}\nlog: {}",
            container_log(&env, &task, "app").unwrap_or_default()
        );
        // ECS's imageDigest: what the name pointed to, the digest the registry served.
        ensure!(
            t["containers"][0]["imageDigest"] == digest.as_str(),
            "by {what}: imageDigest {} is not the pushed {digest}",
            t["containers"][0]["imageDigest"]
        );
        let started = t["pullStartedAt"].as_f64().context("no pullStartedAt")?;
        let stopped = t["pullStoppedAt"].as_f64().context("no pullStoppedAt")?;
        let running = t["startedAt"].as_f64().context("no startedAt")?;
        ensure!(
            started <= stopped && stopped <= running,
            "by {what}: pullStartedAt {started}, pullStoppedAt {stopped}, startedAt {running}"
        );
        // The task's events say how the image got there: layers, bytes and time.
        let events = task_events(&env, &task).await?;
        ensure!(
            events.iter().any(|e| e["status"] == "PULLED"
                && e["reason"]
                    .as_str()
                    .is_some_and(|r| r.starts_with("pulled ") && r.contains("layers"))),
            "by {what}: no PULLED event with the pull's summary: {events:?}"
        );
    }
    let records = images(&env)?;
    ensure!(
        records.contains(&by_tag) && records.contains(&by_digest),
        "image records: {records:?}"
    );
    registry.pass();
    env.pass();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_used_refusals_and_unknown_tags_name_their_cause() -> Result<()> {
    let layout = multilayer_layout()?;
    let known = TestRegistry::start_with_auth("pull-auth", "berth", "s3cret-pass")?;
    push_layout(&known, &layout.dir, "berth/private:v1")?;
    // The agent has no login for this one.
    let stranger = TestRegistry::start_with_auth("pull-auth2", "other", "other-pass")?;
    push_layout(&stranger, &layout.dir, "berth/private:v1")?;
    let env = env_with_images(
        "pull-auth",
        &format!(
            "insecure_registries = [{k:?}, {s:?}]\npull_behavior = \"always\"\n\
             [images.credentials.{k:?}]\nusername = \"berth\"\npassword = \"s3cret-pass\"\n",
            k = known.host(),
            s = stranger.host()
        ),
    )
    .await?;

    let ok = define(
        &env,
        "auth-ok",
        &known.image_ref("berth/private:v1"),
        MULTILAYER_CHECK_SCRIPT,
    )
    .await?;
    let t = wait_stopped(&env, &run_task(&env, &ok, Value::Null).await?).await?;
    ensure!(berth_e2e::exit_code(&t, "app") == Some(0), "{t}");

    let cases = [
        (
            "refused",
            stranger.image_ref("berth/private:v1"),
            ["denied", "unauthorized"],
        ),
        (
            "unknown",
            known.image_ref("berth/private:nope"),
            ["not found", "unknown"],
        ),
        // Nothing listens on port 1 of loopback.
        (
            "unreachable",
            "127.0.0.1:1/berth/private:v1".to_owned(),
            ["unreachable", "connect"],
        ),
    ];
    for (what, image, words) in cases {
        let td = define(&env, &format!("auth-{what}"), &image, "true").await?;
        let t = wait_stopped(&env, &run_task(&env, &td, Value::Null).await?).await?;
        let reason = stopped_reason(&t);
        let c = container(&t, "app").context("no app container")?;
        let container_reason = c["reason"].as_str().unwrap_or_default().to_lowercase();
        ensure!(
            t["stopCode"] == "TaskFailedToStart"
                && reason.starts_with("CannotPullContainerError")
                && words.iter().any(|w| container_reason.contains(w)),
            "{what}: {t}"
        );
    }
    // Nothing the agent logged holds the password.
    let log = std::fs::read_to_string(env.dir().join("agent-1.log"))?;
    ensure!(
        !log.contains("s3cret-pass"),
        "the agent logged the password"
    );
    known.pass();
    stranger.pass();
    env.pass();
    Ok(())
}

/// The registry's access log lines fetching each blob (layers and config), by digest.
fn blob_fetches(registry: &TestRegistry) -> HashMap<String, usize> {
    let mut fetches = HashMap::new();
    for line in registry.log().lines() {
        if !line.contains("\"GET /v2/") || !line.contains("/blobs/sha256:") {
            continue;
        }
        if let Some(digest) = line
            .split("/blobs/")
            .nth(1)
            .and_then(|rest| rest.split([' ', '"', '?']).next())
        {
            *fetches.entry(digest.to_owned()).or_default() += 1;
        }
    }
    fetches
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_tasks_on_one_image_download_it_once() -> Result<()> {
    let registry = TestRegistry::start("pull-shared")?;
    // containerd shares blobs between namespaces: the test image's layers may be present from
    // other tests. A layer (and config) of this test's own must be downloaded, and only once.
    let layout = layout_with_unique_layer(
        &multilayer_layout()?,
        &registry.dir().join("layout"),
        &format!("unique {}", registry.host()),
    )?;
    push_layout(&registry, &layout.dir, "berth/shared:v1")?;
    let pushed = blob_fetches(&registry);
    let env = env_with_images(
        "pull-shared",
        &format!("insecure_registries = [{:?}]", registry.host()),
    )
    .await?;
    let td = define(
        &env,
        "shared",
        &registry.image_ref("berth/shared:v1"),
        MULTILAYER_CHECK_SCRIPT,
    )
    .await?;
    let out = env
        .api()
        .call(
            "RunTask",
            json!({"cluster": env.cluster, "taskDefinition": td, "count": 10}),
        )
        .await?;
    let tasks: Vec<String> = out["tasks"]
        .as_array()
        .context("no tasks")?
        .iter()
        .map(task_arn)
        .collect::<Result<_>>()?;
    ensure!(tasks.len() == 10, "RunTask: {out}");
    for t in &tasks {
        let t = wait_stopped(&env, t).await?;
        ensure!(berth_e2e::exit_code(&t, "app") == Some(0), "{t}");
    }
    let fetched = blob_fetches(&registry);
    let mut per_blob: Vec<(String, usize)> = fetched
        .iter()
        .map(|(d, n)| (d.clone(), n - pushed.get(d).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect();
    per_blob.sort();
    // The unique layer and the config must have come from the registry; nothing twice.
    let manifest: Value = serde_json::from_slice(&std::fs::read(
        layout
            .dir
            .join("blobs/sha256")
            .join(layout.digest.trim_start_matches("sha256:")),
    )?)?;
    let must: Vec<String> = [
        manifest["config"]["digest"].as_str(),
        manifest["layers"][layout.layers - 1]["digest"].as_str(),
    ]
    .into_iter()
    .map(|d| d.map(str::to_owned).context("manifest digest"))
    .collect::<Result<_>>()?;
    ensure!(
        per_blob.iter().all(|(_, n)| *n == 1)
            && must.iter().all(|d| per_blob.iter().any(|(b, _)| b == d)),
        "blob downloads by digest (want {must:?} once each, nothing twice): {per_blob:?}"
    );
    registry.pass();
    env.pass();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_removes_only_unused_images_the_agent_pulled() -> Result<()> {
    let registry = TestRegistry::start("pull-cleanup")?;
    let layout = multilayer_layout()?;
    for tag in ["used", "unused", "pinned"] {
        push_layout(&registry, &layout.dir, &format!("berth/cleanup:{tag}"))?;
    }
    let image = |tag: &str| registry.image_ref(&format!("berth/cleanup:{tag}"));
    let env = env_with_images(
        "pull-cleanup",
        &format!(
            "insecure_registries = [{:?}]\ncleanup_interval_secs = 1\nminimum_image_age_secs = 0\n\
             images_per_cycle = 10\npinned = [{:?}]\n",
            registry.host(),
            image("pinned")
        ),
    )
    .await?;
    let long = define(&env, "cleanup-used", &image("used"), "sleep 600").await?;
    let long = berth_e2e::task_arn(&start_task(&env, &long, Value::Null).await?)?;
    berth_e2e::wait_running(&env, &long).await?;
    for tag in ["unused", "pinned"] {
        let td = define(&env, &format!("cleanup-{tag}"), &image(tag), "true").await?;
        wait_stopped(&env, &run_task(&env, &td, Value::Null).await?).await?;
    }
    // The imported test image was not pulled by the agent: never a candidate.
    let imported = berth_e2e::TEST_IMAGE.to_owned();
    wait_until("the unused image to be removed", timeout(60), || async {
        let records = images(&env)?;
        Ok((!records.contains(&image("unused"))).then_some(records))
    })
    .await
    .and_then(|records| {
        ensure!(
            records.contains(&image("used"))
                && records.contains(&image("pinned"))
                && records.contains(&imported),
            "cleanup removed more than the unused image: {records:?}"
        );
        Ok(())
    })?;
    // Once its task is gone, the used one goes too.
    stop_and_wait(&env, &long).await?;
    wait_until(
        "the formerly used image to be removed",
        timeout(60),
        || async { Ok((!images(&env)?.contains(&image("used"))).then_some(())) },
    )
    .await?;
    let records = images(&env)?;
    ensure!(records.contains(&image("pinned")), "{records:?}");
    registry.pass();
    env.pass();
    Ok(())
}

/// `berthctl create-secret` with the password on stdin.
fn create_secret(env: &TestEnv, name: &str, username: &str, password: &str) -> Result<()> {
    use std::io::Write as _;
    let mut child = std::process::Command::new(berth_e2e::bin("berthctl"))
        .args(["--endpoint", &env.api_url(), "--cluster", &env.cluster])
        .args(["create-secret", "--name", name, "--username", username])
        .arg("--password-stdin")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("running berthctl")?;
    child
        .stdin
        .take()
        .context("berthctl's stdin")?
        .write_all(format!("{password}\n").as_bytes())?;
    let out = child.wait_with_output()?;
    ensure!(
        out.status.success(),
        "berthctl create-secret failed: {}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repository_credentials_name_a_secret_berth_cp_holds() -> Result<()> {
    let layout = multilayer_layout()?;
    let registry = TestRegistry::start_with_auth("pull-repocreds", "robot", "t0ken-pass")?;
    push_layout(&registry, &layout.dir, "berth/private:v1")?;
    // The agent itself has no login for this registry.
    let env = env_with_images(
        "pull-repocreds",
        &format!(
            "insecure_registries = [{:?}]\npull_behavior = \"always\"",
            registry.host()
        ),
    )
    .await?;
    create_secret(&env, "registry-login", "robot", "t0ken-pass")?;
    let define_with = |family: &'static str, parameter: Option<&'static str>| {
        let mut c = json!({
            "name": "app",
            "image": registry.image_ref("berth/private:v1"),
            "essential": true,
            "memory": 32,
            "entryPoint": ["sh", "-c"],
            "command": [MULTILAYER_CHECK_SCRIPT],
        });
        if let Some(p) = parameter {
            c["repositoryCredentials"] = json!({"credentialsParameter": p});
        }
        let body = json!({
            "family": format!("{family}-{}", env.id),
            "networkMode": "none",
            "containerDefinitions": [c],
        });
        let api = env.api();
        async move { register(&api, body).await }
    };
    // By the secret's name, and without: the same agent is refused.
    let with = define_with("repocreds", Some("registry-login")).await?;
    let t = wait_stopped(&env, &run_task(&env, &with, Value::Null).await?).await?;
    ensure!(berth_e2e::exit_code(&t, "app") == Some(0), "{t}");
    let without = define_with("repocreds-none", None).await?;
    let t = wait_stopped(&env, &run_task(&env, &without, Value::Null).await?).await?;
    ensure!(
        stopped_reason(&t).starts_with("CannotPullContainerError"),
        "without repositoryCredentials: {t}"
    );
    // A secret that does not exist: RunTask says so.
    let missing = define_with("repocreds-missing", Some("no-such-secret")).await?;
    let err = run_task(&env, &missing, Value::Null).await;
    ensure!(
        err.as_ref()
            .is_err_and(|e| format!("{e:#}").contains("no-such-secret")),
        "RunTask with a missing secret: {err:?}"
    );
    // The password is in no log and no API answer.
    for log in ["agent-1.log", "cp-1.log"] {
        let text = std::fs::read_to_string(env.dir().join(log))?;
        ensure!(!text.contains("t0ken-pass"), "{log} holds the password");
    }
    let described = env
        .api()
        .describe_task(&env.cluster, &task_arn(&t)?)
        .await?;
    ensure!(!described.to_string().contains("t0ken-pass"));
    registry.pass();
    env.pass();
    Ok(())
}
