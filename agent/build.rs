//! Link berth-agent with packed relative relocations (DT_RELR, glibc >= 2.36 as on Debian 12):
//! a position-independent executable's relocation table shrinks from ~320 KiB, all of which the
//! dynamic loader reads at every start and which then stays resident, to a few KiB (issue #9).
fn main() {
    println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
}
