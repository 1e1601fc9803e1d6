//! The image's own user database: `/etc/passwd` and `/etc/group` read from a prepared snapshot's
//! layer directories (no mount needed), and the resolution of an ECS `user` against them with
//! Docker's semantics. Parsing and resolution are pure; `layer_dirs` and `read_image_file` are
//! the small reader.

use std::io::Read;
use std::path::{Path, PathBuf};

use containerd_client::types::Mount;

/// Enough for any sane passwd or group file; a bigger one is refused rather than read whole.
const MAX_FILE_BYTES: u64 = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("user {user:?} not found in the image's /etc/passwd")]
    UnknownUser { user: String },
    #[error("user {user:?}: group {group:?} not found in the image's /etc/group")]
    UnknownGroup { user: String, group: String },
    #[error("user {user:?}: the image has no /etc/passwd to look the name up in")]
    NoPasswd { user: String },
    #[error("user {0:?} is not of the form uid, uid:gid, user or user:group")]
    Malformed(String),
    #[error("reading the image's {path}: {message}")]
    Read { path: String, message: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

/// The identity a container's process runs as.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
}

/// `name:x:uid:gid:...` lines; malformed lines and comments are skipped, as libc does.
pub fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 4 || f[0].is_empty() {
                return None;
            }
            Some(PasswdEntry {
                name: f[0].to_string(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
            })
        })
        .collect()
}

/// `name:x:gid:member,member` lines.
pub fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 3 || f[0].is_empty() {
                return None;
            }
            Some(GroupEntry {
                name: f[0].to_string(),
                gid: f[2].parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .map(str::trim)
                            .filter(|m| !m.is_empty())
                            .map(String::from)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// Resolves `uid`, `uid:gid`, `name`, `name:group` or `uid:group` (empty means root) the way
/// Docker does, so a definition behaves as it does on ECS: a numeric uid need not exist (its
/// gid is then 0); a name must. Supplementary groups come from /etc/group membership, and only
/// when no group is given explicitly.
pub fn resolve_user(
    spec: &str,
    passwd: Option<&[PasswdEntry]>,
    groups: Option<&[GroupEntry]>,
) -> Result<ProcessUser, UserError> {
    let spec_or_root = if spec.is_empty() { "0" } else { spec };
    let (user_part, group_part) = match spec_or_root.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec_or_root, None),
    };
    if user_part.is_empty() || group_part.is_some_and(str::is_empty) {
        return Err(UserError::Malformed(spec.to_string()));
    }
    let numeric_uid = user_part.parse::<u32>().ok();
    let entry = passwd.and_then(|p| {
        p.iter().find(|e| match numeric_uid {
            Some(uid) => e.uid == uid,
            None => e.name == user_part,
        })
    });
    let (uid, mut gid, name) = match (numeric_uid, entry) {
        (_, Some(e)) => (e.uid, e.gid, Some(e.name.as_str())),
        (Some(uid), None) => (uid, 0, None),
        (None, None) if passwd.is_none() => {
            return Err(UserError::NoPasswd {
                user: spec.to_string(),
            })
        }
        (None, None) => {
            return Err(UserError::UnknownUser {
                user: user_part.to_string(),
            })
        }
    };
    let groups = groups.unwrap_or_default();
    let mut additional_gids = Vec::new();
    match group_part {
        Some(g) => {
            gid = match g.parse::<u32>() {
                Ok(n) => n,
                Err(_) => {
                    groups
                        .iter()
                        .find(|e| e.name == g)
                        .ok_or_else(|| UserError::UnknownGroup {
                            user: spec.to_string(),
                            group: g.to_string(),
                        })?
                        .gid
                }
            };
        }
        None => {
            if let Some(name) = name {
                for g in groups
                    .iter()
                    .filter(|g| g.members.iter().any(|m| m == name))
                {
                    if g.gid != gid && !additional_gids.contains(&g.gid) {
                        additional_gids.push(g.gid);
                    }
                }
            }
        }
    }
    Ok(ProcessUser {
        uid,
        gid,
        additional_gids,
    })
}

/// The directories that make up a prepared snapshot, topmost first. overlayfs gives
/// `upperdir=` (empty for a new container) and `lowerdir=a:b:c` (a wins); the native and bind
/// snapshotters give one directory as the source.
pub fn layer_dirs(mounts: &[Mount]) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for m in mounts {
        if m.r#type == "overlay" {
            let opt = |key: &str| {
                m.options
                    .iter()
                    .find_map(|o| o.strip_prefix(key).map(str::to_string))
            };
            if let Some(upper) = opt("upperdir=") {
                dirs.push(PathBuf::from(upper));
            }
            if let Some(lower) = opt("lowerdir=") {
                dirs.extend(
                    lower
                        .split(':')
                        .filter(|d| !d.is_empty())
                        .map(PathBuf::from),
                );
            }
        } else if !m.source.is_empty() {
            dirs.push(PathBuf::from(&m.source));
        }
    }
    dirs
}

/// Reads `rel` (e.g. `etc/passwd`) from the first layer that has it. A whiteout (a character
/// device) hides the file below it. A symlink is not followed: it would be resolved against
/// the host's root, not the image's, so it counts as absent.
pub fn read_image_file(dirs: &[PathBuf], rel: &str) -> Result<Option<String>, UserError> {
    use std::os::unix::fs::FileTypeExt;
    for dir in dirs {
        let path = dir.join(rel);
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(read_error(&path, e)),
        };
        if meta.file_type().is_char_device() || !meta.is_file() {
            return Ok(None);
        }
        let mut text = String::new();
        std::fs::File::open(&path)
            .and_then(|f| f.take(MAX_FILE_BYTES).read_to_string(&mut text))
            .map_err(|e| read_error(&path, e))?;
        return Ok(Some(text));
    }
    Ok(None)
}

