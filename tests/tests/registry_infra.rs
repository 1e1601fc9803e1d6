//! Smoke tests of the image-pull test infrastructure (issue #8): a real registry on loopback,
//! with and without htpasswd auth, the offline multi-layer OCI layout pushed with skopeo, and
//! containerd's own client (`ctr`) pulling and running it - the reference behaviour the
//! agent's pull is held to.

use anyhow::{ensure, Context, Result};
use berth_e2e::{
    ctr, ctr_pull, multilayer_layout, push_layout, skopeo_inspect, OciLayout, ScratchNamespace,
    TestRegistry, MULTILAYER_CHECK_SCRIPT,
};

const REPO_TAG: &str = "berth/multilayer:v1";

/// The layout is the three-layer image, and a push keeps its digest.
fn push_and_inspect(registry: &TestRegistry, layout: &OciLayout) -> Result<()> {
    ensure!(
        layout.layers >= 3,
        "the multi-layer image has {} layers",
        layout.layers
    );
    let pushed = push_layout(registry, &layout.dir, REPO_TAG)?;
    ensure!(
        pushed == layout.digest,
        "pushed {pushed}, but the layout's manifest is {}",
        layout.digest
    );
    let inspected = skopeo_inspect(registry, REPO_TAG, true)?;
    ensure!(
        inspected["Digest"] == pushed.as_str(),
        "{REPO_TAG} resolves to {}, not to the pushed {pushed}",
        inspected["Digest"]
    );
    let layers = inspected["Layers"].as_array().map_or(0, Vec::len);
    ensure!(
        layers == layout.layers,
        "{REPO_TAG} has {layers} layers on the registry: {inspected}"
    );
    Ok(())
}

/// `ctr images pull` from the registry, then a container of the image checks all three layers
/// (whiteouts included).
fn pull_and_run_with_ctr(registry: &TestRegistry, layout: &OciLayout) -> Result<()> {
    let ns = ScratchNamespace::new("registry");
    ctr_pull(registry, ns.name(), REPO_TAG)?;
    let image = registry.image_ref(REPO_TAG);
    let images = ctr(ns.name(), &["images", "ls"])?;
    let row = images
        .lines()
        .find(|l| l.split_whitespace().next() == Some(image.as_str()))
        .with_context(|| format!("{image} is not in `ctr images ls`: {images}"))?;
    ensure!(
        row.contains(&layout.digest),
        "{image} has another digest than {}: {row}",
        layout.digest
    );
    let container = format!("{}-check", ns.name());
    let out = ctr(
        ns.name(),
        &[
            "run",
            "--rm",
            &image,
            &container,
            "sh",
            "-c",
            MULTILAYER_CHECK_SCRIPT,
        ],
    )?;
    ensure!(
        out.trim() == "ok",
        "the container's layers are not what the image says: {out:?}"
    );
    Ok(())
}

#[test]
fn registry_without_auth_serves_the_multilayer_image() -> Result<()> {
    let layout = multilayer_layout()?;
    let registry = TestRegistry::start("open")?;
    assert!(registry.credentials().is_none());
    assert_eq!(registry.host(), registry.addr().to_string());
    assert!(registry.addr().ip().is_loopback());

    push_and_inspect(&registry, &layout)?;
    // Anonymous access is all this registry needs.
    let anonymous = skopeo_inspect(&registry, REPO_TAG, false)?;
    ensure!(anonymous["Digest"] == layout.digest.as_str(), "{anonymous}");
    pull_and_run_with_ctr(&registry, &layout)?;
    registry.pass();
    Ok(())
}

#[test]
fn registry_with_auth_refuses_anonymous_access() -> Result<()> {
    let layout = multilayer_layout()?;
    let registry = TestRegistry::start_with_auth("auth", "berth", "s3cret-pass")?;
    assert_eq!(
        registry.credentials(),
        Some(("berth".to_owned(), "s3cret-pass".to_owned()))
    );

    push_and_inspect(&registry, &layout)?;
    let refused = skopeo_inspect(&registry, REPO_TAG, false)
        .err()
        .context("skopeo inspect without credentials succeeded")?;
    let refused = format!("{refused:#}");
    ensure!(
        refused.contains("unauthorized") || refused.contains("authentication required"),
        "skopeo inspect without credentials failed otherwise: {refused}"
    );

    // containerd without credentials is refused too; with them it pulls.
    let ns = ScratchNamespace::new("registry-anon");
    let anonymous = ctr(
        ns.name(),
        &[
            "images",
            "pull",
            "--plain-http",
            &registry.image_ref(REPO_TAG),
        ],
    );
    let refused = format!("{:#}", anonymous.err().context("ctr pulled anonymously")?);
    ensure!(
        refused.contains("401"),
        "ctr's anonymous pull failed otherwise: {refused}"
    );
    pull_and_run_with_ctr(&registry, &layout)?;
    registry.pass();
    Ok(())
}

#[test]
fn registries_run_side_by_side() -> Result<()> {
    let a = TestRegistry::start("side-a")?;
    let b = TestRegistry::start_with_auth("side-b", "u", "p")?;
    assert_ne!(a.addr(), b.addr());
    assert_ne!(a.dir(), b.dir());
    let dir = a.dir().to_owned();
    a.pass();
    assert!(!dir.exists(), "{} is left after the drop", dir.display());
    b.pass();
    Ok(())
}

/// The benchmark image (built on demand: `build-oci-layout.sh --big`, ~100 MiB) pushes and
/// pulls like the small one. Not run by default: `cargo test -p berth-e2e --test
/// registry_infra -- --ignored`.
#[test]
#[ignore = "builds and pushes the ~100 MiB benchmark image"]
fn big_image_pushes_and_pulls() -> Result<()> {
    let layout = berth_e2e::big_layout()?;
    ensure!(
        layout.layers == 5,
        "the big image has {} layers",
        layout.layers
    );
    let registry = TestRegistry::start("big")?;
    let pushed = push_layout(&registry, &layout.dir, "berth/big:v1")?;
    ensure!(
        pushed == layout.digest,
        "pushed {pushed}, not {}",
        layout.digest
    );
    let ns = ScratchNamespace::new("registry-big");
    ctr_pull(&registry, ns.name(), "berth/big:v1")?;
    let out = ctr(
        ns.name(),
        &[
            "run",
            "--rm",
            &registry.image_ref("berth/big:v1"),
            &format!("{}-check", ns.name()),
            "sh",
            "-c",
            "wc -c < /data/big-1; wc -c < /data/big-2",
        ],
    )?;
    ensure!(
        out.split_whitespace().collect::<Vec<_>>() == ["52428800", "52428800"],
        "the big files are not 50 MiB each: {out:?}"
    );
    registry.pass();
    Ok(())
}
