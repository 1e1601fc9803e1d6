//! The real runtime: containerd's gRPC API through containerd-client. One connection shared by
//! every call; the namespace header and a deadline on every call (a hung containerd must never
//! wedge a task worker, the session or heartbeats).

use std::collections::HashMap;
use std::pin::Pin;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use containerd_client::events::TaskExit;
use containerd_client::services::v1::snapshots::{
    PrepareSnapshotRequest, RemoveSnapshotRequest, StatSnapshotRequest,
};
use containerd_client::services::v1::{
    container::Runtime as ContainerRuntime, Container, CreateContainerRequest, CreateTaskRequest,
    DeleteContainerRequest, DeleteTaskRequest, GetContainerRequest, GetImageRequest, GetRequest,
    KillRequest, ListContainersRequest, PublishRequest, ReadContentRequest, StartRequest,
    SubscribeRequest,
};
use containerd_client::services::v1::{
    CreateRequest as LeaseCreateRequest, DeleteRequest as LeaseDeleteRequest,
};
use containerd_client::tonic::transport::Channel;
use containerd_client::types::v1::Status as ProcStatus;
use containerd_client::types::Mount;
use containerd_client::Client;
use futures_util::{Stream, StreamExt};
use prost::Message;
use tonic::Request;

use super::image::{self, ResolvedImage};
use super::{
    CreateRequest, ExecOutcome, ExecRequest, ExitEvent, ListedContainer, ProcessState, Runtime,
    RuntimeError,
};

pub const LABEL_TASK_ARN: &str = "berth.task-arn";
pub const LABEL_CONTAINER_NAME: &str = "berth.container-name";
const SPEC_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Spec";
const RUNC_V2: &str = "io.containerd.runc.v2";
const TOPIC_EXIT: &str = "/tasks/exit";
/// Published by the agent to itself; see `exits`.
const TOPIC_SUBSCRIBED: &str = "/berth/subscribed";

#[derive(Debug, Clone)]
pub struct ContainerdConfig {
    pub socket: String,
    pub namespace: String,
    pub snapshotter: String,
    /// Deadline of each unary call.
    pub call_timeout: Duration,
}

pub struct Containerd {
    client: Client,
    cfg: ContainerdConfig,
}

impl Containerd {
    /// Connects lazily: the channel reconnects by itself when containerd restarts.
    pub async fn connect(cfg: ContainerdConfig) -> Result<Self, RuntimeError> {
        let channel: Channel =
            containerd_client::connect(&cfg.socket)
                .await
                .map_err(|e| RuntimeError::Connect {
                    socket: cfg.socket.clone(),
                    message: e.to_string(),
                })?;
        Ok(Self {
            client: Client::from(channel),
            cfg,
        })
    }

    fn req<T>(&self, msg: T) -> Request<T> {
        let mut req = Request::new(msg);
        req.set_timeout(self.cfg.call_timeout);
        // The namespace is validated by our config: it always parses as a header value.
        if let Ok(ns) = self.cfg.namespace.parse() {
            req.metadata_mut().insert("containerd-namespace", ns);
        }
        req
    }

    /// Runs one call with the configured deadline, mapping its error.
    async fn call<T, F>(&self, name: &'static str, fut: F) -> Result<T, RuntimeError>
    where
        F: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        match tokio::time::timeout(self.cfg.call_timeout, fut).await {
            Ok(Ok(resp)) => Ok(resp.into_inner()),
            Ok(Err(status)) => Err(RuntimeError::Containerd {
                call: name,
                status: Box::new(status),
            }),
            Err(_) => Err(RuntimeError::Timeout {
                call: name,
                secs: self.cfg.call_timeout.as_secs(),
            }),
        }
    }

    async fn read_blob(&self, digest: &str) -> Result<Vec<u8>, RuntimeError> {
        let mut content = self.client.content();
        let req = self.req(ReadContentRequest {
            digest: digest.to_string(),
            offset: 0,
            size: 0,
        });
        let mut stream = self.call("Content.Read", content.read(req)).await?;
        let mut buf = Vec::new();
        loop {
            let next = tokio::time::timeout(self.cfg.call_timeout, stream.next()).await;
            match next {
                Ok(Some(Ok(chunk))) => buf.extend_from_slice(&chunk.data),
                Ok(Some(Err(status))) => {
                    return Err(RuntimeError::Containerd {
                        call: "Content.Read",
                        status: Box::new(status),
                    })
                }
                Ok(None) => return Ok(buf),
                Err(_) => {
                    return Err(RuntimeError::Timeout {
                        call: "Content.Read",
                        secs: self.cfg.call_timeout.as_secs(),
                    })
                }
            }
        }
    }

