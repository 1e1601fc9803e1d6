//! Getting a container's image onto the host before it is created: the pull policy (ECS's
//! ECS_IMAGE_PULL_BEHAVIOR, pure), one download shared by every task that needs the image at
//! the same time, retries of what is worth retrying, and the reason a task shows when it fails.
//!
//! The registry is `crate::registry`'s; storing into containerd is `runtime::pull`'s. This
//! module decides and coordinates; the engine only asks [`ImageProvider::ensure`].

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::{BoxFuture, FutureExt, Shared};
use futures_util::StreamExt;
use tracing::{info, warn};

use crate::registry::{Credentials, Reference, RegistryClient, RegistryError, ResolvedRemote};
use crate::runtime::containerd::Containerd;
use crate::runtime::image::ContentDescriptor;
use crate::runtime::pull::{BlobSource, PullPlan, PullProgress, PullStats};
use crate::runtime::Runtime;

/// ECS_IMAGE_PULL_BEHAVIOR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PullBehavior {
    /// Pull every time; if the pull fails and the image is cached, use the cached one.
    #[default]
    Default,
    /// Pull every time; a failed pull fails the task.
    Always,
    /// Pull only if this agent has not pulled the image before (or it was removed since).
    Once,
    /// Use the cached image if there is one; pull only when there is none.
    PreferCached,
}

impl PullBehavior {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "default" => Some(Self::Default),
            "always" => Some(Self::Always),
            "once" => Some(Self::Once),
            "prefer-cached" => Some(Self::PreferCached),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Default => "default",
            Self::Always => "always",
            Self::Once => "once",
            Self::PreferCached => "prefer-cached",
        }
    }
}

/// What to do for one container's image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    UseCached,
    /// Pull; when it fails, fall back to the cached image if `fallback`.
    Pull {
        fallback: bool,
    },
}

/// The pull policy. `present`: containerd has the image; `pulled_before`: this agent pulled it.
pub fn decide(behavior: PullBehavior, present: bool, pulled_before: bool) -> Decision {
    match behavior {
        PullBehavior::Default => Decision::Pull { fallback: present },
        PullBehavior::Always => Decision::Pull { fallback: false },
        PullBehavior::Once if present && pulled_before => Decision::UseCached,
        PullBehavior::Once => Decision::Pull { fallback: false },
        PullBehavior::PreferCached if present => Decision::UseCached,
        PullBehavior::PreferCached => Decision::Pull { fallback: false },
    }
}

/// Why an image could not be had: the text after "CannotPullContainerError: ".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PullError(pub String);

/// What `ensure` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ensured {
    /// When the pull began and ended (ms since the epoch); None when the cached image was used.
    pub pulled: Option<(u64, u64)>,
    /// A line for the container's report and the log ("pulled 3 layers, 2.1 MB in 0.4 s").
    pub summary: String,
}

/// What the engine needs: the image of a container, present in containerd.
pub trait ImageProvider: Send + Sync + 'static {
    /// `auth`: the task's login for the image's registry (repositoryCredentials), which takes
    /// the place of the agent's own for that registry.
    fn ensure<'a>(
        &'a self,
        image: &'a str,
        auth: Option<&'a Credentials>,
    ) -> BoxFuture<'a, Result<Ensured, PullError>>;
}

/// Images that must already be in containerd (no registry): the engine's tests, and hosts that
/// import their images.
pub struct PresentOnly<R: Runtime>(pub Arc<R>);

impl<R: Runtime> ImageProvider for PresentOnly<R> {
    fn ensure<'a>(
        &'a self,
        image: &'a str,
        _auth: Option<&'a Credentials>,
    ) -> BoxFuture<'a, Result<Ensured, PullError>> {
        async move {
            self.0
                .resolve_image(image)
                .await
                .map(|_digest| Ensured {
                    pulled: None,
                    summary: format!("using {image} from containerd"),
                })
                .map_err(|e| PullError(e.to_string()))
        }
        .boxed()
    }
}

/// `[images]` of the agent's config, as the provider needs it.
#[derive(Debug, Clone)]
pub struct PullSettings {
    pub behavior: PullBehavior,
    /// Layers downloaded at once, per image.
    pub parallel_layers: usize,
    /// Attempts of a pull that fails with a transient error.
    pub attempts: u32,
}

