//! The registry client against a real registry (Debian's `docker-registry`, distribution 2.8,
//! on loopback, with test content pushed over its HTTP API) and, for what a well-behaved
//! registry never does (wrong digests, tokens, 503s), against a scripted fake on loopback.

use std::collections::HashMap;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_agent::registry::{
    ContentDescriptor, Credentials, Reference, RegistryClient, RegistryConfig, RegistryError,
};
use berth_agent::runtime::image::host_arch;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

fn digest_of(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

fn descriptor(media_type: &str, b: &[u8]) -> ContentDescriptor {
    ContentDescriptor {
        media_type: media_type.into(),
        digest: digest_of(b),
        size: b.len() as u64,
    }
}

fn other_arch() -> &'static str {
    if host_arch() == "riscv64" {
        "s390x"
    } else {
        "riscv64"
    }
}

// ---------------------------------------------------------------------------------------
// A real registry, killed and its directory removed on drop (also when a test fails).

struct TestRegistry {
    child: Option<Child>,
    dir: PathBuf,
    addr: String,
}

impl TestRegistry {
    fn start(htpasswd: Option<(&str, &str)>) -> TestRegistry {
        let dir = std::env::temp_dir().join(format!(
            "berth-registry-test-{}-{:016x}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut reg = TestRegistry {
            child: None,
            dir,
            addr: String::new(),
        };
        let auth = match htpasswd {
            Some((user, pass)) => {
                let out = Command::new("htpasswd")
                    .args(["-Bbn", user, pass])
                    .output()
                    .expect("htpasswd (apache2-utils) must be installed");
                assert!(out.status.success(), "htpasswd failed");
                let path = reg.dir.join("htpasswd");
                std::fs::write(&path, &out.stdout).unwrap();
                format!(
                    "auth:\n  htpasswd:\n    realm: test\n    path: {}\n",
                    path.display()
                )
            }
            None => String::new(),
        };
        let log_path = reg.dir.join("registry.log");
        // The port is free when we look; another process may take it before the registry
        // binds, so a registry that exits at once is started again on another port.
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            reg.addr = format!("127.0.0.1:{port}");
            let config = format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {}\n{auth}",
                reg.dir.join("data").display(),
                reg.addr
            );
            let config_path = reg.dir.join("config.yml");
            std::fs::write(&config_path, config).unwrap();
            let log = std::fs::File::create(&log_path).unwrap();
            let child = Command::new("docker-registry")
                .arg("serve")
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("docker-registry must be installed");
            reg.child = Some(child);
            if reg.wait_ready() {
                return reg;
            }
            reg.stop();
        }
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        panic!("docker-registry did not start:\n{log}");
    }

    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Some(Ok(Some(_))) = self.child.as_mut().map(|c| c.try_wait()) {
                return false;
            }
            if TcpStream::connect(&self.addr).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn reference(&self, rest: &str) -> Reference {
        Reference::parse(&format!("{}/{rest}", self.addr)).unwrap()
    }

    fn client(&self, credentials: Option<Credentials>) -> RegistryClient {
        let mut cfg = RegistryConfig {
            insecure: vec![self.addr.clone()],
            ..Default::default()
        };
        if let Some(c) = credentials {
            cfg.credentials.insert(self.addr.clone(), c);
        }
        RegistryClient::new(cfg).unwrap()
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Pushes over the distribution API, as `docker push` would (monolithic blob uploads).
struct Pusher {
    http: reqwest::Client,
    base: String,
    auth: Option<(String, String)>,
}

impl Pusher {
    fn new(reg: &TestRegistry, auth: Option<(&str, &str)>) -> Pusher {
        Pusher {
            http: reqwest::Client::new(),
            base: reg.base(),
            auth: auth.map(|(u, p)| (u.to_string(), p.to_string())),
        }
    }

    fn authed(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.auth {
            Some((u, p)) => req.basic_auth(u, Some(p)),
            None => req,
        }
    }

    async fn blob(&self, name: &str, media_type: &str, data: &[u8]) -> ContentDescriptor {
        let desc = descriptor(media_type, data);
        let resp = self
            .authed(
                self.http
                    .post(format!("{}/v2/{name}/blobs/uploads/", self.base)),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 202, "start upload: {resp:?}");
        let location = resp.headers()["location"].to_str().unwrap().to_string();
        let location = if location.starts_with('/') {
            format!("{}{location}", self.base)
        } else {
            location
        };
        let sep = if location.contains('?') { '&' } else { '?' };
        let resp = self
            .authed(
                self.http
                    .put(format!("{location}{sep}digest={}", desc.digest))
                    .header("content-type", "application/octet-stream")
                    .body(data.to_vec()),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 201, "finish upload: {resp:?}");
        desc
    }

    async fn manifest(
        &self,
        name: &str,
        tag: &str,
        media_type: &str,
        body: &[u8],
    ) -> ContentDescriptor {
        let resp = self
            .authed(
                self.http
                    .put(format!("{}/v2/{name}/manifests/{tag}", self.base))
                    .header("content-type", media_type)
                    .body(body.to_vec()),
            )
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        assert_eq!(status, 201, "push manifest {name}:{tag}: {text}");
        descriptor(media_type, body)
    }

    /// An image of the given layers (any bytes: the client does not unpack them).
    async fn image(&self, name: &str, tag: &str, layers: &[&[u8]], arch: &str) -> TestImage {
        let diff_ids: Vec<String> = layers.iter().map(|l| digest_of(l)).collect();
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": arch,
            "os": "linux",
            "config": {"Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }))
        .unwrap();
        let config_desc = self.blob(name, OCI_CONFIG, &config).await;
        let mut layer_descs = Vec::new();
        for l in layers {
            layer_descs.push(self.blob(name, OCI_LAYER, l).await);
        }
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config_desc,
            "layers": layer_descs,
        }))
        .unwrap();
        let manifest_desc = self.manifest(name, tag, OCI_MANIFEST, &manifest).await;
        TestImage {
            manifest,
            manifest_desc,
            config,
            config_desc,
            layers: layers.iter().map(|l| l.to_vec()).collect(),
            layer_descs,
        }
    }

    async fn index(
        &self,
        name: &str,
        tag: &str,
        media_type: &str,
        entries: &[(&ContentDescriptor, &str)],
    ) -> (ContentDescriptor, Vec<u8>) {
        let manifests: Vec<_> = entries
            .iter()
            .map(|(d, arch)| {
                serde_json::json!({
                    "mediaType": d.media_type, "digest": d.digest, "size": d.size,
                    "platform": {"architecture": arch, "os": "linux"},
                })
            })
            .collect();
        let body = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": media_type, "manifests": manifests,
        }))
        .unwrap();
        (self.manifest(name, tag, media_type, &body).await, body)
    }
}

