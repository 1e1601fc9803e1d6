//! `berth-bench soak`: many task cycles through one agent, and whether its memory, file
//! descriptors and threads stay flat (issue #7).
//!
//! Each cycle is one task: RunTask, RUNNING (berth-cp's `startedAt` is set by the agent's RUNNING
//! report), STOPPED. Cycle `i` runs in network mode `MODES[i % 4]`; cycles whose `i / 4` is even
//! have an essential `sleep 0.5` that exits 0 by itself, the others a `sleep 600` that the
//! benchmark stops with StopTask once it is RUNNING (PID 1 of its namespace ignores SIGTERM, so
//! the agent kills it after stopTimeout 1 s: exit code 137). `batch` tasks are in flight at a
//! time (a new one starts as soon as one stops). The agent's `task_cleanup_wait_secs` is 0, so
//! containers, cgroups and networks go at once.
//!
//! After cycle 100 (the warm-up) and every 100 cycles after it, no task is launched until the
//! agent is idle (every task STOPPED, no container in the namespace, no unfinished task in the
//! agent's store, its outbox empty, then 2 s more), and the agent's VmRSS, Pss, open fds and
//! threads are read from /proc, with containerd's fd count for information. At the end, the
//! host must hold nothing of the tasks: no container, no namespace or link with the env's
//! prefix, no nftables rule naming a task, no task cgroup, no unfinished task in the store.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use berth_e2e::procstat::find_processes;
use berth_e2e::{container, register, task_arn, task_id, wait_until, TestEnv, TEST_IMAGE};
use serde_json::{json, Value};

use super::{machine, progress};

const USAGE: &str = "berth-bench soak [--cycles N] [--batch N]";

/// The network modes, in rotation.
const MODES: [&str; 4] = ["host", "none", "bridge", "awsvpc"];
/// Cycles before the first sample, and between samples.
const SAMPLE_EVERY: usize = 100;
/// How often the benchmark looks at the tasks in flight.
const POLL: Duration = Duration::from_millis(100);
/// How long one task may take from RunTask to STOPPED.
const TASK_LIMIT: Duration = Duration::from_secs(120);
/// Quiet time once the agent is idle, before a sample.
const SETTLE: Duration = Duration::from_secs(2);

pub struct Options {
    cycles: usize,
    batch: usize,
}

pub fn parse(args: &[String]) -> Result<Options> {
    let mut o = Options {
        cycles: 1000,
        batch: 10,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| -> Result<usize> {
            it.next()
                .and_then(|v| v.parse().ok())
                .with_context(|| format!("{name} needs a number; usage: {USAGE}"))
        };
        match arg.as_str() {
            "--cycles" => o.cycles = value(arg)?,
            "--batch" => o.batch = value(arg)?,
            _ => bail!("unknown argument {arg:?}; usage: {USAGE}"),
        }
    }
    ensure!(
        o.cycles >= SAMPLE_EVERY,
        "--cycles must be at least {SAMPLE_EVERY} (the warm-up); usage: {USAGE}"
    );
    // DescribeTasks takes up to 100 tasks: all in flight are polled with one call.
    ensure!(
        (1..=100).contains(&o.batch),
        "--batch must be 1 to 100; usage: {USAGE}"
    );
    Ok(o)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// An essential `sleep 0.5`: stops by itself, exit code 0.
    Exits,
    /// `sleep 600`, stopped with StopTask once RUNNING.
    Stopped,
}

impl Kind {
    fn of(cycle: usize) -> Kind {
        if (cycle / MODES.len()).is_multiple_of(2) {
            Kind::Exits
        } else {
            Kind::Stopped
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Exits => "exits",
            Kind::Stopped => "stopped",
        }
    }
}

/// One task in flight.
struct Cycle {
    index: usize,
    mode: &'static str,
    kind: Kind,
    arn: String,
    launched: Instant,
    stop_sent: bool,
}

