//! The floor: the same containers launched by a plain containerd client, the way containerd's
//! own Go client does it (`NewContainer` with a new snapshot under a lease, `NewTask`,
//! `Start`), with nothing around it.
//!
//! "The same container" is taken literally: the template is read back from a container the
//! agent launched (its OCI spec, its image's snapshot parent, its stdio URIs), and only what
//! must differ per container is changed (the cgroup path and the log file).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use containerd_client::services::v1::container::Runtime;
use containerd_client::services::v1::snapshots::{
    PrepareSnapshotRequest, RemoveSnapshotRequest, StatSnapshotRequest,
};
use containerd_client::services::v1::{
    Container, CreateContainerRequest, CreateRequest as LeaseCreateRequest, CreateTaskRequest,
    DeleteContainerRequest, DeleteRequest as LeaseDeleteRequest, DeleteTaskRequest,
    GetContainerRequest, GetRequest, KillRequest, StartRequest, WaitRequest,
};
use containerd_client::tonic::{self as tonic, Code, Request};
use containerd_client::Client;

/// The agent's logger takes the log file as this query parameter (`berth-agent`'s
/// `logs::logger::ARG_PATH`).
const LOGGER_PATH_ARG: &str = "berth-log-path";

/// What a direct launch copies from one of the agent's containers.
#[derive(Clone)]
pub struct Template {
    spec: serde_json::Value,
    runtime: String,
    snapshotter: String,
    /// The image's top snapshot (the chain id of its layers).
    parent: String,
    image: String,
    stdout: String,
    stderr: String,
}

pub struct Direct {
    client: Client,
    namespace: String,
}

impl Direct {
    pub async fn connect(socket: &str, namespace: &str) -> Result<Direct> {
        let channel = containerd_client::connect(socket)
            .await
            .with_context(|| format!("connecting to containerd at {socket}"))?;
        Ok(Direct {
            client: Client::from(channel),
            namespace: namespace.to_owned(),
        })
    }

    fn req<T>(&self, msg: T) -> Request<T> {
        let mut req = Request::new(msg);
        req.set_timeout(Duration::from_secs(60));
        if let Ok(ns) = self.namespace.parse() {
            req.metadata_mut().insert("containerd-namespace", ns);
        }
        req
    }

    fn leased<T>(&self, msg: T, lease: &str) -> Request<T> {
        let mut req = self.req(msg);
        if let Ok(v) = lease.parse() {
            req.metadata_mut().insert("containerd-lease", v);
        }
        req
    }

    /// The template of the agent's running container `id`.
    pub async fn template_of(&self, id: &str) -> Result<Template> {
        let container = self
            .client
            .containers()
            .get(self.req(GetContainerRequest { id: id.to_owned() }))
            .await
            .with_context(|| format!("Containers.Get {id}"))?
            .into_inner()
            .container
            .with_context(|| format!("Containers.Get {id} returned no container"))?;
        let spec: serde_json::Value = serde_json::from_slice(
            &container
                .spec
                .as_ref()
                .with_context(|| format!("container {id} has no spec"))?
                .value,
        )
        .with_context(|| format!("container {id}'s spec is not JSON"))?;
        let info = self
            .client
            .snapshots()
            .stat(self.req(StatSnapshotRequest {
                snapshotter: container.snapshotter.clone(),
                key: container.snapshot_key.clone(),
            }))
            .await
            .with_context(|| format!("Snapshots.Stat {}", container.snapshot_key))?
            .into_inner()
            .info
            .with_context(|| format!("no info for snapshot {}", container.snapshot_key))?;
        let process = self
            .client
            .tasks()
            .get(self.req(GetRequest {
                container_id: id.to_owned(),
                exec_id: String::new(),
            }))
            .await
            .with_context(|| format!("Tasks.Get {id}"))?
            .into_inner()
            .process
            .with_context(|| format!("Tasks.Get {id} returned no process"))?;
        Ok(Template {
            spec,
            runtime: container
                .runtime
                .map(|r| r.name)
                .unwrap_or_else(|| "io.containerd.runc.v2".into()),
            snapshotter: container.snapshotter,
            parent: info.parent,
            image: container.image,
            stdout: process.stdout,
            stderr: process.stderr,
        })
    }

