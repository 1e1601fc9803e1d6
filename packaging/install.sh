#!/usr/bin/env bash
# The main job, in one command, on a fresh Debian 12 machine (as root, from a clone of the repo):
#
#   packaging/install.sh
#
# installs the Debian packages Berth needs, builds the release binaries and installs them to
# /usr/local/bin, starts containerd, berth-cp and berth-agent (as systemd units when systemd is
# PID 1, else as background processes logging to /var/log/berth-*.log), registers the node with
# an activation code, imports the busybox test image into the agent's containerd namespace, and
# runs examples/hello.json on it.
#
# Re-running is safe: running services are left alone, a node that already holds a credential
# is not activated again, and hello is only started when no hello task is running.
#
# Environment: BERTH_CLUSTER (default "default"), BERTH_PREFIX (default /usr/local).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cluster=${BERTH_CLUSTER:-default}
bindir=${BERTH_PREFIX:-/usr/local}/bin
api=http://127.0.0.1:7080
cp_data=/var/lib/berth-cp
agent_data=/var/lib/berth
namespace=berth
export DEBIAN_FRONTEND=noninteractive

step() { printf '\n==> %s\n' "$*"; }
die() { echo "install.sh: $*" >&2; exit 1; }
have_systemd() { [ -d /run/systemd/system ]; }

[ "$(id -u)" = 0 ] || die "run me as root"
[ -r /etc/debian_version ] || die "this installer is for Debian 12"

# ---------------------------------------------------------------------------- packages
step "Debian packages"
packages=(containerd runc nftables protobuf-compiler busybox-static tini ca-certificates curl sqlite3 gcc
          libc6-dev pkg-config)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null
fi

# ---------------------------------------------------------------------------- binaries
step "building release binaries"
if ! command -v cargo >/dev/null && [ -f "$HOME/.cargo/env" ]; then
    # shellcheck source=/dev/null
    . "$HOME/.cargo/env"
fi
command -v cargo >/dev/null ||
    die "cargo is missing: install Rust (https://rustup.rs), then run me again"
(cd "$root" && cargo build --release --locked --bins -p berth-agent -p berth-cp)
release=${CARGO_TARGET_DIR:-$root/target}/release
install -d "$bindir"
for b in berth-agent berth-logger berth-cp berthctl; do
    # install(1) replaces the file, so a running old binary is not disturbed.
    install -m 0755 "$release/$b" "$bindir/$b"
done
berthctl() { "$bindir/berthctl" --endpoint "$api" --cluster "$cluster" "$@"; }

# Starts a service: the systemd unit from systemd/ (with ExecStart pointed at $bindir through a
# drop-in, so the unit itself stays the one copy), or a background process without systemd.
start_service() { # NAME ARGS...
    local name=$1
    shift
    if have_systemd; then
        install -m 0644 "$root/systemd/$name.service" "/etc/systemd/system/$name.service"
        install -d "/etc/systemd/system/$name.service.d"
        printf '[Service]\nExecStart=\nExecStart=%s\n' "$bindir/$name $*" \
            > "/etc/systemd/system/$name.service.d/install-sh.conf"
        systemctl daemon-reload
        systemctl enable "$name.service"
        # restart picks up a new binary; the agent's KillMode=process keeps tasks running.
        # Both units are Type=notify: this returns once the service says it is ready (berth-cp
        # listening, the agent registered) or has failed.
        systemctl restart "$name.service" ||
            { service_log "$name" >&2; die "$name did not start"; }
    else
        local pidfile=/run/$name.pid
        if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
            echo "$name already runs (pid $(cat "$pidfile"))"
            return
        fi
        setsid nohup "$bindir/$name" "$@" >>"/var/log/$name.log" 2>&1 </dev/null &
        echo $! > "$pidfile"
        echo "$name started (pid $!, log /var/log/$name.log)"
    fi
}

service_log() { # NAME: the last lines of its log, for error messages
    if have_systemd; then journalctl -u "$1" -n 30 --no-pager; else tail -n 30 "/var/log/$1.log"; fi
}

wait_for() { # WHAT SECONDS COMMAND...
    local what=$1 secs=$2
    shift 2
    local deadline=$((SECONDS + secs))
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -lt "$deadline" ] || return 1
        sleep 1
    done
    echo "$what: ok"
}

ecs() { # OPERATION JSON: one call of the ECS API
    curl -fsS "$api/" -H "X-Amz-Target: AmazonEC2ContainerServiceV20141113.$1" \
        -H 'Content-Type: application/x-amz-json-1.1' -d "$2"
}

