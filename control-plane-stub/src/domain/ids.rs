//! Identifiers, secrets and ARNs. Everything here is pure apart from the random sources.

use sha2::{Digest, Sha256};

/// A new 32-character lowercase hex id (tasks, instances).
pub fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// A new instance secret: 32 random bytes, hex encoded.
pub fn new_secret() -> String {
    let bytes: Vec<u8> = (0..32).map(|_| fastrand::u8(..)).collect();
    hex::encode(bytes)
}

/// A new activation code: 24 characters, unambiguous alphabet so people can read it aloud.
pub fn new_activation_code() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    (0..24)
        .map(|_| ALPHABET[fastrand::usize(..ALPHABET.len())] as char)
        .collect()
}

/// Secrets and activation codes are stored only as this digest, so a leaked database does not
/// let anyone register or impersonate an instance.
pub fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// Compares two digests without an early exit, so timing does not reveal a matching prefix.
pub fn digests_equal(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The id of an awsvpc task's network attachment: UUID-shaped, derived from the task id so it
/// is the same in every response without being stored.
pub fn attachment_id(task_id: &str) -> String {
    let h = sha256_hex(&format!("attachment/{task_id}"));
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The "network interface" id shown for an awsvpc task: `eni-` and 17 hex digits of its id.
pub fn eni_id(task_id: &str) -> String {
    let hex: String = if task_id.len() >= 17 && task_id.chars().all(|c| c.is_ascii_hexdigit()) {
        task_id.to_ascii_lowercase()
    } else {
        sha256_hex(task_id)
    };
    format!("eni-{}", &hex[..17])
}

/// Builds the ARNs of one region and account.
#[derive(Debug, Clone)]
pub struct Arns {
    account: String,
    prefix: String,
    /// `arn:aws:secretsmanager:<region>:<account>`: the secrets berth-cp holds.
    secrets_prefix: String,
    /// `arn:aws:servicediscovery:<region>:<account>`: Service Connect namespaces, shaped as
    /// Cloud Map's.
    namespace_prefix: String,
}

impl Arns {
    pub fn new(region: &str, account: &str) -> Self {
        Self {
            account: account.to_string(),
            prefix: format!("arn:aws:ecs:{region}:{account}"),
            secrets_prefix: format!("arn:aws:secretsmanager:{region}:{account}"),
            namespace_prefix: format!("arn:aws:servicediscovery:{region}:{account}"),
        }
    }
    /// What follows `arn:aws:ecs:REGION:ACCOUNT:` in an ARN of this region and account.
    pub fn resource_part<'a>(&self, arn: &'a str) -> Option<&'a str> {
        arn.strip_prefix(self.prefix.as_str())?.strip_prefix(':')
    }
    /// The account id (12 digits) the ARNs are in.
    pub fn account(&self) -> &str {
        &self.account
    }
    /// A secret's ARN, shaped as Secrets Manager's (without its random suffix).
    pub fn secret(&self, name: &str) -> String {
        format!("{}:secret:{name}", self.secrets_prefix)
    }
    /// A Service Connect namespace's ARN, named by the namespace (Cloud Map's has an id).
    pub fn namespace(&self, name: &str) -> String {
        format!("{}:namespace/{name}", self.namespace_prefix)
    }
    pub fn capacity_provider(&self, name: &str) -> String {
        format!("{}:capacity-provider/{name}", self.prefix)
    }
    pub fn cluster(&self, name: &str) -> String {
        format!("{}:cluster/{name}", self.prefix)
    }
    pub fn service(&self, cluster: &str, name: &str) -> String {
        format!("{}:service/{cluster}/{name}", self.prefix)
    }
    pub fn service_deployment(&self, cluster: &str, service: &str, id: &str) -> String {
        format!(
            "{}:service-deployment/{cluster}/{service}/{id}",
            self.prefix
        )
    }
    pub fn service_revision(&self, cluster: &str, service: &str, id: &str) -> String {
        format!("{}:service-revision/{cluster}/{service}/{id}", self.prefix)
    }
    pub fn task(&self, cluster: &str, id: &str) -> String {
        format!("{}:task/{cluster}/{id}", self.prefix)
    }
    pub fn container_instance(&self, cluster: &str, id: &str) -> String {
        format!("{}:container-instance/{cluster}/{id}", self.prefix)
    }
    pub fn task_definition(&self, family: &str, revision: i64) -> String {
        format!("{}:task-definition/{family}:{revision}", self.prefix)
    }
    pub fn container(&self, cluster: &str, task_id: &str, container_id: &str) -> String {
        format!(
            "{}:container/{cluster}/{task_id}/{container_id}",
            self.prefix
        )
    }
}

/// A namespace named by name or by ARN (`arn:aws:servicediscovery:…:namespace/NAME`).
pub fn namespace_name(name_or_arn: &str) -> &str {
    match name_or_arn.strip_prefix("arn:") {
        Some(rest) => rest
            .rsplit_once(":namespace/")
            .map_or(name_or_arn, |(_, n)| n),
        None => name_or_arn,
    }
}

/// The last path segment of an ARN of the form `...:task/<cluster>/<id>`, or the input itself
/// when it is a bare id. Both forms are accepted wherever ECS accepts them.
pub fn resource_id(arn_or_id: &str) -> &str {
    if arn_or_id.starts_with("arn:") {
        arn_or_id.rsplit('/').next().unwrap_or(arn_or_id)
    } else {
        arn_or_id
    }
}

