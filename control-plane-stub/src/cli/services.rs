//! berthctl's service commands: create-service, update-service, describe-services,
//! list-services, delete-service, service-events, and `deploy SERVICE TASKDEF --wait`, which
//! follows a deployment until it completes or fails.

use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::table::{last_segment, render, s, utc};
use super::{CliError, Client, Output};

#[derive(Debug, Args)]
pub struct DeploymentArgs {
    /// deploymentConfiguration.minimumHealthyPercent (ECS's default 100).
    #[arg(long)]
    min_healthy_percent: Option<u32>,
    /// deploymentConfiguration.maximumPercent (ECS's default 200).
    #[arg(long)]
    max_percent: Option<u32>,
    /// Turn on the deployment circuit breaker.
    #[arg(long)]
    circuit_breaker: bool,
    /// With --circuit-breaker: roll back to the last completed deployment when it trips.
    #[arg(long, requires = "circuit_breaker")]
    rollback: bool,
}

impl DeploymentArgs {
    /// The request's deploymentConfiguration; None when nothing was given.
    fn to_json(&self) -> Option<Value> {
        let mut m = serde_json::Map::new();
        if let Some(p) = self.min_healthy_percent {
            m.insert("minimumHealthyPercent".into(), json!(p));
        }
        if let Some(p) = self.max_percent {
            m.insert("maximumPercent".into(), json!(p));
        }
        if self.circuit_breaker {
            m.insert(
                "deploymentCircuitBreaker".into(),
                json!({"enable": true, "rollback": self.rollback}),
            );
        }
        (!m.is_empty()).then_some(Value::Object(m))
    }
}

