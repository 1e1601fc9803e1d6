//! A real image registry on loopback for the image-pull tests: Debian's `docker-registry`
//! (distribution 2.8) as a child process, bound to `127.0.0.1:<free port>`, with its storage,
//! config and log in a temp dir of its own; with or without htpasswd (basic) auth. Test images
//! are OCI layouts built offline by `tests/images/build-oci-layout.sh` and pushed with `skopeo`.
//!
//! Nothing here leaves loopback: the registry listens on 127.0.0.1 only, skopeo and ctr talk
//! plain HTTP to it, and skopeo reads no auth file but an empty one in the registry's dir.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;

use crate::bins::workspace_root;
use crate::net::http_get;
use crate::process::Proc;
use crate::wait::timeout;

/// A file of the multi-layer image's second layer, and its content.
pub const MULTILAYER_LAYER2_FILE: &str = "/etc/berth-layer2";
pub const MULTILAYER_LAYER2_CONTENT: &str = "berth layer 2\n";
/// A file of the third layer, and its content.
pub const MULTILAYER_LAYER3_FILE: &str = "/etc/berth-layer3";
pub const MULTILAYER_LAYER3_CONTENT: &str = "berth layer 3\n";
/// Layer 2 puts `keep` and `gone` in this dir; layer 3's whiteout `.wh.gone` removes `gone`.
pub const MULTILAYER_WHITEOUT_DIR: &str = "/etc/berth-layer2.d";
/// Layer 2 puts `old` in this dir; layer 3 makes it opaque (`.wh..wh..opq`) and adds `new`.
pub const MULTILAYER_OPAQUE_DIR: &str = "/opt/replaced";
/// A shell command that prints `ok` in a container of the multi-layer image if and only if all
/// three layers were applied in order, whiteouts included.
pub const MULTILAYER_CHECK_SCRIPT: &str = "test \"$(cat /etc/berth-layer2)\" = 'berth layer 2' \
     && test \"$(cat /etc/berth-layer3)\" = 'berth layer 3' \
     && test \"$(ls /etc/berth-layer2.d)\" = keep \
     && test \"$(ls /opt/replaced)\" = new && echo ok";

/// One OCI image layout built by `tests/images/build-oci-layout.sh`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciLayout {
    /// The layout directory (`oci-layout`, `index.json`, `blobs/`): `skopeo copy oci:<dir>`.
    pub dir: PathBuf,
    /// The ref name of its only manifest in `index.json` (`multilayer`, `big`).
    pub reference: String,
    /// The manifest digest (`sha256:...`); a push with [`push_layout`] keeps it.
    pub digest: String,
    /// How many layers the manifest has.
    pub layers: usize,
}

