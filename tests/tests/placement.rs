//! Placement on a fleet of three agents in three availability zones (one with a custom
//! attribute), driven by the real AWS CLI: a service spread over zones, binpack, distinctInstance,
//! memberOf on a custom attribute and on a task group, a bad expression refused with its
//! position, StartTask, custom attributes, draining an instance, deregistering one, and a DAEMON
//! service.

use std::collections::BTreeMap;

use anyhow::{ensure, Context, Result};
use berth_e2e::{register, timeout, wait_until, AwsCli, TestEnv, TEST_IMAGE};
use serde_json::{json, Value};

const ZONES: [&str; 3] = ["lab-1a", "lab-1b", "lab-1c"];

/// berth-cp and three hosts, one per zone; the one in lab-1c has `gpu=yes`.
async fn zoned_fleet(name: &str) -> Result<TestEnv> {
    fleet_in(name, &ZONES).await
}

/// berth-cp and one host in each of `zones`, connected (agent `i` is in `zones[i]`); a host in
/// lab-1c has `gpu=yes`.
async fn fleet_in(name: &str, zones: &[&str]) -> Result<TestEnv> {
    let mut env = TestEnv::new(name)?;
    env.set_cp_service_settle_ms(500);
    env.start_cp().await?;
    let code = env.create_activation(zones.len() as u32)?;
    for &zone in zones {
        let attributes: &[(&str, &str)] = if zone == "lab-1c" {
            &[("gpu", "yes")]
        } else {
            &[]
        };
        env.start_host_in(Some(&code), zone, attributes)?;
    }
    wait_connected(&env, zones.len()).await?;
    Ok(env)
}

async fn wait_connected(env: &TestEnv, n: usize) -> Result<()> {
    let api = env.api();
    let cluster = env.cluster.clone();
    wait_until("connected container instances", timeout(60), || {
        let (api, cluster) = (api.clone(), cluster.clone());
        async move {
            let d = instances(&api, &cluster).await?;
            let connected = d
                .iter()
                .filter(|ci| ci["agentConnected"] == Value::Bool(true))
                .count();
            Ok((connected == n).then_some(()))
        }
    })
    .await
}

async fn instances(api: &berth_e2e::EcsClient, cluster: &str) -> Result<Vec<Value>> {
    let list = api
        .call("ListContainerInstances", json!({"cluster": cluster}))
        .await?;
    let arns = list["containerInstanceArns"].clone();
    if arns.as_array().is_none_or(Vec::is_empty) {
        return Ok(Vec::new());
    }
    let d = api
        .call(
            "DescribeContainerInstances",
            json!({"cluster": cluster, "containerInstances": arns}),
        )
        .await?;
    Ok(d["containerInstances"]
        .as_array()
        .cloned()
        .unwrap_or_default())
}

/// Instance ARN → its zone, read back from DescribeContainerInstances.
async fn zones_by_instance(env: &TestEnv) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for ci in instances(&env.api(), &env.cluster).await? {
        let zone = ci["attributes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["name"] == "ecs.availability-zone")
            .and_then(|a| a["value"].as_str())
            .context("every instance reports ecs.availability-zone")?
            .to_owned();
        out.insert(
            ci["containerInstanceArn"]
                .as_str()
                .context("arn")?
                .to_owned(),
            zone,
        );
    }
    Ok(out)
}

fn small(family: &str) -> Value {
    json!({
        "family": family,
        "networkMode": "none",
        "containerDefinitions": [{
            "name": "app", "image": TEST_IMAGE, "memory": 16, "stopTimeout": 1,
            "command": ["sleep", "600"],
        }],
    })
}

fn per_instance(tasks: &[Value]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for t in tasks {
        let arn = t["containerInstanceArn"].as_str().unwrap_or("?").to_owned();
        *m.entry(arn).or_default() += 1;
    }
    m
}

/// `aws ecs wait services-stable` for one service.
fn wait_stable(aws: &AwsCli, cluster: &str, service: &str) -> Result<()> {
    aws.ecs(&[
        "wait",
        "services-stable",
        "--cluster",
        cluster,
        "--services",
        service,
    ])
    .map(drop)
}

