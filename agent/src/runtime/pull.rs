//! Storing a pulled image in containerd. containerd 1.6 has no server-side pull: as its Go
//! client does (`client.Pull`: fetch handlers writing into the content store under a lease,
//! then `image.Unpack`), the agent writes the blobs, unpacks the layers into snapshots and
//! creates the image record itself. Where blobs come from (a registry) is the caller's.
//!
//! Everything is created under one lease, deleted at the end: until the image record exists,
//! the lease is all that keeps containerd's garbage collector from the new content and
//! snapshots; afterwards the record and the GC labels on the blobs do (index -> manifest ->
//! config and layers -> the top snapshot, whose parents are kept by the snapshots themselves).
//! A failure deletes the lease synchronously, so nothing the pull created is left when it
//! returns; a crash leaves the lease to expire.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use containerd_client::services::v1::snapshots::{
    CommitSnapshotRequest, PrepareSnapshotRequest, StatSnapshotRequest,
};
use containerd_client::services::v1::{
    AbortRequest, AddResourceRequest, ApplyRequest, CreateImageRequest, DeleteImageRequest, Image,
    Info as ContentInfo, ListImagesRequest, Resource, UpdateImageRequest,
    UpdateRequest as ContentUpdateRequest, WriteAction, WriteContentRequest, WriteContentResponse,
};
use containerd_client::services::v1::{
    CreateRequest as LeaseCreateRequest, DeleteRequest as LeaseDeleteRequest,
};
use containerd_client::types::{Descriptor, Mount};
use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tonic::Request;

use super::containerd::Containerd;
use super::image::{self, ContentDescriptor};
use super::RuntimeError;
use crate::model::rfc3339;

/// Where blobs come from (the registry client in production; an OCI layout dir in tests).
pub trait BlobSource: Send + Sync {
    /// The blob's bytes from the start. The stream's own pace is the source's business:
    /// a source that can stall must time itself out.
    fn fetch(
        &self,
        desc: &ContentDescriptor,
    ) -> impl Future<Output = Result<BlobStream, String>> + Send;
}

pub type BlobStream = Pin<Box<dyn Stream<Item = Result<Bytes, String>> + Send>>;

/// An image resolved by the registry side: what to store and under which name.
#[derive(Debug, Clone)]
pub struct PullPlan {
    /// The image record's name, e.g. "docker.io/library/busybox:latest".
    pub name: String,
    /// The index or manifest the reference names: the record's target.
    pub top: ContentDescriptor,
    pub top_bytes: Vec<u8>,
    /// The host's manifest (the same as `top` when the reference names a manifest).
    pub manifest: ContentDescriptor,
    pub manifest_bytes: Vec<u8>,
    pub config: ContentDescriptor,
    pub config_bytes: Vec<u8>,
    /// The manifest's layers, bottom first.
    pub layers: Vec<ContentDescriptor>,
    /// Labels of the image record; on a record that exists these are set, others kept.
    pub labels: HashMap<String, String>,
}

/// Reported while a layer is fetched (after each chunk) and once when it is done or skipped
/// (then `bytes == total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PullProgress {
    /// From 0, bottom first.
    pub layer: usize,
    pub layers: usize,
    pub bytes: u64,
    pub total: u64,
    /// Nothing was fetched: the blob, or its unpacked snapshot, was there already.
    pub skipped: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PullStats {
    pub layers_fetched: usize,
    /// Layers not fetched: their blob was in the content store or their snapshot (and those
    /// below it) already unpacked.
    pub layers_present: usize,
    /// Bytes read from the source, layers only.
    pub bytes_fetched: u64,
}

/// An image record of the namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedImage {
    pub name: String,
    /// The record's target: the index or manifest digest.
    pub digest: String,
    pub created: Option<SystemTime>,
    pub updated: Option<SystemTime>,
    pub labels: HashMap<String, String>,
}

/// Every pull lease starts with this.
pub const PULL_LEASE_PREFIX: &str = "berth-pull-";
/// As containerd's Go client: a lease a crash leaves behind is collected after a day.
const PULL_LEASE_EXPIRY: Duration = Duration::from_secs(24 * 3600);
/// Bytes per Content.Write message (containerd accepts 16 MiB messages).
const WRITE_CHUNK: usize = 1 << 20;
/// How long a blob another pull is writing (the ref is locked) is waited for.
const LOCKED_WAIT: Duration = Duration::from_secs(600);
/// Diff.Apply gets the call deadline plus a second per this many (compressed) bytes.
const APPLY_BYTES_PER_SEC: u64 = 8 << 20;

const LABEL_UNCOMPRESSED: &str = "containerd.io/uncompressed";
const LABEL_GC_CONTENT: &str = "containerd.io/gc.ref.content";
const LABEL_GC_SNAPSHOT: &str = "containerd.io/gc.ref.snapshot";

