//! Helpers shared by the end-to-end tests: build and find the binaries, run berth-cp and
//! berth-agent as child processes against the host's containerd, talk to the ECS API (directly or
//! through the AWS CLI), wait for conditions, and clean everything up again, also when a test
//! panics.
//!
//! The tests need root, a running containerd and the test image built by
//! `tests/images/build-busybox-image.sh` (built on demand when missing). `.ci/run` sets all of
//! that up on a fresh machine.
//!
//! Environment knobs:
//! - `BERTH_E2E_NO_BUILD=1`: do not run `cargo build` for the binaries (they are already built).
//! - `BERTH_E2E_TIMEOUT_SCALE=N`: multiply every deadline by N (slow machines, emulated guests).
//! - `BERTH_E2E_KEEP=1`: keep each test's temp dir (logs, data dirs) after the test.
//! - `BERTH_E2E_LOG`: the `RUST_LOG` given to berth-cp and berth-agent.
//! - `BERTH_AWS_CLI`: the `aws` executable for the AWS CLI tests (default: `aws` on PATH).
//! - `BERTH_PYTHON`: the Python with boto3 for the boto3 tests (default: `python3` on PATH).

mod agent_store;
mod aws;
mod bins;
mod cgroups;
mod containerd;
mod durability;
mod ecs;
mod env;
mod health;
pub mod net;
mod private_containerd;
mod process;
pub mod procstat;
mod registry;
mod tasks;
mod wait;

pub use agent_store::agent_db;
pub use aws::{boto3, python_json, AwsCli};
pub use bins::{bin, workspace_root};
pub use cgroups::{
    cgroup_exists, cgroup_file, cgroup_threads, cpu_usage_ns, is_v2 as cgroup_v2, read_cgroup,
    remove_cgroup_tree,
};
pub use containerd::{
    containers_at, ctr, ctr_at, import_test_image_at, purge_namespace_at, task_main_pid,
    task_main_pid_at, task_pids, tasks_at, CtrTask, TEST_IMAGE,
};
pub use durability::{check_event_history, leftovers, task_events};
pub use ecs::{container, ApiError, EcsClient};
pub use env::{CpAddrs, TestEnv};
pub use health::{
    berth_health, container_health, epoch_secs, health_check, now_epoch_secs, task_health,
    watch_health, HealthWatch, Trail,
};
pub use net::{
    host_links, host_routes, http_get, http_get_async, in_netns, run as run_cmd,
    stored_network_phases, tcp_connects, wait_http_body, HttpResponse, NetworkSettings, Subnet,
    TestNetns,
};
pub use private_containerd::PrivateContainerd;
pub use process::Proc;
pub use registry::{
    big_layout, ctr_pull, layout_with_unique_layer, multilayer_layout, push_layout, skopeo_inspect,
    OciLayout, ScratchNamespace, TestRegistry, MULTILAYER_CHECK_SCRIPT, MULTILAYER_LAYER2_CONTENT,
    MULTILAYER_LAYER2_FILE, MULTILAYER_LAYER3_CONTENT, MULTILAYER_LAYER3_FILE,
    MULTILAYER_OPAQUE_DIR, MULTILAYER_WHITEOUT_DIR,
};
pub use tasks::{
    container_log, exit_code, register, register_and_run, run_task, start_task, stop_and_wait,
    task_arn, task_id, wait_running, wait_status, wait_stopped, wait_task,
};
pub use wait::{timeout, wait_until};
