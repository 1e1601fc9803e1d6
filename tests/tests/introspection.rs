//! The ECS agent's introspection API (issue #22) on a real agent: `/v1/metadata` names the
//! cluster and the registered instance, `/v1/tasks` lists the host's tasks as the ECS agent
//! does, one task is found by ARN or container id, and bad or unknown queries get the ECS
//! agent's status codes.

use anyhow::{ensure, Context, Result};
use berth_e2e::{
    register, run_task, task_id, timeout, wait_running, wait_task, wait_until, TestEnv, TEST_IMAGE,
};
use serde_json::{json, Value};

async fn get(url: &str) -> Result<(u16, Value)> {
    let response = reqwest::get(url)
        .await
        .with_context(|| format!("GET {url}"))?;
    let status = response.status().as_u16();
    let text = response.text().await?;
    let body = serde_json::from_str(&text).with_context(|| format!("{url}: not JSON: {text}"))?;
    Ok((status, body))
}

#[tokio::test]
async fn introspection_shows_the_agent_and_its_tasks_as_the_ecs_agent_does() -> Result<()> {
    let mut env = TestEnv::new("introspection")?;
    env.start_cp().await?;
    let code = env.create_activation(1)?;
    let agent = env.start_agent(Some(&code))?;
    env.wait_agent_connected().await?;
    let base = env.introspection_url(agent);

    let instances = env
        .api()
        .call("ListContainerInstances", json!({"cluster": env.cluster}))
        .await?;
    let instance_arn = instances["containerInstanceArns"][0]
        .as_str()
        .with_context(|| format!("no container instance: {instances}"))?
        .to_string();
    let (status, metadata) = get(&format!("{base}/v1/metadata")).await?;
    ensure!(status == 200, "/v1/metadata: {status} {metadata}");
    ensure!(metadata["Cluster"] == env.cluster.as_str(), "{metadata}");
    ensure!(
        metadata["ContainerInstanceArn"] == instance_arn.as_str(),
        "{metadata}"
    );
    ensure!(
        metadata["Version"]
            .as_str()
            .is_some_and(|v| v.starts_with("Berth Agent - v")),
        "{metadata}"
    );

    // A bridge task publishing a dynamic host port, and a task without a network.
    let web = register(
        &env.api(),
        json!({
            "family": "intro-web",
            "networkMode": "bridge",
            "containerDefinitions": [{
                "name": "web", "image": TEST_IMAGE, "essential": true, "memory": 32,
                "entryPoint": ["sleep", "600"],
                "portMappings": [{"containerPort": 8080, "hostPort": 0, "protocol": "tcp"}]
            }]
        }),
    )
    .await?;
    let quiet = register(
        &env.api(),
        json!({
            "family": "intro-quiet",
            "networkMode": "none",
            "containerDefinitions": [
                {"name": "a", "image": TEST_IMAGE, "essential": true, "memory": 16,
                 "entryPoint": ["sleep", "600"]},
                {"name": "b", "image": TEST_IMAGE, "essential": true, "memory": 16,
                 "entryPoint": ["sleep", "600"]}
            ]
        }),
    )
    .await?;
    let web_task = run_task(&env, &web, Value::Null).await?;
    let quiet_task = run_task(&env, &quiet, Value::Null).await?;
    wait_running(&env, &quiet_task).await?;
    wait_running(&env, &web_task).await?;
    let described = wait_task(&env, &web_task, "network bindings", 60, |t| {
        Ok(t["containers"][0]["networkBindings"]
            .as_array()
            .is_some_and(|b| !b.is_empty()))
    })
    .await?;
    let host_port = described["containers"][0]["networkBindings"][0]["hostPort"].clone();

    // The agent reports RUNNING to berth-cp after it knows it; the listing follows its store.
    let (status, listing) = get(&format!("{base}/v1/tasks")).await?;
    ensure!(status == 200, "/v1/tasks: {status} {listing}");
    let tasks = listing["Tasks"].as_array().context("Tasks")?;
    ensure!(tasks.len() == 2, "two tasks: {listing}");
    let find = |arn: &str| tasks.iter().find(|t| t["Arn"] == arn).cloned();
    let w = find(&web_task).with_context(|| format!("{web_task} missing: {listing}"))?;
    ensure!(w["KnownStatus"] == "RUNNING", "{w}");
    ensure!(w["DesiredStatus"] == "RUNNING", "{w}");
    ensure!(w["Family"] == "intro-web" && w["Version"] == "1", "{w}");
    let container = &w["Containers"][0];
    ensure!(container["Name"] == "web", "{container}");
    ensure!(
        container["Ports"]
            == json!([{"ContainerPort": 8080, "Protocol": "tcp", "HostPort": host_port}]),
        "the port DescribeTasks shows ({host_port}): {container}"
    );
    ensure!(
        container["Networks"][0]["NetworkMode"] == "bridge",
        "{container}"
    );
    ensure!(
        container["Networks"][0]["IPv4Addresses"][0]
            .as_str()
            .is_some_and(|a| a.parse::<std::net::Ipv4Addr>().is_ok()),
        "{container}"
    );
    // DockerId is the containerd container.
    let docker_id = container["DockerId"]
        .as_str()
        .context("DockerId")?
        .to_string();
    let in_containerd = env.containerd_containers()?;
    ensure!(
        in_containerd.contains(&docker_id),
        "{docker_id} not among containerd's {in_containerd:?}"
    );
    let q = find(&quiet_task).with_context(|| format!("{quiet_task} missing: {listing}"))?;
    ensure!(q["Containers"].as_array().map(Vec::len) == Some(2), "{q}");
    ensure!(
        q["Containers"][0]["Networks"][0]["NetworkMode"] == "none",
        "{q}"
    );

    // One task: by ARN (plain and percent-encoded), by container id and by its short form.
    let encoded = quiet_task.replace(':', "%3A").replace('/', "%2F");
    let short = &task_id(&web_task)[..12];
    for (query, want) in [
        (format!("taskarn={quiet_task}"), &quiet_task),
        (format!("taskarn={encoded}"), &quiet_task),
        (format!("dockerid={docker_id}"), &web_task),
        (format!("dockerid={short}"), &web_task),
    ] {
        let (status, task) = get(&format!("{base}/v1/tasks?{query}")).await?;
        ensure!(status == 200, "{query}: {status} {task}");
        ensure!(task["Arn"] == want.as_str(), "{query}: {task}");
    }
    for (query, want) in [
        (format!("taskarn={web_task}&dockerid={docker_id}"), 400),
        (
            "taskarn=arn:aws:ecs:local:000000000000:task/x/none".to_string(),
            404,
        ),
        ("dockerid=ffffffffffffffffffffffffffff".to_string(), 404),
    ] {
        let (status, task) = get(&format!("{base}/v1/tasks?{query}")).await?;
        ensure!(status == want, "{query}: {status} {task}, want {want}");
        ensure!(
            task["Arn"] == "" && task["Containers"].is_null(),
            "{query}: {task}"
        );
    }
    let refused = reqwest::Client::new()
        .post(format!("{base}/v1/tasks"))
        .send()
        .await?;
    ensure!(
        refused.status().as_u16() == 405,
        "POST: {}",
        refused.status()
    );

    // A restart that overlaps the old agent (started before the old one is stopped, as
    // restart_agent does): the new agent takes the port over once it is free.
    env.restart_agent(agent)?;
    let url = format!("{base}/v1/metadata");
    let after = wait_until(
        "the restarted agent's introspection",
        timeout(40),
        || async {
            Ok(match reqwest::get(&url).await {
                Ok(r) if r.status().is_success() => Some(r.json::<Value>().await?),
                _ => None,
            })
        },
    )
    .await?;
    ensure!(
        after["ContainerInstanceArn"] == instance_arn.as_str(),
        "after the restart: {after}"
    );
    env.pass();
    Ok(())
}
