//! Container-definition fields and volumes reaching real containers (root and a running
//! containerd required; `.ci/run` sets them up). Each test works in a containerd namespace and a
//! temp dir of its own and removes both, also on failure. The containers report what they see by
//! exit code or by writing into a host directory bind-mounted at /out.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use berth_agent::model::{
    ContainerSpec, Device, MountPoint, NetworkMode, TaskSpec, Tmpfs, Ulimit, Volume, VolumeFrom,
    VolumeKind,
};
use berth_agent::runtime::containerd::Containerd;
use berth_agent::runtime::{CreateRequest, Runtime};
use common::{ctr, next_exit};

/// A scratch namespace `berth-fields-<id>` (see `common::Scratch`) whose temp dir has `out/`
/// (mounted at /out by `task`), and a runtime; everything is removed on drop.
struct Scratch {
    base: common::Scratch,
    rt: Containerd,
}

impl Scratch {
    async fn new() -> Self {
        let base = common::Scratch::new("berth-fields");
        std::fs::create_dir_all(base.dir.join("out")).unwrap();
        // Containers running as other users write their diagnostics here too.
        std::fs::set_permissions(
            base.dir.join("out"),
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )
        .unwrap();
        let rt = base.runtime().await;
        Scratch { base, rt }
    }

    fn out(&self) -> PathBuf {
        self.base.dir.join("out")
    }

    /// A task of these containers with the volume `out` (this scratch's out dir) and the task
    /// volume `shared`.
    fn task(&self, containers: Vec<ContainerSpec>, mode: NetworkMode) -> TaskSpec {
        TaskSpec {
            volumes: vec![
                Volume {
                    name: "out".into(),
                    kind: VolumeKind::Host {
                        source_path: self.out().display().to_string(),
                    },
                },
                Volume {
                    name: "shared".into(),
                    kind: VolumeKind::Task,
                },
            ],
            ..common::task1(containers, mode)
        }
    }

    fn request(&self, task: &TaskSpec, name: &str) -> CreateRequest {
        CreateRequest {
            runtime_id: format!("task1-{name}"),
            task_arn: task.arn.clone(),
            task_id: "task1".into(),
            container: task
                .containers
                .iter()
                .find(|c| c.name == name)
                .unwrap()
                .clone(),
            network_mode: task.network_mode,
            netns_path: None,
            address: None,
            log_path: self.base.dir.join(format!("{name}.log")),
            task: task.clone(),
            task_volumes_dir: self.base.dir.join("volumes/task1"),
            cgroup_parent: None,
        }
    }

    /// Creates, starts and waits for the container; returns its exit code and removes it.
    async fn run(&self, task: &TaskSpec, name: &str) -> i32 {
        let req = self.request(task, name);
        let mut exits = self.rt.exits().await.unwrap();
        self.rt.create(&req).await.unwrap();
        self.rt.start(&req.runtime_id).await.unwrap();
        let exit = next_exit(&mut exits, &req.runtime_id).await;
        self.rt.remove(&req.runtime_id).await.unwrap();
        exit.exit_code
    }

    fn read_out(&self, file: &str) -> String {
        std::fs::read_to_string(self.out().join(file))
            .unwrap_or_else(|e| panic!("reading out/{file}: {e}"))
    }
}

/// A container running `script` in sh, with the scratch out dir at /out.
fn sh(name: &str, script: &str) -> ContainerSpec {
    let mut c = common::busybox(name, &["sh", "-c", script]);
    c.extra.mount_points.push(mount("out", "/out", false));
    c
}

fn mount(volume: &str, path: &str, read_only: bool) -> MountPoint {
    MountPoint {
        source_volume: volume.into(),
        container_path: path.into(),
        read_only,
    }
}