    /// Launches `id` from `t` in cgroup `{cgroup_parent}/{id}`, logging to `log`; returns how
    /// long containerd took, from the first call to Tasks.Start's answer.
    pub async fn launch(
        &self,
        id: &str,
        t: &Template,
        cgroup_parent: &str,
        log: &Path,
    ) -> Result<Duration> {
        let mut spec = t.spec.clone();
        spec["linux"]["cgroupsPath"] = format!("{cgroup_parent}/{id}").into();
        let stdout = with_log_path(&t.stdout, log)?;
        let stderr = with_log_path(&t.stderr, log)?;
        let spec = serde_json::to_vec(&spec)?;

        let started = Instant::now();
        // No expiry label: the lease is deleted three calls later, and a run that dies before
        // that leaves it to the namespace's removal.
        let lease = self
            .client
            .leases()
            .create(self.req(LeaseCreateRequest {
                id: lease_id(id),
                labels: HashMap::new(),
            }))
            .await
            .context("Leases.Create")?
            .into_inner()
            .lease
            .context("Leases.Create returned no lease")?
            .id;
        let mounts = self
            .client
            .snapshots()
            .prepare(self.leased(
                PrepareSnapshotRequest {
                    snapshotter: t.snapshotter.clone(),
                    key: id.to_owned(),
                    parent: t.parent.clone(),
                    labels: HashMap::new(),
                },
                &lease,
            ))
            .await
            .context("Snapshots.Prepare")?
            .into_inner()
            .mounts;
        self.client
            .containers()
            .create(self.leased(
                CreateContainerRequest {
                    container: Some(Container {
                        id: id.to_owned(),
                        image: t.image.clone(),
                        runtime: Some(Runtime {
                            name: t.runtime.clone(),
                            options: None,
                        }),
                        spec: Some(prost_types::Any {
                            type_url:
                                "types.containerd.io/opencontainers/runtime-spec/1/Spec".into(),
                            value: spec,
                        }),
                        snapshotter: t.snapshotter.clone(),
                        snapshot_key: id.to_owned(),
                        ..Default::default()
                    }),
                },
                &lease,
            ))
            .await
            .context("Containers.Create")?;
        self.client
            .leases()
            .delete(self.req(LeaseDeleteRequest {
                id: lease,
                sync: false,
            }))
            .await
            .context("Leases.Delete")?;
        self.client
            .tasks()
            .create(self.req(CreateTaskRequest {
                container_id: id.to_owned(),
                rootfs: mounts,
                stdout,
                stderr,
                ..Default::default()
            }))
            .await
            .context("Tasks.Create")?;
        self.client
            .tasks()
            .start(self.req(StartRequest {
                container_id: id.to_owned(),
                exec_id: String::new(),
            }))
            .await
            .context("Tasks.Start")?;
        Ok(started.elapsed())
    }

