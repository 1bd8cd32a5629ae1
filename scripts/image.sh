#!/usr/bin/env bash
# `make image`: builds Ember's container image (docker/Dockerfile) with podman.
#
# No registry is needed: the Debian base is made here with debootstrap (once, then reused from
# podman's store), and Ember plus every dependency go in as wheels built on this machine, so the
# image build itself is offline.
#   env: PYTHON (.venv/bin/python), IMAGE (localhost/emberserve:<version>),
#        BASE_IMAGE (localhost/ember-base:bookworm), DEBIAN_MIRROR, EXTRAS (grpc,torch)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
version="$("$PYTHON" -c 'import emberserve; print(emberserve.__version__)')"
IMAGE="${IMAGE:-localhost/emberserve:$version}"
BASE_IMAGE="${BASE_IMAGE:-localhost/ember-base:bookworm}"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
EXTRAS="${EXTRAS:-grpc,torch}"
context=build/image

need() {  # need COMMAND DEBIAN-PACKAGES...: install with apt when missing (root only)
    command -v "$1" >/dev/null 2>&1 && return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "==> Installing ${*:2} (apt)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${@:2}" >/dev/null
    else
        echo "make image needs $1: apt-get install ${*:2}" >&2
        exit 1
    fi
}

need podman podman runc
if ! podman image exists "$BASE_IMAGE"; then
    need debootstrap debootstrap
    rootfs="$(mktemp -d /var/tmp/ember-rootfs.XXXXXX)"
    trap 'rm -rf "$rootfs"' EXIT
    echo "==> Making the base image $BASE_IMAGE with debootstrap (Debian bookworm, Python 3.11; ~2 min)"
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        bookworm "$rootfs" "$DEBIAN_MIRROR" >/dev/null
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar --numeric-owner -C "$rootfs" -c . | podman import --change 'CMD ["/bin/bash"]' - "$BASE_IMAGE" >/dev/null
fi

echo "==> Building wheels for Ember[$EXTRAS] and its dependencies"
rm -rf "$context"
mkdir -p "$context"
"$PYTHON" -m pip wheel -q --wheel-dir "$context/wheels" -c constraints-dev.txt ".[$EXTRAS]" 2>&1 | { grep -v "is ignored: it is neither" || true; }
cp docker/ember-entrypoint docker/torchserve docker/config.properties "$context/"

echo "==> Building $IMAGE"
# runc, not crun, where both exist: crun refuses hosts with hybrid cgroups (as this sandbox).
runtime=()
command -v runc >/dev/null 2>&1 && runtime=(--runtime runc)
podman build "${runtime[@]}" -q -f docker/Dockerfile --build-arg "BASE_IMAGE=$BASE_IMAGE" --build-arg "EXTRAS=$EXTRAS" \
    -t "$IMAGE" "$context" >/dev/null
rm -rf "$context"
size="$(podman image inspect --format '{{.Size}}' "$IMAGE")"
echo "==> Built $IMAGE ($((size / 1000000)) MB)"