/// One reading of the agent (and containerd) after `cycle` cycles.
struct Sample {
    cycle: usize,
    rss_kib: u64,
    /// RssAnon: the heap and other anonymous memory (the rest of RSS is the binary and
    /// libraries, and shared memory such as SQLite's -shm file).
    anon_kib: u64,
    pss_kib: u64,
    fds: usize,
    threads: u64,
    containerd_fds: Option<usize>,
    /// The size of the agent's SQLite store (page_count * page_size), and the tasks it holds.
    store_kib: u64,
    store_tasks: usize,
    /// The agent's fds by kind (socket, pipe, anon_inode:[eventpoll], a file's path...).
    fd_kinds: BTreeMap<String, usize>,
    secs: f64,
}

pub async fn run(o: Options) -> Result<()> {
    let started = Instant::now();
    let mut env = TestEnv::new("bench-soak")?;
    env.set_task_cleanup_wait_secs(0);
    env.start_cp().await?;
    let code = env.create_activation(1)?;
    env.start_agent(Some(&code))?;
    env.wait_agent_connected().await?;
    let agent_pid = env.agent(0).pid();
    let containerd_pid = containerd_pid();
    let api = env.api();
    let env_dir = env.dir().to_owned();
    let data_dir = env.agent_data_dir(0);
    let probe = Probe {
        agent: agent_pid,
        containerd: containerd_pid,
        env_dir: &env_dir,
        data_dir: &data_dir,
        started,
    };

    // One task definition per mode and kind.
    let mut defs: BTreeMap<(&str, &str), String> = BTreeMap::new();
    for mode in MODES {
        for kind in [Kind::Exits, Kind::Stopped] {
            let (command, timeout) = match kind {
                Kind::Exits => (["sleep", "0.5"], 2),
                Kind::Stopped => (["sleep", "600"], 1),
            };
            let mut app = json!({
                "name": "app",
                "image": TEST_IMAGE,
                "essential": true,
                "memory": 16,
                "stopTimeout": timeout,
                "command": command,
            });
            if mode == "bridge" {
                // A dynamic host port: a DNAT rule and a port lease per task.
                app["portMappings"] =
                    json!([{"containerPort": 8080, "hostPort": 0, "protocol": "tcp"}]);
            }
            let arn = register(
                &api,
                json!({
                    "family": format!("soak-{mode}-{}-{}", kind.name(), env.id),
                    "networkMode": mode,
                    "containerDefinitions": [app],
                }),
            )
            .await?;
            defs.insert((mode, kind.name()), arn);
        }
    }
    progress(format_args!(
        "soak: env {} up (agent pid {agent_pid}, containerd pid {}); {} cycles, {} in flight",
        env.id,
        containerd_pid.map_or("?".to_owned(), |p| p.to_string()),
        o.cycles,
        o.batch
    ));

    let mut samples = vec![probe.sample(0)?];
    let mut ids: Vec<String> = Vec::with_capacity(o.cycles);
    let mut in_flight: Vec<Cycle> = Vec::new();
    let mut next = 0;
    let mut done = 0;
    let mut by_mode: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    while done < o.cycles {
        // The next sample point: no task beyond it starts before the sample.
        let boundary = ((done / SAMPLE_EVERY) + 1) * SAMPLE_EVERY;
        let boundary = boundary.min(o.cycles);
        while in_flight.len() < o.batch && next < boundary {
            let mode = MODES[next % MODES.len()];
            let kind = Kind::of(next);
            let arn = launch(&env, &defs[&(mode, kind.name())], mode)
                .await
                .with_context(|| format!("cycle {next}: RunTask ({mode}, {})", kind.name()))?;
            ids.push(task_id(&arn).to_owned());
            in_flight.push(Cycle {
                index: next,
                mode,
                kind,
                arn,
                launched: Instant::now(),
                stop_sent: false,
            });
            next += 1;
        }
        tokio::time::sleep(POLL).await;
        if let Some(status) = env.agent(0).exited() {
            bail!("berth-agent exited ({status}) during the soak");
        }
        let arns: Vec<&String> = in_flight.iter().map(|c| &c.arn).collect();
        let out = api
            .call(
                "DescribeTasks",
                json!({"cluster": env.cluster, "tasks": arns}),
            )
            .await?;
        let listed = out["tasks"].as_array().cloned().unwrap_or_default();
        ensure!(listed.len() == in_flight.len(), "DescribeTasks: {out}");
        let mut finished = Vec::new();
        for t in &listed {
            let arn = task_arn(t)?;
            let Some(pos) = in_flight.iter().position(|c| c.arn == arn) else {
                bail!("DescribeTasks answered a task not asked for: {t}");
            };
            let c = &mut in_flight[pos];
            match t["lastStatus"].as_str() {
                Some("STOPPED") => {
                    check_stopped(c, t)?;
                    finished.push(pos);
                }
                Some("RUNNING") if c.kind == Kind::Stopped && !c.stop_sent => {
                    api.call(
                        "StopTask",
                        json!({"cluster": env.cluster, "task": c.arn, "reason": "soak"}),
                    )
                    .await
                    .with_context(|| format!("cycle {}: StopTask", c.index))?;
                    c.stop_sent = true;
                }
                _ => {}
            }
            ensure!(
                c.launched.elapsed() < TASK_LIMIT,
                "cycle {} ({}, {}) not STOPPED {TASK_LIMIT:?} after RunTask: {t}",
                c.index,
                c.mode,
                c.kind.name()
            );
        }
        finished.sort_unstable();
        for pos in finished.into_iter().rev() {
            let c = in_flight.swap_remove(pos);
            *by_mode.entry((c.mode, c.kind.name())).or_default() += 1;
            done += 1;
        }
        if done == boundary && in_flight.is_empty() {
            wait_idle(&env, done).await?;
            tokio::time::sleep(SETTLE).await;
            let s = probe.sample(done)?;
            progress(format_args!(
                "soak: {done} cycles: RSS {} KiB, PSS {} KiB, {} fds, {} threads, containerd {} \
                 fds",
                s.rss_kib,
                s.pss_kib,
                s.fds,
                s.threads,
                s.containerd_fds.map_or("?".to_owned(), |n| n.to_string())
            ));
            samples.push(s);
        }
    }

    // Nothing of the tasks may be left.
    leftovers(&env, &ids).await?;
    let store = store_counts(&env.agent_data_dir(0))?;
    ensure!(
        store.tasks == o.cycles,
        "the agent's store knows {} tasks; {} ran",
        store.tasks,
        o.cycles
    );
    ensure!(
        env.agent(0).exited().is_none(),
        "berth-agent exited at the end of the soak"
    );
    let total = started.elapsed().as_secs_f64();

    // Everything succeeded: only now print figures.
    let mut out = String::new();
    writeln!(out, "# berth-bench soak")?;
    writeln!(out, "{}", machine())?;
    writeln!(
        out,
        "options: --cycles {} --batch {}; total run time {total:.0} s",
        o.cycles, o.batch
    )?;
    let mix: Vec<String> = by_mode
        .iter()
        .map(|((m, k), n)| format!("{m}/{k} {n}"))
        .collect();
    writeln!(
        out,
        "cycles: {} (every one RUNNING, then STOPPED with the expected exit and stop code): {}",
        o.cycles,
        mix.join(", ")
    )?;
    writeln!(
        out,
        "after the last cycle: no container in {}, no netns/link with prefix {}, no nftables \
         rule or cgroup of a task; the agent's store: {} tasks, 0 unfinished, outbox {}",
        env.namespace,
        env.network().name_prefix,
        store.tasks,
        store.outbox
    )?;
    out.push_str(&report(&samples));
    print!("{out}");
    env.pass();
    Ok(())
}