#[tokio::test]
async fn users_by_name_and_id_with_groups() {
    let s = Scratch::new().await;
    let check = "test \"$(id -u):$(id -g)\" = \"$WANT\" || { id > /out/$NAME; exit 9; }";
    let mut cs = Vec::new();
    for (name, user, want) in [
        ("byname", Some("app"), "1000:1000"),
        ("byid", Some("1000"), "1000:1000"),
        ("nobody", Some("nobody"), "65534:65534"),
        ("namegroup", Some("app:nobody"), "1000:65534"),
        ("idgroup", Some("65534:1000"), "65534:1000"),
        ("unknownid", Some("4242"), "4242:0"),
        ("root", None, "0:0"),
    ] {
        let mut c = sh(name, check);
        c.user = user.map(String::from);
        c.environment = vec![("WANT".into(), want.into()), ("NAME".into(), name.into())];
        cs.push(c);
    }
    let task = s.task(cs.clone(), NetworkMode::None);
    for c in &cs {
        assert_eq!(s.run(&task, &c.name).await, 0, "{}: {:?}", c.name, c.user);
    }

    for bad in ["nosuchuser", "app:nosuchgroup"] {
        let mut c = sh("bad", "true");
        c.user = Some(bad.into());
        let task = s.task(vec![c], NetworkMode::None);
        let err = s.rt.create(&s.request(&task, "bad")).await.unwrap_err();
        assert!(err.to_string().contains("nosuch"), "{err}");
        assert!(s.rt.list().await.unwrap().is_empty(), "nothing is left");
    }
}

#[tokio::test]
async fn read_only_root_with_tmpfs_and_shm_size() {
    let s = Scratch::new().await;
    let mut c = sh(
        "ro",
        "if touch /x 2>/dev/null; then exit 9; fi; \
         touch /scratch/x || exit 10; \
         cat /proc/mounts > /out/mounts",
    );
    c.extra.readonly_root_filesystem = true;
    c.extra.linux.shared_memory_size_mib = Some(128);
    c.extra.linux.tmpfs.push(Tmpfs {
        container_path: "/scratch".into(),
        size_mib: 8,
        mount_options: vec!["mode=1777".into()],
    });
    let task = s.task(vec![c], NetworkMode::None);
    assert_eq!(s.run(&task, "ro").await, 0);
    let mounts = s.read_out("mounts");
    let line = |dest: &str| {
        mounts
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(dest))
            .unwrap_or_else(|| panic!("{dest} not mounted: {mounts}"))
            .to_string()
    };
    assert!(line("/").contains(" ro,"), "{}", line("/"));
    assert!(
        line("/scratch").contains("size=8192k"),
        "{}",
        line("/scratch")
    );
    assert!(line("/scratch").contains("noexec"), "{}", line("/scratch"));
    assert!(
        line("/dev/shm").contains("size=131072k"),
        "{}",
        line("/dev/shm")
    );
}

#[tokio::test]
async fn bind_mounts_task_volumes_and_volumes_from() {
    let s = Scratch::new().await;
    let mut writer = sh(
        "writer",
        "echo from-writer > /shared/note && echo host > /out/from-container \
         && if echo x > /ro/file 2>/dev/null; then exit 9; fi",
    );
    writer
        .extra
        .mount_points
        .push(mount("shared", "/shared", false));
    writer.extra.mount_points.push(mount("out", "/ro", true));
    let mut reader = sh(
        "reader",
        "test \"$(cat /shared/note)\" = from-writer || exit 8; \
         if echo x > /shared/other 2>/dev/null; then exit 9; fi; \
         cat /shared/note > /out/read-by-reader",
    );
    // The reader gets writer's mounts read-only through volumesFrom; its own /out stays.
    reader.extra.volumes_from.push(VolumeFrom {
        source_container: "writer".into(),
        read_only: true,
    });
    let task = s.task(vec![writer, reader], NetworkMode::None);
    assert_eq!(s.run(&task, "writer").await, 0);
    assert_eq!(s.read_out("from-container"), "host\n");
    assert!(s.base.dir.join("volumes/task1/shared/note").is_file());
    assert_eq!(s.run(&task, "reader").await, 0);
    assert_eq!(s.read_out("read-by-reader"), "from-writer\n");

    let mut missing = sh("missing", "true");
    missing
        .extra
        .mount_points
        .push(mount("gone", "/gone", false));
    let mut task = s.task(vec![missing], NetworkMode::None);
    task.volumes.push(Volume {
        name: "gone".into(),
        kind: VolumeKind::Host {
            source_path: s.base.dir.join("no-such-dir").display().to_string(),
        },
    });
    let err = s.rt.create(&s.request(&task, "missing")).await.unwrap_err();
    assert!(err.to_string().contains("bad mount source"), "{err}");
    assert!(err.to_string().contains("no-such-dir"), "{err}");
    assert!(s.rt.list().await.unwrap().is_empty(), "nothing is left");
}

