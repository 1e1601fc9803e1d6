//! Image references, parsed and normalised as Docker and containerd do
//! (distribution's `ParseNormalizedNamed`, then containerd's `ParseDockerRef`).

use std::fmt;
use std::str::FromStr;

/// Docker Hub's name in references, and the host its registry API answers on.
pub const DOCKER_HUB: &str = "docker.io";
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";
const LEGACY_DOCKER_HUB: &str = "index.docker.io";
const DEFAULT_TAG: &str = "latest";
const MAX_NAME_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;

/// A fully qualified image reference: `registry/repository[:tag][@digest]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid image reference {reference:?}: {reason}")]
pub struct ReferenceError {
    pub reference: String,
    pub reason: String,
}

impl Reference {
    pub fn parse(s: &str) -> Result<Self, ReferenceError> {
        let fail = |reason: &str| ReferenceError {
            reference: s.to_string(),
            reason: reason.to_string(),
        };
        if s.is_empty() {
            return Err(fail("the reference is empty"));
        }
        if s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(fail(
                "a 64-character hexadecimal string is an image id, not a reference",
            ));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((rest, digest)) => {
                validate_digest(digest).map_err(|e| fail(&e))?;
                (rest, Some(digest.to_string()))
            }
            None => (s, None),
        };
        // A ':' after the last '/' starts the tag; one before it is a registry port.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].find(':') {
            Some(i) => {
                let tag = &rest[last_slash + i + 1..];
                validate_tag(tag).map_err(|e| fail(&e))?;
                (&rest[..last_slash + i], Some(tag.to_string()))
            }
            None => (rest, None),
        };
        if name.is_empty() {
            return Err(fail("the repository name is empty"));
        }
        let (registry, repository) = split_registry(name);
        validate_registry(registry).map_err(|e| fail(&e))?;
        validate_repository(repository).map_err(|e| fail(&e))?;
        let registry = if registry == LEGACY_DOCKER_HUB {
            DOCKER_HUB
        } else {
            registry
        };
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository.to_string()
        };
        if registry.len() + 1 + repository.len() > MAX_NAME_LEN {
            return Err(fail("the name is longer than 255 characters"));
        }
        let tag = match (&tag, &digest) {
            (None, None) => Some(DEFAULT_TAG.to_string()),
            _ => tag,
        };
        Ok(Reference {
            registry: registry.to_string(),
            repository,
            tag,
            digest,
        })
    }

    /// The registry as named in the reference, `host[:port]` (`docker.io` for Docker Hub).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The host (and port) the registry's HTTP API answers on.
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    /// The repository path, e.g. `library/busybox`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag; `latest` when the reference names neither tag nor digest.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// What to ask the registry for: the digest when there is one, else the tag.
    pub fn object(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or(DEFAULT_TAG)
    }

    /// `registry/repository`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The fully qualified reference, as containerd names its image records
    /// (`ParseDockerRef`): with a digest, the tag is dropped.
    pub fn canonical(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => format!("{}@{d}", self.name()),
            (None, Some(t)) => format!("{}:{t}", self.name()),
            (None, None) => self.name(),
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.canonical())
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

/// distribution's `splitDockerDomain`: the first component is a registry when it has a '.' or
/// a ':', is `localhost`, or has an uppercase letter (which a repository may not).
fn split_registry(name: &str) -> (&str, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            (first, rest)
        }
        _ => (DOCKER_HUB, name),
    }
}

fn validate_registry(registry: &str) -> Result<(), String> {
    let bad = || format!("{registry:?} is not a valid registry host");
    let (host, port) = if let Some(rest) = registry.strip_prefix('[') {
        // An IPv6 literal: [addr] or [addr]:port.
        let (addr, after) = rest.split_once(']').ok_or_else(bad)?;
        if addr.is_empty() || !addr.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return Err(bad());
        }
        match after {
            "" => return Ok(()),
            _ => (
                "ipv6",
                Some(after.strip_prefix(':').ok_or_else(bad)?.to_string()),
            ),
        }
    } else {
        match registry.split_once(':') {
            Some((h, p)) => (h, Some(p.to_string())),
            None => (registry, None),
        }
    };
    if let Some(port) = port {
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
    }
    let component_ok = |c: &str| {
        !c.is_empty()
            && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !c.starts_with('-')
            && !c.ends_with('-')
    };
    if host.split('.').all(component_ok) {
        Ok(())
    } else {
        Err(bad())
    }
}

/// Path components of `[a-z0-9]+` joined by `.`, `_`, `__` or dashes, separated by '/'.
fn validate_repository(repository: &str) -> Result<(), String> {
    if repository.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(format!("repository name {repository:?} must be lowercase"));
    }
    for component in repository.split('/') {
        if !path_component_ok(component) {
            return Err(format!(
                "{component:?} is not a valid repository path component"
            ));
        }
    }
    Ok(())
}

fn path_component_ok(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: '.', '_', '__', or one or more '-'.
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-')) {
            return false;
        }
    }
    true
}