fn read_error(path: &Path, e: std::io::Error) -> UserError {
    UserError::Read {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// Resolves `user` against the user database of the snapshot made of `dirs`.
pub fn resolve_in_layers(user: &str, dirs: &[PathBuf]) -> Result<ProcessUser, UserError> {
    let passwd = read_image_file(dirs, "etc/passwd")?.map(|t| parse_passwd(&t));
    let groups = read_image_file(dirs, "etc/group")?.map(|t| parse_group(&t));
    resolve_user(user, passwd.as_deref(), groups.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n# comment\nbroken line\n\
        app:x:1000:1000:app:/home/app:/bin/sh\nweb:x:33:33::/:/bin/false\n\
        nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
    const GROUP: &str = "root:x:0:\nwheel:x:10:app,root\napp:x:1000:\n\
        audio:x:29:web, app\nnobody:x:65534:\nstaff:x:50:\n";

    fn resolve(spec: &str) -> Result<ProcessUser, UserError> {
        resolve_user(spec, Some(&parse_passwd(PASSWD)), Some(&parse_group(GROUP)))
    }

    fn user(uid: u32, gid: u32, additional_gids: &[u32]) -> ProcessUser {
        ProcessUser {
            uid,
            gid,
            additional_gids: additional_gids.to_vec(),
        }
    }

    #[test]
    fn parses_passwd_and_group_skipping_garbage() {
        let p = parse_passwd(PASSWD);
        assert_eq!(p.len(), 4);
        assert_eq!(p[1].name, "app");
        let g = parse_group(GROUP);
        assert_eq!(g[1].members, ["app", "root"]);
        assert_eq!(g[3].members, ["web", "app"]);
        assert!(g[0].members.is_empty());
    }

    #[test]
    fn names_and_ids_resolve_with_supplementary_groups() {
        assert_eq!(resolve("").unwrap(), user(0, 0, &[10]));
        assert_eq!(resolve("app").unwrap(), user(1000, 1000, &[10, 29]));
        assert_eq!(resolve("1000").unwrap(), user(1000, 1000, &[10, 29]));
        assert_eq!(resolve("nobody").unwrap(), user(65534, 65534, &[]));
        // An explicit group replaces the primary group and drops the supplementary ones.
        assert_eq!(resolve("app:staff").unwrap(), user(1000, 50, &[]));
        assert_eq!(resolve("app:7").unwrap(), user(1000, 7, &[]));
        assert_eq!(resolve("1000:staff").unwrap(), user(1000, 50, &[]));
        assert_eq!(resolve("33:33").unwrap(), user(33, 33, &[]));
    }

    #[test]
    fn numeric_ids_need_not_exist_but_names_must() {
        assert_eq!(resolve("4242").unwrap(), user(4242, 0, &[]));
        assert_eq!(resolve("4242:4243").unwrap(), user(4242, 4243, &[]));
        assert_eq!(resolve_user("7:8", None, None).unwrap(), user(7, 8, &[]));
        let err = resolve("nosuchuser").unwrap_err();
        assert!(err.to_string().contains("\"nosuchuser\""), "{err}");
        let err = resolve("app:nosuchgroup").unwrap_err();
        assert!(err.to_string().contains("nosuchgroup"), "{err}");
        let err = resolve_user("app", None, None).unwrap_err();
        assert!(matches!(err, UserError::NoPasswd { .. }), "{err}");
        assert!(matches!(resolve(":5"), Err(UserError::Malformed(_))));
        assert!(matches!(resolve("app:"), Err(UserError::Malformed(_))));
    }

    #[test]
    fn layer_dirs_of_overlay_and_bind_mounts() {
        let overlay = Mount {
            r#type: "overlay".into(),
            source: "overlay".into(),
            target: String::new(),
            options: vec![
                "index=off".into(),
                "workdir=/s/3/work".into(),
                "upperdir=/s/3/fs".into(),
                "lowerdir=/s/2/fs:/s/1/fs".into(),
            ],
        };
        assert_eq!(
            layer_dirs(&[overlay]),
            [PathBuf::from("/s/3/fs"), "/s/2/fs".into(), "/s/1/fs".into()]
        );
        let bind = Mount {
            r#type: "bind".into(),
            source: "/s/1/fs".into(),
            target: String::new(),
            options: vec!["rbind".into(), "rw".into()],
        };
        assert_eq!(layer_dirs(&[bind]), [PathBuf::from("/s/1/fs")]);
    }

    #[test]
    fn the_topmost_layer_wins_and_symlinks_are_not_followed() {
        let base = std::env::temp_dir().join(format!("berth-rootfs-{}", fastrand::u64(..)));
        let (upper, lower) = (base.join("upper"), base.join("lower"));
        for d in [&upper, &lower] {
            std::fs::create_dir_all(d.join("etc")).unwrap();
        }
        std::fs::write(lower.join("etc/passwd"), "old:x:1:1::/:/bin/sh\n").unwrap();
        std::fs::write(upper.join("etc/passwd"), "new:x:2:2::/:/bin/sh\n").unwrap();
        std::os::unix::fs::symlink("/etc/hostname", lower.join("etc/group")).unwrap();
        let dirs = [upper.clone(), lower.clone()];
        let text = read_image_file(&dirs, "etc/passwd").unwrap().unwrap();
        assert!(text.starts_with("new:"));
        assert_eq!(read_image_file(&dirs, "etc/group").unwrap(), None);
        assert_eq!(read_image_file(&dirs, "etc/shadow").unwrap(), None);
        assert_eq!(resolve_in_layers("new", &dirs).unwrap(), user(2, 2, &[]));
        std::fs::remove_dir_all(&base).unwrap();
    }
}