struct TestImage {
    manifest: Vec<u8>,
    manifest_desc: ContentDescriptor,
    config: Vec<u8>,
    config_desc: ContentDescriptor,
    layers: Vec<Vec<u8>>,
    layer_descs: Vec<ContentDescriptor>,
}

/// The whole blob, or the stream's error (first or last item).
async fn fetch_blob(
    client: &RegistryClient,
    r: &Reference,
    desc: &ContentDescriptor,
    creds: Option<&Credentials>,
) -> Result<Vec<u8>, RegistryError> {
    let mut stream = client.blob(r, desc, creds).await?;
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

fn assert_image(got: &berth_agent::registry::ResolvedRemote, want: &TestImage) {
    assert_eq!(got.manifest, want.manifest_desc);
    assert_eq!(got.manifest_bytes, want.manifest);
    assert_eq!(got.config, want.config_desc);
    assert_eq!(got.config_bytes, want.config);
    assert_eq!(got.layers, want.layer_descs);
}

// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn resolves_by_tag_and_by_digest_and_streams_verified_layers() {
    let reg = TestRegistry::start(None);
    let push = Pusher::new(&reg, None);
    let img = push
        .image(
            "team/app",
            "v1",
            &[b"layer zero bytes", b"layer one, a little longer"],
            host_arch(),
        )
        .await;
    let client = reg.client(None);

    let by_tag = reg.reference("team/app:v1");
    let got = client.resolve(&by_tag, None).await.unwrap();
    assert_image(&got, &img);
    assert_eq!(got.top, got.manifest);
    assert_eq!(got.top_bytes, img.manifest);
    assert_eq!(got.top.media_type, OCI_MANIFEST);

    for r in [
        format!("team/app@{}", img.manifest_desc.digest),
        format!("team/app:v1@{}", img.manifest_desc.digest),
    ] {
        let by_digest = reg.reference(&r);
        let again = client.resolve(&by_digest, None).await.unwrap();
        assert_eq!(again, got, "{r}");
    }

    for (desc, bytes) in img.layer_descs.iter().zip(&img.layers) {
        assert_eq!(
            &fetch_blob(&client, &by_tag, desc, None).await.unwrap(),
            bytes
        );
    }

    // A descriptor whose size disagrees with the content.
    let mut short = img.layer_descs[1].clone();
    short.size -= 1;
    let err = fetch_blob(&client, &by_tag, &short, None)
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::BadResponse(_)), "{err:?}");
    // A digest the registry does not have.
    let mut unknown = img.layer_descs[0].clone();
    unknown.digest = digest_of(b"not pushed");
    let err = fetch_blob(&client, &by_tag, &unknown, None)
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::NotFound(_)), "{err:?}");
}