type SharedPull = Shared<BoxFuture<'static, Result<PullStats, PullError>>>;

/// Pulls from registries into containerd.
pub struct RegistryImages {
    client: Arc<RegistryClient>,
    containerd: Arc<Containerd>,
    settings: PullSettings,
    /// Pulls under way by image name: a second task needing the image waits for the first.
    in_flight: Mutex<HashMap<String, SharedPull>>,
    /// Images this agent has pulled since it started (`once`).
    pulled: Mutex<HashSet<String>>,
}

impl RegistryImages {
    pub fn new(
        client: RegistryClient,
        containerd: Arc<Containerd>,
        settings: PullSettings,
    ) -> Arc<Self> {
        Arc::new(Self {
            client: Arc::new(client),
            containerd,
            settings,
            in_flight: Mutex::new(HashMap::new()),
            pulled: Mutex::new(HashSet::new()),
        })
    }

    /// The one pull under `key` under way, or a new one.
    fn shared_pull(
        &self,
        reference: &Reference,
        key: &str,
        creds: Option<Credentials>,
    ) -> SharedPull {
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(pull) = in_flight.get(key) {
            return pull.clone();
        }
        let pull = pull_with_retries(
            Arc::clone(&self.client),
            Arc::clone(&self.containerd),
            reference.clone(),
            creds,
            self.settings.clone(),
        )
        .boxed()
        .shared();
        in_flight.insert(key.to_owned(), pull.clone());
        pull
    }

    fn done(&self, name: &str) {
        self.in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
    }
}

impl ImageProvider for RegistryImages {
    fn ensure<'a>(
        &'a self,
        image: &'a str,
        auth: Option<&'a Credentials>,
    ) -> BoxFuture<'a, Result<Ensured, PullError>> {
        async move {
            let reference =
                Reference::parse(image).map_err(|e| PullError(format!("{image}: {e}")))?;
            let name = reference.canonical();
            let present = self
                .containerd
                .image_present(&name)
                .await
                .map_err(|e| PullError(format!("{name}: {e}")))?;
            let pulled_before = self
                .pulled
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(&name);
            let fallback = match decide(self.settings.behavior, present, pulled_before) {
                Decision::UseCached => {
                    return Ok(Ensured {
                        pulled: None,
                        summary: format!("using the cached {name}"),
                    })
                }
                Decision::Pull { fallback } => fallback,
            };
            let started = now_ms();
            let clock = Instant::now();
            let creds = auth.cloned();
            let key = pull_key(&name, creds.as_ref());
            let result = self.shared_pull(&reference, &key, creds).await;
            self.done(&key);
            match result {
                Ok(stats) => {
                    self.pulled
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(name.clone());
                    Ok(Ensured {
                        pulled: Some((started, now_ms())),
                        summary: format!(
                            "pulled {name}: {} layers fetched ({} already present), {:.1} MB in {:.1} s",
                            stats.layers_fetched,
                            stats.layers_present,
                            stats.bytes_fetched as f64 / 1e6,
                            clock.elapsed().as_secs_f64()
                        ),
                    })
                }
                Err(e) if fallback => {
                    warn!(image = %name, error = %e, "pull failed; using the cached image");
                    Ok(Ensured {
                        pulled: None,
                        summary: format!("pull failed ({e}); using the cached {name}"),
                    })
                }
                Err(e) => Err(e),
            }
        }
        .boxed()
    }
}

/// Tasks share a download only when they use the same login: a task must not get an image
/// through another task's credentials it does not have itself.
fn pull_key(name: &str, creds: Option<&Credentials>) -> String {
    match creds {
        Some(c) => format!("{name} as {}", c.username),
        None => name.to_owned(),
    }
}

