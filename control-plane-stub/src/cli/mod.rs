//! berthctl: the ECS API of berth-cp for people. Arguments, the HTTP client, and output.

mod audit;
mod exec;
mod instances;
mod logs;
mod services;
mod table;
mod tags;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use serde_json::{json, Value};
use thiserror::Error;

use crate::contract::{
    events_path, secret_path, security_group_path, CONTENT_TYPE, SECRETS_PATH,
    SECURITY_GROUPS_PATH, TARGET_PREFIX,
};

#[derive(Debug, Parser)]
#[command(
    name = "berthctl",
    version,
    about = "Command-line client for berth-cp's ECS API"
)]
pub struct Cli {
    /// berth-cp's ECS API.
    #[arg(
        long,
        env = "BERTH_ENDPOINT",
        default_value = "http://127.0.0.1:7080",
        global = true
    )]
    pub endpoint: String,
    #[arg(long, env = "BERTH_CLUSTER", default_value = "default", global = true)]
    pub cluster: String,
    #[arg(long, value_enum, default_value_t = Output::Table, global = true)]
    pub output: Output,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Register an ECS task-definition JSON file (as for aws --cli-input-json).
    RegisterTaskDefinition {
        file: PathBuf,
    },
    ListTaskDefinitions,
    DescribeTaskDefinition {
        /// FAMILY, FAMILY:REV or ARN.
        task_definition: String,
    },
    RunTask {
        task_definition: String,
        #[arg(long, default_value_t = 1)]
        count: i64,
        #[arg(long)]
        started_by: Option<String>,
        /// An awsvpc task's security group, by id or name (repeatable); without one, all
        /// ingress is allowed.
        #[arg(long = "security-group", value_name = "GROUP")]
        security_groups: Vec<String>,
    },
    StopTask {
        /// Task ARN or id.
        task: String,
        #[arg(long)]
        reason: Option<String>,
    },
    ListTasks {
        #[arg(long, value_parser = ["RUNNING", "STOPPED"], default_value = "RUNNING")]
        desired_status: String,
    },
    DescribeTasks {
        #[arg(required = true)]
        tasks: Vec<String>,
    },
    ListContainerInstances {
        /// A cluster query, e.g. "attribute:ecs.availability-zone == lab-1a".
        #[arg(long)]
        filter: Option<String>,
        #[arg(long, value_parser = ["ACTIVE", "DRAINING", "INACTIVE"])]
        status: Option<String>,
    },
    DescribeContainerInstances {
        #[arg(required = true)]
        instances: Vec<String>,
    },
    CreateCluster {
        name: String,
    },
    /// Create a security group for awsvpc tasks, or replace the rules of the one with this name.
    CreateSecurityGroup {
        #[arg(long)]
        name: String,
        /// PROTOCOL:PORT[-PORT]:CIDR, e.g. tcp:80:0.0.0.0/0, udp:5000-5010:10.0.0.0/8, or
        /// all::CIDR for every protocol and port (repeatable; none allows no ingress).
        #[arg(long = "ingress", value_name = "RULE", value_parser = parse_ingress)]
        ingress: Vec<crate::domain::security::IngressRule>,
        #[arg(long)]
        description: Option<String>,
    },
    ListSecurityGroups,
    DeleteSecurityGroup {
        /// Id (sg-...) or name.
        group: String,
    },
    /// Store a registry login for repositoryCredentials (create, or replace the login of the
    /// secret with this name); task definitions name it by name or by the ARN printed.
    CreateSecret {
        /// 1-128 letters, digits or any of / _ + = . @ -
        #[arg(long)]
        name: String,
        #[arg(long)]
        username: String,
        /// Read the password from stdin (it is never an argument, so it stays out of the shell
        /// history and `ps`), e.g. `printf %s "$TOKEN" | berthctl create-secret ... --password-stdin`.
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// The secrets berth-cp holds (names and ARNs; never their logins).
    ListSecrets,
    DeleteSecret {
        /// Name or ARN.
        #[arg(long)]
        name: String,
    },
    ListClusters,
    /// Print the state changes applied to a task, in the agent's sequence order.
    Events {
        /// Task ARN or id.
        task: String,
    },
    /// Print a container's log (stdout and stderr), read from its agent.
    Logs {
        /// Task ARN or id.
        task: String,
        /// Required when the task has more than one container.
        container: Option<String>,
        /// Keep printing what the container writes, until it stops (or Ctrl-C).
        #[arg(long, short)]
        follow: bool,
        /// Only the last N lines.
        #[arg(long)]
        tail: Option<u32>,
    },
    /// Run a command in a task's container (ExecuteCommand; the task must have been started
    /// with enableExecuteCommand) and exit with its status.
    Exec {
        /// Task ARN or id.
        task: String,
        /// Required when the task has more than one container.
        #[arg(long)]
        container: Option<String>,
        /// Send stdin to the command.
        #[arg(long, short)]
        interactive: bool,
        /// Run it on a terminal (with -i, this terminal is put in raw mode meanwhile).
        #[arg(long, short)]
        tty: bool,
        /// The command and its arguments, after `--`.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    #[command(flatten)]
    Services(services::ServiceCommand),
    #[command(flatten)]
    Instances(instances::InstanceCommand),
    #[command(flatten)]
    Tags(tags::TagCommand),
    #[command(flatten)]
    Audit(audit::AuditCommand),
}

fn parse_ingress(s: &str) -> Result<crate::domain::security::IngressRule, String> {
    crate::domain::security::parse_ingress_spec(s)
}

#[derive(Debug, Error)]
pub enum CliError {
    #[error("cannot reach berth-cp at {endpoint}: {source}")]
    Connect {
        endpoint: String,
        source: reqwest::Error,
    },
    #[error("{code}: {message}")]
    Api { code: String, message: String },
    #[error("reading {path}: {source}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not JSON: {source}")]
    BadFile {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{0}")]
    Logs(String),
    #[error("exec: {0}")]
    Exec(String),
    #[error("unexpected response from {endpoint}: {message}")]
    BadResponse { endpoint: String, message: String },
    #[error("reading the password from stdin: {0}")]
    Password(String),
    /// `deploy --wait`: the deployment did not complete.
    #[error("{0}")]
    Deployment(String),
}

pub struct Client {
    http: reqwest::Client,
    endpoint: String,
}

impl Client {
    pub fn new(endpoint: &str) -> Self {
        Self {
            http: reqwest::Client::new(),
            endpoint: endpoint.trim_end_matches('/').to_string(),
        }
    }

    /// One ECS operation; an ECS error response becomes `CliError::Api`.
    pub async fn call(&self, operation: &str, body: Value) -> Result<Value, CliError> {
        let request = self
            .http
            .post(format!("{}/", self.endpoint))
            .header("X-Amz-Target", format!("{TARGET_PREFIX}{operation}"))
            .header("Content-Type", CONTENT_TYPE)
            .body(body.to_string());
        self.send(request).await
    }

    /// A request to berth-cp's Berth-specific JSON API (`/berth/v1/...`).
    pub async fn berth(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, CliError> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.endpoint));
        if let Some(b) = body {
            request = request
                .header("Content-Type", "application/json")
                .body(b.to_string());
        }
        self.send(request).await
    }

    /// Sends a request whose answer is JSON; an error body (`__type`, `message`) becomes
    /// `CliError::Api`.
    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Value, CliError> {
        let resp = request.send().await.map_err(|source| CliError::Connect {
            endpoint: self.endpoint.clone(),
            source,
        })?;
        let status = resp.status();
        let bad = |message: String| CliError::BadResponse {
            endpoint: self.endpoint.clone(),
            message,
        };
        let text = resp.text().await.map_err(|e| bad(e.to_string()))?;
        let value: Value = serde_json::from_str(&text).map_err(|_| {
            bad(format!(
                "HTTP {status}: {}",
                text.chars().take(200).collect::<String>()
            ))
        })?;
        if status.is_success() {
            return Ok(value);
        }
        let code = value["__type"].as_str().unwrap_or("UnknownError");
        Err(CliError::Api {
            code: code.rsplit('#').next().unwrap_or(code).to_string(),
            message: value["message"].as_str().unwrap_or("").to_string(),
        })
    }
}

