//! Storing a pulled image (runtime::pull) against the host's real containerd (root required;
//! `.ci/run` sets it up). Each test builds its own three-layer OCI image from busybox-static
//! (made unique by a salt, so that no other namespace shares its blobs), serves it from an OCI
//! layout directory through a `BlobSource`, and works in a containerd namespace of its own that
//! is removed, also on failure.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use berth_agent::model::NetworkMode;
use berth_agent::runtime::containerd::Containerd;
use berth_agent::runtime::image::{self, ContentDescriptor};
use berth_agent::runtime::pull::{BlobSource, BlobStream, PullPlan, PullProgress, PullStats};
use berth_agent::runtime::{CreateRequest, Runtime, RuntimeError};
use futures_util::StreamExt;
use sha2::{Digest, Sha256};

const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const MEDIA_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const MEDIA_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// A scratch namespace `berth-pull-<id>` (see `common::Scratch`); the images and leases the
/// tests leave are removed before the namespace.
struct Scratch(common::Scratch);

impl Deref for Scratch {
    type Target = common::Scratch;
    fn deref(&self) -> &common::Scratch {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Ok(images) = common::ctr(&self.ns, &["images", "ls", "-q"]) {
            for name in images.lines().filter(|n| *n != common::IMAGE) {
                let _ = common::ctr(&self.ns, &["images", "rm", name]);
            }
        }
        if let Ok(leases) = common::ctr(&self.ns, &["leases", "ls", "-q"]) {
            for lease in leases.lines() {
                let _ = common::ctr(&self.ns, &["leases", "rm", lease]);
            }
        }
    }
}

impl Scratch {
    fn new() -> Self {
        Scratch(common::Scratch::new("berth-pull"))
    }

    fn ctr(&self, args: &[&str]) -> String {
        common::ctr(&self.ns, args).unwrap()
    }

    /// The first column of a `ctr ... ls` listing, without its header.
    fn listed(&self, what: &str) -> BTreeSet<String> {
        self.ctr(&[what, "ls"])
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next().map(str::to_string))
            .collect()
    }

    fn content(&self) -> BTreeSet<String> {
        self.listed("content")
    }

    fn snapshots(&self) -> BTreeSet<String> {
        self.listed("snapshots")
    }

    fn leases(&self) -> BTreeSet<String> {
        self.listed("leases")
    }

    fn request(&self, image: &str, name: &str, command: &[&str]) -> CreateRequest {
        CreateRequest {
            runtime_id: format!("task1-{name}"),
            task_arn: "arn:aws:ecs:us-east-1:0:task/c/task1".into(),
            task_id: "task1".into(),
            container: berth_agent::model::ContainerSpec {
                image: image.into(),
                ..common::busybox(name, command)
            },
            network_mode: NetworkMode::None,
            netns_path: None,
            address: None,
            log_path: self.dir.join(format!("{name}.log")),
            task: common::task1(vec![], NetworkMode::None),
            task_volumes_dir: self.dir.join("volumes"),
            cgroup_parent: None,
        }
    }
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A test image as an OCI layout directory, and the plan that stores it.
struct TestImage {
    layout: PathBuf,
    plan: PullPlan,
    diff_ids: Vec<String>,
}