/// Deletes a service with `--force` and waits until it is INACTIVE.
fn delete_service(aws: &AwsCli, cluster: &str, service: &str) -> Result<()> {
    aws.ecs(&[
        "delete-service",
        "--cluster",
        cluster,
        "--service",
        service,
        "--force",
    ])?;
    aws.ecs(&[
        "wait",
        "services-inactive",
        "--cluster",
        cluster,
        "--services",
        service,
    ])
    .map(drop)
}

fn tasks_of(run: &Value) -> Vec<Value> {
    run["tasks"].as_array().cloned().unwrap_or_default()
}

/// How many of the service's running tasks each zone holds.
async fn service_tasks_per_zone(env: &TestEnv, service: &str) -> Result<BTreeMap<String, usize>> {
    let zones = zones_by_instance(env).await?;
    let mut per_zone = BTreeMap::new();
    for t in running_tasks_of(&env.api(), &env.cluster, service).await? {
        let arn = t["containerInstanceArn"].as_str().context("instance")?;
        *per_zone.entry(zones[arn].clone()).or_default() += 1;
    }
    Ok(per_zone)
}

#[tokio::test]
async fn a_service_spreads_over_three_zones_three_three_three() -> Result<()> {
    let env = zoned_fleet("place-spread").await?;
    let aws = AwsCli::new(&env.api_url(), &env.dir().join("aws-home"))?;
    let family = format!("spread-{}", env.id);
    register(&env.api(), small(&family)).await?;
    let name = format!("spread-{}", env.id);
    let c = env.cluster.as_str();
    aws.ecs(&[
        "create-service",
        "--cluster",
        c,
        "--service-name",
        &name,
        "--task-definition",
        &family,
        "--desired-count",
        "9",
        "--launch-type",
        "EXTERNAL",
    ])?;
    wait_stable(&aws, c, &name)?;
    let per_zone = service_tasks_per_zone(&env, &name).await?;
    eprintln!("tasks per zone: {per_zone:?}");
    ensure!(
        per_zone.values().copied().collect::<Vec<_>>() == vec![3, 3, 3],
        "3/3/3 over the zones: {per_zone:?}"
    );
    // A scale-in keeps the balance (ECS stops from the most crowded zone first): 1/1/1.
    aws.ecs(&[
        "update-service",
        "--cluster",
        c,
        "--service",
        &name,
        "--desired-count",
        "3",
    ])?;
    wait_stable(&aws, c, &name)?;
    let per_zone = service_tasks_per_zone(&env, &name).await?;
    ensure!(
        per_zone.values().copied().collect::<Vec<_>>() == vec![1, 1, 1],
        "1/1/1 after the scale-in: {per_zone:?}"
    );
    let described = aws.ecs(&["describe-services", "--cluster", c, "--services", &name])?;
    ensure!(
        described["services"][0]["placementStrategy"] == json!([]),
        "no strategy given, none shown (ECS's default applies): {described}"
    );
    delete_service(&aws, c, &name)?;
    env.pass();
    Ok(())
}