#[tokio::test]
async fn resolves_the_host_platform_through_an_index() {
    let reg = TestRegistry::start(None);
    let push = Pusher::new(&reg, None);
    let ours = push
        .image(
            "multi",
            "ours",
            &[b"host layer 0", b"host layer 1"],
            host_arch(),
        )
        .await;
    let theirs = push
        .image("multi", "theirs", &[b"foreign layer"], other_arch())
        .await;
    let entries = [
        (&theirs.manifest_desc, other_arch()),
        (&ours.manifest_desc, host_arch()),
    ];
    let (oci_index, oci_bytes) = push.index("multi", "oci", OCI_INDEX, &entries).await;
    let (list, _) = push.index("multi", "list", DOCKER_LIST, &entries).await;
    let client = reg.client(None);

    let got = client
        .resolve(&reg.reference("multi:oci"), None)
        .await
        .unwrap();
    assert_eq!(got.top, oci_index);
    assert_eq!(got.top_bytes, oci_bytes);
    assert_image(&got, &ours);
    assert_eq!(got.layers.len(), 2);

    let by_digest = reg.reference(&format!("multi@{}", oci_index.digest));
    assert_eq!(client.resolve(&by_digest, None).await.unwrap(), got);

    let got = client
        .resolve(&reg.reference("multi:list"), None)
        .await
        .unwrap();
    assert_eq!(got.top, list);
    assert_image(&got, &ours);

    // An index without this host's platform.
    push.index(
        "multi",
        "foreign",
        OCI_INDEX,
        &[(&theirs.manifest_desc, other_arch())],
    )
    .await;
    let err = client
        .resolve(&reg.reference("multi:foreign"), None)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RegistryError::BadResponse(m) if m.contains(host_arch())),
        "{err:?}"
    );
}

#[tokio::test]
async fn unknown_tags_repositories_and_digests_are_not_found() {
    let reg = TestRegistry::start(None);
    let push = Pusher::new(&reg, None);
    push.image("app", "v1", &[b"a", b"b"], host_arch()).await;
    let client = reg.client(None);
    for r in [
        "app:missing".to_string(),
        "nothing/here:v1".to_string(),
        format!("app@{}", digest_of(b"no such manifest")),
    ] {
        let err = client.resolve(&reg.reference(&r), None).await.unwrap_err();
        assert!(matches!(err, RegistryError::NotFound(_)), "{r}: {err:?}");
        assert!(!err.is_transient());
    }
}