/// The three-layer test image (busybox; a plain-tar layer with [`MULTILAYER_LAYER2_FILE`]; a
/// gzip layer with whiteouts). Cmd `["sh"]`. Built into `tests/images/out/multilayer` when
/// missing (a second or so); the build is deterministic.
pub fn multilayer_layout() -> Result<OciLayout> {
    static LAYOUT: OnceLock<Result<OciLayout, String>> = OnceLock::new();
    LAYOUT
        .get_or_init(|| find_or_build_layout("multilayer", false).map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

/// The benchmark image: the multi-layer image's three layers plus two layers of 50 MiB of seeded
/// random data (`/data/big-1`, `/data/big-2`). Built into `tests/images/out/big` when missing
/// (`build-oci-layout.sh --big`, some seconds); CI never builds it.
pub fn big_layout() -> Result<OciLayout> {
    static LAYOUT: OnceLock<Result<OciLayout, String>> = OnceLock::new();
    LAYOUT
        .get_or_init(|| find_or_build_layout("big", true).map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

fn find_or_build_layout(name: &str, big: bool) -> Result<OciLayout> {
    let out = workspace_root().join("tests/images/out");
    if let Ok(layout) = read_layout(&out, name) {
        return Ok(layout);
    }
    let script = workspace_root().join("tests/images/build-oci-layout.sh");
    let mut cmd = Command::new("bash");
    cmd.arg(&script);
    if big {
        cmd.arg("--big");
    }
    let run = cmd
        .arg(&out)
        .output()
        .with_context(|| format!("cannot run {}", script.display()))?;
    ensure!(
        run.status.success(),
        "{} {} failed ({}), so there is no {name} image:\n{}",
        script.display(),
        out.display(),
        run.status,
        String::from_utf8_lossy(&run.stderr)
    );
    read_layout(&out, name)
}

/// The layout `out/<name>` if it is complete: its digest file (written last) names a manifest
/// that is in its blob store.
fn read_layout(out: &Path, name: &str) -> Result<OciLayout> {
    let digest_file = out.join(format!("{name}.digest"));
    let digest = std::fs::read_to_string(&digest_file)
        .with_context(|| format!("reading {}", digest_file.display()))?
        .trim()
        .to_owned();
    let dir = out.join(name);
    let hex = digest
        .strip_prefix("sha256:")
        .with_context(|| format!("{} holds {digest:?}", digest_file.display()))?;
    let manifest_path = dir.join("blobs/sha256").join(hex);
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(&manifest_path)
            .with_context(|| format!("reading {}", manifest_path.display()))?,
    )
    .with_context(|| format!("parsing {}", manifest_path.display()))?;
    let layers = manifest["layers"]
        .as_array()
        .with_context(|| format!("{} has no layers", manifest_path.display()))?;
    for layer in layers {
        let blob = layer["digest"]
            .as_str()
            .and_then(|d| d.strip_prefix("sha256:"))
            .context("a layer without a sha256 digest")?;
        ensure!(
            dir.join("blobs/sha256").join(blob).is_file(),
            "layer {blob} of {} is missing",
            dir.display()
        );
    }
    Ok(OciLayout {
        dir,
        reference: name.to_owned(),
        digest,
        layers: layers.len(),
    })
}

/// A `docker-registry serve` on `127.0.0.1:<free port>`, stopped and removed (storage, config,
/// log) on drop. Unless [`TestRegistry::pass`] was called, the drop prints the tail of its log.
pub struct TestRegistry {
    dir: PathBuf,
    addr: SocketAddr,
    credentials: Option<(String, String)>,
    proc: Option<Proc>,
    passed: bool,
}

impl TestRegistry {
    /// A registry without auth: anyone may push and pull.
    pub fn start(name: &str) -> Result<TestRegistry> {
        TestRegistry::start_inner(name, None)
    }

    /// A registry with htpasswd (basic) auth: every request, pulls included, needs
    /// `user`/`password`; `/v2/` answers 401 without them.
    pub fn start_with_auth(name: &str, user: &str, password: &str) -> Result<TestRegistry> {
        TestRegistry::start_inner(name, Some((user.to_owned(), password.to_owned())))
    }

    fn start_inner(name: &str, credentials: Option<(String, String)>) -> Result<TestRegistry> {
        let id = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
        let dir = std::env::temp_dir().join(format!("berth-e2e-registry-{name}-{id}"));
        std::fs::create_dir_all(dir.join("storage"))
            .with_context(|| format!("creating {}", dir.display()))?;
        let mut registry = TestRegistry {
            dir,
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            credentials,
            proc: None,
            passed: false,
        };
        // skopeo's auth file: empty, so nothing of the caller's login is ever used.
        std::fs::write(registry.auth_file(), "{}\n")?;
        if let Some((user, password)) = &registry.credentials {
            let out = Command::new("htpasswd")
                .args(["-Bbn", user, password])
                .output()
                .context("cannot run htpasswd (apt-get install apache2-utils)")?;
            ensure!(
                out.status.success(),
                "htpasswd -Bbn failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            std::fs::write(registry.dir.join("htpasswd"), &out.stdout)?;
        }
        // A free port is only free until someone takes it: a registry that could not bind is
        // started again on another one.
        let mut attempt = 0;
        loop {
            attempt += 1;
            match registry.spawn(attempt) {
                Ok(()) => return Ok(registry),
                Err(e) if attempt < 5 && registry.log().contains("address already in use") => {
                    eprintln!("registry: {e:#}; trying another port");
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn spawn(&mut self, attempt: usize) -> Result<()> {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .context("finding a free port on 127.0.0.1")?
            .port();
        self.addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let config = self.dir.join("config.yml");
        std::fs::write(&config, self.config())
            .with_context(|| format!("writing {}", config.display()))?;
        let mut cmd = Command::new("docker-registry");
        cmd.arg("serve").arg(&config);
        // The registry reads REGISTRY_* variables as config overrides: none may leak in.
        for (var, _) in std::env::vars() {
            if var.starts_with("REGISTRY_") {
                cmd.env_remove(var);
            }
        }
        if attempt > 1 {
            std::fs::write(self.log_path(), "")?;
        }
        let proc = Proc::spawn("docker-registry", cmd, &self.log_path())
            .context("cannot start docker-registry (apt-get install docker-registry)")?;
        self.proc = Some(proc);
        self.wait_ready()
    }

    fn config(&self) -> String {
        let mut yaml = format!(
            "version: 0.1\n\
             log:\n  level: info\n  formatter: text\n\
             storage:\n  filesystem:\n    rootdirectory: {storage:?}\n  delete:\n    enabled: true\n\
             http:\n  addr: {addr}\n  secret: berth-e2e-{port}\n",
            storage = self.dir.join("storage").display().to_string(),
            addr = self.addr,
            port = self.addr.port(),
        );
        if self.credentials.is_some() {
            yaml.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: berth-e2e\n    path: {:?}\n",
                self.dir.join("htpasswd").display().to_string()
            ));
        }
        yaml
    }

    /// Polls `GET /v2/` until it answers 200 (401 with auth).
    fn wait_ready(&mut self) -> Result<()> {
        let want = if self.credentials.is_some() { 401 } else { 200 };
        let limit = timeout(30);
        let deadline = Instant::now() + limit;
        loop {
            let proc = self.proc.as_mut().expect("spawned");
            if let Some(status) = proc.exited() {
                bail!(
                    "docker-registry on {} exited ({status}) before it answered:\n{}",
                    self.addr,
                    self.log()
                );
            }
            let last = match http_get(self.addr, "/v2/", Duration::from_secs(2)) {
                Ok(r) if r.status == want => return Ok(()),
                Ok(r) => format!("status {}: {}", r.status, r.body),
                Err(e) => format!("{e:#}"),
            };
            if Instant::now() >= deadline {
                bail!(
                    "docker-registry on {} did not answer GET /v2/ with {want} in {limit:?} \
                     (last: {last}):\n{}",
                    self.addr,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Where it listens (127.0.0.1).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `127.0.0.1:<port>`: the host part of an image reference on this registry.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// `127.0.0.1:<port>/<repo_and_tag>`: an image reference on this registry.
    pub fn image_ref(&self, repo_and_tag: &str) -> String {
        format!("{}/{repo_and_tag}", self.host())
    }

    /// The user and password a registry with auth wants; None without auth.
    pub fn credentials(&self) -> Option<(String, String)> {
        self.credentials.clone()
    }

    /// Its temp dir: config, htpasswd, storage, log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("registry.log")
    }

    /// Everything the registry has logged so far (one line per request, among others).
    pub fn log(&self) -> String {
        std::fs::read(self.log_path())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// An empty skopeo auth file (`--authfile`), so skopeo never uses the caller's logins.
    pub fn auth_file(&self) -> PathBuf {
        self.dir.join("skopeo-auth.json")
    }

    /// Marks the test as passed: the log is not printed when the registry is dropped.
    pub fn pass(mut self) {
        self.passed = true;
    }
}

const LOG_TAIL_LINES: usize = 200;

impl Drop for TestRegistry {
    fn drop(&mut self) {
        if let Some(mut proc) = self.proc.take() {
            proc.stop(Duration::from_secs(5));
        }
        if !self.passed {
            let text = self.log();
            let lines: Vec<&str> = text.lines().collect();
            let skip = lines.len().saturating_sub(LOG_TAIL_LINES);
            eprintln!(
                "----- {} ({} lines) -----",
                self.log_path().display(),
                lines.len()
            );
            if skip > 0 {
                eprintln!("[... {skip} earlier lines ...]");
            }
            for line in &lines[skip..] {
                eprintln!("{line}");
            }
        }
        if std::env::var_os("BERTH_E2E_KEEP").is_some() {
            eprintln!("kept {}", self.dir.display());
        } else if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("cleanup: cannot remove {}: {e}", self.dir.display());
        }
    }
}

/// Runs skopeo with `args`; returns its stdout, or an error with its stderr.
fn skopeo(args: &[&str]) -> Result<String> {
    let out = Command::new("skopeo")
        .args(args)
        .output()
        .context("cannot run skopeo (apt-get install skopeo)")?;
    if !out.status.success() {
        bail!(
            "`skopeo {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Pushes the only image of the OCI layout `layout_dir` to `registry` as `repo_and_tag`
/// (`berth/multilayer:v1`), with the registry's credentials if it has any. Digests are kept
/// (`--preserve-digests`: skopeo would otherwise gzip the plain-tar layer), so the returned
/// manifest digest is the layout's.
pub fn push_layout(
    registry: &TestRegistry,
    layout_dir: &Path,
    repo_and_tag: &str,
) -> Result<String> {
    let src = format!(
        "oci:{}",
        layout_dir
            .to_str()
            .context("the layout path is not UTF-8")?
    );
    let dest = format!("docker://{}", registry.image_ref(repo_and_tag));
    let digest_file = registry
        .dir()
        .join(format!("push-{}.digest", uuid::Uuid::new_v4().simple()));
    let auth_file = registry.auth_file();
    let mut args: Vec<String> = [
        "--insecure-policy",
        "copy",
        "--quiet",
        "--preserve-digests",
        "--dest-tls-verify=false",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    args.push(format!("--authfile={}", auth_file.display()));
    args.push(format!("--digestfile={}", digest_file.display()));
    if let Some((user, password)) = registry.credentials() {
        args.push(format!("--dest-creds={user}:{password}"));
    }
    args.push(src);
    args.push(dest);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    skopeo(&args)?;
    let digest = std::fs::read_to_string(&digest_file)
        .with_context(|| format!("reading {}", digest_file.display()))?
        .trim()
        .to_owned();
    let _ = std::fs::remove_file(&digest_file);
    ensure!(
        digest.starts_with("sha256:"),
        "skopeo wrote {digest:?} as the pushed digest"
    );
    Ok(digest)
}

/// `skopeo inspect` of `repo_and_tag` on `registry` (its JSON: `Digest`, `Layers`, ...), with
/// the registry's credentials if `with_credentials` (and it has any), else anonymously.
pub fn skopeo_inspect(
    registry: &TestRegistry,
    repo_and_tag: &str,
    with_credentials: bool,
) -> Result<Value> {
    let auth_file = format!("--authfile={}", registry.auth_file().display());
    let mut args = vec![
        "--insecure-policy".to_owned(),
        "inspect".to_owned(),
        "--tls-verify=false".to_owned(),
        auth_file,
    ];
    if let (true, Some((user, password))) = (with_credentials, registry.credentials()) {
        args.push(format!("--creds={user}:{password}"));
    }
    args.push(format!("docker://{}", registry.image_ref(repo_and_tag)));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = skopeo(&args)?;
    serde_json::from_str(&out).with_context(|| format!("parsing skopeo inspect's {out:?}"))
}

/// containerd's own client pulling `repo_and_tag` from `registry` into `namespace` of the
/// host's containerd (`ctr images pull --plain-http [--user u:p]`, unpacked for the default
/// snapshotter): the reference behaviour for the agent's pull. Returns ctr's output.
pub fn ctr_pull(registry: &TestRegistry, namespace: &str, repo_and_tag: &str) -> Result<String> {
    let image = registry.image_ref(repo_and_tag);
    let user = registry
        .credentials()
        .map(|(name, password)| format!("{name}:{password}"));
    let mut args = vec!["images", "pull", "--plain-http"];
    if let Some(user) = &user {
        args.extend(["--user", user.as_str()]);
    }
    args.push(&image);
    crate::containerd::ctr(namespace, &args)
}

/// A containerd namespace (of the host's containerd) for a test's own `ctr` calls, with a
/// unique name; emptied and removed on drop.
pub struct ScratchNamespace {
    name: String,
}

impl ScratchNamespace {
    /// `berth-e2e-<prefix>-<unique id>`; nothing is created until something uses it.
    pub fn new(prefix: &str) -> ScratchNamespace {
        let id = &uuid::Uuid::new_v4().simple().to_string()[..10];
        ScratchNamespace {
            name: format!("berth-e2e-{prefix}-{id}"),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for ScratchNamespace {
    fn drop(&mut self) {
        if let Err(e) = crate::containerd::purge_namespace(&self.name, Duration::from_secs(30)) {
            eprintln!("cleanup: {e:#}");
        }
        // `ctr run` puts a container's cgroup below /<namespace>; runc removes the container's
        // own, not that parent.
        if let Err(e) = crate::cgroups::remove_cgroup_tree(&format!("/{}", self.name)) {
            eprintln!("cleanup: {e:#}");
        }
    }
}

/// `sha256:<hex>` of a file, by `sha256sum`.
fn file_digest(path: &Path) -> Result<String> {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .context("running sha256sum")?;
    ensure!(out.status.success(), "sha256sum {} failed", path.display());
    let text = String::from_utf8_lossy(&out.stdout);
    let hex = text
        .split_whitespace()
        .next()
        .context("no sha256sum output")?;
    Ok(format!("sha256:{hex}"))
}

/// Writes `bytes` as a blob of the layout `dir`; returns its descriptor fields.
fn write_blob(dir: &Path, bytes: &[u8]) -> Result<(String, u64)> {
    let tmp = dir.join("blob.tmp");
    std::fs::write(&tmp, bytes)?;
    let digest = file_digest(&tmp)?;
    let hex = digest.trim_start_matches("sha256:");
    std::fs::rename(&tmp, dir.join("blobs/sha256").join(hex))?;
    Ok((digest, bytes.len() as u64))
}

/// A copy of `base` in `dir` (which must not exist) with one more layer, an uncompressed tar
/// holding `/etc/berth-unique` = `content`: an image whose top layer and config no other test
/// has, so a pull must download them (containerd shares blobs between namespaces, so the
/// layers of a shared test image may already be present).
pub fn layout_with_unique_layer(base: &OciLayout, dir: &Path, content: &str) -> Result<OciLayout> {
    let status = Command::new("cp")
        .arg("-a")
        .arg(&base.dir)
        .arg(dir)
        .status()
        .context("running cp")?;
    ensure!(
        status.success(),
        "cp -a {} {}",
        base.dir.display(),
        dir.display()
    );
    let staging = dir.join("unique-layer");
    std::fs::create_dir_all(staging.join("etc"))?;
    std::fs::write(staging.join("etc/berth-unique"), content)?;
    let tar = dir.join("layer.tar");
    let status = Command::new("tar")
        .args([
            "--sort=name",
            "--owner=0",
            "--group=0",
            "--numeric-owner",
            "--mtime=@0",
            "-cf",
        ])
        .arg(&tar)
        .arg("-C")
        .arg(&staging)
        .arg("etc")
        .status()
        .context("running tar")?;
    ensure!(status.success(), "tar failed");
    let layer = std::fs::read(&tar)?;
    std::fs::remove_file(&tar)?;
    std::fs::remove_dir_all(&staging)?;
    let (layer_digest, layer_size) = write_blob(dir, &layer)?;

    let blob = |digest: &str| -> Result<Value> {
        let path = dir
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"));
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        Ok(serde_json::from_slice(&bytes)?)
    };
    let mut index: Value = serde_json::from_slice(&std::fs::read(dir.join("index.json"))?)?;
    let manifest_digest = index["manifests"][0]["digest"]
        .as_str()
        .context("no manifest in index.json")?
        .to_owned();
    let mut manifest = blob(&manifest_digest)?;
    let config_digest = manifest["config"]["digest"]
        .as_str()
        .context("no config in the manifest")?
        .to_owned();
    let mut config = blob(&config_digest)?;
    config["rootfs"]["diff_ids"]
        .as_array_mut()
        .context("no diff_ids")?
        .push(Value::String(layer_digest.clone()));
    let (config_digest, config_size) = write_blob(dir, &serde_json::to_vec(&config)?)?;
    manifest["config"]["digest"] = Value::String(config_digest);
    manifest["config"]["size"] = config_size.into();
    manifest["layers"]
        .as_array_mut()
        .context("no layers")?
        .push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": layer_digest,
            "size": layer_size,
        }));
    let (manifest_digest, manifest_size) = write_blob(dir, &serde_json::to_vec(&manifest)?)?;
    index["manifests"][0]["digest"] = Value::String(manifest_digest.clone());
    index["manifests"][0]["size"] = manifest_size.into();
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index)?)?;
    Ok(OciLayout {
        dir: dir.to_owned(),
        reference: base.reference.clone(),
        digest: manifest_digest,
        layers: base.layers + 1,
    })
}
