//! Registry authentication: credentials (never printed), `WWW-Authenticate` challenges, the
//! Docker token response, and the per-repository cache of what to send. Pure; the requests
//! are the client's.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

pub use crate::model::Credentials;

/// Tells credentials apart in the token cache without keeping a second copy of them.
pub(crate) fn fingerprint(c: &Credentials) -> String {
    let mut h = Sha256::new();
    h.update(c.username.as_bytes());
    h.update([0]);
    h.update(c.password.as_bytes());
    hex::encode(h.finalize())
}

/// One challenge of a `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// The Docker token flow: GET `realm?service=..&scope=..`.
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
    Basic {
        realm: Option<String>,
    },
}

/// Parses a `WWW-Authenticate` value (RFC 7235): one or more challenges, each a scheme and
/// comma-separated `key=value` parameters (values quoted or bare). Unknown schemes are skipped.
pub fn parse_challenges(header: &str) -> Vec<Challenge> {
    let mut out = Vec::new();
    let mut p = Parser {
        s: header.as_bytes(),
        i: 0,
    };
    loop {
        p.skip_ws_and_commas();
        let Some(scheme) = p.token() else { break };
        let mut params: HashMap<String, String> = HashMap::new();
        loop {
            p.skip_ws();
            let save = p.i;
            // A parameter is `token =`; a token without '=' starts the next challenge.
            let Some(key) = p.token() else { break };
            p.skip_ws();
            if !p.eat(b'=') {
                p.i = save;
                break;
            }
            p.skip_ws();
            let value = if p.peek() == Some(b'"') {
                p.quoted()
            } else {
                p.token().unwrap_or_default()
            };
            params.insert(key.to_ascii_lowercase(), value);
            p.skip_ws();
            if !p.eat(b',') {
                break;
            }
        }
        match scheme.to_ascii_lowercase().as_str() {
            "bearer" => {
                if let Some(realm) = params.remove("realm") {
                    out.push(Challenge::Bearer {
                        realm,
                        service: params.remove("service"),
                        scope: params.remove("scope"),
                    });
                }
            }
            "basic" => out.push(Challenge::Basic {
                realm: params.remove("realm"),
            }),
            _ => {}
        }
        if p.i >= p.s.len() {
            break;
        }
    }
    out
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }
    fn skip_ws_and_commas(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b',')) {
            self.i += 1;
        }
    }
    /// An RFC 7230 token, also taking '/' and ':' so that bare URLs read as values.
    fn token(&mut self) -> Option<String> {
        let start = self.i;
        while let Some(b) = self.peek() {
            let tchar = b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~/:".contains(&b);
            if !tchar {
                break;
            }
            self.i += 1;
        }
        (self.i > start).then(|| String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }
    fn quoted(&mut self) -> String {
        let mut out = Vec::new();
        self.i += 1; // the opening quote
        while let Some(b) = self.peek() {
            self.i += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    if let Some(next) = self.peek() {
                        out.push(next);
                        self.i += 1;
                    }
                }
                _ => out.push(b),
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// The token server's answer (Docker token spec): `token`, or OAuth2's `access_token`.
#[derive(Debug, serde::Deserialize)]
pub struct TokenResponse {
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub access_token: Option<String>,
    #[serde(default)]
    pub expires_in: Option<u64>,
}

/// The spec's default lifetime, and its minimum.
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);

impl TokenResponse {
    /// The token and how long it may be reused.
    pub fn into_token(self) -> Option<(String, Duration)> {
        let token = self
            .token
            .filter(|t| !t.is_empty())
            .or(self.access_token.filter(|t| !t.is_empty()))?;
        let lifetime = self
            .expires_in
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_TOKEN_LIFETIME)
            .max(DEFAULT_TOKEN_LIFETIME);
        Some((token, lifetime))
    }
}

/// What to send in the Authorization header.
#[derive(Clone, PartialEq, Eq)]
pub enum Authorization {
    Bearer(String),
    Basic(Credentials),
}

impl fmt::Debug for Authorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Authorization::Bearer(_) => f.write_str("Bearer(<redacted>)"),
            Authorization::Basic(c) => write!(f, "Basic({c:?})"),
        }
    }
}

/// Whose authorization: a registry, a repository, and which credentials (by fingerprint) —
/// a token fetched with one task's credentials is never reused for another's.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    pub registry: String,
    pub repository: String,
    pub credentials: Option<String>,
}

impl CacheKey {
    pub fn new(registry: &str, repository: &str, creds: Option<&Credentials>) -> Self {
        CacheKey {
            registry: registry.to_string(),
            repository: repository.to_string(),
            credentials: creds.map(fingerprint),
        }
    }
}