#[tokio::test]
async fn htpasswd_registry_takes_the_right_credentials_only() {
    let reg = TestRegistry::start(Some(("user", "pass")));
    let push = Pusher::new(&reg, Some(("user", "pass")));
    let img = push
        .image(
            "private/app",
            "v1",
            &[b"secret 0", b"secret 1"],
            host_arch(),
        )
        .await;
    let r = reg.reference("private/app:v1");
    let right = Credentials::new("user", "pass");
    let wrong = Credentials::new("user", "not-the-password");

    let client = reg.client(Some(right.clone()));
    let got = client.resolve(&r, None).await.unwrap();
    assert_image(&got, &img);
    assert_eq!(
        fetch_blob(&client, &r, &img.layer_descs[0], None)
            .await
            .unwrap(),
        img.layers[0]
    );

    // The task's credentials win over the configured ones, either way.
    let client = reg.client(Some(wrong.clone()));
    assert_eq!(client.resolve(&r, Some(&right)).await.unwrap(), got);
    let err = client.resolve(&r, None).await.unwrap_err();
    assert!(matches!(err, RegistryError::Denied(_)), "{err:?}");
    assert!(!err.to_string().contains("not-the-password"), "{err}");
    let err = fetch_blob(&client, &r, &img.layer_descs[0], None)
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Denied(_)), "{err:?}");

    let client = reg.client(None);
    let err = client.resolve(&r, None).await.unwrap_err();
    assert!(matches!(err, RegistryError::Denied(_)), "{err:?}");
    let err = client.resolve(&r, Some(&wrong)).await.unwrap_err();
    assert!(matches!(err, RegistryError::Denied(_)), "{err:?}");
    assert_eq!(client.resolve(&r, Some(&right)).await.unwrap(), got);
}

// ---------------------------------------------------------------------------------------
// A scripted HTTP server on loopback, for misbehaviour a real registry does not show.

struct FakeRequest {
    path: String,
    headers: HashMap<String, String>,
}

struct FakeResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl FakeResponse {
    fn new(status: u16, body: &[u8]) -> Self {
        FakeResponse {
            status,
            headers: vec![],
            body: body.to_vec(),
        }
    }
    fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.into(), v.into()));
        self
    }
}

type Handler = Arc<dyn Fn(&FakeRequest) -> FakeResponse + Send + Sync>;

struct FakeServer {
    addr: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeServer {
    async fn start(handler: Handler) -> FakeServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let task = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                tokio::spawn(serve_one(sock, handler.clone()));
            }
        });
        FakeServer { addr, task }
    }

    fn reference(&self, rest: &str) -> Reference {
        Reference::parse(&format!("{}/{rest}", self.addr)).unwrap()
    }

    fn client(&self, credentials: Option<Credentials>) -> RegistryClient {
        let mut cfg = RegistryConfig {
            insecure: vec![self.addr.clone()],
            ..Default::default()
        };
        if let Some(c) = credentials {
            cfg.credentials.insert(self.addr.clone(), c);
        }
        RegistryClient::new(cfg).unwrap()
    }
}

async fn serve_one(mut sock: tokio::net::TcpStream, handler: Handler) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let mut lines = head.split("\r\n");
    let path = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .unwrap_or("/")
        .to_string();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let resp = handler(&FakeRequest { path, headers });
    let mut out = format!(
        "HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        resp.status,
        resp.body.len()
    );
    for (k, v) in &resp.headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    let _ = sock.write_all(out.as_bytes()).await;
    let _ = sock.write_all(&resp.body).await;
    let _ = sock.shutdown().await;
}

/// A one-layer image as a fake registry serves it.
struct FakeImage {
    manifest: Vec<u8>,
    config: Vec<u8>,
    layer: Vec<u8>,
}

fn fake_image() -> FakeImage {
    let layer = b"the only layer".to_vec();
    let config = serde_json::to_vec(&serde_json::json!({
        "rootfs": {"type": "layers", "diff_ids": [digest_of(&layer)]},
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, &config),
        "layers": [descriptor(OCI_LAYER, &layer)],
    }))
    .unwrap();
    FakeImage {
        manifest,
        config,
        layer,
    }
}

impl FakeImage {
    /// Serves the image for `app`, the bytes of any blob or manifest path as given.
    fn serve(&self, req: &FakeRequest) -> FakeResponse {
        let path = req.path.as_str();
        if path.starts_with("/v2/app/manifests/") {
            FakeResponse::new(200, &self.manifest).header("content-type", OCI_MANIFEST)
        } else if path == format!("/v2/app/blobs/{}", digest_of(&self.config)) {
            FakeResponse::new(200, &self.config)
        } else if path == format!("/v2/app/blobs/{}", digest_of(&self.layer)) {
            FakeResponse::new(200, &self.layer)
        } else {
            FakeResponse::new(
                404,
                br#"{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown"}]}"#,
            )
        }
    }
}