    /// Kills and removes `id`: task, snapshot, container and launch lease, whichever exist
    /// (a launch that failed half-way leaves only some).
    pub async fn remove(&self, id: &str, snapshotter: &str) -> Result<()> {
        let mut tasks = self.client.tasks();
        // Wait first (subscribed before the kill), so the exit cannot be missed.
        let waiting = {
            let mut tasks = tasks.clone();
            let req = self.req(WaitRequest {
                container_id: id.to_owned(),
                exec_id: String::new(),
            });
            tokio::spawn(async move { tasks.wait(req).await })
        };
        let killed = tasks
            .kill(self.req(KillRequest {
                container_id: id.to_owned(),
                exec_id: String::new(),
                signal: 9,
                all: true,
            }))
            .await;
        match killed {
            Ok(_) => {
                waiting
                    .await
                    .map_err(|e| anyhow!("waiting for {id}: {e}"))?
                    .with_context(|| format!("Tasks.Wait {id}"))?;
            }
            Err(e) if e.code() == Code::NotFound => waiting.abort(),
            Err(e) => return Err(e).with_context(|| format!("Tasks.Kill {id}")),
        }
        missing_ok(
            tasks
                .delete(self.req(DeleteTaskRequest {
                    container_id: id.to_owned(),
                }))
                .await,
        )
        .with_context(|| format!("Tasks.Delete {id}"))?;
        // The snapshot before the container, as the Go client's WithSnapshotCleanup does: once
        // the container is gone nothing holds the snapshot, and the garbage collector may take
        // it first.
        missing_ok(
            self.client
                .snapshots()
                .remove(self.req(RemoveSnapshotRequest {
                    snapshotter: snapshotter.to_owned(),
                    key: id.to_owned(),
                }))
                .await,
        )
        .with_context(|| format!("Snapshots.Remove {id}"))?;
        missing_ok(
            self.client
                .containers()
                .delete(self.req(DeleteContainerRequest { id: id.to_owned() }))
                .await,
        )
        .with_context(|| format!("Containers.Delete {id}"))?;
        missing_ok(
            self.client
                .leases()
                .delete(self.req(LeaseDeleteRequest {
                    id: lease_id(id),
                    sync: false,
                }))
                .await,
        )
        .with_context(|| format!("Leases.Delete {}", lease_id(id)))?;
        Ok(())
    }
}

fn lease_id(container: &str) -> String {
    format!("bench-{container}")
}

/// Gone already is as good as removed.
fn missing_ok<T>(r: Result<T, tonic::Status>) -> Result<(), tonic::Status> {
    match r {
        Err(e) if e.code() != Code::NotFound => Err(e),
        _ => Ok(()),
    }
}

impl Template {
    pub fn snapshotter(&self) -> &str {
        &self.snapshotter
    }
}

/// `uri` with its log file replaced by `log`: a `file://` URI, or the agent's logger's
/// `binary://` URI with its path parameter.
fn with_log_path(uri: &str, log: &Path) -> Result<String> {
    if uri.is_empty() {
        return Ok(String::new());
    }
    if uri.starts_with("file://") {
        return Ok(format!("file://{}", log.display()));
    }
    let Some((base, query)) = uri.split_once('?') else {
        bail!("unexpected stdio URI {uri:?}");
    };
    let mut found = false;
    let params: Vec<String> = query
        .split('&')
        .map(|p| match p.split_once('=') {
            Some((k, _)) if k == LOGGER_PATH_ARG => {
                found = true;
                format!("{k}={}", escape(&log.to_string_lossy()))
            }
            _ => p.to_owned(),
        })
        .collect();
    if !found {
        bail!("stdio URI {uri:?} has no {LOGGER_PATH_ARG}");
    }
    Ok(format!("{base}?{}", params.join("&")))
}

/// Percent-encodes a query value as Go's url.Parse expects.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Where direct container `id` logs, under `dir`.
pub fn log_path(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}.log"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_path_is_replaced_in_both_uri_forms() {
        let log = Path::new("/tmp/x y/d.log");
        assert_eq!(
            with_log_path("file:///a/b.log", log).unwrap(),
            "file:///tmp/x y/d.log"
        );
        let uri = "binary:///usr/bin/berth-agent?berth-log-path=%2Fa%2Fb.log&berth-log-max-size=10";
        assert_eq!(
            with_log_path(uri, log).unwrap(),
            "binary:///usr/bin/berth-agent?berth-log-path=%2Ftmp%2Fx%20y%2Fd.log&berth-log-max-size=10"
        );
        assert!(with_log_path("binary:///x?other=1", log).is_err());
    }
}