    /// Image record -> (index ->) manifest -> config, and the chain id of its layers.
    async fn resolve(&self, name: &str) -> Result<ResolvedImage, RuntimeError> {
        let bad = |message: String| RuntimeError::BadImage {
            image: name.to_string(),
            message,
        };
        let mut images = self.client.images();
        let got = self
            .call(
                "Images.Get",
                images.get(self.req(GetImageRequest {
                    name: name.to_string(),
                })),
            )
            .await
            .map_err(|e| {
                if e.is_not_found() {
                    RuntimeError::ImageNotFound(name.to_string())
                } else {
                    e
                }
            })?;
        let target = got
            .image
            .and_then(|i| i.target)
            .ok_or_else(|| bad("the image record has no target".into()))?;
        let mut manifest_digest = target.digest;
        if image::is_index(&target.media_type) {
            let index = self.read_blob(&manifest_digest).await?;
            manifest_digest = image::select_manifest(&index, image::host_arch()).map_err(bad)?;
        }
        let manifest = self.read_blob(&manifest_digest).await?;
        let config_digest = image::config_digest(&manifest).map_err(bad)?;
        let config = self.read_blob(&config_digest).await?;
        let resolved = image::parse_config(&config).map_err(bad)?;
        // The layers must be unpacked for our snapshotter; pulling and unpacking is the
        // image-pull module's job, so here a missing snapshot is a clear error.
        let mut snapshots = self.client.snapshots();
        self.call(
            "Snapshots.Stat",
            snapshots.stat(self.req(StatSnapshotRequest {
                snapshotter: self.cfg.snapshotter.clone(),
                key: resolved.chain_id.clone(),
            })),
        )
        .await
        .map_err(|e| {
            if e.is_not_found() {
                bad(format!(
                    "not unpacked for the {} snapshotter",
                    self.cfg.snapshotter
                ))
            } else {
                e
            }
        })?;
        Ok(resolved)
    }

    /// A lease holds what a launch creates until the container references it: without one, a
    /// garbage collection (another namespace's deletions trigger one) may take the fresh
    /// snapshot while we read the image's users from it. The lease expires by itself, so a
    /// crash mid-launch leaks nothing for long.
    async fn create_lease(&self, id: &str) -> Result<String, RuntimeError> {
        let expire = SystemTime::now() + Duration::from_secs(3600);
        let mut leases = self.client.leases();
        let resp = self
            .call(
                "Leases.Create",
                leases.create(self.req(LeaseCreateRequest {
                    id: format!("berth-launch-{id}-{:08x}", fastrand::u32(..)),
                    labels: HashMap::from([(
                        "containerd.io/gc.expire".to_string(),
                        rfc3339(expire),
                    )]),
                })),
            )
            .await?;
        resp.lease
            .map(|l| l.id)
            .ok_or_else(|| RuntimeError::Io("Leases.Create returned no lease".into()))
    }

    async fn delete_lease(&self, lease: &str) {
        let mut leases = self.client.leases();
        let deleted = self
            .call(
                "Leases.Delete",
                leases.delete(self.req(LeaseDeleteRequest {
                    id: lease.to_string(),
                    sync: false,
                })),
            )
            .await;
        if let Err(e) = deleted {
            // It expires on its own; nothing is lost but an hour of a snapshot's protection.
            tracing::warn!(lease, error = %e, "cannot delete a launch lease");
        }
    }

    /// A request that works under `lease`.
    fn leased<T>(&self, msg: T, lease: &str) -> Request<T> {
        let mut req = self.req(msg);
        if let Ok(v) = lease.parse() {
            req.metadata_mut().insert("containerd-lease", v);
        }
        req
    }