#[derive(Debug, Subcommand)]
pub enum ServiceCommand {
    /// Create a REPLICA service that keeps DESIRED tasks of TASKDEF running, or with --daemon
    /// one task on every container instance.
    CreateService {
        name: String,
        /// FAMILY, FAMILY:REV or ARN.
        task_definition: String,
        #[arg(long, default_value_t = 1, conflicts_with = "daemon")]
        desired_count: u32,
        /// schedulingStrategy DAEMON: one task on each ACTIVE instance.
        #[arg(long)]
        daemon: bool,
        #[arg(long, default_value = "EXTERNAL", value_parser = ["EXTERNAL", "EC2"])]
        launch_type: String,
        /// healthCheckGracePeriodSeconds.
        #[arg(long)]
        grace_period: Option<u32>,
        /// An awsvpc task's security group, by id or name (repeatable).
        #[arg(long = "security-group", value_name = "GROUP")]
        security_groups: Vec<String>,
        #[command(flatten)]
        deployment: DeploymentArgs,
    },
    /// Change a service; a new task definition or --force-new-deployment starts a deployment.
    UpdateService {
        name: String,
        #[arg(long)]
        task_definition: Option<String>,
        #[arg(long)]
        desired_count: Option<u32>,
        #[arg(long)]
        grace_period: Option<u32>,
        #[arg(long)]
        force_new_deployment: bool,
        #[command(flatten)]
        deployment: DeploymentArgs,
    },
    /// Services with their deployments and latest events.
    DescribeServices {
        #[arg(required = true)]
        names: Vec<String>,
    },
    ListServices,
    /// Delete a service: refused while it runs tasks unless --force, which stops them.
    DeleteService {
        name: String,
        #[arg(long)]
        force: bool,
    },
    /// A service's events, newest first.
    ServiceEvents {
        name: String,
        /// At most this many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Deploy TASKDEF to SERVICE; with --wait, follow the deployment until it completes
    /// (exit 0) or fails or is rolled back (exit 1).
    Deploy {
        service: String,
        task_definition: String,
        #[arg(long)]
        wait: bool,
        /// Give up waiting after this long.
        #[arg(long, default_value_t = 1800)]
        timeout_secs: u64,
    },
}

/// Performs a service command and returns what to print.
pub(super) async fn execute(
    client: &Client,
    cluster: &str,
    output: Output,
    command: &ServiceCommand,
) -> Result<String, CliError> {
    let (response, render): (Value, fn(&Value) -> String) = match command {
        ServiceCommand::CreateService {
            name,
            task_definition,
            desired_count,
            daemon,
            launch_type,
            grace_period,
            security_groups,
            deployment,
        } => {
            let mut body = json!({
                "cluster": cluster, "serviceName": name, "taskDefinition": task_definition,
                "launchType": launch_type,
            });
            if *daemon {
                body["schedulingStrategy"] = json!("DAEMON");
            } else {
                body["desiredCount"] = json!(desired_count);
            }
            if let Some(d) = deployment.to_json() {
                body["deploymentConfiguration"] = d;
            }
            if let Some(g) = grace_period {
                body["healthCheckGracePeriodSeconds"] = json!(g);
            }
            if !security_groups.is_empty() {
                body["networkConfiguration"] =
                    json!({"awsvpcConfiguration": {"securityGroups": security_groups}});
            }
            (client.call("CreateService", body).await?, |v| {
                services(std::slice::from_ref(&v["service"]))
            })
        }
        ServiceCommand::UpdateService {
            name,
            task_definition,
            desired_count,
            grace_period,
            force_new_deployment,
            deployment,
        } => {
            let mut body = json!({"cluster": cluster, "service": name});
            if let Some(t) = task_definition {
                body["taskDefinition"] = json!(t);
            }
            if let Some(c) = desired_count {
                body["desiredCount"] = json!(c);
            }
            if let Some(g) = grace_period {
                body["healthCheckGracePeriodSeconds"] = json!(g);
            }
            if *force_new_deployment {
                body["forceNewDeployment"] = json!(true);
            }
            if let Some(d) = deployment.to_json() {
                body["deploymentConfiguration"] = d;
            }
            (client.call("UpdateService", body).await?, |v| {
                services(std::slice::from_ref(&v["service"]))
            })
        }
        ServiceCommand::DescribeServices { names } => (
            client
                .call(
                    "DescribeServices",
                    json!({"cluster": cluster, "services": names}),
                )
                .await?,
            describe,
        ),
        ServiceCommand::ListServices => (list_all(client, cluster).await?, |v| {
            super::table::arn_list(v, "serviceArns", "SERVICE")
        }),
        ServiceCommand::DeleteService { name, force } => (
            client
                .call(
                    "DeleteService",
                    json!({"cluster": cluster, "service": name, "force": force}),
                )
                .await?,
            |v| services(std::slice::from_ref(&v["service"])),
        ),
        ServiceCommand::ServiceEvents { name, limit } => {
            let v = describe_one(client, cluster, name).await?;
            let events: Vec<Value> = v["events"]
                .as_array()
                .map(|e| e.iter().take(*limit).cloned().collect())
                .unwrap_or_default();
            (json!({"events": events}), |v| {
                events_table(v["events"].as_array().map(Vec::as_slice).unwrap_or(&[]))
            })
        }
        ServiceCommand::Deploy {
            service,
            task_definition,
            wait,
            timeout_secs,
        } => {
            let updated = client
                .call(
                    "UpdateService",
                    json!({"cluster": cluster, "service": service, "taskDefinition": task_definition}),
                )
                .await?;
            if !wait {
                return Ok(match output {
                    Output::Json => serde_json::to_string_pretty(&updated).unwrap_or_default(),
                    Output::Table => describe(&json!({"services": [updated["service"]]})),
                });
            }
            let deployment = updated["service"]["deployments"][0]["id"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            return follow(
                client,
                cluster,
                service,
                &deployment,
                Duration::from_secs(*timeout_secs),
            )
            .await;
        }
    };
    Ok(match output {
        Output::Json => serde_json::to_string_pretty(&response).unwrap_or_default(),
        Output::Table => render(&response),
    })
}

/// Every page of ListServices.
async fn list_all(client: &Client, cluster: &str) -> Result<Value, CliError> {
    let mut arns = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut body = json!({"cluster": cluster, "maxResults": 100});
        if let Some(t) = &token {
            body["nextToken"] = json!(t);
        }
        let page = client.call("ListServices", body).await?;
        arns.extend(page["serviceArns"].as_array().cloned().unwrap_or_default());
        match page["nextToken"].as_str() {
            Some(t) => token = Some(t.to_string()),
            None => return Ok(json!({"serviceArns": arns})),
        }
    }
}

async fn describe_one(client: &Client, cluster: &str, name: &str) -> Result<Value, CliError> {
    let v = client
        .call(
            "DescribeServices",
            json!({"cluster": cluster, "services": [name]}),
        )
        .await?;
    match v["services"].as_array().and_then(|s| s.first()) {
        Some(s) => Ok(s.clone()),
        None => Err(CliError::Api {
            code: "ServiceNotFoundException".into(),
            message: format!("no service {name:?} in cluster {cluster:?}"),
        }),
    }
}

/// How a followed deployment ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Completed,
    Failed(String),
    /// A newer deployment (a rollback, or someone else's update) took over.
    Replaced(String),
}