#[tokio::test]
async fn hostname_ulimits_capabilities_devices_and_labels() {
    let s = Scratch::new().await;
    let mut c = sh(
        "fields",
        "hostname > /out/hostname; ulimit -n > /out/nofile; ulimit -c > /out/core; \
         while read k v; do [ \"$k\" = CapBnd: ] && echo $v > /out/capbnd; done < /proc/self/status; \
         test -c /dev/berth-null && echo ok > /dev/berth-null || exit 7",
    );
    c.extra.hostname = Some("fields-host".into());
    c.extra.ulimits = vec![
        Ulimit {
            name: "nofile".into(),
            soft: 2048,
            hard: 4096,
        },
        Ulimit {
            name: "core".into(),
            soft: 0,
            hard: 0,
        },
    ];
    c.extra.linux.cap_drop = vec!["ALL".into()];
    c.extra.linux.cap_add = vec!["NET_ADMIN".into()];
    c.extra.linux.devices.push(Device {
        host_path: "/dev/null".into(),
        container_path: Some("/dev/berth-null".into()),
        permissions: vec!["read".into(), "write".into()],
    });
    c.extra.labels = vec![
        ("team".into(), "storage".into()),
        ("berth.task-arn".into(), "spoofed".into()),
    ];
    c.extra.linux.swappiness = Some(10);
    c.extra.linux.max_swap_mib = Some(0);
    c.memory_mib = 64;
    let task = s.task(vec![c], NetworkMode::None);
    let req = s.request(&task, "fields");
    s.rt.create(&req).await.unwrap();
    let info = ctr(&s.base.ns, &["containers", "info", &req.runtime_id]).unwrap();
    let info: serde_json::Value = serde_json::from_str(&info).unwrap();
    assert_eq!(info["Labels"]["team"], "storage", "{info}");
    assert_eq!(info["Labels"]["berth.task-arn"], req.task_arn.as_str());
    s.rt.remove(&req.runtime_id).await.unwrap();

    assert_eq!(s.run(&task, "fields").await, 0);
    assert_eq!(s.read_out("hostname"), "fields-host\n");
    assert_eq!(s.read_out("nofile"), "2048\n");
    assert_eq!(s.read_out("core"), "0\n");
    // CAP_NET_ADMIN is bit 12 and the only one left.
    assert_eq!(s.read_out("capbnd"), "0000000000001000\n");
}

#[tokio::test]
async fn init_process_forwards_sigterm_and_privileged_sees_all() {
    let s = Scratch::new().await;
    let mut c = sh("init", "cat /proc/1/cmdline > /out/pid1; exec sleep 3600");
    c.extra.linux.init_process_enabled = true;
    let mut p = sh(
        "priv",
        "while read k v; do [ \"$k\" = CapEff: ] && echo $v > /out/capeff; done < /proc/self/status; \
         sys_options() { while read d m t o r; do [ \"$m\" = /sys ] && echo $o; done < /proc/mounts; }; \
         sys_options > /out/sys; true",
    );
    p.extra.privileged = true;
    let task = s.task(vec![c, p], NetworkMode::Host);

    let req = s.request(&task, "init");
    let mut exits = s.rt.exits().await.unwrap();
    s.rt.create(&req).await.unwrap();
    s.rt.start(&req.runtime_id).await.unwrap();
    let pid1 = async {
        loop {
            if let Ok(t) = std::fs::read_to_string(s.out().join("pid1")) {
                if !t.is_empty() {
                    return t;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let pid1 = tokio::time::timeout(Duration::from_secs(20), pid1)
        .await
        .expect("the container wrote /out/pid1");
    assert!(pid1.starts_with("/sbin/berth-init\0--\0"), "{pid1:?}");
    // A shell as PID 1 would ignore SIGTERM; tini passes it on and the child dies of it.
    s.rt.signal(&req.runtime_id, libc::SIGTERM).await.unwrap();
    let exit = next_exit(&mut exits, &req.runtime_id).await;
    assert_eq!(exit.exit_code, 143);
    s.rt.remove(&req.runtime_id).await.unwrap();

    assert_eq!(s.run(&task, "priv").await, 0);
    // Every capability the host allows (the agent's own bounding set).
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let bounding = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .unwrap()
        .trim();
    assert_eq!(s.read_out("capeff").trim(), bounding);
    assert!(s.read_out("sys").starts_with("rw"), "{}", s.read_out("sys"));
}