/// RunTask of one task of `td`; its ARN.
async fn launch(env: &TestEnv, td: &str, mode: &str) -> Result<String> {
    let mut request = json!({"cluster": env.cluster, "taskDefinition": td});
    if mode == "awsvpc" {
        request["networkConfiguration"] = json!({"awsvpcConfiguration": {"subnets": []}});
    }
    let out = env.api().call("RunTask", request).await?;
    ensure!(
        out["failures"].as_array().is_none_or(|f| f.is_empty()),
        "RunTask failures: {out}"
    );
    task_arn(&out["tasks"][0])
}

/// A STOPPED task must have been RUNNING (startedAt) and stopped as its kind says.
fn check_stopped(c: &Cycle, t: &Value) -> Result<()> {
    let what = || format!("cycle {} ({}, {})", c.index, c.mode, c.kind.name());
    ensure!(
        t["startedAt"].is_number() || t["startedAt"].is_string(),
        "{} stopped without having been RUNNING: {t}",
        what()
    );
    let (stop_code, exit_code) = match c.kind {
        Kind::Exits => ("EssentialContainerExited", 0),
        Kind::Stopped => ("UserInitiated", 137),
    };
    ensure!(
        c.kind == Kind::Exits || c.stop_sent,
        "{} stopped before StopTask: {t}",
        what()
    );
    ensure!(
        t["stopCode"] == stop_code,
        "{}: stopCode {}, want {stop_code}: {t}",
        what(),
        t["stopCode"]
    );
    let code = container(t, "app").and_then(|a| a["exitCode"].as_i64());
    ensure!(
        code == Some(exit_code),
        "{}: exit code {code:?}, want {exit_code}: {t}",
        what()
    );
    Ok(())
}