/// Authorizations by repository, each until it expires (a token is dropped a little before
/// its end, so it does not lapse in flight).
#[derive(Debug, Default)]
pub struct TokenCache {
    entries: HashMap<CacheKey, (Authorization, Option<Instant>)>,
}

const EXPIRY_MARGIN: Duration = Duration::from_secs(5);

impl TokenCache {
    pub fn get(&mut self, key: &CacheKey, now: Instant) -> Option<Authorization> {
        match self.entries.get(key) {
            Some((auth, None)) => Some(auth.clone()),
            Some((auth, Some(until))) if now < *until => Some(auth.clone()),
            Some(_) => {
                self.entries.remove(key);
                None
            }
            None => None,
        }
    }

    /// `lifetime` None: until removed (Basic).
    pub fn put(
        &mut self,
        key: CacheKey,
        auth: Authorization,
        lifetime: Option<Duration>,
        now: Instant,
    ) {
        let until = lifetime.map(|l| now + l.saturating_sub(EXPIRY_MARGIN));
        self.entries.insert(key, (auth, until));
    }

    pub fn remove(&mut self, key: &CacheKey) {
        self.entries.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_and_basic_challenges() {
        let h = r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#;
        assert_eq!(
            parse_challenges(h),
            [Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/busybox:pull".into()),
            }]
        );
        assert_eq!(
            parse_challenges(r#"Basic realm="test""#),
            [Challenge::Basic {
                realm: Some("test".into())
            }]
        );
        assert_eq!(
            parse_challenges("basic"),
            [Challenge::Basic { realm: None }]
        );
        // Several challenges in one header, odd spacing, bare values, escapes, unknown schemes.
        let h = r#"Negotiate abc, Basic realm = "a \"q\" b" , BEARER realm=https://t.example/token, service=svc"#;
        assert_eq!(
            parse_challenges(h),
            [
                Challenge::Basic {
                    realm: Some(r#"a "q" b"#.into())
                },
                Challenge::Bearer {
                    realm: "https://t.example/token".into(),
                    service: Some("svc".into()),
                    scope: None,
                },
            ]
        );
        // A bearer challenge without a realm is useless.
        assert!(parse_challenges(r#"Bearer service="x""#).is_empty());
        assert!(parse_challenges("").is_empty());
    }

    #[test]
    fn credentials_never_show_the_password() {
        let c = Credentials::new("alice", "s3cret-pa55");
        for shown in [
            format!("{c:?}"),
            format!("{c}"),
            format!("{:?}", Authorization::Basic(c.clone())),
            format!("{:?}", Authorization::Bearer("tok-s3cret-pa55".into())),
            format!("{:?}", CacheKey::new("r", "p", Some(&c))),
        ] {
            assert!(!shown.contains("s3cret"), "{shown}");
        }
        assert!(format!("{c:?}").contains("alice"));
        assert_ne!(
            fingerprint(&c),
            fingerprint(&Credentials::new("alice", "other"))
        );
    }

    #[test]
    fn token_responses() {
        let t: TokenResponse = serde_json::from_str(r#"{"token":"a","expires_in":300}"#).unwrap();
        assert_eq!(t.into_token(), Some(("a".into(), Duration::from_secs(300))));
        let t: TokenResponse = serde_json::from_str(r#"{"access_token":"b"}"#).unwrap();
        assert_eq!(t.into_token(), Some(("b".into(), DEFAULT_TOKEN_LIFETIME)));
        let t: TokenResponse =
            serde_json::from_str(r#"{"token":"","access_token":"c","expires_in":5}"#).unwrap();
        assert_eq!(t.into_token(), Some(("c".into(), DEFAULT_TOKEN_LIFETIME)));
        let t: TokenResponse = serde_json::from_str(r#"{}"#).unwrap();
        assert_eq!(t.into_token(), None);
    }

    #[test]
    fn cache_expires_tokens_and_keeps_basic() {
        let mut cache = TokenCache::default();
        let now = Instant::now();
        let key = CacheKey::new("reg", "app", None);
        cache.put(
            key.clone(),
            Authorization::Bearer("t".into()),
            Some(Duration::from_secs(60)),
            now,
        );
        assert_eq!(
            cache.get(&key, now + Duration::from_secs(50)),
            Some(Authorization::Bearer("t".into()))
        );
        assert_eq!(cache.get(&key, now + Duration::from_secs(56)), None);
        let other = CacheKey::new("reg", "app", Some(&Credentials::new("u", "p")));
        cache.put(
            other.clone(),
            Authorization::Basic(Credentials::new("u", "p")),
            None,
            now,
        );
        assert!(cache
            .get(&other, now + Duration::from_secs(86400))
            .is_some());
        assert_eq!(cache.get(&key, now), None);
        cache.remove(&other);
        assert_eq!(cache.get(&other, now), None);
    }
}