#[tokio::test]
async fn run_task_binpacks_keeps_instances_distinct_and_follows_member_of() -> Result<()> {
    let env = zoned_fleet("place-runtask").await?;
    let aws = AwsCli::new(&env.api_url(), &env.dir().join("aws-home"))?;
    let family = format!("place-{}", env.id);
    register(&env.api(), small(&family)).await?;
    let c = env.cluster.as_str();
    let zones = zones_by_instance(&env).await?;
    let gpu_instance = zones
        .iter()
        .find(|(_, z)| *z == "lab-1c")
        .map(|(a, _)| a.clone())
        .context("the lab-1c instance")?;

    // binpack on memory: every copy on the instance with the least memory left.
    let run = aws.ecs(&[
        "run-task",
        "--cluster",
        c,
        "--task-definition",
        &family,
        "--count",
        "3",
        "--placement-strategy",
        "type=binpack,field=memory",
    ])?;
    let placed = per_instance(&tasks_of(&run));
    eprintln!("binpack memory: {placed:?}");
    ensure!(
        placed.len() == 1 && placed.values().sum::<usize>() == 3,
        "{run:#}"
    );

    // distinctInstance: a fourth task of the group has nowhere to go.
    let run = aws.ecs(&[
        "run-task",
        "--cluster",
        c,
        "--task-definition",
        &family,
        "--count",
        "4",
        "--group",
        "distinct",
        "--placement-constraints",
        "type=distinctInstance",
    ])?;
    let placed = per_instance(&tasks_of(&run));
    ensure!(
        placed.len() == 3 && placed.values().all(|n| *n == 1),
        "{run:#}"
    );
    let failures = run["failures"].as_array().context("failures")?;
    ensure!(failures.len() == 1, "{run:#}");
    ensure!(
        failures[0]["reason"] == "DistinctInstance placement constraint unsatisfied",
        "{run:#}"
    );

    // memberOf on a custom attribute.
    let run = aws.ecs(&[
        "run-task",
        "--cluster",
        c,
        "--task-definition",
        &family,
        "--count",
        "2",
        "--placement-constraints",
        "type=memberOf,expression=attribute:gpu == yes",
    ])?;
    let placed = per_instance(&tasks_of(&run));
    ensure!(
        placed.get(&gpu_instance) == Some(&2),
        "both on lab-1c: {run:#}"
    );

    // memberOf on a task group: next to the group "db", wherever it landed.
    let db = aws.ecs(&[
        "run-task",
        "--cluster",
        c,
        "--task-definition",
        &family,
        "--group",
        "db",
        "--placement-constraints",
        "type=memberOf,expression=attribute:ecs.availability-zone == lab-1a",
    ])?;
    let db_instance = tasks_of(&db)[0]["containerInstanceArn"]
        .as_str()
        .context("db placed")?
        .to_owned();
    ensure!(zones[&db_instance] == "lab-1a", "{db:#}");
    let run = aws.ecs(&[
        "run-task",
        "--cluster",
        c,
        "--task-definition",
        &family,
        "--count",
        "2",
        "--placement-constraints",
        "type=memberOf,expression=task:group == db",
    ])?;
    let placed = per_instance(&tasks_of(&run));
    ensure!(placed.get(&db_instance) == Some(&2), "next to db: {run:#}");
    // Anti-affinity: anywhere but there.
    let run = aws.ecs(&[
        "run-task",
        "--cluster",
        c,
        "--task-definition",
        &family,
        "--count",
        "4",
        "--placement-constraints",
        "type=memberOf,expression=not(task:group == db)",
    ])?;
    let placed = per_instance(&tasks_of(&run));
    ensure!(
        !placed.contains_key(&db_instance) && placed.values().sum::<usize>() == 4,
        "away from db: {run:#}"
    );
    // Nothing matches: ECS's reason, nothing placed.
    let run = aws.ecs(&[
        "run-task",
        "--cluster",
        c,
        "--task-definition",
        &family,
        "--placement-constraints",
        "type=memberOf,expression=attribute:gpu == no",
    ])?;
    ensure!(tasks_of(&run).is_empty(), "{run:#}");
    ensure!(
        run["failures"][0]["reason"] == "MemberOf placement constraint unsatisfied",
        "{run:#}"
    );

    // A bad expression is refused with where it went wrong, and places nothing.
    let err = aws
        .ecs(&[
            "run-task",
            "--cluster",
            c,
            "--task-definition",
            &family,
            "--placement-constraints",
            "type=memberOf,expression=attribute:gpu ~= yes",
        ])
        .expect_err("a bad expression is refused");
    let text = format!("{err:#}");
    ensure!(
        text.contains("InvalidParameterException") && text.contains("position 15"),
        "{text}"
    );
    let err = aws
        .ecs(&[
            "run-task",
            "--cluster",
            c,
            "--task-definition",
            &family,
            "--placement-strategy",
            "type=binpack,field=disk",
        ])
        .expect_err("a bad strategy is refused");
    ensure!(
        format!("{err:#}").contains("binpack takes the field cpu or memory"),
        "{err:#}"
    );
    // StartTask: one task on each named instance; an unknown one is MISSING.
    let b = zones
        .iter()
        .find(|(_, z)| *z == "lab-1b")
        .map(|(a, _)| a.clone())
        .context("lab-1b")?;
    let started = aws.ecs(&[
        "start-task",
        "--cluster",
        c,
        "--task-definition",
        &family,
        "--container-instances",
        &b,
        &gpu_instance,
        "0123456789abcdef0123456789abcdef",
    ])?;
    let placed = per_instance(&tasks_of(&started));
    ensure!(
        placed.get(&b) == Some(&1) && placed.get(&gpu_instance) == Some(&1) && placed.len() == 2,
        "{started:#}"
    );
    ensure!(started["failures"][0]["reason"] == "MISSING", "{started:#}");
    env.pass();
    Ok(())
}