/// Waits until the agent has nothing in flight: no container in the namespace, no unfinished
/// task in its store and nothing in its outbox.
async fn wait_idle(env: &TestEnv, done: usize) -> Result<()> {
    let data_dir = env.agent_data_dir(0);
    wait_until(
        &format!("the agent to be idle after {done} cycles"),
        Duration::from_secs(120),
        || async {
            let containers = env.containerd_containers()?;
            ensure!(containers.is_empty(), "containers {containers:?}");
            let store = store_counts(&data_dir)?;
            ensure!(
                store.unfinished == 0,
                "{} unfinished tasks in the store",
                store.unfinished
            );
            ensure!(store.outbox == 0, "{} reports in the outbox", store.outbox);
            Ok(Some(()))
        },
    )
    .await
}

/// After the last cycle: nothing of any task may be left on the host (the e2e tests' own
/// leak check) or unfinished in the store.
async fn leftovers(env: &TestEnv, ids: &[String]) -> Result<()> {
    let data_dir = env.agent_data_dir(0);
    wait_until("nothing of the tasks left", Duration::from_secs(60), || {
        let data_dir = &data_dir;
        async move {
            let mut left = berth_e2e::leftovers(env, ids)?;
            let store = store_counts(data_dir)?;
            if store.unfinished != 0 {
                left.push(format!(
                    "{} unfinished tasks in the store",
                    store.unfinished
                ));
            }
            if left.is_empty() {
                Ok(Some(()))
            } else {
                bail!("left: {}", left.join("; "))
            }
        }
    })
    .await
}

struct StoreCounts {
    /// page_count * page_size of agent.db (the WAL not included).
    kib: u64,
    tasks: usize,
    unfinished: usize,
    outbox: usize,
}

