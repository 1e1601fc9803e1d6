#!/usr/bin/env bash
# Builds the registry test images as OCI image layouts (directories, for `skopeo copy oci:DIR`),
# offline, from Debian's busybox-static. Usage: build-oci-layout.sh [--big] OUTDIR
#
#   OUTDIR/multilayer/       three layers, each a different case for an image pull:
#                              1. busybox, its applet symlinks, /etc/passwd and /etc/group
#                                 (tar+gzip)
#                              2. /etc/berth-layer2 ("berth layer 2"), /etc/berth-layer2.d/{keep,gone},
#                                 /opt/replaced/old (plain tar, uncompressed)
#                              3. /etc/berth-layer3 ("berth layer 3"), a whiteout
#                                 /etc/berth-layer2.d/.wh.gone, an opaque whiteout
#                                 /opt/replaced/.wh..wh..opq and /opt/replaced/new (tar+gzip)
#                            Cmd ["sh"], Env PATH=/bin. Ref name "multilayer".
#   OUTDIR/multilayer.digest its manifest digest (sha256:...), written last
#   with --big also:
#   OUTDIR/big/, big.digest  the same three layers plus two of 50 MiB of seeded pseudo-random
#                            (incompressible) data each, /data/big-1 and /data/big-2 (tar+gzip),
#                            for the pull benchmark. Ref name "big". Never built by CI.
#
# Deterministic: fixed mtimes, numeric owners, sorted entries, `gzip -n`, no timestamps in the
# configs, seeded data: the same busybox binary always gives the same digests. An image whose
# digest did not change is left in place untouched (a test reading it is not disturbed); builders
# in parallel serialise on OUTDIR/.build-oci-layout.lock.
set -euo pipefail

APPLETS="sh sleep echo cat ls true false id env mkdir rm touch date hostname tail head grep wc
seq sed awk sort uniq tee cut tr expr sha256sum uname whoami stat find xargs basename dirname dd
test printf kill ps wget"
BIG_LAYER_BYTES=$((50 * 1024 * 1024))

die() { echo "build-oci-layout: $*" >&2; exit 1; }

big=0
if [ "${1:-}" = --big ]; then
    big=1
    shift
fi
[ $# -eq 1 ] || die "usage: $0 [--big] OUTDIR"
outdir=$1
busybox=${BUSYBOX:-/bin/busybox}
[ -x "$busybox" ] || die "$busybox not found (apt-get install busybox-static)"
if command -v file >/dev/null && ! file -L "$busybox" | grep -q 'statically linked'; then
    die "$busybox is not statically linked (apt-get install busybox-static)"
fi
for t in tar gzip sha256sum stat flock; do
    command -v "$t" >/dev/null || die "missing $t"
done
python=python3
[ -x /usr/bin/python3 ] && python=/usr/bin/python3
if [ $big = 1 ]; then
    command -v "$python" >/dev/null || die "missing python3 (for the big image's data)"
fi

case $(uname -m) in
    x86_64) arch=amd64 ;;
    aarch64) arch=arm64 ;;
    *) die "unsupported architecture $(uname -m)" ;;
esac

mkdir -p "$outdir"
outdir=$(cd "$outdir" && pwd)
exec 9>"$outdir/.build-oci-layout.lock"
flock 9
work=$(mktemp -d "$outdir/.build-oci-layout.XXXXXX")
trap 'rm -rf "$work"' EXIT
export LC_ALL=C

det_tar() { # OUTPUT DIR: the whole of DIR, deterministically
    tar --sort=name --format=gnu --mtime=@0 --owner=0 --group=0 --numeric-owner \
        -C "$2" -cf "$1" .
}
sha() { sha256sum "$1" | cut -d' ' -f1; }
size() { stat -c %s "$1"; }

# ---------------------------------------------------------------------------- layer contents
l1=$work/l1
mkdir -p "$l1"/{bin,etc,tmp,proc,sys,dev,root}
cp "$busybox" "$l1/bin/busybox"
for a in $APPLETS; do
    ln -s busybox "$l1/bin/$a"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' \
    >"$l1/etc/passwd"
printf 'root:x:0:\nnobody:x:65534:\n' >"$l1/etc/group"

l2=$work/l2
mkdir -p "$l2/etc/berth-layer2.d" "$l2/opt/replaced"
printf 'berth layer 2\n' >"$l2/etc/berth-layer2"
printf 'kept\n' >"$l2/etc/berth-layer2.d/keep"
printf 'removed by layer 3\n' >"$l2/etc/berth-layer2.d/gone"
printf 'hidden by layer 3\n' >"$l2/opt/replaced/old"

l3=$work/l3
mkdir -p "$l3/etc/berth-layer2.d" "$l3/opt/replaced"
printf 'berth layer 3\n' >"$l3/etc/berth-layer3"
: >"$l3/etc/berth-layer2.d/.wh.gone"
: >"$l3/opt/replaced/.wh..wh..opq"
printf 'from layer 3\n' >"$l3/opt/replaced/new"

# Modes are set explicitly: the umask of whoever runs this must not change a digest.
for d in "$l1" "$l2" "$l3"; do
    find "$d" -type d -exec chmod 0755 {} +
    find "$d" -type f -exec chmod 0644 {} +