pub async fn run(cli: Cli) -> ExitCode {
    if let Command::Exec {
        task,
        container,
        interactive,
        tty,
        command,
    } = &cli.command
    {
        let args = exec::ExecArgs {
            cluster: &cli.cluster,
            task,
            container: container.as_deref(),
            interactive: *interactive,
            tty: *tty,
            command,
        };
        // The command's own status, as `docker exec` exits; 255 for statuses beyond a byte.
        return match exec::run(&Client::new(&cli.endpoint), &args).await {
            Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(255)),
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    match execute(&cli).await {
        Ok(text) => {
            if !text.is_empty() {
                println!("{text}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Performs the command and returns what to print.
pub async fn execute(cli: &Cli) -> Result<String, CliError> {
    let client = Client::new(&cli.endpoint);
    let cluster = cli.cluster.as_str();
    let (response, render): (Value, fn(&Value) -> String) = match &cli.command {
        Command::RegisterTaskDefinition { file } => {
            let text = std::fs::read_to_string(file).map_err(|source| CliError::ReadFile {
                path: file.clone(),
                source,
            })?;
            let body: Value = serde_json::from_str(&text).map_err(|source| CliError::BadFile {
                path: file.clone(),
                source,
            })?;
            (client.call("RegisterTaskDefinition", body).await?, |v| {
                table::task_definitions(&[v["taskDefinition"].clone()])
            })
        }
        Command::ListTaskDefinitions => {
            (client.call("ListTaskDefinitions", json!({})).await?, |v| {
                table::arn_list(v, "taskDefinitionArns", "TASK DEFINITION")
            })
        }
        Command::DescribeTaskDefinition { task_definition } => (
            client
                .call(
                    "DescribeTaskDefinition",
                    json!({"taskDefinition": task_definition}),
                )
                .await?,
            |v| table::task_definition_detail(&v["taskDefinition"]),
        ),
        Command::RunTask {
            task_definition,
            count,
            started_by,
            security_groups,
        } => {
            let mut body =
                json!({"cluster": cluster, "taskDefinition": task_definition, "count": count});
            if let Some(s) = started_by {
                body["startedBy"] = json!(s);
            }
            if !security_groups.is_empty() {
                body["networkConfiguration"] =
                    json!({"awsvpcConfiguration": {"securityGroups": security_groups}});
            }
            (
                client.call("RunTask", body).await?,
                table::tasks_and_failures,
            )
        }
        Command::StopTask { task, reason } => {
            let mut body = json!({"cluster": cluster, "task": task});
            if let Some(r) = reason {
                body["reason"] = json!(r);
            }
            (client.call("StopTask", body).await?, |v| {
                table::tasks(std::slice::from_ref(&v["task"]))
            })
        }
        Command::ListTasks { desired_status } => (
            client
                .call(
                    "ListTasks",
                    json!({"cluster": cluster, "desiredStatus": desired_status}),
                )
                .await?,
            |v| table::arn_list(v, "taskArns", "TASK"),
        ),
        Command::DescribeTasks { tasks } => (
            client
                .call("DescribeTasks", json!({"cluster": cluster, "tasks": tasks}))
                .await?,
            table::tasks_and_failures,
        ),
        Command::ListContainerInstances { filter, status } => (
            client
                .call(
                    "ListContainerInstances",
                    json!({"cluster": cluster, "filter": filter, "status": status}),
                )
                .await?,
            |v| table::arn_list(v, "containerInstanceArns", "CONTAINER INSTANCE"),
        ),
        Command::DescribeContainerInstances { instances } => (
            client
                .call(
                    "DescribeContainerInstances",
                    json!({"cluster": cluster, "containerInstances": instances}),
                )
                .await?,
            table::container_instances,
        ),
        Command::CreateCluster { name } => (
            client
                .call("CreateCluster", json!({"clusterName": name}))
                .await?,
            |v| table::clusters(std::slice::from_ref(&v["cluster"])),
        ),
        Command::ListClusters => (client.call("ListClusters", json!({})).await?, |v| {
            table::arn_list(v, "clusterArns", "CLUSTER")
        }),
        Command::CreateSecurityGroup {
            name,
            ingress,
            description,
        } => {
            let mut body = json!({
                "ingress": ingress.iter().map(crate::domain::security::IngressRule::to_json).collect::<Vec<_>>(),
            });
            if let Some(d) = description {
                body["description"] = json!(d);
            }
            (
                client
                    .berth(reqwest::Method::PUT, &security_group_path(name), Some(body))
                    .await?,
                |v| table::security_groups(std::slice::from_ref(&v["securityGroup"])),
            )
        }
        Command::ListSecurityGroups => (
            client
                .berth(reqwest::Method::GET, SECURITY_GROUPS_PATH, None)
                .await?,
            |v| {
                let groups = v["securityGroups"].as_array().cloned().unwrap_or_default();
                table::security_groups(&groups)
            },
        ),
        Command::DeleteSecurityGroup { group } => (
            client
                .berth(reqwest::Method::DELETE, &security_group_path(group), None)
                .await?,
            |v| table::security_groups(std::slice::from_ref(&v["securityGroup"])),
        ),
        Command::CreateSecret {
            name,
            username,
            password_stdin: _,
        } => {
            let password = read_password(&mut std::io::stdin().lock())?;
            let body = json!({"username": username, "password": password});
            (
                client
                    .berth(reqwest::Method::PUT, &secret_path(name), Some(body))
                    .await?,
                |v| table::secrets(std::slice::from_ref(v)),
            )
        }
        Command::ListSecrets => (
            client
                .berth(reqwest::Method::GET, SECRETS_PATH, None)
                .await?,
            |v| {
                let secrets = v["secrets"].as_array().cloned().unwrap_or_default();
                table::secrets(&secrets)
            },
        ),
        Command::DeleteSecret { name } => (
            client
                .berth(reqwest::Method::DELETE, &secret_path(name), None)
                .await?,
            |v| table::secrets(std::slice::from_ref(v)),
        ),
        Command::Events { task } => (
            client
                .berth(reqwest::Method::GET, &events_path(task), None)
                .await?,
            |v| {
                let events = v["events"].as_array().cloned().unwrap_or_default();
                table::events(&events)
            },
        ),
        Command::Logs {
            task,
            container,
            follow,
            tail,
        } => {
            let args = logs::LogsArgs {
                cluster,
                task,
                container: container.as_deref(),
                follow: *follow,
                tail: *tail,
            };
            // Streamed to stdout as it arrives: nothing is left to print.
            logs::stream(&client, &args).await?;
            return Ok(String::new());
        }
        Command::Exec { .. } => {
            return Err(CliError::Exec(
                "run through berthctl's main, which exits with the command's status".into(),
            ))
        }
        Command::Services(command) => {
            return services::execute(&client, cluster, cli.output, command).await;
        }
        Command::Instances(command) => {
            return instances::execute(&client, cluster, cli.output, command).await;
        }
        Command::Tags(command) => {
            return tags::execute(&client, cli.output, command).await;
        }
        Command::Audit(command) => {
            return audit::execute(&client, cli.output, command).await;
        }
    };
    Ok(match cli.output {
        Output::Json => serde_json::to_string_pretty(&response).unwrap_or_default(),
        Output::Table => render(&response),
    })
}

/// The password piped to `--password-stdin`: everything read, less one trailing newline (as
/// `echo` adds). Empty is refused.
pub fn read_password(input: &mut dyn std::io::Read) -> Result<String, CliError> {
    let mut text = String::new();
    input
        .read_to_string(&mut text)
        .map_err(|e| CliError::Password(e.to_string()))?;
    let password = text
        .strip_suffix('\n')
        .map(|t| t.strip_suffix('\r').unwrap_or(t))
        .unwrap_or(&text);
    if password.is_empty() {
        return Err(CliError::Password(
            "nothing was read: pipe the password in, e.g. printf %s \"$TOKEN\" | berthctl create-secret ... --password-stdin".into(),
        ));
    }
    Ok(password.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn the_password_comes_from_stdin_without_its_newline() {
        let read = |s: &str| read_password(&mut s.as_bytes());
        assert_eq!(read("s3cr3t\n").unwrap(), "s3cr3t");
        assert_eq!(read("s3cr3t\r\n").unwrap(), "s3cr3t");
        assert_eq!(read("two\nlines").unwrap(), "two\nlines");
        assert_eq!(read(" spaced ").unwrap(), " spaced ");
        assert!(matches!(read("\n"), Err(CliError::Password(_))));
        assert!(matches!(read(""), Err(CliError::Password(_))));
    }

    #[test]
    fn create_secret_takes_no_password_argument() {
        let argv = |extra: &[&str]| {
            let mut v = vec![
                "berthctl",
                "create-secret",
                "--name",
                "reg",
                "--username",
                "u",
            ];
            v.extend_from_slice(extra);
            Cli::try_parse_from(v)
        };
        assert!(argv(&["--password-stdin"]).is_ok());
        assert!(argv(&[]).is_err(), "--password-stdin is required");
        assert!(argv(&["--password", "p"]).is_err());
        assert_eq!(secret_path("team/reg"), "/berth/v1/secrets/team%2Freg");
    }
}