/// The service's tasks whose desired status is RUNNING, described.
async fn running_tasks_of(
    api: &berth_e2e::EcsClient,
    cluster: &str,
    service: &str,
) -> Result<Vec<Value>> {
    let listed = api
        .call(
            "ListTasks",
            json!({"cluster": cluster, "serviceName": service, "desiredStatus": "RUNNING"}),
        )
        .await?;
    let arns = arns(&listed, "taskArns");
    if arns.is_empty() {
        return Ok(Vec::new());
    }
    let d = api
        .call("DescribeTasks", json!({"cluster": cluster, "tasks": arns}))
        .await?;
    Ok(d["tasks"].as_array().cloned().unwrap_or_default())
}

/// The ARN of the instance in `zone`.
async fn instance_in(env: &TestEnv, zone: &str) -> Result<String> {
    zones_by_instance(env)
        .await?
        .into_iter()
        .find(|(_, z)| z == zone)
        .map(|(a, _)| a)
        .with_context(|| format!("the {zone} instance"))
}

fn arns(v: &Value, key: &str) -> Vec<String> {
    v[key]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn custom_attributes_are_put_listed_filtered_placed_on_and_deleted() -> Result<()> {
    let env = zoned_fleet("place-attrs").await?;
    let aws = AwsCli::new(&env.api_url(), &env.dir().join("aws-home"))?;
    let c = env.cluster.as_str();
    let target = instance_in(&env, "lab-1a").await?;
    let put = aws.ecs(&[
        "put-attributes",
        "--cluster",
        c,
        "--attributes",
        &format!("name=team,value=blue,targetType=container-instance,targetId={target}"),
    ])?;
    ensure!(put["attributes"][0]["name"] == "team", "{put}");
    let listed = aws.ecs(&[
        "list-attributes",
        "--cluster",
        c,
        "--target-type",
        "container-instance",
        "--attribute-name",
        "team",
    ])?;
    let found = listed["attributes"].as_array().context("attributes")?;
    ensure!(
        found.len() == 1 && found[0]["targetId"] == target.as_str() && found[0]["value"] == "blue",
        "{listed}"
    );
    // Agents' own attributes are listed too.
    let zones = aws.ecs(&[
        "list-attributes",
        "--cluster",
        c,
        "--target-type",
        "container-instance",
        "--attribute-name",
        "ecs.availability-zone",
    ])?;
    ensure!(
        zones["attributes"].as_array().map_or(0, Vec::len) == 3,
        "{zones}"
    );
    let filtered = aws.ecs(&[
        "list-container-instances",
        "--cluster",
        c,
        "--filter",
        "attribute:team == blue",
    ])?;
    ensure!(
        arns(&filtered, "containerInstanceArns") == vec![target.clone()],
        "{filtered}"
    );
    let not_blue = aws.ecs(&[
        "list-container-instances",
        "--cluster",
        c,
        "--filter",
        "attribute:team != blue and attribute:ecs.availability-zone in [lab-1b, lab-1c]",
    ])?;
    ensure!(
        arns(&not_blue, "containerInstanceArns").len() == 2,
        "{not_blue}"
    );
    let family = format!("attrs-{}", env.id);
    register(&env.api(), small(&family)).await?;
    let run = aws.ecs(&[
        "run-task",
        "--cluster",
        c,
        "--task-definition",
        &family,
        "--count",
        "2",
        "--placement-constraints",
        "type=memberOf,expression=attribute:team == blue",
    ])?;
    ensure!(
        per_instance(&tasks_of(&run)).get(&target) == Some(&2),
        "{run:#}"
    );

    // Errors in ECS's shape.
    let err = aws
        .ecs(&[
            "put-attributes",
            "--cluster",
            c,
            "--attributes",
            "name=team,value=red,targetType=container-instance,targetId=0123456789abcdef",
        ])
        .expect_err("an unknown target");
    ensure!(
        format!("{err:#}").contains("TargetNotFoundException"),
        "{err:#}"
    );
    let err = aws
        .ecs(&[
            "put-attributes",
            "--cluster",
            c,
            "--attributes",
            &format!("name=ecs.instance-type,value=big,targetId={target}"),
        ])
        .expect_err("a reserved name");
    ensure!(
        format!("{err:#}").contains("InvalidParameterException"),
        "{err:#}"
    );
    let err = aws
        .ecs(&[
            "list-container-instances",
            "--cluster",
            c,
            "--filter",
            "attribute:team === blue",
        ])
        .expect_err("a bad filter");
    ensure!(format!("{err:#}").contains("position"), "{err:#}");

    aws.ecs(&[
        "delete-attributes",
        "--cluster",
        c,
        "--attributes",
        &format!("name=team,targetId={target}"),
    ])?;
    let filtered = aws.ecs(&[
        "list-container-instances",
        "--cluster",
        c,
        "--filter",
        "attribute:team exists",
    ])?;
    ensure!(
        arns(&filtered, "containerInstanceArns").is_empty(),
        "{filtered}"
    );
    env.pass();
    Ok(())
}

/// A service of 3 (one per zone, 100/200) and a standalone task on the lab-1a instance; that
/// instance is drained: its service task moves while at least 3 run at every look, nothing new
/// lands on it, the standalone task stays, and it can be made ACTIVE again.
#[tokio::test]
async fn draining_an_instance_moves_its_service_tasks_without_going_below_the_minimum() -> Result<()>
{
    let env = zoned_fleet("place-drain").await?;
    let aws = AwsCli::new(&env.api_url(), &env.dir().join("aws-home"))?;
    let api = env.api();
    let c = env.cluster.as_str();
    let target = instance_in(&env, "lab-1a").await?;
    let family = format!("drain-{}", env.id);
    register(&api, small(&family)).await?;
    let standalone = aws.ecs(&[
        "run-task",
        "--cluster",
        c,
        "--task-definition",
        &family,
        "--placement-constraints",
        "type=memberOf,expression=attribute:ecs.availability-zone == lab-1a",
    ])?;
    let standalone_arn = tasks_of(&standalone)[0]["taskArn"]
        .as_str()
        .context("standalone task")?
        .to_owned();
    let name = format!("drain-{}", env.id);
    aws.ecs(&[
        "create-service",
        "--cluster",
        c,
        "--service-name",
        &name,
        "--task-definition",
        &family,
        "--desired-count",
        "3",
        "--launch-type",
        "EXTERNAL",
        "--deployment-configuration",
        "minimumHealthyPercent=100,maximumPercent=200",
    ])?;
    wait_stable(&aws, c, &name)?;
    let service_tasks = || running_tasks_of(&api, c, &name);
    let before = per_instance(&service_tasks().await?);
    ensure!(
        before.get(&target) == Some(&1),
        "one task on lab-1a: {before:?}"
    );

    let drained = aws.ecs(&[
        "update-container-instances-state",
        "--cluster",
        c,
        "--container-instances",
        &target,
        "--status",
        "DRAINING",
    ])?;
    ensure!(
        drained["containerInstances"][0]["status"] == "DRAINING",
        "{drained}"
    );
    let listed = aws.ecs(&[
        "list-container-instances",
        "--cluster",
        c,
        "--status",
        "DRAINING",
    ])?;
    ensure!(
        arns(&listed, "containerInstanceArns") == vec![target.clone()],
        "{listed}"
    );
    // Until nothing of the service runs on the drained instance; RUNNING never below 3.
    let mut samples = Vec::new();
    let deadline = std::time::Instant::now() + timeout(90);
    loop {
        let ts = service_tasks().await?;
        let running = ts.iter().filter(|t| t["lastStatus"] == "RUNNING").count();
        samples.push(running);
        let on_target = ts
            .iter()
            .any(|t| t["containerInstanceArn"] == target.as_str());
        if !on_target && running == 3 {
            break;
        }
        ensure!(
            std::time::Instant::now() < deadline,
            "the service task never moved off lab-1a: {samples:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    eprintln!("RUNNING service tasks at each look: {samples:?}");
    ensure!(
        samples.iter().all(|n| *n >= 3),
        "below the minimum: {samples:?}"
    );
    wait_stable(&aws, c, &name)?;
    let after = per_instance(&service_tasks().await?);
    ensure!(
        !after.contains_key(&target) && after.values().sum::<usize>() == 3,
        "{after:?}"
    );
    let events = aws.ecs(&["describe-services", "--cluster", c, "--services", &name])?;
    let s = &events["services"][0];
    ensure!(
        s["deployments"].as_array().map_or(0, Vec::len) == 1,
        "{s:#}"
    );
    // The standalone task is left alone; nothing new is placed on a draining instance.
    let st = api.describe_task(c, &standalone_arn).await?;
    ensure!(st["lastStatus"] == "RUNNING", "{st:#}");
    let run = aws.ecs(&[
        "run-task",
        "--cluster",
        c,
        "--task-definition",
        &family,
        "--placement-constraints",
        "type=memberOf,expression=attribute:ecs.availability-zone == lab-1a",
    ])?;
    ensure!(
        tasks_of(&run).is_empty(),
        "nothing placed on a draining instance: {run:#}"
    );
    let active = aws.ecs(&[
        "update-container-instances-state",
        "--cluster",
        c,
        "--container-instances",
        &target,
        "--status",
        "ACTIVE",
    ])?;
    ensure!(
        active["containerInstances"][0]["status"] == "ACTIVE",
        "{active}"
    );
    let err = aws
        .ecs(&[
            "update-container-instances-state",
            "--cluster",
            c,
            "--container-instances",
            &target,
            "--status",
            "INACTIVE",
        ])
        .expect_err("INACTIVE is not a status users set");
    ensure!(
        format!("{err:#}").contains("InvalidParameterException"),
        "{err:#}"
    );
    delete_service(&aws, c, &name)?;
    env.pass();
    Ok(())
}

/// DeregisterContainerInstance on a real fleet: refused while the instance has tasks, then with
/// `--force` the instance is INACTIVE, its service task orphaned (STOPPED, as ECS shows it) and
/// replaced on the other host, and its agent, told it is deregistered, exits 78 (which its
/// systemd unit does not restart).
#[tokio::test]
async fn a_deregistered_instance_is_inactive_its_agent_exits_and_its_service_task_moves(
) -> Result<()> {
    let mut env = fleet_in("place-dereg", &["lab-1a", "lab-1b"]).await?;
    let gone_agent = 0;
    let aws = AwsCli::new(&env.api_url(), &env.dir().join("aws-home"))?;
    let api = env.api();
    let c = env.cluster.clone();
    let c = c.as_str();
    let gone = instance_in(&env, "lab-1a").await?;
    let stays = instance_in(&env, "lab-1b").await?;
    let family = format!("dereg-{}", env.id);
    register(&api, small(&family)).await?;
    let name = format!("dereg-{}", env.id);
    aws.ecs(&[
        "create-service",
        "--cluster",
        c,
        "--service-name",
        &name,
        "--task-definition",
        &family,
        "--desired-count",
        "2",
        "--launch-type",
        "EXTERNAL",
    ])?;
    wait_stable(&aws, c, &name)?;
    let before = running_tasks_of(&api, c, &name).await?;
    let orphan = before
        .iter()
        .find(|t| t["containerInstanceArn"] == gone.as_str())
        .and_then(|t| t["taskArn"].as_str())
        .with_context(|| format!("a service task on lab-1a: {before:?}"))?
        .to_owned();

    let refused = aws
        .ecs(&[
            "deregister-container-instance",
            "--cluster",
            c,
            "--container-instance",
            &gone,
        ])
        .expect_err("an instance with tasks needs --force");
    ensure!(
        format!("{refused:#}").contains("InvalidParameterException"),
        "{refused:#}"
    );
    let out = aws.ecs(&[
        "deregister-container-instance",
        "--cluster",
        c,
        "--container-instance",
        &gone,
        "--force",
    ])?;
    ensure!(out["containerInstance"]["status"] == "INACTIVE", "{out:#}");
    let exit = env.agent(gone_agent).wait_exit(timeout(30)).await?;
    ensure!(exit.code() == Some(78), "the agent exits 78: {exit:?}");

    let t = api.describe_task(c, &orphan).await?;
    ensure!(
        t["lastStatus"] == "STOPPED"
            && t["stoppedReason"]
                .as_str()
                .is_some_and(|r| r.starts_with("Container instance deregistered")),
        "{t:#}"
    );
    wait_stable(&aws, c, &name)?;
    let after = per_instance(&running_tasks_of(&api, c, &name).await?);
    ensure!(
        after == BTreeMap::from([(stays.clone(), 2)]),
        "both on lab-1b now: {after:?}"
    );
    let listed = aws.ecs(&["list-container-instances", "--cluster", c])?;
    ensure!(
        arns(&listed, "containerInstanceArns") == vec![stays.clone()],
        "{listed}"
    );
    let inactive = aws.ecs(&[
        "list-container-instances",
        "--cluster",
        c,
        "--status",
        "INACTIVE",
    ])?;
    ensure!(
        arns(&inactive, "containerInstanceArns") == vec![gone.clone()],
        "{inactive}"
    );
    delete_service(&aws, c, &name)?;
    env.pass();
    Ok(())
}

/// A DAEMON service: one task on each instance, one more on an instance that joins later, a
/// new revision replaced in place (never two of the service on one instance), its count derived
/// and not settable, the daemon leaving a drained instance, deleted without scaling down.
#[tokio::test]
async fn a_daemon_service_runs_one_task_per_instance_and_follows_a_new_one() -> Result<()> {
    let mut env = TestEnv::new("place-daemon")?;
    env.set_cp_service_settle_ms(500);
    env.start_cp().await?;
    let code = env.create_activation(3)?;
    env.start_host_in(Some(&code), "lab-1a", &[])?;
    env.start_host_in(Some(&code), "lab-1b", &[])?;
    wait_connected(&env, 2).await?;
    let aws = AwsCli::new(&env.api_url(), &env.dir().join("aws-home"))?;
    let api = env.api();
    let c = env.cluster.clone();
    let c = c.as_str();
    let family = format!("daemon-{}", env.id);
    register(&api, small(&family)).await?;
    let rev2 = serde_json::to_string(&{
        let mut d = small(&family);
        d["containerDefinitions"][0]["command"] = json!(["sleep", "601"]);
        d
    })?;
    let name = format!("daemon-{}", env.id);
    let created = aws.ecs(&[
        "create-service",
        "--cluster",
        c,
        "--service-name",
        &name,
        "--task-definition",
        &family,
        "--scheduling-strategy",
        "DAEMON",
        "--launch-type",
        "EXTERNAL",
    ])?;
    ensure!(
        created["service"]["schedulingStrategy"] == "DAEMON",
        "{created}"
    );
    ensure!(
        created["service"]["deploymentConfiguration"]["maximumPercent"] == 100
            && created["service"]["deploymentConfiguration"]["minimumHealthyPercent"] == 0,
        "ECS's daemon defaults: {created}"
    );
    let running = || running_tasks_of(&api, c, &name);
    wait_stable(&aws, c, &name)?;
    let first = per_instance(&running().await?);
    ensure!(
        first.len() == 2 && first.values().all(|n| *n == 1),
        "{first:?}"
    );
    let d = aws.ecs(&["describe-services", "--cluster", c, "--services", &name])?;
    ensure!(d["services"][0]["desiredCount"] == 2, "{d}");

    // A third instance joins: it gets its task.
    env.start_host_in(Some(&code), "lab-1c", &[])?;
    wait_connected(&env, 3).await?;
    wait_until("the new instance's daemon task", timeout(60), || async {
        let now = per_instance(&running().await?);
        Ok((now.len() == 3 && now.values().all(|n| *n == 1)).then_some(()))
    })
    .await?;
    wait_stable(&aws, c, &name)?;
    let d = aws.ecs(&["describe-services", "--cluster", c, "--services", &name])?;
    ensure!(d["services"][0]["desiredCount"] == 3, "{d}");

    // Its count is not settable; strategies do not apply.
    let err = aws
        .ecs(&[
            "update-service",
            "--cluster",
            c,
            "--service",
            &name,
            "--desired-count",
            "5",
        ])
        .expect_err("a daemon's count is derived");
    ensure!(format!("{err:#}").contains("DAEMON"), "{err:#}");

    // A new revision, replaced in place: at no look two of the service's tasks on one instance.
    let td2 = aws.ecs(&["register-task-definition", "--cli-input-json", &rev2])?;
    let rev2_arn = td2["taskDefinition"]["taskDefinitionArn"]
        .as_str()
        .context("rev 2")?
        .to_owned();
    aws.ecs(&[
        "update-service",
        "--cluster",
        c,
        "--service",
        &name,
        "--task-definition",
        &format!("{family}:2"),
    ])?;
    let mut most = 0;
    let deadline = std::time::Instant::now() + timeout(90);
    loop {
        let listed = api
            .call("ListTasks", json!({"cluster": c, "serviceName": name}))
            .await?;
        let all = arns(&listed, "taskArns");
        let described = api
            .call("DescribeTasks", json!({"cluster": c, "tasks": all}))
            .await?;
        let live: Vec<Value> = described["tasks"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| t["lastStatus"] != "STOPPED")
            .cloned()
            .collect();
        most = most.max(per_instance(&live).values().copied().max().unwrap_or(0));
        let on_rev2 = live
            .iter()
            .filter(|t| t["taskDefinitionArn"] == rev2_arn.as_str() && t["lastStatus"] == "RUNNING")
            .count();
        if on_rev2 == 3 && live.len() == 3 {
            break;
        }
        ensure!(
            std::time::Instant::now() < deadline,
            "the rollout did not finish: {live:#?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    ensure!(
        most == 1,
        "at most one task of the daemon per instance, saw {most}"
    );
    wait_stable(&aws, c, &name)?;

    // Draining an instance takes its daemon task away (nothing else runs there).
    let target = instance_in(&env, "lab-1a").await?;
    aws.ecs(&[
        "update-container-instances-state",
        "--cluster",
        c,
        "--container-instances",
        &target,
        "--status",
        "DRAINING",
    ])?;
    wait_until(
        "the daemon off the drained instance",
        timeout(60),
        || async {
            let now = per_instance(&running().await?);
            Ok((!now.contains_key(&target) && now.len() == 2).then_some(()))
        },
    )
    .await?;
    wait_stable(&aws, c, &name)?;
    let d = aws.ecs(&["describe-services", "--cluster", c, "--services", &name])?;
    ensure!(d["services"][0]["desiredCount"] == 2, "{d}");
    let daemons = aws.ecs(&[
        "list-services",
        "--cluster",
        c,
        "--scheduling-strategy",
        "DAEMON",
    ])?;
    ensure!(arns(&daemons, "serviceArns").len() == 1, "{daemons}");
    let replicas = aws.ecs(&[
        "list-services",
        "--cluster",
        c,
        "--scheduling-strategy",
        "REPLICA",
    ])?;
    ensure!(arns(&replicas, "serviceArns").is_empty(), "{replicas}");

    // Deleted as it is: no scale-down first.
    aws.ecs(&["delete-service", "--cluster", c, "--service", &name])?;
    aws.ecs(&[
        "wait",
        "services-inactive",
        "--cluster",
        c,
        "--services",
        &name,
    ])?;
    env.pass();
    Ok(())
}
