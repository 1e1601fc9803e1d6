//! Tags on every taggable resource: TagResource, UntagResource, ListTagsForResource, the tags
//! resources are created with, propagateTags and ECS's managed tags; through the API, boto3
//! and the aws CLI (CI installs both: BERTH_PYTHON, BERTH_AWS_CLI).

mod common;

use common::clients::*;
use common::*;
use serde_json::{json, Value};

fn pairs(tags: &Value) -> Vec<(String, String)> {
    tags.as_array()
        .unwrap_or_else(|| panic!("tags is a list: {tags}"))
        .iter()
        .map(|t| {
            (
                t["key"].as_str().unwrap().to_string(),
                t["value"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn kv(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn refused(api: std::net::SocketAddr, op: &str, body: Value, code: &str) -> String {
    let (status, answer) = ecs(api, op, body).await;
    assert_eq!(status, 400, "{op}: {answer}");
    assert_eq!(answer["__type"], code, "{op}: {answer}");
    answer["message"].as_str().unwrap_or("").to_string()
}

#[tokio::test]
async fn tags_are_kept_changed_listed_propagated_and_checked_on_every_resource() {
    let dir = TempDir::new("tags-api");
    let server = start(dir.path()).await;
    let api = server.api_addr;
    let mut agent = ReportingAgent::register(dir.path(), server.grpc_addr).await;

    // A task definition registered with tags returns them; Describe only when asked.
    let mut def = sample_task_definition("web");
    def["tags"] = json!([{"key": "team", "value": "web"}, {"key": "tier", "value": "front"}]);
    let registered = ecs_ok(api, "RegisterTaskDefinition", def).await;
    assert_eq!(
        pairs(&registered["tags"]),
        kv(&[("team", "web"), ("tier", "front")])
    );
    assert!(registered["taskDefinition"].get("tags").is_none());
    let td_arn = registered["taskDefinition"]["taskDefinitionArn"]
        .as_str()
        .unwrap()
        .to_string();
    let d = ecs_ok(
        api,
        "DescribeTaskDefinition",
        json!({"taskDefinition": "web"}),
    )
    .await;
    assert!(d.get("tags").is_none(), "{d}");
    let d = ecs_ok(
        api,
        "DescribeTaskDefinition",
        json!({"taskDefinition": "web", "include": ["TAGS"]}),
    )
    .await;
    assert_eq!(pairs(&d["tags"]), kv(&[("team", "web"), ("tier", "front")]));

    // TagResource adds and replaces; UntagResource removes; a missing key is no error.
    ecs_ok(
        api,
        "TagResource",
        json!({"resourceArn": td_arn, "tags": [{"key": "tier", "value": "edge"}, {"key": "cost"}]}),
    )
    .await;
    ecs_ok(
        api,
        "UntagResource",
        json!({"resourceArn": td_arn, "tagKeys": ["team", "absent"]}),
    )
    .await;
    let listed = ecs_ok(api, "ListTagsForResource", json!({"resourceArn": td_arn})).await;
    assert_eq!(
        pairs(&listed["tags"]),
        kv(&[("tier", "edge"), ("cost", "")])
    );

    // ECS's rules, each refused with nothing written.
    let m = refused(
        api,
        "TagResource",
        json!({"resourceArn": td_arn, "tags": [{"key": "aws:mine", "value": "x"}]}),
        "InvalidParameterException",
    )
    .await;
    assert!(m.contains("reserved"), "{m}");
    let fifty: Vec<Value> = (0..49)
        .map(|i| json!({"key": format!("k{i}"), "value": "v"}))
        .collect();
    refused(
        api,
        "TagResource",
        json!({"resourceArn": td_arn, "tags": fifty}),
        "InvalidParameterException",
    )
    .await;
    refused(
        api,
        "TagResource",
        json!({"resourceArn": td_arn, "tags": [{"key": "k", "value": "v".repeat(257)}]}),
        "InvalidParameterException",
    )
    .await;
    refused(
        api,
        "TagResource",
        json!({"resourceArn": td_arn, "tags": [{"key": "k".repeat(129)}]}),
        "InvalidParameterException",
    )
    .await;
    let listed = ecs_ok(api, "ListTagsForResource", json!({"resourceArn": td_arn})).await;
    assert_eq!(pairs(&listed["tags"]).len(), 2, "{listed}");
    refused(
        api,
        "ListTagsForResource",
        json!({"resourceArn": "arn:aws:ecs:us-east-1:000000000000:task-definition/web:9"}),
        "ResourceNotFoundException",
    )
    .await;
    refused(
        api,
        "ListTagsForResource",
        json!({"resourceArn": "arn:aws:ecs:eu-west-1:111111111111:cluster/default"}),
        "InvalidParameterException",
    )
    .await;
    refused(
        api,
        "TagResource",
        json!({"resourceArn": "arn:aws:ecs:us-east-1:000000000000:capacity-provider/x", "tags": [{"key": "a"}]}),
        "InvalidParameterException",
    )
    .await;

    // RunTask: its own tags win over the task definition's; managed tags when asked for.
    let run = ecs_ok(
        api,
        "RunTask",
        json!({"taskDefinition": "web", "tags": [{"key": "cost", "value": "lab"}],
               "propagateTags": "TASK_DEFINITION", "enableECSManagedTags": true}),
    )
    .await;
    let task = run["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    let want = kv(&[
        ("tier", "edge"),
        ("cost", "lab"),
        ("aws:ecs:clusterName", "default"),
    ]);
    assert_eq!(pairs(&run["tasks"][0]["tags"]), want);
    agent.payloads(1, 0).await;
    let d = ecs_ok(
        api,
        "DescribeTasks",
        json!({"tasks": [task], "include": ["TAGS"]}),
    )
    .await;
    assert_eq!(pairs(&d["tasks"][0]["tags"]), want);
    let d = ecs_ok(api, "DescribeTasks", json!({"tasks": [task]})).await;
    assert!(d["tasks"][0].get("tags").is_none(), "{d}");
    let m = refused(
        api,
        "UntagResource",
        json!({"resourceArn": task, "tagKeys": ["aws:ecs:clusterName"]}),
        "InvalidParameterException",
    )
    .await;
    assert!(m.contains("aws:"), "{m}");
    refused(
        api,
        "RunTask",
        json!({"taskDefinition": "web", "propagateTags": "SERVICE"}),
        "InvalidParameterException",
    )
    .await;
    refused(
        api,
        "RunTask",
        json!({"taskDefinition": "web", "propagateTags": "ALL"}),
        "InvalidParameterException",
    )
    .await;

    // A service's tasks take the service's tags and both managed tags.
    let created = ecs_ok(
        api,
        "CreateService",
        json!({"serviceName": "api", "taskDefinition": "web", "desiredCount": 1,
               "tags": [{"key": "owner", "value": "ops"}],
               "propagateTags": "SERVICE", "enableECSManagedTags": true}),
    )
    .await;
    let service = &created["service"];
    assert_eq!(pairs(&service["tags"]), kv(&[("owner", "ops")]));
    assert_eq!(service["propagateTags"], "SERVICE");
    assert_eq!(service["enableECSManagedTags"], true);
    let (started, _) = agent.payloads(1, 0).await;
    let d = ecs_ok(
        api,
        "DescribeTasks",
        json!({"tasks": [started[0]], "include": ["TAGS"]}),
    )
    .await;
    assert_eq!(
        pairs(&d["tasks"][0]["tags"]),
        kv(&[
            ("owner", "ops"),
            ("aws:ecs:clusterName", "default"),
            ("aws:ecs:serviceName", "api"),
        ])
    );
    let service_arn = service["serviceArn"].as_str().unwrap().to_string();
    ecs_ok(
        api,
        "TagResource",
        json!({"resourceArn": service_arn, "tags": [{"key": "stage", "value": "beta"}]}),
    )
    .await;
    let d = ecs_ok(
        api,
        "DescribeServices",
        json!({"services": ["api"], "include": ["TAGS"]}),
    )
    .await;
    assert_eq!(
        pairs(&d["services"][0]["tags"]),
        kv(&[("owner", "ops"), ("stage", "beta")])
    );
    let u = ecs_ok(
        api,
        "UpdateService",
        json!({"service": "api", "propagateTags": "NONE", "enableECSManagedTags": false}),
    )
    .await;
    assert_eq!(u["service"]["propagateTags"], "NONE");
    assert_eq!(u["service"]["enableECSManagedTags"], false);

    // Clusters and container instances.
    let cluster_arn = "arn:aws:ecs:us-east-1:000000000000:cluster/default";
    ecs_ok(
        api,
        "TagResource",
        json!({"resourceArn": cluster_arn, "tags": [{"key": "env", "value": "lab"}]}),
    )
    .await;
    let listed = ecs_ok(
        api,
        "ListTagsForResource",
        json!({"resourceArn": cluster_arn}),
    )
    .await;
    assert_eq!(pairs(&listed["tags"]), kv(&[("env", "lab")]));
    let instances = ecs_ok(api, "ListContainerInstances", json!({})).await;
    let instance_arn = instances["containerInstanceArns"][0].as_str().unwrap();
    ecs_ok(
        api,
        "TagResource",
        json!({"resourceArn": instance_arn, "tags": [{"key": "rack", "value": "r1"}]}),
    )
    .await;
    let d = ecs_ok(
        api,
        "DescribeContainerInstances",
        json!({"containerInstances": [instance_arn], "include": ["TAGS"]}),
    )
    .await;
    assert_eq!(
        pairs(&d["containerInstances"][0]["tags"]),
        kv(&[("rack", "r1")])
    );

    // berthctl tag, untag, list-tags.
    berthctl(api, &["tag", instance_arn, "zone=a", "spare"])
        .await
        .unwrap();
    berthctl(api, &["untag", instance_arn, "rack"])
        .await
        .unwrap();
    let out = berthctl(api, &["list-tags", instance_arn]).await.unwrap();
    assert!(
        out.contains("zone") && out.contains("spare") && !out.contains("rack"),
        "{out}"
    );

    // They survive a restart of berth-cp.
    server.shutdown().await.unwrap();
    let server = start(dir.path()).await;
    let listed = ecs_ok(
        server.api_addr,
        "ListTagsForResource",
        json!({"resourceArn": td_arn}),
    )
    .await;
    assert_eq!(
        pairs(&listed["tags"]),
        kv(&[("tier", "edge"), ("cost", "")])
    );
    server.shutdown().await.unwrap();
}

/// The boto3 side: every tag operation and its errors, as a deploy script would call them.
const BOTO3_TAGS: &str = r#"
import json, sys
import boto3
from botocore.config import Config

endpoint = sys.argv[1]
ecs = boto3.client("ecs", endpoint_url=endpoint, region_name="us-east-1",
                   aws_access_key_id="berth", aws_secret_access_key="berth",
                   config=Config(retries={"max_attempts": 1}))
out = {}
td = ecs.register_task_definition(
    family="boto", containerDefinitions=[{"name": "app", "image": "busybox", "memory": 64}],
    tags=[{"key": "team", "value": "web"}])
arn = td["taskDefinition"]["taskDefinitionArn"]
out["registered"] = td["tags"]
ecs.tag_resource(resourceArn=arn, tags=[{"key": "tier", "value": "front"}])
ecs.untag_resource(resourceArn=arn, tagKeys=["team"])
out["listed"] = ecs.list_tags_for_resource(resourceArn=arn)["tags"]
out["described"] = ecs.describe_task_definition(taskDefinition=arn, include=["TAGS"])["tags"]
errors = {}
for name, call in [
    ("reserved", lambda: ecs.tag_resource(resourceArn=arn, tags=[{"key": "aws:x", "value": "1"}])),
    ("missing", lambda: ecs.list_tags_for_resource(resourceArn=arn.replace(":1", ":99"))),
    ("managed", lambda: ecs.untag_resource(resourceArn=arn, tagKeys=["aws:ecs:clusterName"])),
]:
    try:
        call()
        errors[name] = "no error"
    except ecs.exceptions.ClientError as e:
        errors[name] = e.response["Error"]["Code"]
out["errors"] = errors
print(json.dumps(out))
"#;

#[tokio::test]
async fn boto3_and_the_aws_cli_tag_and_list() {
    let dir = TempDir::new("tags-clients");
    let server = start(dir.path()).await;
    let endpoint = format!("http://{}", server.api_addr);
    let stdout = python_stdout(dir.path(), &["-c", BOTO3_TAGS, endpoint.as_str()]).await;
    let seen: Value = serde_json::from_str(&stdout).expect("the script prints JSON");
    assert_eq!(pairs(&seen["registered"]), kv(&[("team", "web")]));
    assert_eq!(pairs(&seen["listed"]), kv(&[("tier", "front")]));
    assert_eq!(seen["described"], seen["listed"]);
    assert_eq!(
        seen["errors"],
        json!({
            "reserved": "InvalidParameterException",
            "missing": "ResourceNotFoundException",
            "managed": "InvalidParameterException",
        })
    );

    // The aws CLI's shorthand for tags.
    let (home, api) = (dir.path(), server.api_addr);
    let cluster = "arn:aws:ecs:us-east-1:000000000000:cluster/default";
    aws_stdout(
        home,
        api,
        &[
            "tag-resource",
            "--resource-arn",
            cluster,
            "--tags",
            "key=env,value=lab",
            "key=owner,value=ops",
        ],
    )
    .await;
    let listed = aws(
        home,
        api,
        &["list-tags-for-resource", "--resource-arn", cluster],
    )
    .await;
    assert_eq!(
        pairs(&listed["tags"]),
        kv(&[("env", "lab"), ("owner", "ops")])
    );
    let err = aws_fails(
        home,
        api,
        &[
            "untag-resource",
            "--resource-arn",
            &format!("{cluster}-nope"),
            "--tag-keys",
            "env",
        ],
    )
    .await;
    assert!(err.contains("ResourceNotFoundException"), "{err}");
    server.shutdown().await.unwrap();
}
