//! The HTTP side of the registry client: the distribution API's manifest and blob GETs, the
//! auth dance (anonymous, then the challenge's Bearer token or Basic), retries, and digest
//! verification of everything it hands back.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use reqwest::header::{HeaderMap, ACCEPT, CONTENT_TYPE, WWW_AUTHENTICATE};
use reqwest::{Response, StatusCode};
use sha2::{Digest, Sha256};

use super::auth::{
    parse_challenges, Authorization, CacheKey, Challenge, TokenCache, TokenResponse,
};
use super::reference::{validate_digest, DOCKER_HUB};
use super::{
    ContentDescriptor, Credentials, Reference, RegistryConfig, RegistryError, ResolvedRemote,
};
use crate::runtime::image::{
    host_arch, is_index, manifest_parts, select_manifest_descriptor, MEDIA_DOCKER_LIST,
    MEDIA_OCI_INDEX,
};

pub const MEDIA_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const MEDIA_DOCKER_SCHEMA1_PREFIX: &str = "application/vnd.docker.distribution.manifest.v1";

/// Every manifest type we understand; schema 1 deliberately absent.
const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.index.v1+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.docker.distribution.manifest.v2+json";

/// containerd's limit for manifests and indexes.
const MANIFEST_LIMIT: u64 = 4 << 20;
const CONFIG_LIMIT: u64 = 16 << 20;
const SMALL_BODY_LIMIT: u64 = 1 << 20;
/// For manifests, configs and tokens; a layer's body has only the read timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const READ_TIMEOUT: Duration = Duration::from_secs(60);
const MAX_REDIRECTS: usize = 10;

/// A layer's bytes; the last item is an error when they do not match the descriptor.
pub type BlobStream = Pin<Box<dyn Stream<Item = Result<Bytes, RegistryError>> + Send>>;

#[derive(Debug, Clone, Copy)]
struct RetryPolicy {
    attempts: u32,
    first_delay: Duration,
}

/// One per agent: it holds a connection pool and the token cache.
pub struct RegistryClient {
    http: reqwest::Client,
    cfg: RegistryConfig,
    tokens: Mutex<TokenCache>,
    retry: RetryPolicy,
}

