//! Domain types the engine works with. Wire types (`berth_proto`) are converted to these at the
//! session edge (`crate::wire`); nothing below the session sees prost types.

use serde::{Deserialize, Serialize};

/// Default seconds between SIGTERM and SIGKILL, as ECS_CONTAINER_STOP_TIMEOUT.
pub const DEFAULT_STOP_TIMEOUT_SECS: u32 = 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TaskStatus {
    Pending,
    Running,
    Stopped,
}

/// Container statuses in ECS order; `Ord` follows the lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ContainerStatus {
    None,
    Pulled,
    Created,
    Running,
    Stopped,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NetworkMode {
    Host,
    None,
}

impl NetworkMode {
    /// The network modes this agent can run today, as advertised to the control plane.
    pub const SUPPORTED: &'static [&'static str] = &["host", "none"];

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "host" => Some(Self::Host),
            "none" => Some(Self::None),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskSpec {
    pub arn: String,
    pub family: String,
    pub revision: i32,
    pub network_mode: NetworkMode,
    pub cpu: u32,
    pub memory_mib: u32,
    pub containers: Vec<ContainerSpec>,
}

impl TaskSpec {
    /// The last path element of the ARN: `arn:aws:ecs:r:a:task/cluster/<id>` -> `<id>`.
    pub fn id(&self) -> &str {
        self.arn.rsplit('/').next().unwrap_or(&self.arn)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    pub essential: bool,
    pub entry_point: Option<Vec<String>>,
    pub command: Option<Vec<String>>,
    pub environment: Vec<(String, String)>,
    pub working_directory: Option<String>,
    pub user: Option<String>,
    pub cpu: u32,
    pub memory_mib: u32,
    pub memory_reservation_mib: u32,
    pub stop_timeout_secs: u32,
}

/// ECS stop codes that Berth reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StopCode {
    TaskFailedToStart,
    EssentialContainerExited,
    UserInitiated,
}

impl StopCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TaskFailedToStart => "TaskFailedToStart",
            Self::EssentialContainerExited => "EssentialContainerExited",
            Self::UserInitiated => "UserInitiated",
        }
    }
}