done
chmod 0755 "$l1/bin/busybox"
chmod 1777 "$l1/tmp"
chmod 0700 "$l1/root"

# ---------------------------------------------------------------------------- blobs
# Each layer: LAYER_TARS[i] (uncompressed, for the diff id), LAYER_BLOBS[i] (what is pushed),
# LAYER_TYPES[i] (its media type).
LAYER_TARS=() LAYER_BLOBS=() LAYER_TYPES=() LAYER_HISTORY=()
add_layer() { # DIR gzip|plain DESCRIPTION
    local n=${#LAYER_TARS[@]}
    det_tar "$work/layer-$n.tar" "$1"
    LAYER_TARS+=("$work/layer-$n.tar")
    if [ "$2" = gzip ]; then
        gzip -n -6 -c "$work/layer-$n.tar" >"$work/layer-$n.tar.gz"
        LAYER_BLOBS+=("$work/layer-$n.tar.gz")
        LAYER_TYPES+=(application/vnd.oci.image.layer.v1.tar+gzip)
    else
        LAYER_BLOBS+=("$work/layer-$n.tar")
        LAYER_TYPES+=(application/vnd.oci.image.layer.v1.tar)
    fi
    LAYER_HISTORY+=("$3")
}

# IMAGE_NAME LAYER_COUNT: writes the OCI layout of the first LAYER_COUNT layers to
# $work/image-IMAGE_NAME, and moves it to OUTDIR/IMAGE_NAME unless an identical one is there.
write_layout() {
    local name=$1 count=$2 oci=$work/image-$1 i diff_ids="" layers="" history="" blob
    mkdir -p "$oci/blobs/sha256"
    for ((i = 0; i < count; i++)); do
        blob=$(sha "${LAYER_BLOBS[$i]}")
        cp "${LAYER_BLOBS[$i]}" "$oci/blobs/sha256/$blob"
        [ $i = 0 ] || { diff_ids+=,; layers+=,; history+=,; }
        diff_ids+="\"sha256:$(sha "${LAYER_TARS[$i]}")\""
        layers+="{\"mediaType\":\"${LAYER_TYPES[$i]}\",\"digest\":\"sha256:$blob\",\"size\":$(size "${LAYER_BLOBS[$i]}")}"
        history+="{\"created_by\":\"tests/images/build-oci-layout.sh: ${LAYER_HISTORY[$i]}\"}"
    done
    printf '{"architecture":"%s","os":"linux","config":{"Env":["PATH=/bin"],"Cmd":["sh"],"WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":[%s]},"history":[%s]}' \
        "$arch" "$diff_ids" "$history" >"$work/$name-config.json"
    local config_sha manifest_sha
    config_sha=$(sha "$work/$name-config.json")
    cp "$work/$name-config.json" "$oci/blobs/sha256/$config_sha"
    printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[%s]}' \
        "$config_sha" "$(size "$work/$name-config.json")" "$layers" >"$work/$name-manifest.json"
    manifest_sha=$(sha "$work/$name-manifest.json")
    cp "$work/$name-manifest.json" "$oci/blobs/sha256/$manifest_sha"
    printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"platform":{"architecture":"%s","os":"linux"},"annotations":{"org.opencontainers.image.ref.name":"%s"}}]}' \
        "$manifest_sha" "$(size "$work/$name-manifest.json")" "$arch" "$name" >"$oci/index.json"
    printf '{"imageLayoutVersion":"1.0.0"}' >"$oci/oci-layout"
    chmod 0755 "$oci" "$oci/blobs" "$oci/blobs/sha256"
    chmod 0644 "$oci/index.json" "$oci/oci-layout" "$oci/blobs/sha256/"*

    local digest=sha256:$manifest_sha
    if [ -f "$outdir/$name.digest" ] && [ "$(cat "$outdir/$name.digest")" = "$digest" ] &&
        [ -f "$outdir/$name/blobs/sha256/$manifest_sha" ]; then
        echo "unchanged $name $digest ($count layers) in $outdir/$name"
        return
    fi
    # The digest file goes first and comes back last: whoever sees it sees a complete layout.
    rm -f "$outdir/$name.digest"
    rm -rf "$outdir/$name"
    mv "$oci" "$outdir/$name"
    echo "$digest" >"$work/$name.digest"
    mv "$work/$name.digest" "$outdir/$name.digest"
    echo "built $name $digest ($count layers) in $outdir/$name"
}

add_layer "$l1" gzip "busybox"
add_layer "$l2" plain "/etc/berth-layer2, /etc/berth-layer2.d, /opt/replaced/old"
add_layer "$l3" gzip "/etc/berth-layer3, whiteouts"
write_layout multilayer 3

if [ $big = 1 ]; then
    for n in 1 2; do
        d=$work/big$n
        mkdir -p "$d/data"
        "$python" -c '
import random, sys
rng = random.Random("berth-big-" + sys.argv[1])
left = int(sys.argv[2])
out = sys.stdout.buffer
while left > 0:
    chunk = min(left, 1 << 20)
    out.write(rng.randbytes(chunk))
    left -= chunk
' "$n" "$BIG_LAYER_BYTES" >"$d/data/big-$n"
        chmod 0755 "$d" "$d/data"
        chmod 0644 "$d/data/big-$n"
        add_layer "$d" gzip "/data/big-$n (seeded random)"
    done
    write_layout big 5
fi