async fn pull_with_retries(
    client: Arc<RegistryClient>,
    containerd: Arc<Containerd>,
    reference: Reference,
    creds: Option<Credentials>,
    settings: PullSettings,
) -> Result<PullStats, PullError> {
    let name = reference.canonical();
    let mut delay = Duration::from_millis(500);
    let mut attempt = 1;
    loop {
        match pull_once(&client, &containerd, &reference, creds.as_ref(), &settings).await {
            Ok(stats) => return Ok(stats),
            Err((e, transient)) if transient && attempt < settings.attempts.max(1) => {
                warn!(image = %name, attempt, error = %e, "pull failed; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
                attempt += 1;
            }
            Err((e, _)) => return Err(e),
        }
    }
}

/// One attempt; the error says whether another is worth it.
async fn pull_once(
    client: &RegistryClient,
    containerd: &Containerd,
    reference: &Reference,
    creds: Option<&Credentials>,
    settings: &PullSettings,
) -> Result<PullStats, (PullError, bool)> {
    let name = reference.canonical();
    let remote = client
        .resolve(reference, creds)
        .await
        .map_err(|e| registry_error(&name, &e))?;
    info!(image = %name, digest = %remote.top.digest, layers = remote.layers.len(), "pulling");
    let plan = plan(&name, remote);
    let source = RegistrySource {
        client,
        reference,
        creds,
    };
    let total_layers = plan.layers.len();
    let progress = |p: PullProgress| {
        if p.bytes == p.total {
            info!(image = %name, layer = p.layer + 1, layers = total_layers, bytes = p.total,
                skipped = p.skipped, "layer done");
        }
    };
    containerd
        .store_image(&plan, &source, settings.parallel_layers.max(1), &progress)
        .await
        .map_err(|e| {
            // A failed blob fetch is reported through the runtime error's text; connection
            // troubles and timeouts are worth another attempt, containerd's refusals are not.
            let transient = matches!(
                e,
                crate::runtime::RuntimeError::Timeout { .. } | crate::runtime::RuntimeError::Io(_)
            );
            (PullError(format!("{name}: {e}")), transient)
        })
}

fn plan(name: &str, r: ResolvedRemote) -> PullPlan {
    PullPlan {
        name: name.to_owned(),
        labels: HashMap::from([(LABEL_PULLED_AT.to_owned(), now_ms().to_string())]),
        top: r.top,
        top_bytes: r.top_bytes,
        manifest: r.manifest,
        manifest_bytes: r.manifest_bytes,
        config: r.config,
        config_bytes: r.config_bytes,
        layers: r.layers,
    }
}

/// A registry that cannot be reached may be restarting: worth another attempt, as a 5xx is.
fn registry_error(name: &str, e: &RegistryError) -> (PullError, bool) {
    let transient = e.is_transient() || matches!(e, RegistryError::Unreachable(_));
    (PullError(format!("{name}: {e}")), transient)
}

/// Blobs of one image, from its registry.
struct RegistrySource<'a> {
    client: &'a RegistryClient,
    reference: &'a Reference,
    creds: Option<&'a Credentials>,
}

impl BlobSource for RegistrySource<'_> {
    async fn fetch(
        &self,
        desc: &ContentDescriptor,
    ) -> Result<
        std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<bytes::Bytes, String>> + Send>>,
        String,
    > {
        let stream = self
            .client
            .blob(self.reference, desc, self.creds)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Box::pin(stream.map(|r| r.map_err(|e| e.to_string()))))
    }
}

/// An image record as cleanup sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedImage {
    pub name: String,
    /// Pulled by this agent (labelled so): only those are ever removed.
    pub pulled_by_agent: bool,
    /// When it was last pulled (ms since the epoch).
    pub pulled_at_ms: u64,
}

/// ECS's image cleanup knobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CleanupPolicy {
    /// ECS_IMAGE_MINIMUM_CLEANUP_AGE.
    pub minimum_age_ms: u64,
    /// ECS_NUM_IMAGES_DELETE_PER_CYCLE.
    pub per_cycle: usize,
    /// Never removed (ECS_EXCLUDE_UNTRACKED_IMAGE's list): canonical names.
    pub pinned: HashSet<String>,
}

/// Which images one cleanup cycle removes: pulled by the agent, used by no task that is not
/// finished, not pinned, older than the minimum age; the oldest first, at most `per_cycle`.
pub fn cleanup_candidates(
    images: &[CachedImage],
    in_use: &HashSet<String>,
    policy: &CleanupPolicy,
    now_ms: u64,
) -> Vec<String> {
    let mut old: Vec<&CachedImage> = images
        .iter()
        .filter(|i| i.pulled_by_agent)
        .filter(|i| !in_use.contains(&i.name) && !policy.pinned.contains(&i.name))
        .filter(|i| now_ms.saturating_sub(i.pulled_at_ms) >= policy.minimum_age_ms)
        .collect();
    old.sort_by_key(|i| (i.pulled_at_ms, i.name.clone()));
    old.into_iter()
        .take(policy.per_cycle)
        .map(|i| i.name.clone())
        .collect()
}