impl TestImage {
    /// Three gzip layers: busybox with a few applets (and a passwd); /hello and /gone; a
    /// whiteout of /gone. Every layer holds the salt, so its digests are its own.
    fn build(dir: &Path, salt: &str, with_index: bool) -> Self {
        let work = dir.join("build");
        let layout = dir.join("layout");
        let blobs = layout.join("blobs/sha256");
        std::fs::create_dir_all(&blobs).unwrap();
        std::fs::write(
            layout.join("oci-layout"),
            r#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .unwrap();
        let put = |bytes: &[u8]| -> String {
            let digest = sha256(bytes);
            std::fs::write(blobs.join(&digest["sha256:".len()..]), bytes).unwrap();
            digest
        };

        let l1 = work.join("l1");
        std::fs::create_dir_all(l1.join("bin")).unwrap();
        std::fs::create_dir_all(l1.join("etc")).unwrap();
        std::fs::copy("/bin/busybox", l1.join("bin/busybox")).unwrap();
        for applet in ["sh", "sleep", "echo", "cat"] {
            std::os::unix::fs::symlink("busybox", l1.join("bin").join(applet)).unwrap();
        }
        std::fs::write(l1.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
        std::fs::write(l1.join("etc/group"), "root:x:0:\n").unwrap();
        std::fs::write(l1.join("etc/salt1"), salt).unwrap();
        let l2 = work.join("l2");
        std::fs::create_dir_all(&l2).unwrap();
        std::fs::write(l2.join("hello"), format!("hello from layer 2 {salt}\n")).unwrap();
        std::fs::write(l2.join("gone"), "whited out by layer 3\n").unwrap();
        let l3 = work.join("l3");
        std::fs::create_dir_all(&l3).unwrap();
        std::fs::write(l3.join(".wh.gone"), "").unwrap();
        std::fs::write(l3.join("salt3"), salt).unwrap();

        let mut layers = Vec::new();
        let mut diff_ids = Vec::new();
        for (i, l) in [&l1, &l2, &l3].into_iter().enumerate() {
            let tar = work.join(format!("l{}.tar", i + 1));
            run(Command::new("tar")
                .args([
                    "--sort=name",
                    "--format=gnu",
                    "--mtime=@0",
                    "--owner=0",
                    "--group=0",
                ])
                .args(["--numeric-owner", "-C"])
                .arg(l)
                .arg("-cf")
                .arg(&tar)
                .arg("."));
            run(Command::new("gzip").args(["-n", "-k", "-f"]).arg(&tar));
            diff_ids.push(sha256(&std::fs::read(&tar).unwrap()));
            let gz = std::fs::read(tar.with_extension("tar.gz")).unwrap();
            layers.push(ContentDescriptor {
                media_type: MEDIA_LAYER_GZIP.into(),
                digest: put(&gz),
                size: gz.len() as u64,
            });
        }
        let config_bytes = serde_json::to_vec(&serde_json::json!({
            "architecture": image::host_arch(),
            "os": "linux",
            "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }))
        .unwrap();
        let config = ContentDescriptor {
            media_type: MEDIA_CONFIG.into(),
            digest: put(&config_bytes),
            size: config_bytes.len() as u64,
        };
        let manifest_bytes = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": config,
            "layers": layers,
        }))
        .unwrap();
        let manifest = ContentDescriptor {
            media_type: MEDIA_MANIFEST.into(),
            digest: put(&manifest_bytes),
            size: manifest_bytes.len() as u64,
        };
        let (top, top_bytes) = if with_index {
            // Another platform's manifest first (never fetched), ours second.
            let other_arch = if image::host_arch() == "arm64" {
                "amd64"
            } else {
                "arm64"
            };
            let index = serde_json::to_vec(&serde_json::json!({
                "schemaVersion": 2,
                "mediaType": image::MEDIA_OCI_INDEX,
                "manifests": [
                    {"mediaType": MEDIA_MANIFEST, "digest": sha256(b"another platform"), "size": 16,
                     "platform": {"architecture": other_arch, "os": "linux"}},
                    {"mediaType": MEDIA_MANIFEST, "digest": manifest.digest, "size": manifest.size,
                     "platform": {"architecture": image::host_arch(), "os": "linux"}},
                ],
            }))
            .unwrap();
            let top = ContentDescriptor {
                media_type: image::MEDIA_OCI_INDEX.into(),
                digest: put(&index),
                size: index.len() as u64,
            };
            (top, index)
        } else {
            (manifest.clone(), manifest_bytes.clone())
        };
        let index_json = serde_json::json!({"schemaVersion": 2, "manifests": [top]});
        std::fs::write(layout.join("index.json"), index_json.to_string()).unwrap();
        TestImage {
            layout,
            plan: PullPlan {
                name: format!("docker.io/berth/pull-test:{salt}"),
                top,
                top_bytes,
                manifest,
                manifest_bytes,
                config,
                config_bytes,
                layers,
                labels: HashMap::from([("io.berth.test".to_string(), salt.to_string())]),
            },
            diff_ids,
        }
    }

    fn source(&self) -> LayoutSource {
        LayoutSource {
            dir: self.layout.clone(),
            chunk: 64 * 1024,
            corrupt: None,
            fail_mid: None,
            fetched: Mutex::new(Vec::new()),
        }
    }

    /// Every blob of the image (the index's other-platform entry is not one).
    fn digests(&self) -> Vec<String> {
        let p = &self.plan;
        let mut all = vec![
            p.top.digest.clone(),
            p.manifest.digest.clone(),
            p.config.digest.clone(),
        ];
        all.extend(p.layers.iter().map(|l| l.digest.clone()));
        all.dedup();
        all
    }

    fn chain_ids(&self) -> Vec<String> {
        (1..=self.diff_ids.len())
            .map(|i| image::chain_id(&self.diff_ids[..i]).unwrap())
            .collect()
    }
}

/// Blobs from an OCI layout directory, in chunks; optionally one blob with a flipped byte, or
/// one that fails half-way.
struct LayoutSource {
    dir: PathBuf,
    chunk: usize,
    corrupt: Option<String>,
    fail_mid: Option<String>,
    fetched: Mutex<Vec<String>>,
}

impl BlobSource for LayoutSource {
    async fn fetch(&self, desc: &ContentDescriptor) -> Result<BlobStream, String> {
        self.fetched.lock().unwrap().push(desc.digest.clone());
        let hex = desc
            .digest
            .strip_prefix("sha256:")
            .ok_or_else(|| format!("unsupported digest {}", desc.digest))?;
        let mut bytes = tokio::fs::read(self.dir.join("blobs/sha256").join(hex))
            .await
            .map_err(|e| format!("reading {hex}: {e}"))?;
        if self.corrupt.as_deref() == Some(desc.digest.as_str()) {
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0x55;
        }
        let mut chunks: Vec<Result<bytes::Bytes, String>> = bytes
            .chunks(self.chunk)
            .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
            .collect();
        if self.fail_mid.as_deref() == Some(desc.digest.as_str()) {
            chunks.truncate(chunks.len() / 2);
            chunks.push(Err("connection reset by peer (test)".into()));
        }
        // A little latency per chunk, so that fetches overlap as they would from a registry.
        let stream = futures_util::stream::iter(chunks).then(|c| async move {
            tokio::time::sleep(Duration::from_millis(2)).await;
            c
        });
        let stream: BlobStream = Box::pin(stream);
        Ok(stream)
    }
}

/// Progress events, as the caller sees them.
#[derive(Default)]
struct Progress(Mutex<Vec<PullProgress>>);

impl Progress {
    fn report(&self) -> impl Fn(PullProgress) + Send + Sync + '_ {
        move |p| self.0.lock().unwrap().push(p)
    }

    /// The last event of each layer.
    fn finals(&self, layers: usize) -> Vec<PullProgress> {
        let events = self.0.lock().unwrap();
        (0..layers)
            .map(|i| {
                *events
                    .iter()
                    .rev()
                    .find(|p| p.layer == i)
                    .expect("no progress")
            })
            .collect()
    }
}

/// Runs `sh -c script` in a container of `image` to its exit; its exit code and output.
async fn run_in(
    s: &Scratch,
    rt: &Containerd,
    image: &str,
    name: &str,
    script: &str,
) -> (i32, String) {
    let req = s.request(image, name, &["sh", "-c", script]);
    let mut exits = rt.exits().await.unwrap();
    rt.create(&req).await.unwrap();
    rt.start(&req.runtime_id).await.unwrap();
    let exit = common::next_exit(&mut exits, &req.runtime_id).await;
    let log = std::fs::read_to_string(&req.log_path).unwrap_or_default();
    rt.remove(&req.runtime_id).await.unwrap();
    (exit.exit_code, log)
}

const SCRIPT: &str =
    "cat /hello; if [ -e /gone ]; then echo gone-present; else echo gone-absent; fi";

/// Nothing of the image in the namespace: no record, blob, snapshot or lease.
async fn assert_nothing_left(
    s: &Scratch,
    rt: &Containerd,
    img: &TestImage,
    snapshots_before: &BTreeSet<String>,
) {
    let name = &img.plan.name;
    assert!(!rt.image_present(name).await.unwrap());
    assert!(rt
        .list_images()
        .await
        .unwrap()
        .iter()
        .all(|i| &i.name != name));
    assert_eq!(s.leases(), BTreeSet::new(), "a lease is left");
    assert_eq!(&s.snapshots(), snapshots_before, "snapshots are left");
    let content = s.content();
    for d in img.digests() {
        assert!(!content.contains(&d), "{d} is left in the content store");
    }
}

#[tokio::test]
async fn an_index_image_is_stored_and_runs_with_its_layers_and_whiteouts() {
    let s = Scratch::new();
    let rt = s.runtime().await;
    let img = TestImage::build(&s.dir, &s.id, true);
    let source = img.source();
    let progress = Progress::default();
    let stats = rt
        .store_image(&img.plan, &source, 3, &progress.report())
        .await
        .unwrap();
    let layer_bytes: u64 = img.plan.layers.iter().map(|l| l.size).sum();
    assert_eq!(
        stats,
        PullStats {
            layers_fetched: 3,
            layers_present: 0,
            bytes_fetched: layer_bytes
        }
    );
    for (p, layer) in progress.finals(3).iter().zip(&img.plan.layers) {
        assert_eq!(
            (p.bytes, p.total, p.skipped),
            (layer.size, layer.size, false)
        );
        assert_eq!(p.layers, 3);
    }
    // Only the layers were fetched (index, manifest and config come with the plan).
    let fetched: BTreeSet<String> = source.fetched.lock().unwrap().iter().cloned().collect();
    let layers: BTreeSet<String> = img.plan.layers.iter().map(|l| l.digest.clone()).collect();
    assert_eq!(fetched, layers);

    assert!(rt.image_present(&img.plan.name).await.unwrap());
    let listed = rt.list_images().await.unwrap();
    let record = listed.iter().find(|i| i.name == img.plan.name).unwrap();
    assert_eq!(record.digest, img.plan.top.digest);
    assert!(record.created.is_some() && record.updated.is_some());
    assert_eq!(record.labels.get("io.berth.test"), Some(&s.id));
    assert_eq!(s.leases(), BTreeSet::new());
    // The GC labels, as containerd's Go client sets them.
    let content = s.ctr(&["content", "ls"]);
    let line = |d: &str| {
        content
            .lines()
            .find(|l| l.starts_with(d))
            .unwrap_or("")
            .to_string()
    };
    assert!(
        line(&img.plan.top.digest).contains(&format!(
            "containerd.io/gc.ref.content.m.1={}",
            img.plan.manifest.digest
        )),
        "{content}"
    );
    assert!(
        line(&img.plan.manifest.digest).contains(&format!(
            "containerd.io/gc.ref.content.config={}",
            img.plan.config.digest
        )),
        "{content}"
    );
    let top_chain = img.chain_ids().pop().unwrap();
    assert!(
        line(&img.plan.config.digest).contains(&format!(
            "containerd.io/gc.ref.snapshot.overlayfs={top_chain}"
        )),
        "{content}"
    );
    assert!(
        line(&img.plan.layers[1].digest)
            .contains(&format!("containerd.io/uncompressed={}", img.diff_ids[1])),
        "{content}"
    );
    let snapshots = s.snapshots();
    for chain in img.chain_ids() {
        assert!(
            snapshots.contains(&chain),
            "{chain} not unpacked: {snapshots:?}"
        );
    }
    assert!(
        snapshots.iter().all(|k| !k.starts_with("berth-extract-")),
        "{snapshots:?}"
    );

    let (code, out) = run_in(&s, &rt, &img.plan.name, "main", SCRIPT).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(out, format!("hello from layer 2 {}\ngone-absent\n", s.id));

    // Again: nothing is fetched, the record is kept.
    let source = img.source();
    let progress = Progress::default();
    let stats = rt
        .store_image(&img.plan, &source, 3, &progress.report())
        .await
        .unwrap();
    assert_eq!(
        stats,
        PullStats {
            layers_fetched: 0,
            layers_present: 3,
            bytes_fetched: 0
        }
    );
    assert!(source.fetched.lock().unwrap().is_empty());
    assert!(progress
        .finals(3)
        .iter()
        .all(|p| p.skipped && p.bytes == p.total));
    assert_eq!(s.leases(), BTreeSet::new());
    let (code, out) = run_in(&s, &rt, &img.plan.name, "again", SCRIPT).await;
    assert_eq!(
        (code, out.as_str()),
        (
            0,
            format!("hello from layer 2 {}\ngone-absent\n", s.id).as_str()
        )
    );
}

#[tokio::test]
async fn a_removed_image_is_collected_with_its_content_and_snapshots() {
    let s = Scratch::new();
    let rt = s.runtime().await;
    let snapshots_before = s.snapshots();
    let img = TestImage::build(&s.dir, &s.id, false);
    let stats = rt
        .store_image(&img.plan, &img.source(), 1, &|_| {})
        .await
        .unwrap();
    assert_eq!(stats.layers_fetched, 3);
    let record = rt.list_images().await.unwrap();
    let record = record.iter().find(|i| i.name == img.plan.name).unwrap();
    assert_eq!(record.digest, img.plan.manifest.digest);
    let content = s.content();
    for d in img.digests() {
        assert!(content.contains(&d), "{d} missing");
    }
    let (code, out) = run_in(&s, &rt, &img.plan.name, "main", SCRIPT).await;
    assert_eq!((code, out.contains("gone-absent")), (0, true), "{out}");

    rt.remove_image(&img.plan.name).await.unwrap();
    // The deletion is synchronous: the collection is done when it returns.
    assert_nothing_left(&s, &rt, &img, &snapshots_before).await;
    // Removing again is harmless; the other image of the namespace is untouched.
    rt.remove_image(&img.plan.name).await.unwrap();
    assert!(rt.image_present(common::IMAGE).await.unwrap());
}

#[tokio::test]
async fn a_blob_that_does_not_match_its_digest_leaves_nothing_behind() {
    let s = Scratch::new();
    let rt = s.runtime().await;
    let snapshots_before = s.snapshots();
    let img = TestImage::build(&s.dir, &s.id, true);
    let mut source = img.source();
    let bad = img.plan.layers[1].digest.clone();
    source.corrupt = Some(bad.clone());
    let err = rt
        .store_image(&img.plan, &source, 3, &|_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, RuntimeError::BadImage { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&bad) && text.contains("does not match its digest"),
        "{text}"
    );
    assert!(text.contains(&img.plan.name), "{text}");
    assert_nothing_left(&s, &rt, &img, &snapshots_before).await;

    // A good source afterwards stores it whole.
    let stats = rt
        .store_image(&img.plan, &img.source(), 3, &|_| {})
        .await
        .unwrap();
    assert_eq!(stats.layers_fetched, 3);
    assert!(rt.image_present(&img.plan.name).await.unwrap());
    assert_eq!(s.leases(), BTreeSet::new());
}

#[tokio::test]
async fn a_source_failing_mid_layer_leaves_nothing_behind() {
    let s = Scratch::new();
    let rt = s.runtime().await;
    let snapshots_before = s.snapshots();
    let img = TestImage::build(&s.dir, &s.id, false);
    // The big layer (busybox) fails half-way while the others are fetched beside it.
    let mut source = img.source();
    let failing = img.plan.layers[0].digest.clone();
    source.fail_mid = Some(failing.clone());
    let err = rt
        .store_image(&img.plan, &source, 3, &|_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, RuntimeError::Io(_)), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&failing) && text.contains("connection reset by peer"),
        "{text}"
    );
    assert_nothing_left(&s, &rt, &img, &snapshots_before).await;

    // A failure after the bottom layers are unpacked: the top layer fails.
    let mut source = img.source();
    source.fail_mid = Some(img.plan.layers[2].digest.clone());
    // (layer 3 is one chunk: it fails before its first byte)
    let err = rt
        .store_image(&img.plan, &source, 1, &|_| {})
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("connection reset by peer"),
        "{err}"
    );
    assert_nothing_left(&s, &rt, &img, &snapshots_before).await;

    let stats = rt
        .store_image(&img.plan, &img.source(), 2, &|_| {})
        .await
        .unwrap();
    assert_eq!(stats.layers_fetched, 3);
    let (code, out) = run_in(&s, &rt, &img.plan.name, "main", SCRIPT).await;
    assert_eq!((code, out.contains("gone-absent")), (0, true), "{out}");
}

#[tokio::test]
async fn two_pulls_of_one_image_at_once_both_succeed() {
    let s = Scratch::new();
    let rt = s.runtime().await;
    let img = TestImage::build(&s.dir, &s.id, true);
    let (a, b) = (img.source(), img.source());
    let (ra, rb) = tokio::join!(
        rt.store_image(&img.plan, &a, 3, &|_| {}),
        rt.store_image(&img.plan, &b, 3, &|_| {}),
    );
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    // Each layer was fetched at least once, and the blob is stored once.
    assert!(ra.layers_fetched + rb.layers_fetched >= 3, "{ra:?} {rb:?}");
    assert_eq!(ra.layers_fetched + ra.layers_present, 3);
    assert_eq!(rb.layers_fetched + rb.layers_present, 3);
    assert!(rt.image_present(&img.plan.name).await.unwrap());
    assert_eq!(s.leases(), BTreeSet::new());
    let snapshots = s.snapshots();
    assert!(
        snapshots.iter().all(|k| !k.starts_with("berth-extract-")),
        "{snapshots:?}"
    );
    let (code, out) = run_in(&s, &rt, &img.plan.name, "main", SCRIPT).await;
    assert_eq!((code, out.contains("gone-absent")), (0, true), "{out}");
}