fn validate_tag(tag: &str) -> Result<(), String> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let ok = !tag.is_empty()
        && tag.len() <= MAX_TAG_LEN
        && word(tag.as_bytes()[0])
        && tag.bytes().all(|b| word(b) || b == b'.' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!("{tag:?} is not a valid tag"))
    }
}

/// Only sha256 digests: it is the one algorithm the client verifies.
pub(crate) fn validate_digest(digest: &str) -> Result<(), String> {
    let hex = digest
        .strip_prefix("sha256:")
        .ok_or_else(|| format!("{digest:?} is not a sha256 digest"))?;
    if hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        Err(format!(
            "{digest:?} is not a valid sha256 digest (64 lowercase hex characters)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:6f5f1e7f5d1c3c4f8b1b0f9c8e0e6d3c2b1a09f8e7d6c5b4a39281706f5e4d3c";

    #[test]
    fn normalises_like_docker() {
        let d = |s: &str| s.replace("{D}", D);
        let table = [
            ("busybox", "docker.io/library/busybox:latest"),
            ("busybox:1.36", "docker.io/library/busybox:1.36"),
            ("library/busybox", "docker.io/library/busybox:latest"),
            ("user/app", "docker.io/user/app:latest"),
            ("user/app/sub:v2", "docker.io/user/app/sub:v2"),
            ("docker.io/busybox", "docker.io/library/busybox:latest"),
            ("index.docker.io/user/app", "docker.io/user/app:latest"),
            ("localhost/app", "localhost/app:latest"),
            ("localhost:5000/app", "localhost:5000/app:latest"),
            ("127.0.0.1:5000/app:1", "127.0.0.1:5000/app:1"),
            ("ghcr.io/org/app:v1.2_3-rc", "ghcr.io/org/app:v1.2_3-rc"),
            ("[::1]:5000/app", "[::1]:5000/app:latest"),
            (
                "my-reg.example.com/a__b/c-d.e",
                "my-reg.example.com/a__b/c-d.e:latest",
            ),
            ("busybox@{D}", "docker.io/library/busybox@{D}"),
            ("busybox:1.36@{D}", "docker.io/library/busybox@{D}"),
            ("localhost:5000/app:1@{D}", "localhost:5000/app@{D}"),
        ];
        for (input, want) in table {
            let r = Reference::parse(&d(input)).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.canonical(), d(want), "{input}");
            assert_eq!(r.to_string(), d(want));
        }
    }

    #[test]
    fn parts_and_what_to_fetch() {
        let r = Reference::parse("busybox").unwrap();
        assert_eq!(
            (
                r.registry(),
                r.api_host(),
                r.repository(),
                r.tag(),
                r.digest()
            ),
            (
                "docker.io",
                "registry-1.docker.io",
                "library/busybox",
                Some("latest"),
                None
            )
        );
        assert_eq!(r.object(), "latest");
        let r = Reference::parse(&format!("localhost:5000/app:1@{D}")).unwrap();
        assert_eq!(
            (
                r.registry(),
                r.api_host(),
                r.repository(),
                r.tag(),
                r.digest()
            ),
            (
                "localhost:5000",
                "localhost:5000",
                "app",
                Some("1"),
                Some(D)
            )
        );
        assert_eq!(r.object(), D);
        let r = Reference::parse(&format!("app@{D}")).unwrap();
        assert_eq!(r.tag(), None);
        assert_eq!(r.name(), "docker.io/library/app");
    }

    #[test]
    fn rejects_invalid_references() {
        let bad = [
            "",
            "Busybox",
            "user/App",
            "docker.io/User/app",
            ":tag",
            "app:",
            "app:-tag",
            "app:tag with space",
            "app@sha256:abc",
            "app@sha512:0000",
            &format!("app@{}", D.to_uppercase().replace("SHA256", "sha256")),
            "app@",
            "/app",
            "app/",
            "a//b",
            "app-/x",
            "reg.io:port/app",
            "-reg.io/app",
            "app_-x",
            "a...b",
            "6f5f1e7f5d1c3c4f8b1b0f9c8e0e6d3c2b1a09f8e7d6c5b4a39281706f5e4d3c",
        ];
        for input in bad {
            assert!(
                Reference::parse(input).is_err(),
                "{input:?} should be refused"
            );
        }
        let long = format!("reg.io/{}", "a".repeat(250));
        assert!(Reference::parse(&long).is_err());
        let e = Reference::parse("user/App").unwrap_err().to_string();
        assert!(e.contains("lowercase"), "{e}");
        let e = Reference::parse("app@sha256:abc").unwrap_err().to_string();
        assert!(e.contains("digest"), "{e}");
        let e = Reference::parse("").unwrap_err().to_string();
        assert!(e.contains("empty"), "{e}");
    }

    #[test]
    fn uppercase_first_component_is_a_registry() {
        // As in distribution: "Foo/bar" names registry "Foo".
        let r = Reference::parse("Foo/bar").unwrap();
        assert_eq!((r.registry(), r.repository()), ("Foo", "bar"));
    }
}
