#!/usr/bin/env bash
# Builds two Debian packages with dpkg-deb from release binaries:
#   berth-agent_VERSION_ARCH.deb  berth-agent and berth-logger, its systemd unit, /etc/berth/agent.toml
#   berth-cp_VERSION_ARCH.deb     berth-cp + berthctl, their unit, /etc/berth/cp.toml
# The units come from systemd/ (their one copy); the configs from packaging/.
#
# Usage: packaging/build-deb.sh [--no-build] [OUTDIR]   (default OUTDIR: target/debian)
#   --no-build  package the binaries already in target/release (or $CARGO_TARGET_DIR/release)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
die() { echo "build-deb: $*" >&2; exit 1; }

build=1
if [ "${1:-}" = --no-build ]; then build=0; shift; fi
outdir=${1:-$root/target/debian}
release=${CARGO_TARGET_DIR:-$root/target}/release

command -v dpkg-deb >/dev/null || die "dpkg-deb is missing (apt-get install dpkg)"
version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' "$root/Cargo.toml")
[ -n "$version" ] || die "no version in [workspace.package] of Cargo.toml"
arch=$(dpkg --print-architecture)

if [ $build = 1 ]; then
    (cd "$root" && cargo build --release --locked --bins -p berth-agent -p berth-cp)
fi
for b in berth-agent berth-logger berth-cp berthctl; do
    [ -x "$release/$b" ] || die "$release/$b is missing (build it, or drop --no-build)"
done

mkdir -p "$outdir"
work=$(mktemp -d "${TMPDIR:-/tmp}/berth-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT

# package NAME DESCRIPTION DEPENDS UNIT CONFIG BINARIES...
package() {
    local name=$1 description=$2 depends=$3 unit=$4 config=$5
    shift 5
    local pkg=$work/$name
    install -d "$pkg/DEBIAN" "$pkg/usr/bin" "$pkg/lib/systemd/system" "$pkg/etc/berth" \
        "$pkg/usr/share/doc/$name"
    local b
    for b in "$@"; do
        install -m 0755 "$release/$b" "$pkg/usr/bin/$b"
    done
    install -m 0644 "$root/systemd/$unit" "$pkg/lib/systemd/system/$unit"
    install -m 0644 "$root/packaging/$config" "$pkg/etc/berth/$config"
    install -m 0644 "$root/packaging/$config" "$pkg/usr/share/doc/$name/$config.example"
    [ ! -f "$root/LICENSE" ] || install -m 0644 "$root/LICENSE" "$pkg/usr/share/doc/$name/copyright"

    cat > "$pkg/DEBIAN/control" <<EOF
Package: $name
Version: $version
Architecture: $arch
Maintainer: Berth developers <berth@localhost>
Section: admin
Priority: optional
${depends:+Depends: $depends
}Installed-Size: $(du -sk --exclude=DEBIAN "$pkg" | cut -f1)
Description: $description
EOF
    echo "/etc/berth/$config" > "$pkg/DEBIAN/conffiles"
    # The services are not started on install: each needs its configuration first (the agent
    # an activation code). systemd only has to learn about the new unit.
    cat > "$pkg/DEBIAN/postinst" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = configure ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload || true
fi
EOF
    cat > "$pkg/DEBIAN/postrm" <<'EOF'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || true
fi
EOF
    chmod 0755 "$pkg/DEBIAN/postinst" "$pkg/DEBIAN/postrm"
    dpkg-deb --root-owner-group --build "$pkg" "$outdir/${name}_${version}_${arch}.deb"
}

package berth-agent "Berth node agent: runs Amazon ECS task definitions on containerd" \
    "containerd (>= 1.6), runc, nftables" berth-agent.service agent.toml berth-agent berth-logger
package berth-cp "Berth control plane: the Amazon ECS API for Berth agents, and berthctl" \
    "" berth-cp.service cp.toml berth-cp berthctl
