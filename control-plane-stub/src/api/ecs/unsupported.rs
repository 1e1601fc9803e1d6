//! The botocore ECS operations Berth refuses on purpose, each with the reason its caller is told.
//! They answer UnsupportedFeatureException rather than UnknownOperationException: the operation
//! is ECS's own, so the caller deserves to learn why Berth has none and what to use instead.
//! README.md's operations table quotes these reasons, and tests/operations_table.rs keeps the two
//! the same.

use super::request::Operation;
use crate::api::error::ApiError;

const CAPACITY_PROVIDERS: &str = "a capacity provider needs an EC2 Auto Scaling group or \
     ECS Managed Instances; Berth's container instances are external hosts that register \
     themselves, as on ECS Anywhere";
const TASK_SETS: &str = "task sets belong to the EXTERNAL deployment controller; Berth's \
     services use the ECS rolling deployment controller";
const LIFECYCLE_HOOKS: &str = "lifecycle hooks (blue/green, linear, canary) are not supported, \
     so no Berth deployment ever pauses at one";
const MANAGED_DAEMONS: &str = "ECS Managed Daemons run on ECS Managed Instances only; use a \
     service with schedulingStrategy DAEMON";
const GATEWAYS: &str = "gateways and Express services provision AWS load balancers and \
     Fargate capacity";
const AGENT_ONLY: &str = "in ECS only the container agent calls it; berth-agent registers \
     with an activation code and reports over its gRPC session";
const AGENT_UPGRADE: &str = "berth-agent is upgraded with its Debian package (berth-agent.deb), \
     not by the control plane";

/// One list makes both the table and the dispatcher, so neither can name an operation the other
/// lacks. A handler is a plain `fn`, which cannot capture, so each arm is written out with its
/// own name and reason.
macro_rules! refused {
    ($($name:literal => $reason:expr,)*) => {
        /// (operation, reason), in the order README.md groups them.
        // Only the tests read the table whole; the server reaches it through `operation`.
        #[cfg(test)]
        pub(super) const REFUSED: &[(&str, &str)] = &[$(($name, $reason)),*];

        pub(super) fn operation(name: &str) -> Option<Operation> {
            Some(match name {
                $($name => |_, _| Err(refusal($name, $reason)),)*
                _ => return None,
            })
        }
    };
}

refused! {
    "CreateCapacityProvider" => CAPACITY_PROVIDERS,
    "UpdateCapacityProvider" => CAPACITY_PROVIDERS,
    "DeleteCapacityProvider" => CAPACITY_PROVIDERS,
    "CreateTaskSet" => TASK_SETS,
    "DeleteTaskSet" => TASK_SETS,
    "DescribeTaskSets" => TASK_SETS,
    "UpdateTaskSet" => TASK_SETS,
    "UpdateServicePrimaryTaskSet" => TASK_SETS,
    "ContinueServiceDeployment" => LIFECYCLE_HOOKS,
    "CreateDaemon" => MANAGED_DAEMONS,
    "DeleteDaemon" => MANAGED_DAEMONS,
    "DeleteDaemonTaskDefinition" => MANAGED_DAEMONS,
    "DescribeDaemon" => MANAGED_DAEMONS,
    "DescribeDaemonDeployments" => MANAGED_DAEMONS,
    "DescribeDaemonRevisions" => MANAGED_DAEMONS,
    "DescribeDaemonTaskDefinition" => MANAGED_DAEMONS,
    "ListDaemonDeployments" => MANAGED_DAEMONS,
    "ListDaemonTaskDefinitions" => MANAGED_DAEMONS,
    "ListDaemons" => MANAGED_DAEMONS,
    "RegisterDaemonTaskDefinition" => MANAGED_DAEMONS,
    "UpdateDaemon" => MANAGED_DAEMONS,
    "AssociateGatewayWithCluster" => GATEWAYS,
    "CreateGateway" => GATEWAYS,
    "DeleteGateway" => GATEWAYS,
    "DescribeGateway" => GATEWAYS,
    "DescribeGatewayResources" => GATEWAYS,
    "DescribeGatewayRoute" => GATEWAYS,
    "DisassociateGatewayFromCluster" => GATEWAYS,
    "ListGatewayClusterAssociations" => GATEWAYS,
    "ListGatewayRoutes" => GATEWAYS,
    "ListGateways" => GATEWAYS,
    "UpdateGateway" => GATEWAYS,
    "CreateExpressGatewayService" => GATEWAYS,
    "DeleteExpressGatewayService" => GATEWAYS,
    "DescribeExpressGatewayService" => GATEWAYS,
    "UpdateExpressGatewayService" => GATEWAYS,
    "RegisterContainerInstance" => AGENT_ONLY,
    "SubmitTaskStateChange" => AGENT_ONLY,
    "SubmitContainerStateChange" => AGENT_ONLY,
    "SubmitAttachmentStateChanges" => AGENT_ONLY,
    "UpdateContainerAgent" => AGENT_UPGRADE,
}

fn refusal(name: &str, reason: &str) -> ApiError {
    ApiError::client(
        "UnsupportedFeatureException",
        format!("{name} is not supported by Berth: {reason}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refused_operation_is_named_once_with_a_reason() {
        let mut names: Vec<&str> = REFUSED.iter().map(|(name, _)| *name).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(names.len(), before, "an operation is listed twice");
        for (name, reason) in REFUSED {
            assert!(!reason.trim().is_empty(), "{name} has no reason");
            // The reason is a clause after "Berth: ", and README.md quotes it whole.
            assert!(!reason.ends_with('.') && !reason.contains('|'), "{name}");
            assert!(operation(name).is_some(), "{name} does not dispatch");
        }
        assert!(operation("RunTask").is_none(), "a supported operation");
    }
}