/// How a blob's write ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Written {
    /// It was in the namespace's content store already (and is now held by the lease).
    Present,
    /// Committed by us with its labels; `bytes` read from the source (0 when containerd had
    /// the whole blob: another namespace's, or a complete earlier partial write).
    Committed { bytes: u64 },
}

enum Opened {
    Present,
    /// Another writer holds the ref.
    Locked,
    Writer(Box<BlobWriter>, u64),
}

/// One Content.Write stream: each message gets one answer; each exchange has the deadline.
struct BlobWriter {
    tx: mpsc::Sender<WriteContentRequest>,
    rx: tonic::codec::Streaming<WriteContentResponse>,
    timeout: Duration,
}

impl BlobWriter {
    async fn round(
        &mut self,
        msg: WriteContentRequest,
    ) -> Result<WriteContentResponse, RuntimeError> {
        let timeout = self.timeout;
        let exchange = async {
            // A closed request stream means containerd ended the call: its status follows.
            let _ = self.tx.send(msg).await;
            match self.rx.message().await {
                Ok(Some(resp)) => Ok(resp),
                Ok(None) => Err(RuntimeError::Io(
                    "containerd ended Content.Write without an answer".into(),
                )),
                Err(status) => Err(write_error(status)),
            }
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| RuntimeError::Timeout {
                call: "Content.Write",
                secs: timeout.as_secs(),
            })?
    }
}

fn write_error(status: tonic::Status) -> RuntimeError {
    RuntimeError::Containerd {
        call: "Content.Write",
        status: Box::new(status),
    }
}

fn code_of(e: &RuntimeError) -> Option<tonic::Code> {
    match e {
        RuntimeError::Containerd { status, .. } => Some(status.code()),
        _ => None,
    }
}

/// Deletes the lease if the pull's future is dropped half-way (the caller gave up).
struct LeaseGuard {
    armed: Option<(Request<LeaseDeleteRequest>, Duration)>,
    leases: containerd_client::services::v1::leases_client::LeasesClient<
        containerd_client::tonic::transport::Channel,
    >,
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        let Some((req, timeout)) = self.armed.take() else {
            return;
        };
        let mut leases = self.leases.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = tokio::time::timeout(timeout, leases.delete(req)).await;
            });
        }
    }
}

impl Containerd {
    /// Stores the image: blobs into the content store (skipping those present), layers
    /// unpacked into snapshots (skipping chain ids present), the image record created or
    /// updated last — all under one lease deleted at the end, so a failure or a crash leaves
    /// nothing that outlives the lease.
    ///
    /// Layers are fetched `parallel` at a time and unpacked in order as they arrive. As
    /// containerd's unpacker does, the bottom layers whose snapshot already exists are neither
    /// fetched nor unpacked.
    pub async fn store_image<S: BlobSource>(
        &self,
        plan: &PullPlan,
        source: &S,
        parallel: usize,
        progress: &(dyn Fn(PullProgress) + Send + Sync),
    ) -> Result<PullStats, RuntimeError> {
        let checked = check_plan(plan).map_err(|message| RuntimeError::BadImage {
            image: plan.name.clone(),
            message,
        })?;
        let lease = self.create_pull_lease().await?;
        let mut guard = LeaseGuard {
            armed: Some((
                self.lease_delete_request(&lease, true),
                self.cfg.call_timeout,
            )),
            leases: self.client.leases(),
        };
        let result = self
            .store_under_lease(plan, &checked, source, parallel.max(1), progress, &lease)
            .await;
        guard.armed = None;
        // After a failure, synchronously: when this returns, the garbage collector has taken
        // everything the lease alone held.
        self.delete_pull_lease(&lease, result.is_err()).await;
        result
    }

