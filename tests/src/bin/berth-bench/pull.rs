//! `berth-bench pull` (issue #8): pulling a multi-layer image of about 100 MB from a registry on
//! loopback, Berth against containerd's own client (`ctr images pull --plain-http`), same
//! machine, same run, alternating.
//!
//! Each round pulls into a namespace where the image is not present, so every layer is
//! downloaded, stored and unpacked: for ctr a scratch namespace, timed around the command; for
//! Berth a fresh agent (its own namespace) running one task of the image, timed by the agent
//! (the task's pullStoppedAt − pullStartedAt, which spans resolving, fetching, storing and
//! unpacking, as ctr's does).

use std::time::Instant;

use anyhow::{ensure, Context, Result};
use berth_e2e::{
    big_layout, ctr_pull, push_layout, register, run_task, wait_stopped, ScratchNamespace, TestEnv,
    TestRegistry,
};
use serde_json::{json, Value};

use super::{machine, progress};

const USAGE: &str = "berth-bench pull [--rounds N]";

pub struct Options {
    rounds: usize,
}

pub fn parse(args: &[String]) -> Result<Options> {
    let mut o = Options { rounds: 5 };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--rounds" => {
                o.rounds = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .with_context(|| format!("--rounds needs a number; usage: {USAGE}"))?
            }
            _ => anyhow::bail!("unknown argument {arg:?}; usage: {USAGE}"),
        }
    }
    ensure!(o.rounds >= 1, "usage: {USAGE}");
    Ok(o)
}

pub async fn run(o: Options) -> Result<()> {
    let layout = big_layout().context("building the benchmark image")?;
    let size: u64 = std::fs::read_dir(layout.dir.join("blobs/sha256"))?
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();
    let registry = TestRegistry::start("bench-pull")?;
    push_layout(&registry, &layout.dir, "berth/big:v1")?;
    let image = registry.image_ref("berth/big:v1");
    progress(format_args!(
        "pushed {image}: {} layers, {:.1} MB of blobs",
        layout.layers,
        size as f64 / 1e6
    ));

    let layers = layer_digests(&layout)?;
    let mut ctr_secs = Vec::new();
    let mut berth_secs = Vec::new();
    for round in 1..=o.rounds {
        let ns = ScratchNamespace::new("bench-ctr");
        let before = layer_gets(&registry, &layers);
        let clock = Instant::now();
        ctr_pull(&registry, ns.name(), "berth/big:v1")?;
        ctr_secs.push(clock.elapsed().as_secs_f64());
        downloaded_all(&registry, &layers, before, "ctr")?;
        drop(ns);

        let before = layer_gets(&registry, &layers);
        let secs = berth_pull(&registry, &image).await?;
        downloaded_all(&registry, &layers, before, "berth")?;
        berth_secs.push(secs);
        progress(format_args!(
            "round {round}: ctr {:.2} s, berth {:.2} s",
            ctr_secs[round - 1],
            secs
        ));
    }
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (c, b) = (median(&ctr_secs), median(&berth_secs));
    println!("# berth-bench pull");
    println!("{}", machine());
    println!(
        "image: {image}, {} layers, {:.1} MB of blobs (manifest, config, layers)",
        layout.layers,
        size as f64 / 1e6
    );
    println!(
        "| round | ctr images pull --plain-http (s) | berth (pullStoppedAt - pullStartedAt, s) |"
    );
    println!("|---|---|---|");
    for (i, (c, b)) in ctr_secs.iter().zip(&berth_secs).enumerate() {
        println!("| {} | {c:.2} | {b:.2} |", i + 1);
    }
    println!(
        "median: ctr {c:.2} s ({:.0} MB/s), berth {b:.2} s ({:.0} MB/s); berth / ctr = {:.2}",
        size as f64 / 1e6 / c,
        size as f64 / 1e6 / b,
        b / c
    );
    registry.pass();
    Ok(())
}

/// The digests of the image's layers.
fn layer_digests(layout: &berth_e2e::OciLayout) -> Result<Vec<String>> {
    let path = layout
        .dir
        .join("blobs/sha256")
        .join(layout.digest.trim_start_matches("sha256:"));
    let manifest: Value = serde_json::from_slice(&std::fs::read(&path)?)?;
    manifest["layers"]
        .as_array()
        .context("no layers in the manifest")?
        .iter()
        .map(|l| {
            l["digest"]
                .as_str()
                .map(str::to_owned)
                .context("layer digest")
        })
        .collect()
}

/// How many times the registry has served one of `layers` (its access log's GETs).
fn layer_gets(registry: &TestRegistry, layers: &[String]) -> usize {
    registry
        .log()
        .lines()
        .filter(|l| l.contains("\"GET /v2/") && layers.iter().any(|d| l.contains(d.as_str())))
        .count()
}

/// A timing only counts if the pull downloaded every layer: containerd shares blobs between
/// namespaces, so a layer left by an earlier round would be skipped and flatter the figure.
fn downloaded_all(
    registry: &TestRegistry,
    layers: &[String],
    before: usize,
    who: &str,
) -> Result<()> {
    let fetched = layer_gets(registry, layers) - before;
    ensure!(
        fetched == layers.len(),
        "{who} fetched {fetched} layers of {}: blobs left by an earlier pull were reused, so \
         this round does not measure a full pull",
        layers.len()
    );
    Ok(())
}

/// One pull by a fresh agent: the seconds between the task's pullStartedAt and pullStoppedAt.
async fn berth_pull(registry: &TestRegistry, image: &str) -> Result<f64> {
    let mut env = TestEnv::new("bench-pull")?;
    env.set_agent_images_toml(&format!(
        "insecure_registries = [{:?}]\npull_behavior = \"always\"",
        registry.host()
    ));
    env.set_task_cleanup_wait_secs(0);
    env.start_cp().await?;
    let code = env.create_activation(1)?;
    env.start_agent(Some(&code))?;
    env.wait_agent_connected().await?;
    let td = register(
        &env.api(),
        json!({
            "family": format!("bench-pull-{}", env.id),
            "networkMode": "none",
            "containerDefinitions": [{
                "name": "app", "image": image, "essential": true, "memory": 32,
                "entryPoint": ["sh", "-c"], "command": ["test -s /data/big-1"],
            }],
        }),
    )
    .await?;
    let task = run_task(&env, &td, Value::Null).await?;
    let t = wait_stopped(&env, &task).await?;
    ensure!(
        berth_e2e::exit_code(&t, "app") == Some(0),
        "the benchmark task failed: {t}"
    );
    let started = t["pullStartedAt"].as_f64().context("no pullStartedAt")?;
    let stopped = t["pullStoppedAt"].as_f64().context("no pullStoppedAt")?;
    env.pass();
    Ok(stopped - started)
}
