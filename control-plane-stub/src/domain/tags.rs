//! Tags, with ECS's rules: what TagResource, UntagResource and the create calls accept, which
//! resources carry them, and the tags a new task gets (its own, those propagated from its task
//! definition or service, and ECS's managed tags).

use serde::{Deserialize, Serialize};

/// A tag as the API carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    pub key: String,
    #[serde(default)]
    pub value: String,
}

impl Tag {
    pub fn new(key: &str, value: &str) -> Self {
        Self {
            key: key.to_string(),
            value: value.to_string(),
        }
    }
}

/// At most this many user tags on one resource (ECS's limit; `aws:` tags do not count).
pub const MAX_USER_TAGS: usize = 50;
const MAX_KEY: usize = 128;
const MAX_VALUE: usize = 256;

/// The managed tags ECS sets (`enableECSManagedTags`).
pub const CLUSTER_NAME_TAG: &str = "aws:ecs:clusterName";
pub const SERVICE_NAME_TAG: &str = "aws:ecs:serviceName";

/// A resource that can carry tags, named by the resource part of its ARN (what follows
/// `arn:aws:ecs:REGION:ACCOUNT:`), which is also its key in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    Cluster { name: String },
    TaskDefinition { family: String, revision: i64 },
    Task { cluster: String, id: String },
    Service { cluster: String, name: String },
    ContainerInstance { cluster: String, id: String },
}

impl Resource {
    /// The resource an ARN's resource part names, or why it names none that takes tags.
    pub fn parse(resource: &str) -> Result<Resource, String> {
        let (kind, path) = resource
            .split_once('/')
            .ok_or_else(|| format!("{resource:?} is not an ECS resource (TYPE/NAME)"))?;
        let parts: Vec<&str> = path.split('/').collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err(format!("{resource:?} has an empty name"));
        }
        let two = |make: fn(String, String) -> Resource| match parts.as_slice() {
            [cluster, id] => Ok(make(cluster.to_string(), id.to_string())),
            _ => Err(format!(
                "{kind} ARN {resource:?}: expected {kind}/CLUSTER/NAME"
            )),
        };
        match kind {
            "cluster" => match parts.as_slice() {
                [name] => Ok(Resource::Cluster {
                    name: name.to_string(),
                }),
                _ => Err(format!("cluster ARN {resource:?}: expected cluster/NAME")),
            },
            "task-definition" => {
                let (family, revision) = match parts.as_slice() {
                    [fr] => fr.split_once(':'),
                    _ => None,
                }
                .ok_or_else(|| {
                    format!("task-definition ARN {resource:?}: expected task-definition/FAMILY:REVISION")
                })?;
                let revision = revision
                    .parse::<i64>()
                    .ok()
                    .filter(|r| *r > 0)
                    .ok_or_else(|| format!("task-definition ARN {resource:?}: bad revision"))?;
                Ok(Resource::TaskDefinition {
                    family: family.to_string(),
                    revision,
                })
            }
            "task" => two(|cluster, id| Resource::Task { cluster, id }),
            "service" => two(|cluster, name| Resource::Service { cluster, name }),
            "container-instance" => two(|cluster, id| Resource::ContainerInstance { cluster, id }),
            other => Err(format!(
                "resources of type {other:?} cannot be tagged (clusters, task definitions, tasks, services and container instances can)"
            )),
        }
    }

    /// The resource part of its ARN: its key in the store.
    pub fn key(&self) -> String {
        match self {
            Resource::Cluster { name } => format!("cluster/{name}"),
            Resource::TaskDefinition { family, revision } => {
                format!("task-definition/{family}:{revision}")
            }
            Resource::Task { cluster, id } => format!("task/{cluster}/{id}"),
            Resource::Service { cluster, name } => format!("service/{cluster}/{name}"),
            Resource::ContainerInstance { cluster, id } => {
                format!("container-instance/{cluster}/{id}")
            }
        }
    }
}

/// ECS reserves keys beginning with `aws:` in any case for its own tags.
pub fn is_reserved(key: &str) -> bool {
    key.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("aws:"))
}

fn allowed(c: char) -> bool {
    c.is_alphanumeric() || c == ' ' || "+-=._:/@".contains(c)
}

fn short(s: &str) -> String {
    s.chars().take(64).collect()
}