    /// Whether an image record with this name exists and is complete enough to run: its
    /// index, manifest and config readable and its layers unpacked for our snapshotter.
    pub async fn image_present(&self, name: &str) -> Result<bool, RuntimeError> {
        match self.resolve(name).await {
            Ok(_) => Ok(true),
            Err(RuntimeError::ImageNotFound(_) | RuntimeError::BadImage { .. }) => Ok(false),
            // A blob the record refers to is missing.
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Removes an image record; a missing one is not an error. The deletion is synchronous:
    /// when it returns, containerd's garbage collector has freed the content and snapshots
    /// that nothing else references.
    pub async fn remove_image(&self, name: &str) -> Result<(), RuntimeError> {
        let mut images = self.client.images();
        let deleted = self
            .call(
                "Images.Delete",
                images.delete(self.req(DeleteImageRequest {
                    name: name.to_string(),
                    sync: true,
                    target: None,
                })),
            )
            .await;
        match deleted {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Image records in the namespace: name, target digest, created/updated time.
    pub async fn list_images(&self) -> Result<Vec<ListedImage>, RuntimeError> {
        let mut images = self.client.images();
        let listed = self
            .call(
                "Images.List",
                images.list(self.req(ListImagesRequest { filters: vec![] })),
            )
            .await?;
        Ok(listed
            .images
            .into_iter()
            .map(|i| ListedImage {
                name: i.name,
                digest: i.target.map(|t| t.digest).unwrap_or_default(),
                created: i.created_at.as_ref().and_then(system_time),
                updated: i.updated_at.as_ref().and_then(system_time),
                labels: i.labels,
            })
            .collect())
    }

    async fn store_under_lease<S: BlobSource>(
        &self,
        plan: &PullPlan,
        checked: &CheckedPlan,
        source: &S,
        parallel: usize,
        progress: &(dyn Fn(PullProgress) + Send + Sync),
        lease: &str,
    ) -> Result<PullStats, RuntimeError> {
        let snapshotter = self.cfg.snapshotter.as_str();
        let chains = &checked.chain_ids;
        let top_chain = chains.last().map(String::as_str).unwrap_or_default();

        // The small blobs, parents first, with the labels that keep their children.
        let mut small = Vec::new();
        if let Some(position) = checked.index_position {
            small.push((
                &plan.top,
                &plan.top_bytes,
                index_labels(position, &plan.manifest),
            ));
        }
        small.push((
            &plan.manifest,
            &plan.manifest_bytes,
            manifest_labels(&plan.config, &plan.layers),
        ));
        small.push((
            &plan.config,
            &plan.config_bytes,
            config_labels(snapshotter, top_chain),
        ));
        for (desc, bytes, labels) in small {
            let data = Bytes::copy_from_slice(bytes);
            let fetch = move || async move {
                Ok(Box::pin(futures_util::stream::once(
                    async move { Ok::<_, String>(data) },
                )) as BlobStream)
            };
            if self
                .write_blob(&plan.name, desc, &labels, lease, fetch, &|_| {})
                .await?
                == Written::Present
            {
                // Present from an earlier pull (or someone else's): label it all the same,
                // as the Go client's SetChildrenLabels handler does.
                self.update_labels(&desc.digest, &labels).await?;
            }
        }

        // The bottom layers whose snapshots exist need nothing (a snapshot exists only if its
        // parents do); the highest of them is leased while the rest is unpacked on top.
        let n = plan.layers.len();
        let mut unpacked = 0;
        for i in (0..n).rev() {
            if self.snapshot_exists(&chains[i]).await? {
                unpacked = i + 1;
                break;
            }
        }
        if unpacked > 0 {
            self.lease_snapshot(lease, &chains[unpacked - 1]).await?;
        }
        for (i, layer) in plan.layers.iter().enumerate().take(unpacked) {
            progress(PullProgress {
                layer: i,
                layers: n,
                bytes: layer.size,
                total: layer.size,
                skipped: true,
            });
        }

        // Fetched in parallel, unpacked in order as they arrive. A failed fetch reaches the
        // unpacking in its turn, so an unpack under way is never cut short.
        let (tx, mut rx) = mpsc::unbounded_channel();
        let fetch_all = async move {
            let mut fetches = futures_util::stream::iter(unpacked..n)
                .map(|i| async move {
                    let layer = &plan.layers[i];
                    let report = |bytes| {
                        progress(PullProgress {
                            layer: i,
                            layers: n,
                            bytes,
                            total: layer.size,
                            skipped: false,
                        })
                    };
                    let labels = HashMap::from([(
                        LABEL_UNCOMPRESSED.to_string(),
                        checked.diff_ids[i].clone(),
                    )]);
                    let written = self
                        .write_blob(
                            &plan.name,
                            layer,
                            &labels,
                            lease,
                            || source.fetch(layer),
                            &report,
                        )
                        .await?;
                    if !matches!(written, Written::Committed { bytes } if bytes > 0) {
                        progress(PullProgress {
                            layer: i,
                            layers: n,
                            bytes: layer.size,
                            total: layer.size,
                            skipped: true,
                        });
                    }
                    Ok::<_, RuntimeError>(written)
                })
                .buffered(parallel);
            while let Some(result) = fetches.next().await {
                let failed = result.is_err();
                let _ = tx.send(result);
                if failed {
                    break;
                }
            }
        };
        let unpack_all = async move {
            let mut stats = PullStats {
                layers_present: unpacked,
                ..Default::default()
            };
            for i in unpacked..n {
                let written = rx.recv().await.ok_or_else(|| {
                    RuntimeError::Io("the layer fetches ended early".to_string())
                })??;
                match written {
                    Written::Committed { bytes } if bytes > 0 => {
                        stats.layers_fetched += 1;
                        stats.bytes_fetched += bytes;
                    }
                    _ => stats.layers_present += 1,
                }
                let layer = &plan.layers[i];
                let parent = if i == 0 { "" } else { chains[i - 1].as_str() };
                self.unpack_layer(
                    &plan.name,
                    layer,
                    &checked.diff_ids[i],
                    parent,
                    &chains[i],
                    lease,
                )
                .await?;
                if written == Written::Present {
                    // Verified by the unpacking just now.
                    let labels = HashMap::from([(
                        LABEL_UNCOMPRESSED.to_string(),
                        checked.diff_ids[i].clone(),
                    )]);
                    self.update_labels(&layer.digest, &labels).await?;
                }
            }
            Ok::<_, RuntimeError>(stats)
        };
        tokio::pin!(unpack_all);
        let stats = tokio::select! {
            result = &mut unpack_all => result?,
            () = fetch_all => unpack_all.await?,
        };

        self.put_image_record(plan, lease).await?;
        Ok(stats)
    }

    /// Writes one blob unless the namespace has it: a Content.Write stream under the ref
    /// `berth-pull-<digest>`, resumed where an earlier partial write of that ref stopped.
    async fn write_blob<F, Fut>(
        &self,
        image: &str,
        desc: &ContentDescriptor,
        labels: &HashMap<String, String>,
        lease: &str,
        fetch: F,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<Written, RuntimeError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<BlobStream, String>>,
    {
        let bad = |message: String| RuntimeError::BadImage {
            image: image.to_string(),
            message: format!("blob {}: {message}", desc.digest),
        };
        let reference = format!("{PULL_LEASE_PREFIX}{}", desc.digest);
        let size = desc.size;
        let mut backoff = Duration::from_millis(16);
        let waited_since = tokio::time::Instant::now();
        let (mut writer, mut offset) = loop {
            match self.open_writer(&reference, desc, lease).await? {
                Opened::Present => return Ok(Written::Present),
                Opened::Writer(w, offset) => break (w, offset),
                Opened::Locked => {
                    if waited_since.elapsed() > LOCKED_WAIT {
                        return Err(RuntimeError::Timeout {
                            call: "Content.Write (the blob is being written by another pull)",
                            secs: LOCKED_WAIT.as_secs(),
                        });
                    }
                    tokio::time::sleep(backoff + Duration::from_millis(fastrand::u64(..16))).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        };
        if offset > size {
            // Not ours to trust: the first write at offset 0 truncates it.
            offset = 0;
        }
        let mut read = 0u64;
        if offset < size || size == 0 {
            let fetch_failed =
                |e: String| RuntimeError::Io(format!("fetching {}: {e}", desc.digest));
            let mut stream = fetch().await.map_err(fetch_failed)?;
            let mut hasher = Sha256::new();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(fetch_failed)?;
                let start = read;
                read += chunk.len() as u64;
                if read > size {
                    return Err(bad(format!(
                        "the blob is larger than the {size} bytes its descriptor says"
                    )));
                }
                hasher.update(&chunk);
                // Bytes a resumed write already has are read, hashed and skipped.
                let skip = offset.saturating_sub(start).min(chunk.len() as u64) as usize;
                for piece in chunk[skip..].chunks(WRITE_CHUNK) {
                    let resp = writer
                        .round(WriteContentRequest {
                            action: WriteAction::Write as i32,
                            r#ref: reference.clone(),
                            offset: offset as i64,
                            data: piece.to_vec(),
                            ..Default::default()
                        })
                        .await?;
                    offset += piece.len() as u64;
                    if resp.offset != offset as i64 {
                        return Err(RuntimeError::Io(format!(
                            "writing {}: containerd is at offset {}, expected {offset}",
                            desc.digest, resp.offset
                        )));
                    }
                }
                progress(read);
            }
            if read < size {
                return Err(fetch_failed(format!(
                    "the blob ended after {read} of its {size} bytes"
                )));
            }
            let got = format!("sha256:{}", hex::encode(hasher.finalize()));
            if got != desc.digest {
                drop(writer);
                self.abort_write(&reference).await;
                return Err(bad(format!(
                    "the fetched content does not match its digest: got {got}"
                )));
            }
        }
        let committed = writer
            .round(WriteContentRequest {
                action: WriteAction::Commit as i32,
                r#ref: reference.clone(),
                total: size as i64,
                expected: desc.digest.clone(),
                offset: offset as i64,
                labels: labels.clone(),
                data: vec![],
            })
            .await;
        match committed {
            Ok(_) => Ok(Written::Committed { bytes: read }),
            // Committed by someone else meanwhile.
            Err(e) if code_of(&e) == Some(tonic::Code::AlreadyExists) => Ok(Written::Present),
            // containerd's own check of size and digest (of a resumed or shared write).
            Err(e) if code_of(&e) == Some(tonic::Code::FailedPrecondition) => {
                drop(writer);
                self.abort_write(&reference).await;
                Err(bad(format!("containerd refused the content: {e}")))
            }
            Err(e) => Err(e),
        }
    }

    /// Opens a Content.Write stream and asks where the ref stands (STAT). The expected digest
    /// comes with it: for a blob the namespace has, containerd answers "already exists" and
    /// adds the blob to our lease.
    async fn open_writer(
        &self,
        reference: &str,
        desc: &ContentDescriptor,
        lease: &str,
    ) -> Result<Opened, RuntimeError> {
        let timeout = self.cfg.call_timeout;
        let (tx, rx) = mpsc::channel(2);
        let stat = WriteContentRequest {
            action: WriteAction::Stat as i32,
            r#ref: reference.to_string(),
            total: desc.size as i64,
            expected: desc.digest.clone(),
            ..Default::default()
        };
        // containerd answers (and so completes the call) only once it has the first message.
        let _ = tx.send(stat).await;
        // No grpc-timeout on the whole stream: the deadline is per message.
        let mut req = Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
        if let Ok(ns) = self.cfg.namespace.parse() {
            req.metadata_mut().insert("containerd-namespace", ns);
        }
        if let Ok(l) = lease.parse() {
            req.metadata_mut().insert("containerd-lease", l);
        }
        let mut content = self.client.content();
        let opened = async {
            let mut rx = content.write(req).await.map_err(write_error)?.into_inner();
            match rx.message().await {
                Ok(Some(first)) => Ok((rx, first)),
                Ok(None) => Err(RuntimeError::Io(
                    "containerd ended Content.Write without an answer".into(),
                )),
                Err(status) => Err(write_error(status)),
            }
        };
        let opened =
            tokio::time::timeout(timeout, opened)
                .await
                .map_err(|_| RuntimeError::Timeout {
                    call: "Content.Write",
                    secs: timeout.as_secs(),
                })?;
        match opened {
            Ok((rx, first)) => Ok(Opened::Writer(
                Box::new(BlobWriter { tx, rx, timeout }),
                u64::try_from(first.offset).unwrap_or(0),
            )),
            Err(e) if code_of(&e) == Some(tonic::Code::AlreadyExists) => Ok(Opened::Present),
            Err(RuntimeError::Containerd { status, .. })
                if status.code() == tonic::Code::Unavailable
                    && status.message().contains("locked") =>
            {
                Ok(Opened::Locked)
            }
            Err(e) => Err(e),
        }
    }

    /// Drops a partial write whose content is wrong, so the next pull starts afresh.
    async fn abort_write(&self, reference: &str) {
        let mut content = self.client.content();
        let aborted = self
            .call(
                "Content.Abort",
                content.abort(self.req(AbortRequest {
                    r#ref: reference.to_string(),
                })),
            )
            .await;
        if let Err(e) = aborted {
            if !e.is_not_found() {
                tracing::warn!(reference, error = %e, "cannot abort a partial blob write");
            }
        }
    }

    async fn update_labels(
        &self,
        digest: &str,
        labels: &HashMap<String, String>,
    ) -> Result<(), RuntimeError> {
        let mut content = self.client.content();
        self.call(
            "Content.Update",
            content.update(self.req(ContentUpdateRequest {
                info: Some(ContentInfo {
                    digest: digest.to_string(),
                    labels: labels.clone(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: labels.keys().map(|k| format!("labels.{k}")).collect(),
                }),
            })),
        )
        .await
        .map(|_| ())
    }

    async fn snapshot_exists(&self, key: &str) -> Result<bool, RuntimeError> {
        let mut snapshots = self.client.snapshots();
        let stat = self
            .call(
                "Snapshots.Stat",
                snapshots.stat(self.req(StatSnapshotRequest {
                    snapshotter: self.cfg.snapshotter.clone(),
                    key: key.to_string(),
                })),
            )
            .await;
        match stat {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Keeps an existing snapshot (and so its parents) while we unpack on top of it.
    async fn lease_snapshot(&self, lease: &str, key: &str) -> Result<(), RuntimeError> {
        let mut leases = self.client.leases();
        self.call(
            "Leases.AddResource",
            leases.add_resource(self.req(AddResourceRequest {
                id: lease.to_string(),
                resource: Some(Resource {
                    id: key.to_string(),
                    r#type: format!("snapshots/{}", self.cfg.snapshotter),
                }),
            })),
        )
        .await
        .map(|_| ())
    }

    /// One layer onto the snapshot `parent`, committed as `chain` (rootfs/apply.go).
    async fn unpack_layer(
        &self,
        image: &str,
        layer: &ContentDescriptor,
        diff_id: &str,
        parent: &str,
        chain: &str,
        lease: &str,
    ) -> Result<(), RuntimeError> {
        // Another pull of an image sharing this layer may have unpacked it meanwhile.
        if self.snapshot_exists(chain).await? {
            return self.lease_snapshot(lease, chain).await;
        }
        let mut snapshots = self.client.snapshots();
        let mut attempts = 0;
        let (key, mounts) = loop {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            let key = format!("berth-extract-{nanos}-{:08x} {chain}", fastrand::u32(..));
            let prepared = self
                .call(
                    "Snapshots.Prepare",
                    snapshots.prepare(self.leased(
                        PrepareSnapshotRequest {
                            snapshotter: self.cfg.snapshotter.clone(),
                            key: key.clone(),
                            parent: parent.to_string(),
                            labels: HashMap::new(),
                        },
                        lease,
                    )),
                )
                .await;
            match prepared {
                Ok(resp) => break (key, resp.mounts),
                Err(e) if code_of(&e) == Some(tonic::Code::AlreadyExists) && attempts < 3 => {
                    attempts += 1;
                }
                Err(e) => return Err(e),
            }
        };
        match self
            .apply_and_commit(image, layer, diff_id, chain, &key, mounts, lease)
            .await
        {
            Ok(()) => Ok(()),
            Err(e) => {
                if let Err(removed) = self.remove_snapshot(&key).await {
                    tracing::warn!(key, error = %removed, "cannot remove an extraction snapshot");
                }
                // Committed by a concurrent pull of the same layer: as good as ours, once it
                // is ours to keep too.
                if code_of(&e) == Some(tonic::Code::AlreadyExists) {
                    self.lease_snapshot(lease, chain).await
                } else {
                    Err(e)
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn apply_and_commit(
        &self,
        image: &str,
        layer: &ContentDescriptor,
        diff_id: &str,
        chain: &str,
        key: &str,
        mounts: Vec<Mount>,
        lease: &str,
    ) -> Result<(), RuntimeError> {
        // Extraction takes time in proportion to the layer: the deadline grows with it.
        let deadline =
            self.cfg.call_timeout + Duration::from_secs(layer.size / APPLY_BYTES_PER_SEC);
        let mut req = self.leased(
            ApplyRequest {
                diff: Some(descriptor(layer)),
                mounts,
                payloads: HashMap::new(),
                sync_fs: false,
            },
            lease,
        );
        req.set_timeout(deadline);
        let mut diff = self.client.diff();
        let applied = match tokio::time::timeout(deadline, diff.apply(req)).await {
            Ok(Ok(resp)) => resp.into_inner().applied,
            Ok(Err(status)) => {
                return Err(RuntimeError::Containerd {
                    call: "Diff.Apply",
                    status: Box::new(status),
                })
            }
            Err(_) => {
                return Err(RuntimeError::Timeout {
                    call: "Diff.Apply",
                    secs: deadline.as_secs(),
                })
            }
        };
        let got = applied.map(|d| d.digest).unwrap_or_default();
        if got != diff_id {
            return Err(RuntimeError::BadImage {
                image: image.to_string(),
                message: format!(
                    "layer {} unpacks to {got}, but the image config says {diff_id}",
                    layer.digest
                ),
            });
        }
        let mut snapshots = self.client.snapshots();
        self.call(
            "Snapshots.Commit",
            snapshots.commit(self.leased(
                CommitSnapshotRequest {
                    snapshotter: self.cfg.snapshotter.clone(),
                    name: chain.to_string(),
                    key: key.to_string(),
                    labels: HashMap::new(),
                },
                lease,
            )),
        )
        .await
        .map(|_| ())
    }

    /// Images.Create, or Images.Update of the target and our labels when the record exists.
    async fn put_image_record(&self, plan: &PullPlan, lease: &str) -> Result<(), RuntimeError> {
        let image = Image {
            name: plan.name.clone(),
            labels: plan.labels.clone(),
            target: Some(descriptor(&plan.top)),
            created_at: None,
            updated_at: None,
        };
        let mut images = self.client.images();
        let created = self
            .call(
                "Images.Create",
                images.create(self.leased(
                    CreateImageRequest {
                        image: Some(image.clone()),
                        source_date_epoch: None,
                    },
                    lease,
                )),
            )
            .await;
        match created {
            Ok(_) => Ok(()),
            Err(e) if code_of(&e) == Some(tonic::Code::AlreadyExists) => self
                .call(
                    "Images.Update",
                    images.update(
                        self.leased(
                            UpdateImageRequest {
                                image: Some(image),
                                update_mask: Some(prost_types::FieldMask {
                                    paths: std::iter::once("target".to_string())
                                        .chain(plan.labels.keys().map(|k| format!("labels.{k}")))
                                        .collect(),
                                }),
                                source_date_epoch: None,
                            },
                            lease,
                        ),
                    ),
                )
                .await
                .map(|_| ()),
            Err(e) => Err(e),
        }
    }

    async fn create_pull_lease(&self) -> Result<String, RuntimeError> {
        let now = SystemTime::now();
        let nanos = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let mut leases = self.client.leases();
        let resp = self
            .call(
                "Leases.Create",
                leases.create(self.req(LeaseCreateRequest {
                    id: format!("{PULL_LEASE_PREFIX}{nanos:x}-{:08x}", fastrand::u32(..)),
                    labels: HashMap::from([(
                        "containerd.io/gc.expire".to_string(),
                        rfc3339(now + PULL_LEASE_EXPIRY),
                    )]),
                })),
            )
            .await?;
        resp.lease
            .map(|l| l.id)
            .ok_or_else(|| RuntimeError::Io("Leases.Create returned no lease".into()))
    }

    fn lease_delete_request(&self, lease: &str, sync: bool) -> Request<LeaseDeleteRequest> {
        self.req(LeaseDeleteRequest {
            id: lease.to_string(),
            sync,
        })
    }

    async fn delete_pull_lease(&self, lease: &str, sync: bool) {
        let mut leases = self.client.leases();
        let deleted = self
            .call(
                "Leases.Delete",
                leases.delete(self.lease_delete_request(lease, sync)),
            )
            .await;
        if let Err(e) = deleted {
            // It expires on its own; until then it holds what the pull wrote.
            tracing::warn!(lease, error = %e, "cannot delete a pull lease");
        }
    }
}

/// What `store_image` derives from a plan before it touches containerd.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CheckedPlan {
    diff_ids: Vec<String>,
    /// chain_ids[i]: the snapshot of layers 0..=i.
    chain_ids: Vec<String>,
    /// The manifest's place in the index, when the top is an index.
    index_position: Option<usize>,
}

fn check_plan(plan: &PullPlan) -> Result<CheckedPlan, String> {
    let descriptors = [&plan.top, &plan.manifest, &plan.config]
        .into_iter()
        .chain(&plan.layers);
    for d in descriptors {
        if !is_sha256(&d.digest) {
            return Err(format!("unsupported digest {:?}", d.digest));
        }
    }
    let parts = image::manifest_parts(&plan.manifest_bytes)?;
    if parts.config.digest != plan.config.digest {
        return Err(format!(
            "the manifest's config is {}, not {}",
            parts.config.digest, plan.config.digest
        ));
    }
    let listed: Vec<&str> = parts.layers.iter().map(|l| l.digest.as_str()).collect();
    let planned: Vec<&str> = plan.layers.iter().map(|l| l.digest.as_str()).collect();
    if listed != planned {
        return Err("the layers to fetch are not the manifest's".into());
    }
    let diff_ids = image::diff_ids(&plan.config_bytes)?;
    if diff_ids.len() != plan.layers.len() {
        return Err(format!(
            "the manifest has {} layers but the config {} diff ids",
            plan.layers.len(),
            diff_ids.len()
        ));
    }
    if let Some(bad) = diff_ids.iter().find(|d| !is_sha256(d)) {
        return Err(format!("unsupported diff id {bad:?}"));
    }
    let chain_ids = (1..=diff_ids.len())
        .filter_map(|i| image::chain_id(&diff_ids[..i]))
        .collect();
    let index_position = if plan.top.digest == plan.manifest.digest {
        None
    } else {
        if !image::is_index(&plan.top.media_type) {
            return Err(format!(
                "the reference names a {} that is not the manifest",
                plan.top.media_type
            ));
        }
        Some(index_position(&plan.top_bytes, &plan.manifest.digest)?)
    };
    Ok(CheckedPlan {
        diff_ids,
        chain_ids,
        index_position,
    })
}

fn is_sha256(digest: &str) -> bool {
    digest.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// Where the manifest `digest` is listed in an index.
fn index_position(index: &[u8], digest: &str) -> Result<usize, String> {
    #[derive(serde::Deserialize)]
    struct Index {
        manifests: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        digest: String,
    }
    let index: Index =
        serde_json::from_slice(index).map_err(|e| format!("unreadable image index: {e}"))?;
    index
        .manifests
        .iter()
        .position(|m| m.digest == digest)
        .ok_or_else(|| format!("the image index does not list the manifest {digest}"))
}

/// The index keeps the manifest we use (keyed by its place in the index, so that manifests
/// of other platforms pulled into the same index keep theirs).
fn index_labels(position: usize, manifest: &ContentDescriptor) -> HashMap<String, String> {
    HashMap::from([(
        format!("{LABEL_GC_CONTENT}.m.{position}"),
        manifest.digest.clone(),
    )])
}

/// The manifest keeps its config and layers.
fn manifest_labels(
    config: &ContentDescriptor,
    layers: &[ContentDescriptor],
) -> HashMap<String, String> {
    let mut labels = HashMap::from([(format!("{LABEL_GC_CONTENT}.config"), config.digest.clone())]);
    for (i, layer) in layers.iter().enumerate() {
        labels.insert(format!("{LABEL_GC_CONTENT}.l.{i}"), layer.digest.clone());
    }
    labels
}

/// The config keeps the unpacked image: the top layer's snapshot.
fn config_labels(snapshotter: &str, top_chain: &str) -> HashMap<String, String> {
    HashMap::from([(
        format!("{LABEL_GC_SNAPSHOT}.{snapshotter}"),
        top_chain.to_string(),
    )])
}

fn descriptor(d: &ContentDescriptor) -> Descriptor {
    Descriptor {
        media_type: d.media_type.clone(),
        digest: d.digest.clone(),
        size: d.size as i64,
        annotations: HashMap::new(),
    }
}

fn system_time(t: &prost_types::Timestamp) -> Option<SystemTime> {
    let secs = u64::try_from(t.seconds).ok()?;
    let nanos = u32::try_from(t.nanos).ok()?;
    Some(UNIX_EPOCH + Duration::new(secs, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(media_type: &str, fill: char, size: u64) -> ContentDescriptor {
        ContentDescriptor {
            media_type: media_type.into(),
            digest: format!("sha256:{}", fill.to_string().repeat(64)),
            size,
        }
    }

    const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    const LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

    fn plan() -> PullPlan {
        let config = desc(CONFIG, 'c', 10);
        let layers = vec![desc(LAYER, '1', 100), desc(LAYER, '2', 200)];
        let manifest_bytes = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": MANIFEST, "config": config, "layers": layers,
        }))
        .unwrap();
        let manifest = desc(MANIFEST, 'f', manifest_bytes.len() as u64);
        let diff = |c: char| format!("sha256:{}", c.to_string().repeat(64));
        let config_bytes = serde_json::to_vec(&serde_json::json!({
            "rootfs": {"type": "layers", "diff_ids": [diff('a'), diff('b')]},
        }))
        .unwrap();
        PullPlan {
            name: "docker.io/library/x:1".into(),
            top: manifest.clone(),
            top_bytes: manifest_bytes.clone(),
            manifest,
            manifest_bytes,
            config,
            config_bytes,
            layers,
            labels: HashMap::new(),
        }
    }

    #[test]
    fn a_plan_gives_chain_ids_bottom_first() {
        let p = plan();
        let checked = check_plan(&p).unwrap();
        assert_eq!(checked.diff_ids.len(), 2);
        assert_eq!(checked.chain_ids[0], checked.diff_ids[0]);
        assert_eq!(
            checked.chain_ids[1],
            image::chain_id(&checked.diff_ids).unwrap()
        );
        assert_eq!(checked.index_position, None);
    }

    #[test]
    fn plans_that_do_not_hold_together_are_refused() {
        let mut p = plan();
        p.layers.pop();
        assert!(check_plan(&p).unwrap_err().contains("not the manifest's"));

        let mut p = plan();
        p.config.digest = format!("sha256:{}", "d".repeat(64));
        assert!(check_plan(&p).unwrap_err().contains("config"));

        let mut p = plan();
        p.layers[0].digest = "md5:abc".into();
        assert!(check_plan(&p).unwrap_err().contains("unsupported digest"));

        // A top that is not the manifest must be an index that lists it.
        let mut p = plan();
        p.top = desc(MANIFEST, 'e', 3);
        assert!(check_plan(&p).unwrap_err().contains("not the manifest"));
        let mut p = plan();
        let other = desc(MANIFEST, '9', 1);
        let index = serde_json::json!({"manifests": [other, p.manifest]});
        p.top_bytes = serde_json::to_vec(&index).unwrap();
        p.top = desc(image::MEDIA_OCI_INDEX, 'e', p.top_bytes.len() as u64);
        assert_eq!(check_plan(&p).unwrap().index_position, Some(1));
        p.top_bytes = serde_json::to_vec(&serde_json::json!({"manifests": [other]})).unwrap();
        assert!(check_plan(&p).unwrap_err().contains("does not list"));
    }

    #[test]
    fn gc_labels_chain_index_manifest_config_and_snapshot() {
        let p = plan();
        let labels = index_labels(2, &p.manifest);
        assert_eq!(
            labels.get("containerd.io/gc.ref.content.m.2"),
            Some(&p.manifest.digest)
        );
        let labels = manifest_labels(&p.config, &p.layers);
        assert_eq!(labels.len(), 3);
        assert_eq!(
            labels.get("containerd.io/gc.ref.content.config"),
            Some(&p.config.digest)
        );
        assert_eq!(
            labels.get("containerd.io/gc.ref.content.l.1"),
            Some(&p.layers[1].digest)
        );
        let labels = config_labels("overlayfs", "sha256:top");
        assert_eq!(
            labels
                .get("containerd.io/gc.ref.snapshot.overlayfs")
                .map(String::as_str),
            Some("sha256:top")
        );
    }

    #[test]
    fn digests_are_sha256_in_lower_hex() {
        assert!(is_sha256(&format!("sha256:{}", "0a".repeat(32))));
        assert!(!is_sha256(&format!("sha256:{}", "0A".repeat(32))));
        assert!(!is_sha256("sha256:abc"));
        assert!(!is_sha256(&format!("sha512:{}", "0a".repeat(32))));
    }

    #[test]
    fn timestamps_convert() {
        let t = prost_types::Timestamp {
            seconds: 10,
            nanos: 5,
        };
        assert_eq!(system_time(&t), Some(UNIX_EPOCH + Duration::new(10, 5)));
        let before_epoch = prost_types::Timestamp {
            seconds: -1,
            nanos: 0,
        };
        assert_eq!(system_time(&before_epoch), None);
    }
}