/// Counts in the agent's store (read-only; the agent keeps writing in WAL mode).
fn store_counts(data_dir: &Path) -> Result<StoreCounts> {
    let conn = berth_e2e::agent_db(data_dir)?;
    let count = |sql: &str| -> Result<usize> {
        let n: i64 = conn
            .query_row(sql, [], |r| r.get(0))
            .with_context(|| format!("{sql} in {}", data_dir.display()))?;
        Ok(usize::try_from(n).unwrap_or_default())
    };
    Ok(StoreCounts {
        kib: (count("PRAGMA page_count")? * count("PRAGMA page_size")? / 1024) as u64,
        tasks: count("SELECT COUNT(*) FROM tasks")?,
        unfinished: count("SELECT COUNT(*) FROM tasks WHERE finished = 0")?,
        outbox: count("SELECT COUNT(*) FROM outbox")?,
    })
}

// ------------------------------------------------------------------------------- /proc

/// What is sampled: the agent, containerd (the one serving the agents' socket, if found).
struct Probe<'a> {
    agent: u32,
    containerd: Option<u32>,
    /// The env's temp dir: shown as `<env>` in fd paths.
    env_dir: &'a Path,
    /// The agent's data dir (its store).
    data_dir: &'a Path,
    started: Instant,
}

impl Probe<'_> {
    fn sample(&self, cycle: usize) -> Result<Sample> {
        let pid = self.agent;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .with_context(|| format!("reading /proc/{pid}/status"))?;
        let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
            .with_context(|| format!("reading /proc/{pid}/smaps_rollup"))?;
        let kinds = fd_kinds(pid, self.env_dir)?;
        let store = store_counts(self.data_dir)?;
        let containerd_fds = self
            .containerd
            .and_then(|p| fd_kinds(p, self.env_dir).ok())
            .map(|k| k.values().sum());
        Ok(Sample {
            cycle,
            rss_kib: kib_field(&status, "VmRSS:")?,
            anon_kib: kib_field(&status, "RssAnon:")?,
            pss_kib: kib_field(&rollup, "Pss:")?,
            threads: kib_field(&status, "Threads:")?,
            fds: kinds.values().sum(),
            fd_kinds: kinds,
            containerd_fds,
            store_kib: store.kib,
            store_tasks: store.tasks,
            secs: self.started.elapsed().as_secs_f64(),
        })
    }
}

/// The containerd process listening on the agents' socket (several may run on a host: tests
/// start private ones): the one holding the socket inode /proc/net/unix lists for that path.
pub(super) fn containerd_pid() -> Option<u32> {
    let socket = std::env::var("CONTAINERD_ADDRESS")
        .unwrap_or_else(|_| "/run/containerd/containerd.sock".to_owned());
    let unix = std::fs::read_to_string("/proc/net/unix").ok()?;
    // Num RefCount Protocol Flags Type St Inode Path
    let inodes: Vec<String> = unix
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 8 && f[7] == socket).then(|| format!("socket:[{}]", f[6]))
        })
        .collect();
    find_processes(|comm, _| comm == "containerd")
        .into_iter()
        .find(|pid| {
            std::fs::read_dir(format!("/proc/{pid}/fd"))
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .any(|t| inodes.iter().any(|i| t.as_os_str() == i.as_str()))
        })
}

/// The number after `name` at the start of a line of a /proc file ("VmRSS:   1234 kB").
pub(super) fn kib_field(text: &str, name: &str) -> Result<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("no {name} in {text:?}"))
}

/// The open fds of `pid` by kind: `socket`, `pipe`, `anon_inode:[eventpoll]` and so on, and
/// files by path (`env_dir` shown as `<env>`, ids of 8 or more hex digits as `<id>`, so per-task
/// files group together).
fn fd_kinds(pid: u32, env_dir: &Path) -> Result<BTreeMap<String, usize>> {
    let dir = format!("/proc/{pid}/fd");
    let mut kinds = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {dir}"))? {
        let Ok(entry) = entry else { continue };
        // An fd may close between listing and reading the link.
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        let kind = match target.strip_prefix(env_dir) {
            Ok(rest) => format!("<env>/{}", rest.display()),
            Err(_) => target.display().to_string(),
        };
        let kind = if kind.starts_with("anon_inode:") {
            kind
        } else if let Some((k, _)) = kind.split_once(":[") {
            k.to_owned()
        } else {
            kind.split('/')
                .map(|c| {
                    if c.len() >= 8 && c.chars().all(|x| x.is_ascii_hexdigit() || x == '-') {
                        "<id>"
                    } else {
                        c
                    }
                })
                .collect::<Vec<_>>()
                .join("/")
        };
        *kinds.entry(kind).or_default() += 1;
    }
    Ok(kinds)
}

