//! Image metadata: index and manifest selection, the image config, and the snapshot chain id.
//! Pure functions over bytes read from containerd's content store.

use serde::Deserialize;
use sha2::{Digest, Sha256};

pub const MEDIA_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// The parts of an image's config that shape a container's process.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: String,
    pub user: String,
}

/// An image resolved down to what a container needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedImage {
    pub config: ImageConfig,
    /// The chain id of the top layer: the parent snapshot of a container's rootfs.
    pub chain_id: String,
    /// What the image's name points to (its manifest or index digest), as ECS's imageDigest.
    pub digest: String,
}

#[derive(Deserialize)]
struct Index {
    manifests: Vec<IndexEntry>,
}

#[derive(Deserialize)]
struct IndexEntry {
    digest: String,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(Deserialize)]
struct Platform {
    architecture: String,
    os: String,
}

#[derive(Deserialize)]
struct Manifest {
    config: Descriptor,
}

#[derive(Deserialize)]
struct Descriptor {
    digest: String,
}

#[derive(Deserialize)]
struct ConfigFile {
    #[serde(default)]
    config: Option<RawConfig>,
    rootfs: RootFs,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct RawConfig {
    #[serde(default)]
    entrypoint: Option<Vec<String>>,
    #[serde(default)]
    cmd: Option<Vec<String>>,
    #[serde(default)]
    env: Option<Vec<String>>,
    #[serde(default)]
    working_dir: Option<String>,
    #[serde(default)]
    user: Option<String>,
}

#[derive(Deserialize)]
struct RootFs {
    diff_ids: Vec<String>,
}

/// A content descriptor (OCI image spec): what to fetch, how big it is, what it must hash to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContentDescriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
}

/// An image manifest's config and layers, in order (bottom first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestParts {
    pub config: ContentDescriptor,
    pub layers: Vec<ContentDescriptor>,
}

#[derive(Deserialize)]
struct FullManifest {
    config: ContentDescriptor,
    #[serde(default)]
    layers: Vec<ContentDescriptor>,
}

#[derive(Deserialize)]
struct FullIndex {
    manifests: Vec<FullIndexEntry>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FullIndexEntry {
    media_type: String,
    digest: String,
    size: u64,
}

/// The config and layers of an image manifest (OCI or Docker schema 2).
pub fn manifest_parts(manifest: &[u8]) -> Result<ManifestParts, String> {
    let m: FullManifest =
        serde_json::from_slice(manifest).map_err(|e| format!("unreadable image manifest: {e}"))?;
    if m.layers.is_empty() {
        return Err("the image manifest lists no layers".into());
    }
    Ok(ManifestParts {
        config: m.config,
        layers: m.layers,
    })
}

/// [`select_manifest`], returning the whole descriptor (media type and size too).
pub fn select_manifest_descriptor(index: &[u8], arch: &str) -> Result<ContentDescriptor, String> {
    let digest = select_manifest(index, arch)?;
    let index: FullIndex =
        serde_json::from_slice(index).map_err(|e| format!("unreadable image index: {e}"))?;
    index
        .manifests
        .into_iter()
        .find(|m| m.digest == digest)
        .map(|m| ContentDescriptor {
            media_type: m.media_type,
            digest: m.digest,
            size: m.size,
        })
        .ok_or_else(|| format!("the image index has no manifest {digest}"))
}

/// The layers' uncompressed digests (rootfs.diff_ids), bottom first.
pub fn diff_ids(config: &[u8]) -> Result<Vec<String>, String> {
    let c: ConfigFile =
        serde_json::from_slice(config).map_err(|e| format!("unreadable image config: {e}"))?;
    Ok(c.rootfs.diff_ids)
}

pub fn is_index(media_type: &str) -> bool {
    media_type == MEDIA_OCI_INDEX || media_type == MEDIA_DOCKER_LIST
}

/// The GOARCH name of this host, as image platforms spell it.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        other => other,
    }
}

/// Picks the manifest for linux/`arch` from an index; an entry without a platform is taken
/// only when it is the sole entry.
pub fn select_manifest(index: &[u8], arch: &str) -> Result<String, String> {
    let index: Index =
        serde_json::from_slice(index).map_err(|e| format!("unreadable image index: {e}"))?;
    if let Some(m) = index.manifests.iter().find(|m| {
        m.platform
            .as_ref()
            .is_some_and(|p| p.os == "linux" && p.architecture == arch)
    }) {
        return Ok(m.digest.clone());
    }
    match index.manifests.as_slice() {
        [only] if only.platform.is_none() => Ok(only.digest.clone()),
        _ => Err(format!("the image has no manifest for linux/{arch}")),
    }
}