# ---------------------------------------------------------------------------- containerd
step "containerd"
if have_systemd; then
    systemctl enable --now containerd.service
elif ! timeout 5 ctr version >/dev/null 2>&1; then
    setsid nohup containerd >>/var/log/containerd.log 2>&1 </dev/null &
fi
wait_for containerd 60 timeout 5 ctr version || die "containerd does not answer (see /var/log/containerd.log)"

# ---------------------------------------------------------------------------- berth-cp
step "berth-cp"
install -d -m 0755 /etc/berth
[ -f /etc/berth/cp.toml ] || install -m 0644 "$root/packaging/cp.toml" /etc/berth/cp.toml
start_service berth-cp serve --config /etc/berth/cp.toml
# Any HTTP answer will do: the API is up.
wait_for "berth-cp API on $api" 60 curl -sS -o /dev/null "$api/" ||
    { service_log berth-cp >&2; die "berth-cp does not answer on $api"; }

# ---------------------------------------------------------------------------- berth-agent
step "berth-agent"
registered() { # the agent keeps its instance credential in its state database
    [ -f "$agent_data/agent.db" ] &&
        [ -n "$(sqlite3 -readonly "$agent_data/agent.db" "SELECT value FROM meta WHERE key = 'secret'" 2>/dev/null)" ]
}
if registered && [ -f /etc/berth/agent.toml ]; then
    echo "this node is registered already: no new activation"
else
    code=$("$bindir/berth-cp" activation create --data-dir "$cp_data" --cluster "$cluster" --uses 1)
    [ -n "$code" ] || die "berth-cp activation create printed no code"
    # The example config, with this node's activation code filled in.
    sed -e "s|^cluster = .*|cluster = \"$cluster\"|" \
        -e "s|^# activation_code = .*|activation_code = \"$code\"|" \
        "$root/packaging/agent.toml" > /etc/berth/agent.toml.new
    chmod 0600 /etc/berth/agent.toml.new
    mv /etc/berth/agent.toml.new /etc/berth/agent.toml
    echo "wrote /etc/berth/agent.toml (cluster $cluster, a new activation code)"
fi
start_service berth-agent --config /etc/berth/agent.toml

# ---------------------------------------------------------------------------- image
step "busybox image in containerd namespace $namespace"
image_dir=$(mktemp -d /var/tmp/berth-image.XXXXXX)
"$root/tests/images/build-busybox-image.sh" "$image_dir"
ctr -n "$namespace" images import "$image_dir/busybox.tar"
rm -rf "$image_dir"

connected() {
    local arns
    arns=$(ecs ListContainerInstances "{\"cluster\":\"$cluster\"}" | grep -o '"arn:[^"]*"' | paste -sd, -)
    [ -n "$arns" ] &&
        ecs DescribeContainerInstances "{\"cluster\":\"$cluster\",\"containerInstances\":[$arns]}" |
        grep -q '"agentConnected": *true'
}
wait_for "the agent connected to cluster $cluster" 120 connected ||
    { service_log berth-agent >&2; die "the agent did not connect"; }

# ---------------------------------------------------------------------------- hello
step "examples/hello.json"
if ecs ListTasks "{\"cluster\":\"$cluster\",\"family\":\"hello\",\"desiredStatus\":\"RUNNING\"}" |
    grep -q '"arn:'; then
    echo "hello runs already"
else
    berthctl register-task-definition "$root/examples/hello.json"
    berthctl run-task hello
fi

step "tasks"
berthctl list-tasks
task=$(ecs ListTasks "{\"cluster\":\"$cluster\",\"family\":\"hello\"}" | grep -o '"arn:[^"]*"' | head -n 1 | tr -d '"')
cat <<EOF

Berth runs. Next:
  $bindir/berthctl --cluster $cluster describe-tasks ${task:-TASK_ARN}
  AWS_ACCESS_KEY_ID=berth AWS_SECRET_ACCESS_KEY=berth AWS_DEFAULT_REGION=us-east-1 \\
    aws ecs describe-tasks --endpoint-url $api --cluster $cluster --tasks ${task:-TASK_ARN}
  ctr -n $namespace tasks ls          # the task's containers, as containerd sees them
Logs: $(if have_systemd; then echo "journalctl -u berth-agent -u berth-cp"; else echo "/var/log/berth-agent.log /var/log/berth-cp.log"; fi)
EOF