// ------------------------------------------------------------------------------- output

fn report(samples: &[Sample]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n## agent after N cycles (idle: every task STOPPED and cleaned up, +{} s)",
        SETTLE.as_secs()
    );
    let _ = writeln!(
        out,
        "| cycle | RSS KiB | PSS KiB | fds | threads | containerd fds | RssAnon KiB | agent.db KiB \
         (tasks) | time s |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|");
    for s in samples {
        let _ = writeln!(
            out,
            "| {}{} | {} | {} | {} | {} | {} | {} | {} ({}) | {:.0} |",
            s.cycle,
            if s.cycle == 0 {
                " (before any task)"
            } else {
                ""
            },
            s.rss_kib,
            s.pss_kib,
            s.fds,
            s.threads,
            s.containerd_fds.map_or("?".to_owned(), |n| n.to_string()),
            s.anon_kib,
            s.store_kib,
            s.store_tasks,
            s.secs
        );
    }
    // The agent's fds by kind: in full once, then only what changed.
    let _ = writeln!(out, "\nagent fds by kind:");
    let mut previous: Option<&BTreeMap<String, usize>> = None;
    for s in samples {
        let kinds = &s.fd_kinds;
        let shown: Vec<String> = match previous {
            None => kinds.iter().map(|(k, n)| format!("{k} {n}")).collect(),
            Some(p) => p
                .keys()
                .chain(kinds.keys())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .filter(|k| p.get(*k) != kinds.get(*k))
                .map(|k| {
                    let n = |m: &BTreeMap<String, usize>| m.get(k).copied().unwrap_or(0);
                    format!("{k} {} -> {}", n(p), n(kinds))
                })
                .collect(),
        };
        let line = if shown.is_empty() {
            "unchanged".to_owned()
        } else {
            shown.join(", ")
        };
        let _ = writeln!(out, "  {:>5}: {line}", s.cycle);
        previous = Some(kinds);
    }
    // The verdict compares the first sample after the warm-up with the last one.
    let measured: Vec<&Sample> = samples.iter().filter(|s| s.cycle > 0).collect();
    let (Some(first), Some(last)) = (measured.first(), measured.last()) else {
        return out;
    };
    let pct = |a: u64, b: u64| (b as f64 - a as f64) / a as f64 * 100.0;
    let rss = pct(first.rss_kib, last.rss_kib);
    let pss = pct(first.pss_kib, last.pss_kib);
    let fds = last.fds as i64 - first.fds as i64;
    let threads = last.threads as i64 - first.threads as i64;
    let flat = fds.abs() <= 2 && rss < 10.0;
    let _ = writeln!(
        out,
        "\n## verdict (cycle {} -> cycle {})",
        first.cycle, last.cycle
    );
    let _ = writeln!(
        out,
        "RSS {} -> {} KiB ({rss:+.1} %), PSS {} -> {} KiB ({pss:+.1} %), fds {} -> {} \
         ({fds:+}), threads {} -> {} ({threads:+})",
        first.rss_kib,
        last.rss_kib,
        first.pss_kib,
        last.pss_kib,
        first.fds,
        last.fds,
        first.threads,
        last.threads
    );
    let _ = writeln!(
        out,
        "{} (flat = fds within +-2 and RSS growth below 10 %)",
        if flat { "FLAT" } else { "NOT FLAT" }
    );
    out
}