    async fn prepare_snapshot(
        &self,
        key: &str,
        parent: &str,
        lease: &str,
    ) -> Result<Vec<Mount>, RuntimeError> {
        let mut snapshots = self.client.snapshots();
        let mut removed_leftover = false;
        loop {
            let prepared = self
                .call(
                    "Snapshots.Prepare",
                    snapshots.prepare(self.leased(
                        PrepareSnapshotRequest {
                            snapshotter: self.cfg.snapshotter.clone(),
                            key: key.to_string(),
                            parent: parent.to_string(),
                            labels: HashMap::new(),
                        },
                        lease,
                    )),
                )
                .await;
            match prepared {
                Ok(resp) => return Ok(resp.mounts),
                // A leftover from a launch that crashed half-way: remove it, prepare afresh.
                Err(RuntimeError::Containerd { status, .. })
                    if status.code() == tonic::Code::AlreadyExists && !removed_leftover =>
                {
                    self.remove_snapshot(key).await?;
                    removed_leftover = true;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn remove_snapshot(&self, key: &str) -> Result<(), RuntimeError> {
        let mut snapshots = self.client.snapshots();
        ignore_not_found(
            self.call(
                "Snapshots.Remove",
                snapshots.remove(self.req(RemoveSnapshotRequest {
                    snapshotter: self.cfg.snapshotter.clone(),
                    key: key.to_string(),
                })),
            )
            .await,
        )
    }

    /// The snapshot and the container record of a launch, created under `lease`.
    async fn create_under_lease(
        &self,
        req: &CreateRequest,
        resolved: &ResolvedImage,
        lease: &str,
    ) -> Result<Vec<Mount>, RuntimeError> {
        let id = req.runtime_id.as_str();
        let mounts = self.prepare_snapshot(id, &resolved.chain_id, lease).await?;
        // The spec needs the snapshot: user names are looked up in the image's own files.
        let spec = match super::facts::build(req, &resolved.config, &mounts) {
            Ok(spec) => spec,
            Err(e) => {
                let _ = self.remove_snapshot(id).await;
                return Err(e);
            }
        };
        // dockerLabels first, then ours: berth.* labels are the agent's to set.
        let mut labels: HashMap<String, String> = req
            .container
            .extra
            .labels
            .iter()
            .filter(|(k, _)| !k.starts_with("berth."))
            .cloned()
            .collect();
        labels.insert(LABEL_TASK_ARN.to_string(), req.task_arn.clone());
        labels.insert(LABEL_CONTAINER_NAME.to_string(), req.container.name.clone());
        let container = Container {
            id: id.to_string(),
            labels,
            image: req.container.image.clone(),
            runtime: Some(ContainerRuntime {
                name: RUNC_V2.to_string(),
                options: None,
            }),
            spec: Some(prost_types::Any {
                type_url: SPEC_TYPE_URL.to_string(),
                value: serde_json::to_vec(&spec)
                    .map_err(|e| RuntimeError::InvalidSpec(e.to_string()))?,
            }),
            snapshotter: self.cfg.snapshotter.clone(),
            snapshot_key: id.to_string(),
            ..Default::default()
        };
        let mut containers = self.client.containers();
        if let Err(e) = self
            .call(
                "Containers.Create",
                containers.create(self.leased(
                    CreateContainerRequest {
                        container: Some(container),
                    },
                    lease,
                )),
            )
            .await
        {
            let _ = self.remove_snapshot(id).await;
            return Err(e);
        }
        Ok(mounts)
    }

    async fn delete_task(&self, id: &str) -> Result<(), RuntimeError> {
        // containerd refuses to delete a running process: kill it first. Only leftovers and
        // never-started containers get here running; a task's own stop goes through signal().
        if self.state(id).await? == ProcessState::Running {
            self.signal(id, libc::SIGKILL).await?;
            let deadline = tokio::time::Instant::now() + self.cfg.call_timeout;
            while self.state(id).await? == ProcessState::Running {
                if tokio::time::Instant::now() > deadline {
                    return Err(RuntimeError::Timeout {
                        call: "waiting for a killed process",
                        secs: self.cfg.call_timeout.as_secs(),
                    });
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let mut tasks = self.client.tasks();
        ignore_not_found(
            self.call(
                "Tasks.Delete",
                tasks.delete(self.req(DeleteTaskRequest {
                    container_id: id.to_string(),
                })),
            )
            .await,
        )
    }

    async fn publish_marker(&self) -> Result<(), RuntimeError> {
        let mut events = self.client.events();
        self.call(
            "Events.Publish",
            events.publish(self.req(PublishRequest {
                topic: TOPIC_SUBSCRIBED.to_string(),
                event: Some(prost_types::Any {
                    type_url: "containerd.events.TaskExit".to_string(),
                    value: TaskExit::default().encode_to_vec(),
                }),
            })),
        )
        .await
        .map(|_| ())
    }
}

/// RFC 3339 in UTC, as containerd's gc.expire label wants it.
fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn ignore_not_found<T>(r: Result<T, RuntimeError>) -> Result<(), RuntimeError> {
    match r {
        Ok(_) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(e),
    }
}

impl Runtime for Containerd {
    async fn exec(&self, req: &ExecRequest) -> Result<ExecOutcome, RuntimeError> {
        let _ = req;
        Err(RuntimeError::Io("exec: not implemented yet".into()))
    }

    async fn version(&self) -> Result<String, RuntimeError> {
        let mut v = self.client.version();
        let resp = self.call("Version", v.version(self.req(()))).await?;
        Ok(resp.version)
    }

    async fn resolve_image(&self, image: &str) -> Result<(), RuntimeError> {
        self.resolve(image).await.map(|_| ())
    }

    async fn create(&self, req: &CreateRequest) -> Result<(), RuntimeError> {
        let id = req.runtime_id.as_str();
        let resolved = self.resolve(&req.container.image).await?;

        // Replace a leftover of an earlier attempt (the agent may have crashed mid-launch).
        self.remove(id).await?;

        if let Some(dir) = req.log_path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| RuntimeError::Io(format!("creating {}: {e}", dir.display())))?;
        }
        let lease = self.create_lease(id).await?;
        let result = self.create_under_lease(req, &resolved, &lease).await;
        self.delete_lease(&lease).await;
        let mounts = result?;
        // The shim (or the logger it starts) writes the log: the agent never holds a pipe.
        let log_uri = crate::logs::stdio_uri(&req.log_path);
        let mut tasks = self.client.tasks();
        let created = self
            .call(
                "Tasks.Create",
                tasks.create(self.req(CreateTaskRequest {
                    container_id: id.to_string(),
                    rootfs: mounts,
                    stdout: log_uri.clone(),
                    stderr: log_uri,
                    ..Default::default()
                })),
            )
            .await;
        if let Err(e) = created {
            let _ = self.remove(id).await;
            return Err(e);
        }
        Ok(())
    }

    async fn start(&self, runtime_id: &str) -> Result<(), RuntimeError> {
        let mut tasks = self.client.tasks();
        self.call(
            "Tasks.Start",
            tasks.start(self.req(StartRequest {
                container_id: runtime_id.to_string(),
                exec_id: String::new(),
            })),
        )
        .await
        .map(|_| ())
    }

    async fn restart(
        &self,
        runtime_id: &str,
        log_path: &std::path::Path,
    ) -> Result<(), RuntimeError> {
        // After a crash mid-restart the new process may already run: nothing left to do.
        if self.state(runtime_id).await? == ProcessState::Running {
            return Ok(());
        }
        self.delete_task(runtime_id).await?;
        let mut snapshots = self.client.snapshots();
        let rootfs = self
            .call(
                "Snapshots.Mounts",
                snapshots.mounts(self.req(
                    containerd_client::services::v1::snapshots::MountsRequest {
                        snapshotter: self.cfg.snapshotter.clone(),
                        key: runtime_id.to_string(),
                    },
                )),
            )
            .await?
            .mounts;
        let log_uri = crate::logs::stdio_uri(log_path);
        let mut tasks = self.client.tasks();
        self.call(
            "Tasks.Create",
            tasks.create(self.req(CreateTaskRequest {
                container_id: runtime_id.to_string(),
                rootfs,
                stdout: log_uri.clone(),
                stderr: log_uri,
                ..Default::default()
            })),
        )
        .await?;
        self.start(runtime_id).await
    }

    async fn signal(&self, runtime_id: &str, signal: i32) -> Result<(), RuntimeError> {
        let mut tasks = self.client.tasks();
        ignore_not_found(
            self.call(
                "Tasks.Kill",
                tasks.kill(self.req(KillRequest {
                    container_id: runtime_id.to_string(),
                    exec_id: String::new(),
                    signal: signal as u32,
                    all: true,
                })),
            )
            .await,
        )
    }

    async fn state(&self, runtime_id: &str) -> Result<ProcessState, RuntimeError> {
        let mut tasks = self.client.tasks();
        let got = self
            .call(
                "Tasks.Get",
                tasks.get(self.req(GetRequest {
                    container_id: runtime_id.to_string(),
                    exec_id: String::new(),
                })),
            )
            .await;
        let process = match got {
            Ok(resp) => resp.process,
            Err(e) if e.is_not_found() => return Ok(ProcessState::Missing),
            Err(e) => return Err(e),
        };
        let Some(p) = process else {
            return Ok(ProcessState::Missing);
        };
        Ok(
            match ProcStatus::try_from(p.status).unwrap_or(ProcStatus::Unknown) {
                ProcStatus::Created => ProcessState::Created,
                ProcStatus::Stopped => ProcessState::Stopped {
                    exit_code: p.exit_status as i32,
                },
                ProcStatus::Unknown => ProcessState::Missing,
                _ => ProcessState::Running,
            },
        )
    }

    async fn remove(&self, runtime_id: &str) -> Result<(), RuntimeError> {
        self.delete_task(runtime_id).await?;
        let mut containers = self.client.containers();
        let exists = self
            .call(
                "Containers.Get",
                containers.get(self.req(GetContainerRequest {
                    id: runtime_id.to_string(),
                })),
            )
            .await;
        match exists {
            Ok(_) => ignore_not_found(
                self.call(
                    "Containers.Delete",
                    containers.delete(self.req(DeleteContainerRequest {
                        id: runtime_id.to_string(),
                    })),
                )
                .await,
            )?,
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
        self.remove_snapshot(runtime_id).await
    }

    async fn list(&self) -> Result<Vec<ListedContainer>, RuntimeError> {
        let mut containers = self.client.containers();
        let resp = self
            .call(
                "Containers.List",
                containers.list(self.req(ListContainersRequest { filters: vec![] })),
            )
            .await?;
        Ok(resp
            .containers
            .into_iter()
            .map(|c| ListedContainer {
                task_arn: c.labels.get(LABEL_TASK_ARN).cloned(),
                runtime_id: c.id,
            })
            .collect())
    }

    async fn exits(&self) -> Result<Pin<Box<dyn Stream<Item = ExitEvent> + Send>>, RuntimeError> {
        // containerd sends a subscription's response headers only with its first event, so
        // the call cannot complete until something is published. We publish a marker event
        // until it does: once the call returns, the subscription is live and no exit after
        // this point can be missed.
        let filters = [TOPIC_EXIT, TOPIC_SUBSCRIBED]
            .iter()
            .map(|t| format!("topic==\"{t}\",namespace=={}", self.cfg.namespace))
            .collect();
        let mut req = Request::new(SubscribeRequest { filters });
        if let Ok(ns) = self.cfg.namespace.parse() {
            req.metadata_mut().insert("containerd-namespace", ns);
        }
        let mut events = self.client.events();
        let subscribe = events.subscribe(req);
        tokio::pin!(subscribe);
        let deadline = tokio::time::Instant::now() + self.cfg.call_timeout;
        let stream = loop {
            tokio::select! {
                resp = &mut subscribe => break resp.map_err(|status| RuntimeError::Containerd {
                    call: "Events.Subscribe",
                    status: Box::new(status),
                })?.into_inner(),
                _ = tokio::time::sleep(Duration::from_millis(100)) => {
                    if tokio::time::Instant::now() > deadline {
                        return Err(RuntimeError::Timeout {
                            call: "Events.Subscribe",
                            secs: self.cfg.call_timeout.as_secs(),
                        });
                    }
                    self.publish_marker().await?;
                }
            }
        };
        let exits = stream
            .take_while(|item| std::future::ready(item.is_ok()))
            .filter_map(|item| {
                std::future::ready(item.ok().and_then(|env| {
                    if env.topic != TOPIC_EXIT {
                        return None;
                    }
                    let any = env.event?;
                    let exit = TaskExit::decode(any.value.as_slice()).ok()?;
                    // Exits of exec'd processes carry their exec id; only main processes count.
                    (exit.id == exit.container_id).then_some(ExitEvent {
                        runtime_id: exit.container_id,
                        exit_code: exit.exit_status as i32,
                    })
                }))
            });
        Ok(Box::pin(exits))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_in_utc() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        assert_eq!(rfc3339(t), "2026-11-18T11:06:40Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00Z");
    }
}