/// The image cleanup loop: every `interval`, removes what [`cleanup_candidates`] picks.
/// `in_use` gives the canonical names of the images of every task not finished.
pub async fn run_cleanup(
    containerd: Arc<Containerd>,
    policy: CleanupPolicy,
    interval: Duration,
    in_use: impl Fn() -> Option<HashSet<String>> + Send + 'static,
) {
    let mut every = tokio::time::interval(interval);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await;
    loop {
        every.tick().await;
        let Some(in_use) = in_use() else { continue };
        let images = match containerd.list_images().await {
            Ok(images) => images,
            Err(e) => {
                warn!(error = %e, "image cleanup: cannot list images");
                continue;
            }
        };
        let cached: Vec<CachedImage> = images
            .iter()
            .map(|i| CachedImage {
                name: i.name.clone(),
                pulled_by_agent: i.labels.contains_key(LABEL_PULLED_AT),
                pulled_at_ms: i
                    .labels
                    .get(LABEL_PULLED_AT)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
            })
            .collect();
        for name in cleanup_candidates(&cached, &in_use, &policy, now_ms()) {
            match containerd.remove_image(&name).await {
                Ok(()) => info!(image = %name, "removed an unused image"),
                Err(e) => warn!(image = %name, error = %e, "image cleanup: cannot remove"),
            }
        }
    }
}

/// The image record label saying when this agent last pulled the image (ms since the epoch):
/// only images with it are ever cleaned up.
pub const LABEL_PULLED_AT: &str = "io.berth.pulled-at";

/// The canonical name of `image` as its record is named ("busybox" ->
/// "docker.io/library/busybox:latest"); the name itself when it does not parse.
pub fn canonical_name(image: &str) -> String {
    Reference::parse(image)
        .map(|r| r.canonical())
        .unwrap_or_else(|_| image.to_owned())
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleanup_takes_only_old_unused_unpinned_images_the_agent_pulled_oldest_first() {
        let image = |name: &str, by_agent: bool, at: u64| CachedImage {
            name: name.into(),
            pulled_by_agent: by_agent,
            pulled_at_ms: at,
        };
        let images = [
            image("a", true, 100),
            image("b", true, 50),
            image("in-use", true, 10),
            image("pinned", true, 10),
            image("imported", false, 10),
            image("young", true, 950),
            image("c", true, 200),
        ];
        let in_use: HashSet<String> = ["in-use".to_string()].into();
        let policy = CleanupPolicy {
            minimum_age_ms: 100,
            per_cycle: 2,
            pinned: ["pinned".to_string()].into(),
        };
        assert_eq!(
            cleanup_candidates(&images, &in_use, &policy, 1000),
            ["b", "a"]
        );
        let all = CleanupPolicy {
            per_cycle: 10,
            ..policy
        };
        assert_eq!(
            cleanup_candidates(&images, &in_use, &all, 1000),
            ["b", "a", "c"]
        );
        assert!(cleanup_candidates(&images, &in_use, &all, 100).is_empty());
    }

    #[test]
    fn the_pull_policy_is_ecs_image_pull_behavior() {
        use Decision::*;
        use PullBehavior::*;
        // (behavior, present, pulled before) -> decision
        let table = [
            (Default, false, false, Pull { fallback: false }),
            (Default, true, false, Pull { fallback: true }),
            (Default, true, true, Pull { fallback: true }),
            (Always, true, true, Pull { fallback: false }),
            (Always, false, false, Pull { fallback: false }),
            (Once, true, true, UseCached),
            (Once, true, false, Pull { fallback: false }),
            (Once, false, true, Pull { fallback: false }),
            (PreferCached, true, false, UseCached),
            (PreferCached, false, false, Pull { fallback: false }),
        ];
        for (behavior, present, before, want) in table {
            assert_eq!(
                decide(behavior, present, before),
                want,
                "{behavior:?} present={present} pulled_before={before}"
            );
        }
        for b in [Default, Always, Once, PreferCached] {
            assert_eq!(PullBehavior::parse(b.as_str()), Some(b));
        }
        assert_eq!(PullBehavior::parse("sometimes"), None);
    }
}
