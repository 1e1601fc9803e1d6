"""boto3 against berth-cp: a cluster's settings, configuration, Service Connect defaults and
(empty) capacity providers, DiscoverPollEndpoint, and their errors as botocore raises them.
Run by tests/cluster_config.rs with the endpoint as its one argument; prints a JSON summary
on its last line."""

import json

from berth_boto3 import ecs_client, error_code

ecs = ecs_client()
summary = {"errors": {}}


# The account's containerInsights is what a cluster created without the setting takes.
ecs.put_account_setting_default(name="containerInsights", value="enabled")
created = ecs.create_cluster(
    clusterName="cfg",
    tags=[{"key": "team", "value": "edge"}],
    configuration={"executeCommandConfiguration": {"logging": "DEFAULT"}},
    serviceConnectDefaults={"namespace": "lab"},
)["cluster"]
assert created["settings"] == [{"name": "containerInsights", "value": "enabled"}], created
assert created["tags"] == [{"key": "team", "value": "edge"}], created
assert created["serviceConnectDefaults"]["namespace"].endswith(":namespace/lab"), created

updated = ecs.update_cluster_settings(
    cluster="cfg", settings=[{"name": "containerInsights", "value": "enhanced"}]
)["cluster"]
summary["insights_after_update"] = updated["settings"][0]["value"]
updated = ecs.update_cluster(
    cluster="cfg",
    configuration={
        "executeCommandConfiguration": {
            "logging": "OVERRIDE",
            "logConfiguration": {"cloudWatchLogGroupName": "/berth/exec"},
        }
    },
)["cluster"]
assert updated["settings"][0]["value"] == "enhanced", updated
summary["logging"] = updated["configuration"]["executeCommandConfiguration"]["logging"]

# DescribeClusters shows settings, configuration and tags when asked for them only.
plain = ecs.describe_clusters(clusters=["cfg"])["clusters"][0]
assert "settings" not in plain and "configuration" not in plain and "tags" not in plain, plain
full = ecs.describe_clusters(clusters=["cfg"], include=["SETTINGS", "CONFIGURATIONS", "TAGS"])
full = full["clusters"][0]
summary["described"] = sorted(k for k in ("settings", "configuration", "tags") if k in full)

# Capacity providers: none exist, so a cluster takes only empty lists.
put = ecs.put_cluster_capacity_providers(
    cluster="cfg", capacityProviders=[], defaultCapacityProviderStrategy=[]
)["cluster"]
assert put["capacityProviders"] == [] and put["defaultCapacityProviderStrategy"] == [], put
providers = ecs.describe_capacity_providers(capacityProviders=["FARGATE"])
summary["provider_failure"] = providers["failures"][0]["reason"]
assert providers["capacityProviders"] == [], providers

# DiscoverPollEndpoint answers berth-cp's agent endpoint.
summary["poll_endpoint_scheme"] = ecs.discover_poll_endpoint(cluster="cfg")["endpoint"].split(":")[0]

# ListServicesByNamespace: the services that joined the cluster's default namespace.
ecs.register_task_definition(
    family="cfg-web",
    containerDefinitions=[{"name": "app", "image": "busybox", "memory": 64}],
)
ecs.create_service(
    cluster="cfg",
    serviceName="joined",
    taskDefinition="cfg-web",
    desiredCount=0,
    serviceConnectConfiguration={"enabled": True},
)
summary["in_namespace"] = [
    a.rsplit("/", 1)[1]
    for p in ecs.get_paginator("list_services_by_namespace").paginate(namespace="lab")
    for a in p["serviceArns"]
]
summary["errors"]["unknown_namespace"] = error_code(
    ecs.list_services_by_namespace, namespace="nowhere"
)
ecs.delete_service(cluster="cfg", service="joined", force=True)

# Re-created after DeleteCluster, a cluster has none of the old one's tags.
ecs.delete_cluster(cluster="cfg")
again = ecs.create_cluster(clusterName="cfg")["cluster"]
summary["tags_after_recreate"] = again["tags"]

summary["errors"]["bad_setting"] = error_code(
    ecs.update_cluster_settings,
    cluster="cfg",
    settings=[{"name": "containerInsights", "value": "sometimes"}],
)
summary["errors"]["override_without_log_configuration"] = error_code(
    ecs.update_cluster,
    cluster="cfg",
    configuration={"executeCommandConfiguration": {"logging": "OVERRIDE"}},
)
summary["errors"]["a_capacity_provider"] = error_code(
    ecs.put_cluster_capacity_providers,
    cluster="cfg",
    capacityProviders=["FARGATE"],
    defaultCapacityProviderStrategy=[{"capacityProvider": "FARGATE", "weight": 1}],
)
summary["errors"]["update_missing_cluster"] = error_code(
    ecs.update_cluster_settings,
    cluster="ghost",
    settings=[{"name": "containerInsights", "value": "enabled"}],
)
summary["errors"]["poll_unknown_instance"] = error_code(
    ecs.discover_poll_endpoint, cluster="cfg", containerInstance="nope"
)

print(json.dumps(summary, sort_keys=True))
