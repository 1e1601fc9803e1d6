#!/usr/bin/env bash
# Builds the end-to-end test image docker.io/berth/busybox:test as an OCI image layout tarball,
# offline, from Debian's busybox-static. Usage: build-busybox-image.sh OUTDIR
#
# Writes OUTDIR/busybox.tar (import with `ctr -n NS images import OUTDIR/busybox.tar`) and
# OUTDIR/busybox.digest (the manifest digest). The build is deterministic - fixed mtimes, numeric
# owners, sorted entries, no timestamps in the config - so the same busybox binary always gives
# the same digest, and tests can compare digests across runs.
set -euo pipefail

IMAGE_NAME=docker.io/berth/busybox:test
REF_NAME="test"
APPLETS="sh sleep echo cat ls true false id env httpd nc wget dd test printf kill ps mkdir rm
touch date hostname tail head grep wc seq sed awk sort uniq tee cut tr expr yes sha256sum uname whoami
chmod chown ln cp mv stat df du find xargs basename dirname ip ifconfig route ping netstat timeout"

die() { echo "build-busybox-image: $*" >&2; exit 1; }

[ $# -eq 1 ] || die "usage: $0 OUTDIR"
outdir=$1
busybox=${BUSYBOX:-/bin/busybox}
[ -x "$busybox" ] || die "$busybox not found (apt-get install busybox-static)"
# A dynamically linked busybox would not run in an image without a libc.
if command -v file >/dev/null && ! file -L "$busybox" | grep -q 'statically linked'; then
    die "$busybox is not statically linked (apt-get install busybox-static)"
fi
for t in tar sha256sum stat; do
    command -v "$t" >/dev/null || die "missing $t"
done

case $(uname -m) in
    x86_64) arch=amd64 ;;
    aarch64) arch=arm64 ;;
    *) die "unsupported architecture $(uname -m)" ;;
esac

mkdir -p "$outdir"
work=$(mktemp -d "${TMPDIR:-/tmp}/berth-busybox-image.XXXXXX")
trap 'rm -rf "$work"' EXIT

# ---------------------------------------------------------------------------- the root fs
root=$work/rootfs
mkdir -p "$root"/{bin,etc,tmp,proc,sys,dev,root,home/app}
cp "$busybox" "$root/bin/busybox"
for a in $APPLETS; do
    ln -s busybox "$root/bin/$a"
done
cat > "$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
app:x:1000:1000:app:/home/app:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat > "$root/etc/group" <<'EOF'
root:x:0:
app:x:1000:
nobody:x:65534:
EOF
# Modes are set explicitly: the umask of whoever runs this must not change the digest.
find "$root" -type d -exec chmod 0755 {} +
chmod 0755 "$root/bin/busybox"
chmod 0644 "$root/etc/passwd" "$root/etc/group"
chmod 1777 "$root/tmp"
chmod 0700 "$root/root"

# Deterministic tar: sorted names, epoch mtimes, numeric owners. home/app belongs to app.
det_tar() { # $1 = output, $2 = directory, rest = members
    local out=$1 dir=$2
    shift 2
    tar --sort=name --format=gnu --mtime=@0 --owner=0 --group=0 --numeric-owner \
        -C "$dir" -cf "$out" "$@"
}
det_tar "$work/layer-root.tar" "$root" --exclude=./home/app .
tar --sort=name --format=gnu --mtime=@0 --owner=1000 --group=1000 --numeric-owner \
    -C "$root" -cf "$work/layer-app.tar" ./home/app
# One layer: concatenating two tar archives needs the first one's end-of-archive blocks removed;
# GNU tar does that with --concatenate.
tar --concatenate -f "$work/layer-root.tar" "$work/layer-app.tar"
layer=$work/layer-root.tar

# ---------------------------------------------------------------------------- the OCI layout
oci=$work/oci
mkdir -p "$oci/blobs/sha256"
put() { # copies $1 into the blob store, prints its sha256
    local h
    h=$(sha256sum "$1" | cut -d' ' -f1)
    cp "$1" "$oci/blobs/sha256/$h"
    echo "$h"
}
size() { stat -c %s "$1"; }

layer_sha=$(put "$layer")
printf '{"architecture":"%s","os":"linux","config":{"Env":["PATH=/bin"],"Cmd":["/bin/sh"],"WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created_by":"tests/images/build-busybox-image.sh"}]}' \
    "$arch" "$layer_sha" > "$work/config.json"
config_sha=$(put "$work/config.json")
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s}]}' \
    "$config_sha" "$(size "$work/config.json")" "$layer_sha" "$(size "$layer")" > "$work/manifest.json"
manifest_sha=$(put "$work/manifest.json")
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"platform":{"architecture":"%s","os":"linux"},"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"%s"}}]}' \
    "$manifest_sha" "$(size "$work/manifest.json")" "$arch" "$IMAGE_NAME" "$REF_NAME" > "$oci/index.json"
printf '{"imageLayoutVersion":"1.0.0"}' > "$oci/oci-layout"
chmod 0755 "$oci/blobs" "$oci/blobs/sha256"
chmod 0644 "$oci/index.json" "$oci/oci-layout" "$oci/blobs/sha256/"*

det_tar "$work/busybox.tar" "$oci" oci-layout index.json blobs
# Rename into place so a concurrent reader never sees half an archive.
mv "$work/busybox.tar" "$outdir/busybox.tar.tmp.$$"
mv "$outdir/busybox.tar.tmp.$$" "$outdir/busybox.tar"
echo "sha256:$manifest_sha" > "$outdir/busybox.digest.tmp.$$"
mv "$outdir/busybox.digest.tmp.$$" "$outdir/busybox.digest"
echo "built $IMAGE_NAME sha256:$manifest_sha in $outdir/busybox.tar"