pub fn config_digest(manifest: &[u8]) -> Result<String, String> {
    let m: Manifest =
        serde_json::from_slice(manifest).map_err(|e| format!("unreadable image manifest: {e}"))?;
    Ok(m.config.digest)
}

pub fn parse_config(config: &[u8]) -> Result<ResolvedImage, String> {
    let c: ConfigFile =
        serde_json::from_slice(config).map_err(|e| format!("unreadable image config: {e}"))?;
    let raw = c.config.unwrap_or_default();
    Ok(ResolvedImage {
        config: ImageConfig {
            entrypoint: raw.entrypoint.unwrap_or_default(),
            cmd: raw.cmd.unwrap_or_default(),
            env: raw.env.unwrap_or_default(),
            working_dir: raw.working_dir.unwrap_or_default(),
            user: raw.user.unwrap_or_default(),
        },
        chain_id: chain_id(&c.rootfs.diff_ids).ok_or("the image has no layers")?,
        // The config does not know what names the image; `resolve` sets it.
        digest: String::new(),
    })
}

/// OCI image spec: ChainID(L0) = DiffID(L0); ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln)).
pub fn chain_id(diff_ids: &[String]) -> Option<String> {
    let mut ids = diff_ids.iter();
    let mut chain = ids.next()?.clone();
    for diff in ids {
        let digest = Sha256::digest(format!("{chain} {diff}").as_bytes());
        chain = format!("sha256:{}", hex::encode(digest));
    }
    Some(chain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_id_of_one_layer_is_its_diff_id() {
        assert_eq!(chain_id(&["sha256:aa".into()]).unwrap(), "sha256:aa");
        assert!(chain_id(&[]).is_none());
    }

    #[test]
    fn chain_id_of_two_layers() {
        // sha256("sha256:aa sha256:bb")
        let expected = format!(
            "sha256:{}",
            hex::encode(Sha256::digest(b"sha256:aa sha256:bb"))
        );
        assert_eq!(
            chain_id(&["sha256:aa".into(), "sha256:bb".into()]).unwrap(),
            expected
        );
    }

    #[test]
    fn selects_the_host_platform() {
        let index = br#"{"manifests":[
            {"digest":"sha256:arm","platform":{"architecture":"arm64","os":"linux"}},
            {"digest":"sha256:amd","platform":{"architecture":"amd64","os":"linux"}}]}"#;
        assert_eq!(select_manifest(index, "amd64").unwrap(), "sha256:amd");
        assert!(select_manifest(index, "s390x").is_err());
        let single = br#"{"manifests":[{"digest":"sha256:x"}]}"#;
        assert_eq!(select_manifest(single, "amd64").unwrap(), "sha256:x");
    }

    #[test]
    fn manifests_and_indexes_give_whole_descriptors() {
        let manifest = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
            "config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:c","size":7},
            "layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:l0","size":10},
                      {"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:l1","size":20}]}"#;
        let parts = manifest_parts(manifest).unwrap();
        assert_eq!(parts.config.digest, "sha256:c");
        assert_eq!(parts.config.size, 7);
        assert_eq!(
            parts
                .layers
                .iter()
                .map(|l| l.digest.as_str())
                .collect::<Vec<_>>(),
            ["sha256:l0", "sha256:l1"]
        );
        assert!(
            manifest_parts(br#"{"config":{"mediaType":"x","digest":"sha256:c","size":1}}"#)
                .is_err()
        );
        let index = br#"{"manifests":[
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:arm","size":5,"platform":{"architecture":"arm64","os":"linux"}},
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:amd","size":6,"platform":{"architecture":"amd64","os":"linux"}}]}"#;
        let d = select_manifest_descriptor(index, "amd64").unwrap();
        assert_eq!((d.digest.as_str(), d.size), ("sha256:amd", 6));
        let cfg = br#"{"rootfs":{"type":"layers","diff_ids":["sha256:a","sha256:b"]}}"#;
        assert_eq!(diff_ids(cfg).unwrap(), ["sha256:a", "sha256:b"]);
    }

    #[test]
    fn parses_config_with_missing_fields() {
        let cfg = br#"{"config":{"Cmd":["/bin/sh"],"Env":["PATH=/bin"]},"rootfs":{"type":"layers","diff_ids":["sha256:aa"]}}"#;
        let r = parse_config(cfg).unwrap();
        assert_eq!(r.config.cmd, ["/bin/sh"]);
        assert!(r.config.entrypoint.is_empty());
        assert_eq!(r.chain_id, "sha256:aa");
        assert!(parse_config(b"{}").is_err());
    }
}