/// ECS's rules for tags a user gives: keys of 1-128 and values of at most 256 characters of
/// letters, digits, spaces and `+-=._:/@`; no `aws:` key; no key twice; at most 50.
pub fn check_user_tags(tags: &[Tag]) -> Result<(), String> {
    if tags.len() > MAX_USER_TAGS {
        return Err(format!(
            "tags: at most {MAX_USER_TAGS} tags per resource, {} given",
            tags.len()
        ));
    }
    for (i, t) in tags.iter().enumerate() {
        let key_chars = t.key.chars().count();
        if key_chars == 0 || key_chars > MAX_KEY || !t.key.chars().all(allowed) {
            return Err(format!(
                "tag key {:?} must be 1-{MAX_KEY} letters, digits, spaces or +-=._:/@",
                short(&t.key)
            ));
        }
        if t.value.chars().count() > MAX_VALUE || !t.value.chars().all(allowed) {
            return Err(format!(
                "tag {}: value {:?} must be at most {MAX_VALUE} letters, digits, spaces or +-=._:/@",
                t.key,
                short(&t.value)
            ));
        }
        if is_reserved(&t.key) {
            return Err(format!(
                "tag key {:?}: the aws: prefix is reserved for AWS use",
                t.key
            ));
        }
        if tags[..i].iter().any(|o| o.key == t.key) {
            return Err(format!("tag key {:?} is given twice", t.key));
        }
    }
    Ok(())
}

/// TagResource: adds `new` to `tags`, replacing the value of a key already there. Refused when
/// the resource would carry more than 50 user tags.
pub fn apply(tags: &mut Vec<Tag>, new: &[Tag]) -> Result<(), String> {
    for t in new {
        match tags.iter_mut().find(|o| o.key == t.key) {
            Some(o) => o.value = t.value.clone(),
            None => tags.push(t.clone()),
        }
    }
    let user = tags.iter().filter(|t| !is_reserved(&t.key)).count();
    if user > MAX_USER_TAGS {
        return Err(format!(
            "a resource carries at most {MAX_USER_TAGS} tags; this one would have {user}"
        ));
    }
    Ok(())
}

/// UntagResource: removes `keys` (a key not there is no error). ECS's own `aws:` tags cannot
/// be removed.
pub fn remove(tags: &mut Vec<Tag>, keys: &[String]) -> Result<(), String> {
    if let Some(k) = keys.iter().find(|k| is_reserved(k)) {
        return Err(format!(
            "tag key {k:?}: tags with the aws: prefix cannot be removed"
        ));
    }
    tags.retain(|t| !keys.contains(&t.key));
    Ok(())
}

/// propagateTags: where a new task's tags come from besides its own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Propagate {
    #[default]
    None,
    TaskDefinition,
    Service,
}