#[tokio::test]
async fn content_that_does_not_match_its_digest_is_refused() {
    let img = Arc::new(fake_image());
    let manifest_digest = digest_of(&img.manifest);
    let (i, d) = (img.clone(), manifest_digest.clone());
    let server = FakeServer::start(Arc::new(move |req: &FakeRequest| {
        match req.path.as_str() {
            // A tag whose Docker-Content-Digest disagrees with the body.
            "/v2/app/manifests/lying" => FakeResponse::new(200, &i.manifest)
                .header("content-type", OCI_MANIFEST)
                .header("docker-content-digest", &digest_of(b"something else")),
            "/v2/app/manifests/honest" => FakeResponse::new(200, &i.manifest)
                .header("content-type", OCI_MANIFEST)
                .header("docker-content-digest", &d),
            _ => i.serve(req),
        }
    }))
    .await;
    let client = server.client(None);

    let ok = client
        .resolve(&server.reference("app:honest"), None)
        .await
        .unwrap();
    assert_eq!(ok.top.digest, manifest_digest);
    assert_eq!(ok.config_bytes, img.config);

    // Asked by a digest the body does not hash to.
    let wrong = digest_of(b"another manifest");
    let err = client
        .resolve(&server.reference(&format!("app@{wrong}")), None)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        RegistryError::DigestMismatch {
            expected: wrong,
            actual: manifest_digest.clone()
        }
    );
    let err = client
        .resolve(&server.reference("app:lying"), None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::DigestMismatch { .. }),
        "{err:?}"
    );

    // A layer whose bytes were changed (same size): the stream ends with the mismatch.
    let r = server.reference("app:honest");
    let mut desc = ok.layers[0].clone();
    assert_eq!(
        fetch_blob(&client, &r, &desc, None).await.unwrap(),
        img.layer
    );
    let corrupted = FakeServer::start(Arc::new({
        let i = img.clone();
        move |req: &FakeRequest| {
            if req.path.contains("/blobs/") && req.path.ends_with(&digest_of(&i.layer)) {
                let mut bad = i.layer.clone();
                bad[0] ^= 0xff;
                FakeResponse::new(200, &bad)
            } else {
                i.serve(req)
            }
        }
    }))
    .await;
    let client = corrupted.client(None);
    let r = corrupted.reference("app:v1");
    let mut stream = client.blob(&r, &desc, None).await.unwrap();
    let mut items = Vec::new();
    while let Some(item) = stream.next().await {
        items.push(item);
    }
    assert!(items[..items.len() - 1].iter().all(|i| i.is_ok()));
    assert!(
        matches!(
            items.last(),
            Some(Err(RegistryError::DigestMismatch { .. }))
        ),
        "{items:?}"
    );
    // A descriptor naming a digest the served bytes do not have.
    desc.digest = digest_of(b"x");
    let err = fetch_blob(&client, &r, &desc, None).await.unwrap_err();
    assert!(matches!(err, RegistryError::NotFound(_)), "{err:?}");
}

