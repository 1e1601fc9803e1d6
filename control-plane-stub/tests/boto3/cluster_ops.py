"""boto3 against berth-cp: DeleteCluster, the task definition family operations and the
account settings, with their error codes as botocore raises them. Run by tests/boto3_api.rs
with the endpoint as its one argument; prints a JSON summary on its last line."""

import json

from berth_boto3 import ecs_client, error_code

ecs = ecs_client()
summary = {"errors": {}}


# DeleteCluster: INACTIVE, unlisted, not found for its contents, created again.
ecs.create_cluster(clusterName="py")
deleted = ecs.delete_cluster(cluster="py")["cluster"]
assert deleted["status"] == "INACTIVE", deleted
described = ecs.describe_clusters(clusters=["py"])["clusters"]
assert described[0]["status"] == "INACTIVE", described
listed = [a for p in ecs.get_paginator("list_clusters").paginate() for a in p["clusterArns"]]
assert not any(a.endswith("/py") for a in listed), listed
summary["errors"]["list_tasks_deleted"] = error_code(ecs.list_tasks, cluster="py")
summary["errors"]["delete_cluster_again"] = error_code(ecs.delete_cluster, cluster="py")
assert ecs.create_cluster(clusterName="py")["cluster"]["status"] == "ACTIVE"
summary["deleted_cluster_status"] = deleted["status"]

# Task definition families and DeleteTaskDefinitions.
container = [{"name": "app", "image": "busybox", "memory": 64, "command": ["sleep", "60"]}]
for family in ["py-web", "py-web", "py-worker", "other"]:
    ecs.register_task_definition(family=family, containerDefinitions=container)
ecs.deregister_task_definition(taskDefinition="py-web:1")
families = [
    f
    for p in ecs.get_paginator("list_task_definition_families").paginate(
        familyPrefix="py-", PaginationConfig={"PageSize": 1}
    )
    for f in p["families"]
]
assert families == ["py-web", "py-worker"], families
summary["families"] = families
out = ecs.delete_task_definitions(taskDefinitions=["py-web:1", "py-web:2"])
assert [d["status"] for d in out["taskDefinitions"]] == ["DELETE_IN_PROGRESS"], out
assert len(out["failures"]) == 1 and "ACTIVE" in out["failures"][0]["reason"], out
summary["delete_failures"] = len(out["failures"])
td = ecs.describe_task_definition(taskDefinition="py-web:1")["taskDefinition"]
assert td["status"] == "DELETE_IN_PROGRESS" and "deleteRequestedAt" in td, td
summary["errors"]["delete_too_many"] = error_code(
    ecs.delete_task_definitions, taskDefinitions=[f"py-web:{i}" for i in range(1, 12)]
)
summary["errors"]["bad_family_status"] = error_code(
    ecs.list_task_definition_families, status="DELETE_IN_PROGRESS"
)

# Account settings.
ecs.put_account_setting_default(name="containerInsights", value="enabled")
alice = "arn:aws:iam::000000000000:user/alice"
ecs.put_account_setting(name="containerInsights", value="enhanced", principalArn=alice)
mine = ecs.list_account_settings(name="containerInsights")["settings"]
assert mine == [
    {
        "name": "containerInsights",
        "value": "enabled",
        "principalArn": "arn:aws:iam::000000000000:root",
        "type": "user",
    }
], mine
effective = [
    s
    for p in ecs.get_paginator("list_account_settings").paginate(
        effectiveSettings=True, principalArn=alice, PaginationConfig={"PageSize": 4}
    )
    for s in p["settings"]
]
assert len(effective) == 11, effective
insights = [s for s in effective if s["name"] == "containerInsights"]
assert insights[0]["value"] == "enhanced", insights
removed = ecs.delete_account_setting(name="containerInsights", principalArn=alice)["setting"]
assert removed["value"] == "enhanced", removed
summary["effective_settings"] = len(effective)
summary["errors"]["bad_setting_value"] = error_code(
    ecs.put_account_setting, name="containerInsights", value="sometimes"
)
summary["errors"]["read_only_setting"] = error_code(
    ecs.put_account_setting, name="guardDutyActivate", value="on"
)
summary["errors"]["value_without_name"] = error_code(ecs.list_account_settings, value="enabled")

print(json.dumps(summary, sort_keys=True))
