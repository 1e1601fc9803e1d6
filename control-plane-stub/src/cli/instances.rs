//! berthctl's container-instance commands: drain and activate (UpdateContainerInstancesState),
//! deregister,
//! and custom attributes (put-attribute, delete-attribute, list-attributes).

use clap::Subcommand;
use serde_json::{json, Value};

use super::table::{container_instances, last_segment, render, s};
use super::{CliError, Client, Output};

#[derive(Debug, Subcommand)]
pub enum InstanceCommand {
    /// Set container instances DRAINING: nothing new is placed there and their service tasks
    /// move elsewhere within each service's minimum and maximum.
    Drain {
        #[arg(required = true)]
        instances: Vec<String>,
    },
    /// Set container instances ACTIVE again.
    Activate {
        #[arg(required = true)]
        instances: Vec<String>,
    },
    /// Deregister a container instance: it goes INACTIVE and its agent stops. An instance with
    /// tasks is refused unless --force (its tasks are then orphaned; services replace them).
    Deregister {
        instance: String,
        #[arg(long)]
        force: bool,
    },
    /// Set a custom attribute on a container instance: NAME or NAME=VALUE.
    PutAttribute {
        instance: String,
        attribute: String,
    },
    DeleteAttribute {
        instance: String,
        name: String,
    },
    /// Every attribute of the cluster's instances (the agents' and the custom ones).
    ListAttributes {
        #[arg(long)]
        name: Option<String>,
        #[arg(long, requires = "name")]
        value: Option<String>,
    },
}

/// Performs an instance command and returns what to print.
pub(super) async fn execute(
    client: &Client,
    cluster: &str,
    output: Output,
    command: &InstanceCommand,
) -> Result<String, CliError> {
    let (response, render_it): (Value, fn(&Value) -> String) = match command {
        InstanceCommand::Drain { instances } | InstanceCommand::Activate { instances } => {
            let status = if matches!(command, InstanceCommand::Drain { .. }) {
                "DRAINING"
            } else {
                "ACTIVE"
            };
            (
                client
                    .call(
                        "UpdateContainerInstancesState",
                        json!({"cluster": cluster, "containerInstances": instances, "status": status}),
                    )
                    .await?,
                container_instances,
            )
        }
        InstanceCommand::Deregister { instance, force } => (
            client
                .call(
                    "DeregisterContainerInstance",
                    json!({"cluster": cluster, "containerInstance": instance, "force": force}),
                )
                .await?,
            |v| container_instances(&json!({"containerInstances": [v["containerInstance"]]})),
        ),
        InstanceCommand::PutAttribute {
            instance,
            attribute,
        } => {
            let (name, value) = match attribute.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (attribute.as_str(), None),
            };
            let mut a =
                json!({"name": name, "targetType": "container-instance", "targetId": instance});
            if let Some(v) = value {
                a["value"] = json!(v);
            }
            (
                client
                    .call(
                        "PutAttributes",
                        json!({"cluster": cluster, "attributes": [a]}),
                    )
                    .await?,
                attributes,
            )
        }
        InstanceCommand::DeleteAttribute { instance, name } => (
            client
                .call(
                    "DeleteAttributes",
                    json!({"cluster": cluster, "attributes": [
                        {"name": name, "targetType": "container-instance", "targetId": instance}
                    ]}),
                )
                .await?,
            attributes,
        ),
        InstanceCommand::ListAttributes { name, value } => {
            let mut body = json!({"cluster": cluster, "targetType": "container-instance"});
            if let Some(n) = name {
                body["attributeName"] = json!(n);
            }
            if let Some(v) = value {
                body["attributeValue"] = json!(v);
            }
            let mut all: Vec<Value> = Vec::new();
            loop {
                let page = client.call("ListAttributes", body.clone()).await?;
                all.extend(page["attributes"].as_array().cloned().unwrap_or_default());
                match page["nextToken"].as_str() {
                    Some(t) => body["nextToken"] = json!(t),
                    None => break,
                }
            }
            (json!({ "attributes": all }), attributes)
        }
    };
    Ok(match output {
        Output::Json => serde_json::to_string_pretty(&response).unwrap_or_default(),
        Output::Table => render_it(&response),
    })
}

/// INSTANCE, NAME, VALUE rows of an `attributes` list.
pub fn attributes(v: &Value) -> String {
    let rows: Vec<Vec<String>> = v["attributes"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| {
                    vec![
                        last_segment(x["targetId"].as_str().unwrap_or("-")),
                        s(&x["name"]),
                        s(&x["value"]),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    render(&["INSTANCE", "NAME", "VALUE"], &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_rows_show_the_instance_id_and_a_dash_for_no_value() {
        let v = json!({"attributes": [
            {"name": "rack", "value": "r1", "targetId": "arn:aws:ecs:r:1:container-instance/c/abc"},
            {"name": "ecs.capability.task-eni", "targetId": "arn:aws:ecs:r:1:container-instance/c/abc"},
        ]});
        let t = attributes(&v);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(
            lines[1].starts_with("abc") && lines[1].ends_with("r1"),
            "{t}"
        );
        assert!(lines[2].ends_with('-'), "{t}");
    }
}
