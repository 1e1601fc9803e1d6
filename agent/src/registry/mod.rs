//! An OCI distribution (registry) client: resolves an image reference to its manifest and
//! config, and streams layers, verifying every digest. The pure parts are `reference`
//! (parsing and normalisation) and `auth` (challenges, tokens, redaction); `client` does the
//! HTTP. Index and manifest parsing is `runtime::image`'s.
//!
//! What it must not do: log or print a password or token, or send credentials to another host
//! than the registry's own (a blob redirect to a storage host drops the Authorization header).

pub mod auth;
pub mod client;
pub mod reference;

use std::collections::HashMap;

pub use crate::runtime::image::ContentDescriptor;
pub use auth::Credentials;
pub use client::RegistryClient;
pub use reference::{Reference, ReferenceError};

/// How to reach registries.
#[derive(Debug, Clone, Default)]
pub struct RegistryConfig {
    /// "host[:port]" registries spoken to over plain HTTP (everything else is HTTPS).
    pub insecure: Vec<String>,
    /// Credentials by registry host ("host[:port]"; Docker Hub is "docker.io").
    pub credentials: HashMap<String, Credentials>,
}

/// What a reference names on its registry, down to the host platform's image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedRemote {
    /// What the tag or digest names: an index (manifest list) or a manifest.
    pub top: ContentDescriptor,
    pub top_bytes: Vec<u8>,
    /// The manifest for linux/<host arch> (the same as `top` when `top` is a manifest).
    pub manifest: ContentDescriptor,
    pub manifest_bytes: Vec<u8>,
    pub config: ContentDescriptor,
    pub config_bytes: Vec<u8>,
    /// Bottom first.
    pub layers: Vec<ContentDescriptor>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// Connection, DNS or TLS failure.
    #[error("registry unreachable: {0}")]
    Unreachable(String),
    /// Unknown repository, tag or digest.
    #[error("not found: {0}")]
    NotFound(String),
    /// 401/403 after trying the credentials we have.
    #[error("access denied: {0}")]
    Denied(String),
    #[error("content does not match its digest: expected {expected}, got {actual}")]
    DigestMismatch { expected: String, actual: String },
    /// Malformed JSON, unsupported media type, no manifest for the platform, schema 1.
    #[error("bad registry response: {0}")]
    BadResponse(String),
    /// 429, 5xx, a connection reset mid-body: worth a retry.
    #[error("transient registry error: {0}")]
    Transient(String),
}

impl RegistryError {
    pub fn is_transient(&self) -> bool {
        matches!(self, RegistryError::Transient(_))
    }
}