/// Where `deployment` stands in a DescribeServices answer: None while it is in progress.
pub fn outcome(service: &Value, deployment: &str) -> Option<Outcome> {
    let deployments = service["deployments"].as_array()?;
    let primary = deployments.first()?;
    match deployments.iter().find(|d| d["id"] == deployment) {
        Some(d) if d["rolloutState"] == "FAILED" => {
            Some(Outcome::Failed(s(&d["rolloutStateReason"])))
        }
        Some(d) if d["rolloutState"] == "COMPLETED" && deployments.len() == 1 => {
            Some(Outcome::Completed)
        }
        Some(_) if primary["id"] != deployment => Some(Outcome::Replaced(s(&primary["id"]))),
        Some(_) => None,
        // Gone from the list: a newer deployment replaced it and drained it.
        None => Some(Outcome::Replaced(s(&primary["id"]))),
    }
}

/// One line of progress: the primary's counts and what is left of the others.
pub fn progress(service: &Value) -> String {
    let deployments = service["deployments"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut parts = Vec::new();
    for d in &deployments {
        parts.push(format!(
            "{} {} {}: {}/{} running, {} pending, {} failed",
            s(&d["status"]),
            s(&d["id"]),
            last_segment(d["taskDefinition"].as_str().unwrap_or("")),
            s(&d["runningCount"]),
            s(&d["desiredCount"]),
            s(&d["pendingCount"]),
            s(&d["failedTasks"]),
        ));
    }
    parts.join("; ")
}

/// Prints progress and new events until the deployment ends; Ok only when it completed.
async fn follow(
    client: &Client,
    cluster: &str,
    service: &str,
    deployment: &str,
    timeout: Duration,
) -> Result<String, CliError> {
    println!("deployment {deployment} started");
    let deadline = tokio::time::Instant::now() + timeout;
    let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut first = true;
    let mut last_progress = String::new();
    loop {
        let v = describe_one(client, cluster, service).await?;
        let events = v["events"].as_array().cloned().unwrap_or_default();
        // Events from before this deployment are history: only newer ones are printed.
        for e in events.iter().rev() {
            let id = s(&e["id"]);
            if seen.insert(id) && !first {
                println!("{}  {}", utc(&e["createdAt"]), s(&e["message"]));
            }
        }
        first = false;
        let line = progress(&v);
        if line != last_progress {
            println!("{line}");
            last_progress = line;
        }
        match outcome(&v, deployment) {
            Some(Outcome::Completed) => return Ok(format!("deployment {deployment} completed")),
            Some(Outcome::Failed(reason)) => {
                return Err(CliError::Deployment(format!(
                    "deployment {deployment} failed: {reason}"
                )))
            }
            Some(Outcome::Replaced(by)) => {
                return Err(CliError::Deployment(format!(
                    "deployment {deployment} was replaced by deployment {by}"
                )))
            }
            None => {}
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(CliError::Deployment(format!(
                "deployment {deployment} still in progress after {}s",
                timeout.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// The services, one row each.
pub fn services(list: &[Value]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|v| {
            vec![
                s(&v["serviceName"]),
                s(&v["status"]),
                s(&v["desiredCount"]),
                s(&v["runningCount"]),
                s(&v["pendingCount"]),
                last_segment(v["taskDefinition"].as_str().unwrap_or("-")),
                v["deployments"].as_array().map_or(0, Vec::len).to_string(),
            ]
        })
        .collect();
    render(
        &[
            "SERVICE",
            "STATUS",
            "DESIRED",
            "RUNNING",
            "PENDING",
            "TASK DEFINITION",
            "DEPLOYMENTS",
        ],
        &rows,
    )
}

/// DescribeServices: each service, its deployments and its last five events.
pub fn describe(v: &Value) -> String {
    let list = v["services"].as_array().cloned().unwrap_or_default();
    let mut out = vec![services(&list)];
    for svc in &list {
        let rows: Vec<Vec<String>> = svc["deployments"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|d| {
                vec![
                    s(&d["id"]),
                    s(&d["status"]),
                    s(&d["rolloutState"]),
                    last_segment(d["taskDefinition"].as_str().unwrap_or("-")),
                    s(&d["desiredCount"]),
                    s(&d["runningCount"]),
                    s(&d["pendingCount"]),
                    s(&d["failedTasks"]),
                ]
            })
            .collect();
        out.push(format!("\n{}: deployments", s(&svc["serviceName"])));
        out.push(render(
            &[
                "DEPLOYMENT",
                "STATUS",
                "ROLLOUT",
                "TASK DEFINITION",
                "DESIRED",
                "RUNNING",
                "PENDING",
                "FAILED",
            ],
            &rows,
        ));
        let events: Vec<Value> = svc["events"]
            .as_array()
            .map(|e| e.iter().take(5).cloned().collect())
            .unwrap_or_default();
        if !events.is_empty() {
            out.push(format!("\n{}: latest events", s(&svc["serviceName"])));
            out.push(events_table(&events));
        }
    }
    for f in v["failures"].as_array().cloned().unwrap_or_default() {
        out.push(format!("failure: {} {}", s(&f["arn"]), s(&f["reason"])));
    }
    out.join("\n")
}

fn events_table(events: &[Value]) -> String {
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| vec![utc(&e["createdAt"]), s(&e["message"])])
        .collect();
    render(&["AT (UTC)", "EVENT"], &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(deployments: Value) -> Value {
        json!({"serviceName": "web", "deployments": deployments})
    }

    #[test]
    fn a_followed_deployment_ends_as_the_service_says() {
        let d = |id: &str, status: &str, rollout: &str| {
            json!({"id": id, "status": status, "rolloutState": rollout,
                   "rolloutStateReason": "why", "taskDefinition": "arn:aws:ecs:r:a:task-definition/web:2",
                   "desiredCount": 2, "runningCount": 1, "pendingCount": 1, "failedTasks": 0})
        };
        let rolling = svc(json!([
            d("n", "PRIMARY", "IN_PROGRESS"),
            d("o", "ACTIVE", "COMPLETED")
        ]));
        assert_eq!(outcome(&rolling, "n"), None);
        assert_eq!(
            progress(&rolling),
            "PRIMARY n web:2: 1/2 running, 1 pending, 0 failed; ACTIVE o web:2: 1/2 running, 1 pending, 0 failed"
        );
        let done = svc(json!([d("n", "PRIMARY", "COMPLETED")]));
        assert_eq!(outcome(&done, "n"), Some(Outcome::Completed));
        let draining = svc(json!([
            d("n", "PRIMARY", "COMPLETED"),
            d("o", "ACTIVE", "COMPLETED")
        ]));
        assert_eq!(outcome(&draining, "n"), None, "old tasks still to go");
        let failed = svc(json!([
            d("r", "PRIMARY", "IN_PROGRESS"),
            d("n", "ACTIVE", "FAILED")
        ]));
        assert_eq!(outcome(&failed, "n"), Some(Outcome::Failed("why".into())));
        let replaced = svc(json!([d("x", "PRIMARY", "IN_PROGRESS")]));
        assert_eq!(outcome(&replaced, "n"), Some(Outcome::Replaced("x".into())));
    }

    #[test]
    fn deployment_flags_make_ecs_deployment_configuration() {
        let args = DeploymentArgs {
            min_healthy_percent: Some(50),
            max_percent: None,
            circuit_breaker: true,
            rollback: true,
        };
        assert_eq!(
            args.to_json(),
            Some(json!({"minimumHealthyPercent": 50,
                        "deploymentCircuitBreaker": {"enable": true, "rollback": true}}))
        );
        let none = DeploymentArgs {
            min_healthy_percent: None,
            max_percent: None,
            circuit_breaker: false,
            rollback: false,
        };
        assert_eq!(none.to_json(), None);
    }
}
