//! Which mounts a container gets from its definition: mountPoints of the task's volumes,
//! volumesFrom other containers of the task, and linuxParameters.tmpfs. Pure: the host work
//! (checking bind sources, creating task volume directories) is done by the caller on the plan.

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};

use crate::model::{ContainerSpec, MountPoint, TaskSpec, Tmpfs, VolumeKind};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MountError {
    #[error("container {container}: mountPoints names volume {volume:?}, which the task does not define")]
    UnknownVolume { container: String, volume: String },
    #[error("container {container}: volumesFrom names container {source_container:?}, which the task does not define")]
    UnknownContainer {
        container: String,
        source_container: String,
    },
    #[error("container {container}: {what} {path:?} must be an absolute path without '..'")]
    BadPath {
        container: String,
        what: &'static str,
        path: String,
    },
    #[error("volume {0:?}: the name cannot be used as a directory name")]
    BadVolumeName(String),
    #[error("container {container}: tmpfs {path:?} needs a size above 0")]
    TmpfsSize { container: String, path: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountSource {
    /// A host path that must already exist ("bad mount source" otherwise).
    Host(PathBuf),
    /// The task's own directory for a volume, created empty on first use.
    TaskVolume(PathBuf),
    Tmpfs,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedMount {
    pub destination: String,
    pub source: MountSource,
    pub options: Vec<String>,
}

impl PlannedMount {
    pub fn read_only(&self) -> bool {
        self.options.iter().any(|o| o == "ro")
    }
}

/// The mounts of `container` in `task`, parents before children. A destination named twice
/// keeps the container's own mountPoint over one inherited through volumesFrom, as Docker does.
pub fn plan(
    task: &TaskSpec,
    container: &ContainerSpec,
    task_volumes_dir: &Path,
) -> Result<Vec<PlannedMount>, MountError> {
    let mut planned = Vec::new();
    for mp in &container.extra.mount_points {
        planned.push(volume_mount(task, container, mp, false, task_volumes_dir)?);
    }
    // volumesFrom is transitive (a source's own volumesFrom come along); `seen` stops cycles.
    let mut seen = HashSet::from([container.name.as_str()]);
    let mut queue: Vec<(&str, bool)> = container
        .extra
        .volumes_from
        .iter()
        .map(|v| (v.source_container.as_str(), v.read_only))
        .collect();
    while let Some((name, read_only)) = queue.pop() {
        if !seen.insert(name) {
            continue;
        }
        let source = task
            .containers
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| MountError::UnknownContainer {
                container: container.name.clone(),
                source_container: name.to_string(),
            })?;
        for mp in &source.extra.mount_points {
            planned.push(volume_mount(task, source, mp, read_only, task_volumes_dir)?);
        }
        queue.extend(
            source
                .extra
                .volumes_from
                .iter()
                .map(|v| (v.source_container.as_str(), read_only || v.read_only)),
        );
    }
    for t in &container.extra.linux.tmpfs {
        planned.push(tmpfs_mount(container, t)?);
    }

    let mut destinations = HashSet::new();
    planned.retain(|m| destinations.insert(m.destination.clone()));
    // A stable sort: equal depths keep the definition's order.
    planned.sort_by_key(|m| depth(&m.destination));
    Ok(planned)
}

fn volume_mount(
    task: &TaskSpec,
    owner: &ContainerSpec,
    mp: &MountPoint,
    force_read_only: bool,
    task_volumes_dir: &Path,
) -> Result<PlannedMount, MountError> {
    let destination = clean_path(&mp.container_path).ok_or_else(|| MountError::BadPath {
        container: owner.name.clone(),
        what: "mountPoints containerPath",
        path: mp.container_path.clone(),
    })?;
    let volume = task
        .volumes
        .iter()
        .find(|v| v.name == mp.source_volume)
        .ok_or_else(|| MountError::UnknownVolume {
            container: owner.name.clone(),
            volume: mp.source_volume.clone(),
        })?;
    let source = match &volume.kind {
        VolumeKind::Host { source_path } => {
            MountSource::Host(PathBuf::from(clean_path(source_path).ok_or_else(|| {
                MountError::BadPath {
                    container: owner.name.clone(),
                    what: "host.sourcePath",
                    path: source_path.clone(),
                }
            })?))
        }
        VolumeKind::Task => {
            if !is_plain_name(&volume.name) {
                return Err(MountError::BadVolumeName(volume.name.clone()));
            }
            MountSource::TaskVolume(task_volumes_dir.join(&volume.name))
        }
    };
    let mode = if mp.read_only || force_read_only {
        "ro"
    } else {
        "rw"
    };
    Ok(PlannedMount {
        destination,
        source,
        options: vec!["rbind".into(), mode.into()],
    })
}

fn tmpfs_mount(container: &ContainerSpec, t: &Tmpfs) -> Result<PlannedMount, MountError> {
    let destination = clean_path(&t.container_path).ok_or_else(|| MountError::BadPath {
        container: container.name.clone(),
        what: "tmpfs containerPath",
        path: t.container_path.clone(),
    })?;
    if t.size_mib == 0 {
        return Err(MountError::TmpfsSize {
            container: container.name.clone(),
            path: t.container_path.clone(),
        });
    }
    // Docker's defaults for a tmpfs; an explicit opposite in mountOptions replaces its default.
    let mut options: Vec<String> = ["nosuid", "nodev", "noexec"]
        .into_iter()
        .filter(|d| {
            let opposite = &d[2..];
            !t.mount_options.iter().any(|o| o == opposite)
        })
        .map(String::from)
        .collect();
    for o in &t.mount_options {
        if !options.contains(o) && !o.starts_with("size=") {
            options.push(o.clone());
        }
    }
    options.push(format!("size={}m", t.size_mib));
    Ok(PlannedMount {
        destination,
        source: MountSource::Tmpfs,
        options,
    })
}

/// An absolute path without `..`, with `.` and repeated or trailing slashes removed.
fn clean_path(path: &str) -> Option<String> {
    let p = Path::new(path);
    if !p.is_absolute() {
        return None;
    }
    let mut parts = Vec::new();
    for c in p.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(s) => parts.push(s.to_str()?),
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(format!("/{}", parts.join("/")))
}

fn depth(path: &str) -> usize {
    path.split('/').filter(|s| !s.is_empty()).count()
}

/// A volume name becomes a directory name: no separators, no `.` or `..`.
fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/') && !name.contains('\0')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{NetworkMode, Volume, VolumeFrom};

    fn container(
        name: &str,
        mounts: &[(&str, &str, bool)],
        from: &[(&str, bool)],
    ) -> ContainerSpec {
        let mut c = ContainerSpec {
            name: name.into(),
            image: "img".into(),
            essential: true,
            entry_point: None,
            command: None,
            environment: vec![],
            working_directory: None,
            user: None,
            cpu: 0,
            memory_mib: 0,
            memory_reservation_mib: 0,
            stop_timeout_secs: 30,
            extra: Default::default(),
        };
        c.extra.mount_points = mounts
            .iter()
            .map(|(v, p, ro)| MountPoint {
                source_volume: v.to_string(),
                container_path: p.to_string(),
                read_only: *ro,
            })
            .collect();
        c.extra.volumes_from = from
            .iter()
            .map(|(s, ro)| VolumeFrom {
                source_container: s.to_string(),
                read_only: *ro,
            })
            .collect();
        c
    }

    fn task(containers: Vec<ContainerSpec>) -> TaskSpec {
        TaskSpec {
            arn: "arn".into(),
            family: "f".into(),
            revision: 1,
            network_mode: NetworkMode::None,
            cpu: 0,
            memory_mib: 0,
            containers,
            ingress: None,
            volumes: vec![
                Volume {
                    name: "host".into(),
                    kind: VolumeKind::Host {
                        source_path: "/srv/data/".into(),
                    },
                },
                Volume {
                    name: "scratch".into(),
                    kind: VolumeKind::Task,
                },
            ],
        }
    }

    fn plan_of(t: &TaskSpec, name: &str) -> Result<Vec<PlannedMount>, MountError> {
        let c = t.containers.iter().find(|c| c.name == name).unwrap();
        plan(t, c, Path::new("/vol/task1"))
    }

    fn bind(dest: &str, source: MountSource, mode: &str) -> PlannedMount {
        PlannedMount {
            destination: dest.into(),
            source,
            options: vec!["rbind".into(), mode.into()],
        }
    }

    #[test]
    fn host_and_task_volumes_with_read_only() {
        let t = task(vec![container(
            "a",
            &[("host", "/data", true), ("scratch", "/scratch/", false)],
            &[],
        )]);
        assert_eq!(
            plan_of(&t, "a").unwrap(),
            [
                bind("/data", MountSource::Host("/srv/data".into()), "ro"),
                bind(
                    "/scratch",
                    MountSource::TaskVolume("/vol/task1/scratch".into()),
                    "rw"
                ),
            ]
        );
    }

    #[test]
    fn parents_mount_before_children() {
        let t = task(vec![container(
            "a",
            &[
                ("scratch", "/a/b/c", false),
                ("host", "/a", false),
                ("scratch", "/a/b", false),
            ],
            &[],
        )]);
        let dests: Vec<String> = plan_of(&t, "a")
            .unwrap()
            .into_iter()
            .map(|m| m.destination)
            .collect();
        assert_eq!(dests, ["/a", "/a/b", "/a/b/c"]);
    }

    #[test]
    fn volumes_from_inherit_modes_and_are_transitive() {
        let t = task(vec![
            container(
                "src",
                &[("host", "/data", false), ("scratch", "/s", true)],
                &[],
            ),
            container("mid", &[], &[("src", false)]),
            container("ro", &[("scratch", "/s", false)], &[("src", true)]),
            container("far", &[], &[("mid", false)]),
        ]);
        let mid = plan_of(&t, "mid").unwrap();
        assert_eq!(
            mid[0],
            bind("/data", MountSource::Host("/srv/data".into()), "rw")
        );
        assert!(mid[1].read_only(), "the source's own readOnly stays");
        // The container's own /s wins over the inherited one; the inherited /data is ro.
        let ro = plan_of(&t, "ro").unwrap();
        assert_eq!(ro.len(), 2);
        assert!(ro.iter().any(|m| m.destination == "/s" && !m.read_only()));
        assert!(ro.iter().any(|m| m.destination == "/data" && m.read_only()));
        assert_eq!(plan_of(&t, "far").unwrap(), mid);
    }

    #[test]
    fn volumes_from_cycles_end() {
        let t = task(vec![
            container("a", &[("scratch", "/a", false)], &[("b", false)]),
            container("b", &[("scratch", "/b", false)], &[("a", false)]),
        ]);
        assert_eq!(plan_of(&t, "a").unwrap().len(), 2);
    }

    #[test]
    fn bad_references_and_paths_are_refused() {
        let t = task(vec![
            container("a", &[("nope", "/x", false)], &[]),
            container("b", &[], &[("ghost", false)]),
            container("c", &[("scratch", "relative", false)], &[]),
            container("d", &[("scratch", "/x/../../etc", false)], &[]),
        ]);
        assert!(matches!(
            plan_of(&t, "a"),
            Err(MountError::UnknownVolume { .. })
        ));
        let err = plan_of(&t, "b").unwrap_err();
        assert!(err.to_string().contains("\"ghost\""), "{err}");
        assert!(matches!(plan_of(&t, "c"), Err(MountError::BadPath { .. })));
        assert!(matches!(plan_of(&t, "d"), Err(MountError::BadPath { .. })));
        let mut t = task(vec![container("e", &[("..", "/x", false)], &[])]);
        t.volumes.push(Volume {
            name: "..".into(),
            kind: VolumeKind::Task,
        });
        assert!(matches!(
            plan_of(&t, "e"),
            Err(MountError::BadVolumeName(_))
        ));
    }

    #[test]
    fn tmpfs_options_and_size() {
        let mut c = container("a", &[], &[]);
        c.extra.linux.tmpfs = vec![
            Tmpfs {
                container_path: "/run/x".into(),
                size_mib: 16,
                mount_options: vec!["exec".into(), "mode=1777".into(), "nosuid".into()],
            },
            Tmpfs {
                container_path: "/bad".into(),
                size_mib: 0,
                mount_options: vec![],
            },
        ];
        let t = task(vec![c.clone()]);
        assert!(matches!(
            plan_of(&t, "a"),
            Err(MountError::TmpfsSize { .. })
        ));
        c.extra.linux.tmpfs.pop();
        let t = task(vec![c]);
        let m = plan_of(&t, "a").unwrap();
        assert_eq!(m[0].source, MountSource::Tmpfs);
        assert_eq!(
            m[0].options,
            ["nosuid", "nodev", "exec", "mode=1777", "size=16m"]
        );
    }
}