impl std::fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryClient")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl RegistryClient {
    pub fn new(cfg: RegistryConfig) -> Result<Self, RegistryError> {
        let redirects = reqwest::redirect::Policy::custom(|attempt| {
            // reqwest itself drops Authorization when a redirect leaves the host; refuse
            // leaving TLS as well.
            let downgrade = attempt.url().scheme() == "http"
                && attempt
                    .previous()
                    .last()
                    .is_some_and(|p| p.scheme() == "https");
            if attempt.previous().len() > MAX_REDIRECTS {
                attempt.error("too many redirects")
            } else if downgrade {
                attempt.error("refusing a redirect from https to http")
            } else {
                attempt.follow()
            }
        });
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .redirect(redirects)
            .user_agent(concat!("berth-agent/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                RegistryError::Unreachable(format!("cannot set up the HTTP client: {}", chain(&e)))
            })?;
        Ok(RegistryClient {
            http,
            cfg,
            tokens: Mutex::new(TokenCache::default()),
            retry: RetryPolicy {
                attempts: 3,
                first_delay: Duration::from_millis(200),
            },
        })
    }

    /// Fetches the reference's manifest (by tag or digest); if it is an index, also the
    /// manifest for linux/<host arch>; then the config blob. Every digest is verified.
    /// `creds` overrides the configured credentials for this registry.
    pub async fn resolve(
        &self,
        r: &Reference,
        creds: Option<&Credentials>,
    ) -> Result<ResolvedRemote, RegistryError> {
        let creds = self.credentials_for(r, creds);
        let (top, top_bytes) = self
            .retrying(r, || self.fetch_manifest(r, creds, r.object(), None))
            .await?;
        let (manifest, manifest_bytes) = if is_index(&top.media_type) {
            let chosen = select_manifest_descriptor(&top_bytes, host_arch())
                .map_err(|e| RegistryError::BadResponse(format!("{r}: {e}")))?;
            validate_digest(&chosen.digest)
                .map_err(|e| RegistryError::BadResponse(format!("{r}: the index lists {e}")))?;
            let (m, bytes) = self
                .retrying(r, || {
                    self.fetch_manifest(r, creds, &chosen.digest, Some(chosen.size))
                })
                .await?;
            if is_index(&m.media_type) {
                return Err(RegistryError::BadResponse(format!(
                    "{r}: the index's entry for linux/{} is another index",
                    host_arch()
                )));
            }
            (m, bytes)
        } else {
            (top.clone(), top_bytes.clone())
        };
        let parts = manifest_parts(&manifest_bytes)
            .map_err(|e| RegistryError::BadResponse(format!("{r}: {e}")))?;
        for d in std::iter::once(&parts.config).chain(&parts.layers) {
            validate_digest(&d.digest)
                .map_err(|e| RegistryError::BadResponse(format!("{r}: the manifest lists {e}")))?;
        }
        if parts.config.size > CONFIG_LIMIT {
            return Err(RegistryError::BadResponse(format!(
                "{r}: the image config is {} bytes, more than the {CONFIG_LIMIT} accepted",
                parts.config.size
            )));
        }
        let config_bytes = self
            .retrying(r, || self.fetch_small_blob(r, creds, &parts.config))
            .await?;
        Ok(ResolvedRemote {
            top,
            top_bytes,
            manifest,
            manifest_bytes,
            config: parts.config,
            config_bytes,
            layers: parts.layers,
        })
    }

    /// Streams one blob, verifying size and digest as it goes: the stream's last item is an
    /// error if the content does not match `desc`. Not retried here: a `Transient` error
    /// (before or during the stream) is the caller's to retry.
    pub async fn blob(
        &self,
        r: &Reference,
        desc: &ContentDescriptor,
        creds: Option<&Credentials>,
    ) -> Result<BlobStream, RegistryError> {
        validate_digest(&desc.digest).map_err(RegistryError::BadResponse)?;
        let creds = self.credentials_for(r, creds);
        let what = format!("blob {} of {}", desc.digest, r.name());
        let url = format!("{}/blobs/{}", self.base_url(r), desc.digest);
        let resp = self.get(r, creds, &url, None, None, &what).await?;
        if let Some(len) = resp.content_length() {
            if len != desc.size {
                return Err(RegistryError::BadResponse(format!(
                    "{what}: the registry sends {len} bytes, the descriptor says {}",
                    desc.size
                )));
            }
        }
        let what2 = what.clone();
        let body = resp
            .bytes_stream()
            .map(move |chunk| chunk.map_err(|e| transport_error(&what2, &e)));
        Ok(Box::pin(verify_stream(Box::pin(body), desc.clone())))
    }

    fn credentials_for<'a>(
        &'a self,
        r: &Reference,
        over: Option<&'a Credentials>,
    ) -> Option<&'a Credentials> {
        if over.is_some() {
            return over;
        }
        let aliases: &[&str] = if r.registry() == DOCKER_HUB {
            &[
                DOCKER_HUB,
                "index.docker.io",
                "registry-1.docker.io",
                "https://index.docker.io/v1/",
            ]
        } else {
            &[]
        };
        self.cfg
            .credentials
            .get(r.registry())
            .or_else(|| aliases.iter().find_map(|k| self.cfg.credentials.get(*k)))
    }

    fn base_url(&self, r: &Reference) -> String {
        let insecure = self
            .cfg
            .insecure
            .iter()
            .any(|h| h == r.registry() || h == r.api_host());
        let scheme = if insecure { "http" } else { "https" };
        format!("{scheme}://{}/v2/{}", r.api_host(), r.repository())
    }

    async fn retrying<T, F, Fut>(&self, r: &Reference, mut op: F) -> Result<T, RegistryError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, RegistryError>>,
    {
        let mut delay = self.retry.first_delay;
        let mut attempt = 1;
        loop {
            match op().await {
                Err(e) if e.is_transient() && attempt < self.retry.attempts => {
                    tracing::warn!(image = %r, attempt, error = %e, "registry request failed, retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// A manifest or index by tag or digest. With a digest (`object` "sha256:…") the content
    /// must hash to it; with a tag, to the Docker-Content-Digest header when there is one.
    async fn fetch_manifest(
        &self,
        r: &Reference,
        creds: Option<&Credentials>,
        object: &str,
        expected_size: Option<u64>,
    ) -> Result<(ContentDescriptor, Vec<u8>), RegistryError> {
        let what = if object.starts_with("sha256:") {
            format!("manifest {}@{object}", r.name())
        } else {
            format!("manifest {}:{object}", r.name())
        };
        let url = format!("{}/manifests/{object}", self.base_url(r));
        let resp = self
            .get(
                r,
                creds,
                &url,
                Some(ACCEPT_MANIFESTS),
                Some(REQUEST_TIMEOUT),
                &what,
            )
            .await?;
        let content_type = header_str(resp.headers(), CONTENT_TYPE.as_str());
        let header_digest = header_str(resp.headers(), "docker-content-digest");
        let body = read_limited(resp, MANIFEST_LIMIT, &what).await?;
        let actual = sha256_digest(&body);
        let expected = if object.starts_with("sha256:") {
            Some(object.to_string())
        } else {
            header_digest.filter(|d| d.starts_with("sha256:"))
        };
        if let Some(expected) = expected {
            if expected != actual {
                return Err(RegistryError::DigestMismatch { expected, actual });
            }
        }
        if let Some(size) = expected_size {
            if size != body.len() as u64 {
                return Err(RegistryError::BadResponse(format!(
                    "{what}: the index says {size} bytes, the manifest has {}",
                    body.len()
                )));
            }
        }
        let media_type = manifest_media_type(content_type.as_deref(), &body)
            .map_err(|e| RegistryError::BadResponse(format!("{what}: {e}")))?;
        let desc = ContentDescriptor {
            media_type,
            digest: actual,
            size: body.len() as u64,
        };
        Ok((desc, body))
    }

    /// A blob read whole (the image config), size and digest verified.
    async fn fetch_small_blob(
        &self,
        r: &Reference,
        creds: Option<&Credentials>,
        desc: &ContentDescriptor,
    ) -> Result<Vec<u8>, RegistryError> {
        let what = format!("blob {} of {}", desc.digest, r.name());
        let url = format!("{}/blobs/{}", self.base_url(r), desc.digest);
        let resp = self
            .get(r, creds, &url, None, Some(REQUEST_TIMEOUT), &what)
            .await?;
        let body = read_limited(resp, desc.size, &what).await?;
        let actual = sha256_digest(&body);
        if actual != desc.digest {
            return Err(RegistryError::DigestMismatch {
                expected: desc.digest.clone(),
                actual,
            });
        }
        if body.len() as u64 != desc.size {
            return Err(RegistryError::BadResponse(format!(
                "{what}: {} bytes, the descriptor says {}",
                body.len(),
                desc.size
            )));
        }
        Ok(body)
    }

    /// A GET with whatever authorization the cache holds (none at first); on a 401, the
    /// challenge's authorization and one more try. Non-success statuses become errors.
    async fn get(
        &self,
        r: &Reference,
        creds: Option<&Credentials>,
        url: &str,
        accept: Option<&str>,
        timeout: Option<Duration>,
        what: &str,
    ) -> Result<Response, RegistryError> {
        let key = CacheKey::new(r.registry(), r.repository(), creds);
        let cached = self.cache().get(&key, Instant::now());
        let resp = self
            .send(url, accept, timeout, cached.as_ref(), what)
            .await?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return check_status(resp, what).await;
        }
        // A first contact, or a token the registry no longer takes: authenticate afresh.
        self.cache().remove(&key);
        let challenges: Vec<Challenge> = resp
            .headers()
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(parse_challenges)
            .collect();
        let (auth, lifetime) = self.authenticate(r, creds, &challenges, what).await?;
        let resp = self.send(url, accept, timeout, Some(&auth), what).await?;
        if matches!(
            resp.status(),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
        ) {
            let detail = error_detail(resp).await;
            return Err(RegistryError::Denied(format!(
                "{what}: {detail} ({})",
                who(creds)
            )));
        }
        self.cache().put(key, auth, lifetime, Instant::now());
        check_status(resp, what).await
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, TokenCache> {
        self.tokens.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn send(
        &self,
        url: &str,
        accept: Option<&str>,
        timeout: Option<Duration>,
        auth: Option<&Authorization>,
        what: &str,
    ) -> Result<Response, RegistryError> {
        let mut req = self.http.get(url);
        if let Some(accept) = accept {
            req = req.header(ACCEPT, accept);
        }
        if let Some(t) = timeout {
            req = req.timeout(t);
        }
        req = match auth {
            Some(Authorization::Bearer(token)) => req.bearer_auth(token),
            Some(Authorization::Basic(c)) => req.basic_auth(&c.username, Some(&c.password)),
            None => req,
        };
        tracing::debug!(url, "registry GET");
        req.send().await.map_err(|e| transport_error(what, &e))
    }

    /// What to send after a 401: a token from the Bearer challenge's realm (Docker's choice
    /// when both are offered), or our credentials for Basic.
    async fn authenticate(
        &self,
        r: &Reference,
        creds: Option<&Credentials>,
        challenges: &[Challenge],
        what: &str,
    ) -> Result<(Authorization, Option<Duration>), RegistryError> {
        let bearer = challenges.iter().find_map(|c| match c {
            Challenge::Bearer { realm, service, .. } => Some((realm, service)),
            Challenge::Basic { .. } => None,
        });
        if let Some((realm, service)) = bearer {
            let (token, lifetime) = self
                .fetch_token(r, creds, realm, service.as_deref(), what)
                .await?;
            return Ok((Authorization::Bearer(token), Some(lifetime)));
        }
        if challenges
            .iter()
            .any(|c| matches!(c, Challenge::Basic { .. }))
        {
            return match creds {
                Some(c) => Ok((Authorization::Basic(c.clone()), None)),
                None => Err(RegistryError::Denied(format!(
                    "{what}: the registry requires authentication and no credentials are configured for {}",
                    r.registry()
                ))),
            };
        }
        Err(RegistryError::Denied(format!(
            "{what}: the registry answered 401 without a challenge we can answer"
        )))
    }

    /// The Docker token flow: GET realm?service=…&scope=repository:<repo>:pull, with Basic
    /// auth when we have credentials.
    async fn fetch_token(
        &self,
        r: &Reference,
        creds: Option<&Credentials>,
        realm: &str,
        service: Option<&str>,
        what: &str,
    ) -> Result<(String, Duration), RegistryError> {
        let mut url = reqwest::Url::parse(realm).map_err(|e| {
            RegistryError::BadResponse(format!("{what}: bad token realm {realm:?}: {e}"))
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(RegistryError::BadResponse(format!(
                "{what}: bad token realm {realm:?}"
            )));
        }
        {
            let mut q = url.query_pairs_mut();
            if let Some(service) = service {
                q.append_pair("service", service);
            }
            q.append_pair("scope", &format!("repository:{}:pull", r.repository()));
        }
        let token_what = format!("{what}: token from {}", url.host_str().unwrap_or(realm));
        let mut req = self.http.get(url).timeout(REQUEST_TIMEOUT);
        if let Some(c) = creds {
            req = req.basic_auth(&c.username, Some(&c.password));
        }
        let resp = req
            .send()
            .await
            .map_err(|e| transport_error(&token_what, &e))?;
        if matches!(
            resp.status(),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
        ) {
            let detail = error_detail(resp).await;
            return Err(RegistryError::Denied(format!(
                "{token_what}: {detail} ({})",
                who(creds)
            )));
        }
        let resp = check_status(resp, &token_what).await?;
        let body = read_limited(resp, SMALL_BODY_LIMIT, &token_what).await?;
        let parsed: TokenResponse = serde_json::from_slice(&body).map_err(|e| {
            RegistryError::BadResponse(format!("{token_what}: unreadable answer: {e}"))
        })?;
        parsed.into_token().ok_or_else(|| {
            RegistryError::BadResponse(format!("{token_what}: the answer holds no token"))
        })
    }
}

fn who(creds: Option<&Credentials>) -> String {
    match creds {
        Some(c) => format!("as user {:?}", c.username),
        None => "anonymously; no credentials are configured".to_string(),
    }
}

fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_string())
}

pub(crate) fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// A manifest's media type: the Content-Type when it names one, else the body's `mediaType`,
/// else guessed from its shape. Schema 1 and unknown types are refused.
pub(crate) fn manifest_media_type(
    content_type: Option<&str>,
    body: &[u8],
) -> Result<String, String> {
    let json: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("unreadable manifest: {e}"))?;
    let schema1 =
        "schema 1 manifests are not supported; push the image again with a current client";
    if json.get("schemaVersion").and_then(|v| v.as_i64()) == Some(1) {
        return Err(schema1.into());
    }
    let declared = content_type
        .map(|t| {
            t.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .filter(|t| {
            !matches!(
                t.as_str(),
                "" | "application/json" | "text/plain" | "application/octet-stream"
            )
        })
        .or_else(|| {
            json.get("mediaType")
                .and_then(|v| v.as_str())
                .map(str::to_string)
        });
    let media_type = match declared {
        Some(t) => t,
        None if json.get("manifests").is_some() => MEDIA_OCI_INDEX.to_string(),
        None if json.get("config").is_some() => MEDIA_OCI_MANIFEST.to_string(),
        None => return Err("neither a manifest nor an index".into()),
    };
    if media_type.starts_with(MEDIA_DOCKER_SCHEMA1_PREFIX) {
        return Err(schema1.into());
    }
    if [
        MEDIA_OCI_INDEX,
        MEDIA_DOCKER_LIST,
        MEDIA_OCI_MANIFEST,
        MEDIA_DOCKER_MANIFEST,
    ]
    .contains(&media_type.as_str())
    {
        Ok(media_type)
    } else {
        Err(format!("unsupported manifest media type {media_type:?}"))
    }
}

/// A reqwest failure: connecting (DNS, TCP, TLS) is `Unreachable`; a bad redirect or request
/// is `BadResponse`; anything later (timeouts, resets, a cut body) is `Transient`.
fn transport_error(what: &str, e: &reqwest::Error) -> RegistryError {
    let msg = format!("{what}: {}", chain(e));
    if e.is_connect() {
        RegistryError::Unreachable(msg)
    } else if e.is_redirect() || e.is_builder() {
        RegistryError::BadResponse(msg)
    } else {
        RegistryError::Transient(msg)
    }
}

/// The error and its sources: reqwest's own message alone rarely says what went wrong.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !out.contains(&s_text) {
            out.push_str(": ");
            out.push_str(&s_text);
        }
        source = s.source();
    }
    out
}

/// Non-success statuses as errors, with the registry's own error code and message.
async fn check_status(resp: Response, what: &str) -> Result<Response, RegistryError> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let detail = error_detail(resp).await;
    let msg = format!("{what}: {detail}");
    Err(match status {
        StatusCode::NOT_FOUND => RegistryError::NotFound(msg),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => RegistryError::Denied(msg),
        StatusCode::TOO_MANY_REQUESTS | StatusCode::REQUEST_TIMEOUT => {
            RegistryError::Transient(msg)
        }
        s if s.is_server_error() => RegistryError::Transient(msg),
        _ => RegistryError::BadResponse(msg),
    })
}

/// "HTTP 404: MANIFEST_UNKNOWN: manifest unknown", from the distribution error body if any.
async fn error_detail(resp: Response) -> String {
    #[derive(serde::Deserialize)]
    struct Errors {
        #[serde(default)]
        errors: Vec<ErrorEntry>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorEntry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    let status = resp.status();
    let body = read_limited(resp, 16 << 10, "").await.unwrap_or_default();
    let described: Vec<String> = serde_json::from_slice::<Errors>(&body)
        .map(|e| {
            e.errors
                .into_iter()
                .map(|e| match (e.code.is_empty(), e.message.is_empty()) {
                    (false, false) => format!("{}: {}", e.code, e.message),
                    (false, true) => e.code,
                    _ => e.message,
                })
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();
    if described.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {}", described.join("; "))
    }
}

/// A body read whole, refusing more than `limit` bytes.
async fn read_limited(
    mut resp: Response,
    limit: u64,
    what: &str,
) -> Result<Vec<u8>, RegistryError> {
    let too_big = || RegistryError::BadResponse(format!("{what}: more than {limit} bytes"));
    if resp.content_length().is_some_and(|l| l > limit) {
        return Err(too_big());
    }
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| transport_error(what, &e))? {
        if out.len() as u64 + chunk.len() as u64 > limit {
            return Err(too_big());
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

type ChunkStream = Pin<Box<dyn Stream<Item = Result<Bytes, RegistryError>> + Send>>;

struct Verifying {
    inner: ChunkStream,
    hasher: Sha256,
    seen: u64,
    desc: ContentDescriptor,
}

/// Passes chunks through while hashing and counting them; ends with an error instead of a
/// clean end when the content is longer or shorter than the descriptor or hashes otherwise.
pub(crate) fn verify_stream(
    inner: ChunkStream,
    desc: ContentDescriptor,
) -> impl Stream<Item = Result<Bytes, RegistryError>> + Send {
    let state = Verifying {
        inner,
        hasher: Sha256::new(),
        seen: 0,
        desc,
    };
    futures_util::stream::unfold(Some(state), |state| async move {
        let mut st = state?;
        match st.inner.next().await {
            Some(Ok(chunk)) => {
                st.seen += chunk.len() as u64;
                if st.seen > st.desc.size {
                    let e = RegistryError::BadResponse(format!(
                        "blob {}: more than the descriptor's {} bytes",
                        st.desc.digest, st.desc.size
                    ));
                    return Some((Err(e), None));
                }
                st.hasher.update(&chunk);
                Some((Ok(chunk), Some(st)))
            }
            Some(Err(e)) => Some((Err(e), None)),
            None => {
                let actual = format!("sha256:{}", hex::encode(st.hasher.finalize()));
                if actual != st.desc.digest {
                    let e = RegistryError::DigestMismatch {
                        expected: st.desc.digest,
                        actual,
                    };
                    Some((Err(e), None))
                } else if st.seen != st.desc.size {
                    let e = RegistryError::BadResponse(format!(
                        "blob {}: {} bytes, the descriptor says {}",
                        st.desc.digest, st.seen, st.desc.size
                    ));
                    Some((Err(e), None))
                } else {
                    None
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(data: &[u8]) -> ContentDescriptor {
        ContentDescriptor {
            media_type: "application/octet-stream".into(),
            digest: sha256_digest(data),
            size: data.len() as u64,
        }
    }

    async fn collect(
        chunks: &[&'static str],
        d: ContentDescriptor,
    ) -> Vec<Result<Bytes, RegistryError>> {
        let chunks: Vec<Result<Bytes, RegistryError>> = chunks
            .iter()
            .map(|c| Ok(Bytes::from_static(c.as_bytes())))
            .collect();
        let inner: ChunkStream = Box::pin(futures_util::stream::iter(chunks));
        verify_stream(inner, d).collect().await
    }

    #[tokio::test]
    async fn verified_streams_pass_good_content_and_end_bad_content_with_an_error() {
        let good = collect(&["hello ", "world"], desc(b"hello world")).await;
        assert_eq!(good.len(), 2);
        assert!(good.iter().all(|c| c.is_ok()));

        let bad = collect(&["hello ", "WORLD"], desc(b"hello world")).await;
        assert!(matches!(
            bad.last(),
            Some(Err(RegistryError::DigestMismatch { .. }))
        ));

        let long = collect(&["hello ", "world!!"], desc(b"hello world")).await;
        assert!(matches!(
            long.last(),
            Some(Err(RegistryError::BadResponse(_)))
        ));
        assert_eq!(long.len(), 2);

        let mut d = desc(b"hello world");
        d.size = 20;
        let short = collect(&["hello world"], d).await;
        assert!(matches!(
            short.last(),
            Some(Err(RegistryError::BadResponse(_)))
        ));
    }

    #[test]
    fn manifest_media_types() {
        let manifest = br#"{"schemaVersion":2,"config":{},"layers":[]}"#;
        let index = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert_eq!(
            manifest_media_type(
                Some("application/vnd.oci.image.manifest.v1+json; charset=utf-8"),
                manifest
            )
            .unwrap(),
            MEDIA_OCI_MANIFEST
        );
        assert_eq!(
            manifest_media_type(Some(MEDIA_DOCKER_LIST), index).unwrap(),
            MEDIA_DOCKER_LIST
        );
        assert_eq!(
            manifest_media_type(Some("application/json"), index).unwrap(),
            MEDIA_OCI_INDEX
        );
        assert_eq!(
            manifest_media_type(None, manifest).unwrap(),
            MEDIA_OCI_MANIFEST
        );
        let with_type = br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{}}"#;
        assert_eq!(
            manifest_media_type(None, with_type).unwrap(),
            MEDIA_DOCKER_MANIFEST
        );
        let schema1 = br#"{"schemaVersion":1,"name":"x","fsLayers":[]}"#;
        assert!(manifest_media_type(None, schema1)
            .unwrap_err()
            .contains("schema 1"));
        assert!(manifest_media_type(
            Some("application/vnd.docker.distribution.manifest.v1+prettyjws"),
            manifest
        )
        .unwrap_err()
        .contains("schema 1"));
        assert!(manifest_media_type(Some("text/html"), manifest).is_err());
        assert!(manifest_media_type(None, b"<html>").is_err());
        assert!(manifest_media_type(None, b"{}").is_err());
    }

    #[test]
    fn transient_is_only_transient() {
        assert!(RegistryError::Transient("x".into()).is_transient());
        assert!(!RegistryError::Unreachable("x".into()).is_transient());
        assert!(!RegistryError::NotFound("x".into()).is_transient());
    }
}