/// The cluster a task ARN (`...:task/<cluster>/<id>`) names; None for a bare id or an older,
/// cluster-less ARN (`...:task/<id>`).
/// (cluster, service, id) of a `service-deployment` or `service-revision` ARN
/// (`arn:…:KIND/CLUSTER/SERVICE/ID`).
pub fn service_child_arn<'a>(arn: &'a str, kind: &str) -> Option<(&'a str, &'a str, &'a str)> {
    let rest = arn.strip_prefix("arn:")?;
    let path = rest.split_once(&format!(":{kind}/"))?.1;
    let mut parts = path.split('/');
    let (cluster, service, id) = (parts.next()?, parts.next()?, parts.next()?);
    (parts.next().is_none() && ![cluster, service, id].contains(&""))
        .then_some((cluster, service, id))
}

pub fn task_arn_cluster(arn: &str) -> Option<&str> {
    let rest = arn.strip_prefix("arn:")?.split_once(":task/")?.1;
    rest.rsplit_once('/').map(|(cluster, _)| cluster)
}

/// The cluster name from a cluster ARN, or the input when it is already a name.
pub fn cluster_name(arn_or_name: &str) -> &str {
    if arn_or_name.starts_with("arn:") {
        arn_or_name.rsplit('/').next().unwrap_or(arn_or_name)
    } else {
        arn_or_name
    }
}

/// `family`, `family:rev` or a task-definition ARN, split into family and optional revision.
pub fn parse_task_definition_ref(s: &str) -> Option<(String, Option<i64>)> {
    let s = match s.strip_prefix("arn:") {
        Some(_) => s.split_once(":task-definition/")?.1,
        None => s,
    };
    match s.split_once(':') {
        None if !s.is_empty() => Some((s.to_string(), None)),
        None => None,
        Some((family, rev)) => {
            let rev: i64 = rev.parse().ok().filter(|r| *r > 0)?;
            (!family.is_empty()).then(|| (family.to_string(), Some(rev)))
        }
    }
}

/// ECS's rule for cluster names: 1-255 letters, digits, hyphens or underscores.
pub fn valid_cluster_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_deployment_and_revision_arns_round_trip() {
        let arns = Arns::new("us-east-1", "123");
        let arn = arns.service_deployment("prod", "web", "AbC123");
        assert_eq!(
            arn,
            "arn:aws:ecs:us-east-1:123:service-deployment/prod/web/AbC123"
        );
        assert_eq!(
            service_child_arn(&arn, "service-deployment"),
            Some(("prod", "web", "AbC123"))
        );
        let rev = arns.service_revision("prod", "web", "42");
        assert_eq!(
            service_child_arn(&rev, "service-revision"),
            Some(("prod", "web", "42"))
        );
        assert_eq!(service_child_arn(&rev, "service-deployment"), None);
        assert_eq!(service_child_arn("web", "service-revision"), None);
        assert_eq!(
            service_child_arn(
                "arn:aws:ecs:r:a:service-revision/prod/web",
                "service-revision"
            ),
            None
        );
    }

    #[test]
    fn ids_and_secrets_have_the_promised_shape() {
        let id = new_id();
        assert_eq!(id.len(), 32);
        assert!(id
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_eq!(new_secret().len(), 64);
        assert_eq!(new_activation_code().len(), 24);
    }

    #[test]
    fn task_definition_refs() {
        let arns = Arns::new("us-east-1", "000000000000");
        assert_eq!(parse_task_definition_ref("web"), Some(("web".into(), None)));
        assert_eq!(
            parse_task_definition_ref("web:3"),
            Some(("web".into(), Some(3)))
        );
        assert_eq!(
            parse_task_definition_ref(&arns.task_definition("web", 7)),
            Some(("web".into(), Some(7)))
        );
        assert_eq!(parse_task_definition_ref("web:x"), None);
        assert_eq!(parse_task_definition_ref("web:0"), None);
        assert_eq!(parse_task_definition_ref(""), None);
        assert_eq!(
            arns.secret("team/reg"),
            "arn:aws:secretsmanager:us-east-1:000000000000:secret:team/reg"
        );
    }

    #[test]
    fn resource_ids_from_arns() {
        let arns = Arns::new("us-east-1", "1");
        assert_eq!(resource_id(&arns.task("c", "abc")), "abc");
        assert_eq!(resource_id("abc"), "abc");
        assert_eq!(cluster_name(&arns.cluster("prod")), "prod");
        assert_eq!(task_arn_cluster(&arns.task("c", "abc")), Some("c"));
        assert_eq!(task_arn_cluster("arn:aws:ecs:r:1:task/abc"), None);
        assert_eq!(task_arn_cluster("abc"), None);
    }

    #[test]
    fn attachment_and_eni_ids_are_derived_from_the_task() {
        let a = attachment_id("0123456789abcdef0123456789abcdef");
        assert_eq!(a, attachment_id("0123456789abcdef0123456789abcdef"));
        assert_eq!(
            a.split('-').map(str::len).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert_ne!(a, attachment_id("other"));
        assert_eq!(
            eni_id("0123456789abcdef0123456789abcdef"),
            "eni-0123456789abcdef0"
        );
        assert_eq!(eni_id("t1").len(), 21);
    }

    #[test]
    fn digest_comparison() {
        assert!(digests_equal(&sha256_hex("a"), &sha256_hex("a")));
        assert!(!digests_equal(&sha256_hex("a"), &sha256_hex("b")));
    }
}