impl Propagate {
    /// ECS's values; absent is NONE.
    pub fn parse(s: Option<&str>) -> Result<Propagate, String> {
        match s {
            None | Some("NONE") => Ok(Propagate::None),
            Some("TASK_DEFINITION") => Ok(Propagate::TaskDefinition),
            Some("SERVICE") => Ok(Propagate::Service),
            Some(other) => Err(format!(
                "propagateTags {:?} is not one of TASK_DEFINITION, SERVICE, NONE",
                short(other)
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Propagate::None => "NONE",
            Propagate::TaskDefinition => "TASK_DEFINITION",
            Propagate::Service => "SERVICE",
        }
    }
}

/// A new task's tags: those propagated (from its task definition or its service; their own
/// `aws:` tags stay behind), then its own (which win on the same key), then ECS's managed tags
/// when asked for. Refused when that is more than 50 user tags.
pub fn for_new_task(
    own: &[Tag],
    propagated: &[Tag],
    managed: Option<(&str, Option<&str>)>,
) -> Result<Vec<Tag>, String> {
    let mut tags: Vec<Tag> = Vec::new();
    let inherited: Vec<Tag> = propagated
        .iter()
        .filter(|t| !is_reserved(&t.key))
        .cloned()
        .collect();
    apply(&mut tags, &inherited)?;
    apply(&mut tags, own)?;
    if let Some((cluster, service)) = managed {
        tags.push(Tag::new(CLUSTER_NAME_TAG, cluster));
        if let Some(service) = service {
            tags.push(Tag::new(SERVICE_NAME_TAG, service));
        }
    }
    Ok(tags)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(pairs: &[(&str, &str)]) -> Vec<Tag> {
        pairs.iter().map(|(k, v)| Tag::new(k, v)).collect()
    }

    #[test]
    fn every_taggable_arn_resource_parses_and_keys_back_to_itself() {
        for r in [
            "cluster/prod",
            "task-definition/web:3",
            "task/prod/0123abcd",
            "service/prod/web",
            "container-instance/prod/abc",
        ] {
            assert_eq!(Resource::parse(r).unwrap().key(), r);
        }
        for bad in [
            "cluster",
            "cluster/a/b",
            "task-definition/web",
            "task-definition/web:0",
            "task/prod",
            "service//web",
            "capacity-provider/x",
        ] {
            assert!(Resource::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn user_tags_follow_ecs_rules() {
        assert!(check_user_tags(&tags(&[("team", "web"), ("a b+-=._:/@", "")])).is_ok());
        assert!(check_user_tags(&tags(&[("", "x")])).is_err());
        assert!(check_user_tags(&tags(&[(&"k".repeat(129), "x")])).is_err());
        assert!(check_user_tags(&tags(&[("k", &"v".repeat(257))])).is_err());
        assert!(check_user_tags(&tags(&[("k", &"v".repeat(256))])).is_ok());
        assert!(check_user_tags(&tags(&[("k!", "x")])).is_err());
        for reserved in ["aws:x", "AWS:x", "Aws:ecs:clusterName"] {
            let e = check_user_tags(&tags(&[(reserved, "x")])).unwrap_err();
            assert!(e.contains("reserved"), "{e}");
        }
        assert!(check_user_tags(&tags(&[("k", "1"), ("k", "2")])).is_err());
        let many: Vec<Tag> = (0..51).map(|i| Tag::new(&format!("k{i}"), "")).collect();
        assert!(check_user_tags(&many).is_err());
        assert!(check_user_tags(&many[..50]).is_ok());
    }

    #[test]
    fn applying_replaces_values_and_keeps_to_the_limit_without_counting_aws_tags() {
        let mut t = tags(&[("a", "1"), (CLUSTER_NAME_TAG, "prod")]);
        apply(&mut t, &tags(&[("a", "2"), ("b", "3")])).unwrap();
        assert_eq!(
            t,
            tags(&[("a", "2"), (CLUSTER_NAME_TAG, "prod"), ("b", "3")])
        );
        let mut full: Vec<Tag> = (0..50).map(|i| Tag::new(&format!("k{i}"), "")).collect();
        full.push(Tag::new(CLUSTER_NAME_TAG, "prod"));
        let before = full.clone();
        assert!(apply(&mut full.clone(), &tags(&[("k0", "changed")])).is_ok());
        assert!(apply(&mut full, &tags(&[("one-more", "")])).is_err());
        assert_eq!(
            full.len(),
            before.len() + 1,
            "the caller discards a refused change"
        );
    }

    #[test]
    fn removing_keeps_aws_tags() {
        let mut t = tags(&[("a", "1"), ("b", "2"), (CLUSTER_NAME_TAG, "prod")]);
        remove(&mut t, &["a".into(), "absent".into()]).unwrap();
        assert_eq!(t, tags(&[("b", "2"), (CLUSTER_NAME_TAG, "prod")]));
        assert!(remove(&mut t, &[CLUSTER_NAME_TAG.into()]).is_err());
    }

    #[test]
    fn a_new_task_gets_propagated_then_its_own_then_managed_tags() {
        let from_def = tags(&[
            ("team", "web"),
            ("tier", "front"),
            (SERVICE_NAME_TAG, "old"),
        ]);
        let own = tags(&[("tier", "canary")]);
        let t = for_new_task(&own, &from_def, Some(("prod", Some("web")))).unwrap();
        assert_eq!(
            t,
            tags(&[
                ("team", "web"),
                ("tier", "canary"),
                (CLUSTER_NAME_TAG, "prod"),
                (SERVICE_NAME_TAG, "web"),
            ])
        );
        assert_eq!(for_new_task(&own, &[], None).unwrap(), own);
        let many: Vec<Tag> = (0..30).map(|i| Tag::new(&format!("d{i}"), "")).collect();
        let more: Vec<Tag> = (0..30).map(|i| Tag::new(&format!("o{i}"), "")).collect();
        assert!(for_new_task(&more, &many, None).is_err());
    }

    #[test]
    fn propagate_tags_takes_ecs_values_only() {
        assert_eq!(Propagate::parse(None).unwrap(), Propagate::None);
        assert_eq!(
            Propagate::parse(Some("TASK_DEFINITION")).unwrap(),
            Propagate::TaskDefinition
        );
        assert_eq!(
            Propagate::parse(Some("SERVICE")).unwrap().as_str(),
            "SERVICE"
        );
        assert!(Propagate::parse(Some("service")).is_err());
    }
}