#[tokio::test]
async fn bearer_tokens_are_fetched_with_credentials_and_cached() {
    let img = Arc::new(fake_image());
    let token_requests = Arc::new(AtomicUsize::new(0));
    let addr_cell: Arc<std::sync::OnceLock<String>> = Arc::new(std::sync::OnceLock::new());
    let server = FakeServer::start(Arc::new({
        let (img, count, addr) = (img.clone(), token_requests.clone(), addr_cell.clone());
        move |req: &FakeRequest| {
            if req.path.starts_with("/token?") {
                count.fetch_add(1, Ordering::SeqCst);
                // "user:pass" in Basic.
                let good = req.headers.get("authorization").map(String::as_str)
                    == Some("Basic dXNlcjpwYXNz");
                let scoped = req.path.contains("scope=repository%3Aapp%3Apull")
                    && req.path.contains("service=fake-registry");
                return if good && scoped {
                    FakeResponse::new(200, br#"{"access_token":"tok-1","expires_in":300}"#)
                } else {
                    FakeResponse::new(401, br#"{"details":"incorrect username or password"}"#)
                };
            }
            if req.headers.get("authorization").map(String::as_str) != Some("Bearer tok-1") {
                let realm = format!("http://{}/token", addr.get().unwrap());
                return FakeResponse::new(401, br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#)
                    .header(
                        "www-authenticate",
                        &format!(r#"Bearer realm="{realm}",service="fake-registry",scope="repository:app:pull""#),
                    );
            }
            img.serve(req)
        }
    }))
    .await;
    addr_cell.set(server.addr.clone()).unwrap();
    let r = server.reference("app:v1");

    let client = server.client(Some(Credentials::new("user", "pass")));
    let got = client.resolve(&r, None).await.unwrap();
    assert_eq!(got.config_bytes, img.config);
    assert_eq!(
        fetch_blob(&client, &r, &got.layers[0], None).await.unwrap(),
        img.layer
    );
    client.resolve(&r, None).await.unwrap();
    assert_eq!(
        token_requests.load(Ordering::SeqCst),
        1,
        "the token is reused"
    );

    let err = server.client(None).resolve(&r, None).await.unwrap_err();
    assert!(matches!(err, RegistryError::Denied(_)), "{err:?}");
    let wrong = Credentials::new("user", "wrong");
    let err = client.resolve(&r, Some(&wrong)).await.unwrap_err();
    assert!(matches!(err, RegistryError::Denied(_)), "{err:?}");
    assert!(!err.to_string().contains("wrong"), "{err}");
}

#[tokio::test]
async fn transient_failures_are_retried_then_reported() {
    let img = Arc::new(fake_image());
    let manifest_calls = Arc::new(AtomicUsize::new(0));
    let server = FakeServer::start(Arc::new({
        let (img, calls) = (img.clone(), manifest_calls.clone());
        move |req: &FakeRequest| {
            if req.path == "/v2/app/manifests/flaky" {
                if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                    return FakeResponse::new(503, b"");
                }
            } else if req.path == "/v2/app/manifests/down" {
                return FakeResponse::new(503, b"");
            } else if req.path == "/v2/app/manifests/busy" {
                return FakeResponse::new(429, b"");
            } else if req.path == "/v2/app/manifests/old" {
                return FakeResponse::new(
                    200,
                    br#"{"schemaVersion":1,"name":"app","tag":"old","fsLayers":[]}"#,
                )
                .header(
                    "content-type",
                    "application/vnd.docker.distribution.manifest.v1+prettyjws",
                );
            }
            img.serve(req)
        }
    }))
    .await;
    let client = server.client(None);

    client
        .resolve(&server.reference("app:flaky"), None)
        .await
        .unwrap();
    assert_eq!(manifest_calls.load(Ordering::SeqCst), 3);

    for tag in ["down", "busy"] {
        let err = client
            .resolve(&server.reference(&format!("app:{tag}")), None)
            .await
            .unwrap_err();
        assert!(err.is_transient(), "{tag}: {err:?}");
    }
    let err = client
        .resolve(&server.reference("app:old"), None)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RegistryError::BadResponse(m) if m.contains("schema 1")),
        "{err:?}"
    );

    // Nothing listening.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let closed = format!("127.0.0.1:{port}");
    let client = RegistryClient::new(RegistryConfig {
        insecure: vec![closed.clone()],
        ..Default::default()
    })
    .unwrap();
    let err = client
        .resolve(
            &Reference::parse(&format!("{closed}/app:v1")).unwrap(),
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Unreachable(_)), "{err:?}");
}

#[test]
fn the_test_registry_is_gone_after_drop() {
    let reg = TestRegistry::start(None);
    let (dir, addr) = (reg.dir.clone(), reg.addr.clone());
    let mut s = TcpStream::connect(&addr).unwrap();
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    let _ = std::io::Write::write_all(&mut s, b"GET /v2/ HTTP/1.0\r\n\r\n");
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(
        answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200"),
        "{answer}"
    );
    drop(reg);
    assert!(!dir.exists());
    assert!(TcpStream::connect(&addr).is_err());
}
