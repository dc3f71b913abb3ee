#!/usr/bin/env bash
# Builds the container image from ../Dockerfile with podman where no image registry is
# reachable, then serves from it on loopback and asks /healthz.
#
#   bash packaging/container-check.sh
#
# The images the Dockerfile starts from are made from Debian packages instead: the runtime
# base with mmdebstrap (minbase), and a builder with gcc and make (jemalloc's build) on which this machine's own Rust
# toolchain and crate cache are mounted during the build. Needs root, podman, mmdebstrap
# and rustup's toolchain. CI skips it. The root filesystems are kept in $WORK between runs.
#
# Running a container needs a runtime that may set resource limits: where crun (or runc)
# may not (in some sandboxes setrlimit(RLIMIT_NPROC) is refused even at the current
# value, and RLIMIT_NOFILE above it), the check says so and runs the
# image's filesystem under chroot as the image's user with the image's environment instead,
# which tests the same binary, user, paths and healthcheck command.
set -euo pipefail
cd "$(dirname "$0")/.."

WORK=${WORK:-/tmp/livechat-container}
IMAGE=localhost/livechat:check
step() { printf '== %s\n' "$*"; }
mkdir -p "$WORK"

step "base images from Debian packages (mmdebstrap bookworm)"
if [ ! -s "$WORK/base.tar" ]; then
    mmdebstrap --quiet --format=tar --variant=minbase --include=ca-certificates bookworm "$WORK/base.tar.part"
    mv "$WORK/base.tar.part" "$WORK/base.tar"
fi
if [ ! -s "$WORK/builder.tar" ]; then
    mmdebstrap --quiet --format=tar --variant=minbase --include=ca-certificates,gcc,libc6-dev,make bookworm \
        "$WORK/builder.tar.part"
    mv "$WORK/builder.tar.part" "$WORK/builder.tar"
fi
podman import --quiet "$WORK/base.tar" localhost/livechat-base:bookworm >/dev/null
podman import --quiet \
    --change 'ENV PATH=/opt/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV CARGO_HOME=/usr/local/cargo' \
    "$WORK/builder.tar" localhost/livechat-builder:bookworm >/dev/null
podman images --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep livechat-

step "podman build (release build inside the builder, ~10 min on 2 cores)"
start=$(date +%s)
podman build --quiet --format docker --isolation=chroot --pull=never \
    --build-arg BUILDER=localhost/livechat-builder:bookworm \
    --build-arg BASE=localhost/livechat-base:bookworm \
    --volume "$(rustc --print sysroot):/opt/rust:ro" \
    --volume "${CARGO_HOME:-$HOME/.cargo}/registry:/usr/local/cargo/registry" \
    --tag "$IMAGE" .
echo "built in $(( $(date +%s) - start )) s"
podman image inspect "$IMAGE" --format \
    'size {{.Size}} bytes; user {{.Config.User}}; volumes {{.Config.Volumes}}; entrypoint {{.Config.Entrypoint}} {{.Config.Cmd}}
healthcheck {{.HealthCheck.Test}} every {{.HealthCheck.Interval}}
env {{.Config.Env}}'

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
health() {
    for _ in $(seq 1 100); do
        curl -sf "http://127.0.0.1:$port/healthz" && echo && return 0
        sleep 0.1
    done
    return 1
}

step "podman run (host network, listening on 127.0.0.1:$port only)"
# The container's open-files limit as this shell's: crun may not raise it here.
if podman run --detach --name livechat-check --network=host \
        --ulimit nofile="$(ulimit -Sn):$(ulimit -Hn)" \
        --env LIVECHAT_LISTEN="127.0.0.1:$port" "$IMAGE" >"$WORK/run.out" 2>"$WORK/run.err"; then
    trap 'podman rm --force livechat-check >/dev/null 2>&1' EXIT
    step "curl /healthz"
    health || { podman logs livechat-check; exit 1; }
    step "the image's HEALTHCHECK"
    podman healthcheck run livechat-check && echo healthy
    exit 0
fi
echo "podman run failed: $(cat "$WORK/run.err")"
podman rm --force livechat-check >/dev/null 2>&1 || true

step "instead: the image's filesystem under chroot, as its user, with its environment"
fs="$WORK/fs"
rm -rf "$fs" && mkdir -p "$fs"
id=$(podman create "$IMAGE")
podman export "$id" | tar -x -C "$fs"
podman rm "$id" >/dev/null
user=$(podman image inspect "$IMAGE" --format '{{.Config.User}}')
uid=$(chroot "$fs" id -u "$user")
gid=$(chroot "$fs" id -g "$user")
mapfile -t image_env < <(podman image inspect "$IMAGE" --format '{{range .Config.Env}}{{println .}}{{end}}' | sed '/^$/d')
run() {
    env -i "${image_env[@]}" LIVECHAT_LISTEN="127.0.0.1:$port" \
        chroot --userspec="$uid:$gid" "$fs" "$@"
}
echo "user $user = $uid:$gid; /data and /bots: $(stat -c '%u:%g' "$fs/data" "$fs/bots" | tr '\n' ' ')"
run livechat --version
ls -l "$fs/usr/local/bin/livechat"
run livechat serve >"$WORK/serve.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
step "curl /healthz"
health || { cat "$WORK/serve.log"; exit 1; }
step "the HEALTHCHECK command: livechat healthcheck"
run livechat healthcheck
step "curl -H 'Accept-Encoding: br' /widget.js"
curl -s -o /dev/null -H 'Accept-Encoding: br' \
    -w 'status %{http_code}, %{size_download} bytes, %header{content-encoding}\n' \
    "http://127.0.0.1:$port/widget.js"
step "the database is the user's, in the /data volume"
stat -c '%u:%g %n' "$fs/data/livechat.db"
step "ok"
