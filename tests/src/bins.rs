//! Finding the binaries under test, and building them once per test process so that a plain
//! `cargo test` works without a separate `cargo build` first.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The cargo workspace root (the parent of this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives inside the workspace")
        .to_path_buf()
}

/// The path of one of the workspace's binaries (`berth-cp`, `berthctl`, `berth-agent`), built
/// first if this test process has not built them yet.
pub fn bin(name: &str) -> PathBuf {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    if let Err(e) = BUILT.get_or_init(build) {
        panic!("{e}");
    }
    let path = profile_dir().join(name);
    assert!(
        path.is_file(),
        "{} does not exist after the build",
        path.display()
    );
    path
}

fn profile_dir() -> PathBuf {
    // A relative CARGO_TARGET_DIR is taken relative to the workspace root, where it is usually
    // given; `join` keeps an absolute one as it is.
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace_root().join(dir),
        None => workspace_root().join("target"),
    };
    target.join(if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    })
}

fn build() -> Result<(), String> {
    if std::env::var_os("BERTH_E2E_NO_BUILD").is_some() {
        return Ok(());
    }
    // CARGO is set by `cargo test` to the cargo that runs us: build with the same toolchain.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--bins", "-p", "berth-agent", "-p", "berth-cp"])
        .current_dir(workspace_root());
    if !cfg!(debug_assertions) {
        cmd.arg("--release");
    }
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run cargo to build the binaries under test: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`cargo build --bins -p berth-agent -p berth-cp` failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}
