//! berthctl's tag commands: tag, untag, list-tags (TagResource, UntagResource,
//! ListTagsForResource) on any taggable resource, named by its ARN.

use clap::Subcommand;
use serde_json::{json, Value};

use super::table::{render, s};
use super::{CliError, Client, Output};

#[derive(Debug, Subcommand)]
pub enum TagCommand {
    /// Add tags (KEY or KEY=VALUE) to a cluster, task definition, task, service or container
    /// instance, replacing the value of a key already there.
    Tag {
        arn: String,
        #[arg(required = true)]
        tags: Vec<String>,
    },
    /// Remove tags by key.
    Untag {
        arn: String,
        #[arg(required = true)]
        keys: Vec<String>,
    },
    /// A resource's tags.
    ListTags { arn: String },
}

/// KEY=VALUE, or KEY for an empty value.
fn tag(spec: &str) -> Value {
    let (key, value) = spec.split_once('=').unwrap_or((spec, ""));
    json!({"key": key, "value": value})
}

/// Performs a tag command and returns what to print.
pub(super) async fn execute(
    client: &Client,
    output: Output,
    command: &TagCommand,
) -> Result<String, CliError> {
    let arn = match command {
        TagCommand::Tag { arn, tags } => {
            let tags: Vec<Value> = tags.iter().map(|t| tag(t)).collect();
            client
                .call("TagResource", json!({"resourceArn": arn, "tags": tags}))
                .await?;
            arn
        }
        TagCommand::Untag { arn, keys } => {
            client
                .call(
                    "UntagResource",
                    json!({"resourceArn": arn, "tagKeys": keys}),
                )
                .await?;
            arn
        }
        TagCommand::ListTags { arn } => arn,
    };
    // Every command shows the resource's tags as they are now.
    let listed = client
        .call("ListTagsForResource", json!({"resourceArn": arn}))
        .await?;
    Ok(match output {
        Output::Json => serde_json::to_string_pretty(&listed).unwrap_or_default(),
        Output::Table => table(&listed),
    })
}

/// KEY, VALUE rows.
fn table(v: &Value) -> String {
    let rows: Vec<Vec<String>> = v["tags"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|t| vec![s(&t["key"]), s(&t["value"])])
                .collect()
        })
        .unwrap_or_default();
    render(&["KEY", "VALUE"], &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_is_key_equals_value_or_a_bare_key() {
        assert_eq!(tag("env=lab"), json!({"key": "env", "value": "lab"}));
        assert_eq!(tag("a=b=c"), json!({"key": "a", "value": "b=c"}));
        assert_eq!(tag("spare"), json!({"key": "spare", "value": ""}));
        let t = table(&json!({"tags": [{"key": "env", "value": "lab"}]}));
        assert_eq!(t.lines().count(), 2, "{t}");
    }
}
