#!/usr/bin/env bash
# Build the ckptwatch image with podman on a machine with no Docker engine and
# no registry (see docs/container.md), and print the variables the container
# tests read. Steps, each skipped when already done:
#   1. podman, runc, debootstrap and podman-compose from apt (as root);
#   2. a containers.conf without default ulimits (this host refuses them);
#   3. a Debian base image with Python, debootstrapped once and cached under
#      $CKPTWATCH_CACHE (default /var/tmp/ckptwatch-container), keyed by its recipe;
#   4. the image, from the Dockerfile at the top of the repo, with the host's CA
#      bundle mounted for pip (a TLS proxy's CA is not in a debootstrapped base).
# Output on stdout (for eval): CONTAINERS_CONF=... CKPTWATCH_IMAGE=... ; progress on stderr.
set -euo pipefail
cd "$(dirname "$0")/../.."

say() { printf 'container setup: %s\n' "$*" >&2; }
run() { printf '+ %s\n' "$*" >&2; "$@"; }   # each command, as run, on stderr
CACHE=${CKPTWATCH_CACHE:-/var/tmp/ckptwatch-container}
IMAGE=${CKPTWATCH_IMAGE:-localhost/ckptwatch:test}
mkdir -p "$CACHE"

# 1. tools
need=()
for tool in podman runc debootstrap podman-compose; do
    command -v "$tool" >/dev/null || need+=("$tool")
done
if ((${#need[@]})); then
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        say "missing ${need[*]}, and cannot install them (needs root and apt-get)"
        exit 3
    fi
    say "installing ${need[*]} with apt-get"
    run apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive run apt-get install -y -qq podman runc debootstrap podman-compose >&2
fi

# 2. runc (crun fails on this host's cgroups) and no default ulimits
conf="$CACHE/containers.conf"
printf '[containers]\ndefault_ulimits = []\n\n[engine]\nruntime = "runc"\n' >"$conf"
export CONTAINERS_CONF="$conf"

# 3. the base: Debian's Python in a minimal root file system
suite=bookworm
mirror=$(sed -n 's/^URIs: *\(http[^ ]*debian\)$/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n1)
mirror=${mirror:-http://deb.debian.org/debian}
recipe="debootstrap --variant=minbase --include=python3,python3-venv $suite"
key=$(printf '%s' "$recipe" | sha256sum | cut -c1-12)
base="localhost/ckptwatch-base:$suite-$key"
if ! podman image exists "$base"; then
    tarball="$CACHE/base-$suite-$key.tar"
    if [ ! -s "$tarball" ]; then
        say "debootstrapping the base ($recipe; about 40 s, 300 MB)"
        rootfs=$(mktemp -d "$CACHE/rootfs.XXXXXX")
        printf '+ %s %s %s\n' "$recipe" "$rootfs" "$mirror" >&2
        # shellcheck disable=SC2086  # the recipe is words
        if ! $recipe "$rootfs" "$mirror" >"$CACHE/debootstrap.log" 2>&1; then
            tail -n 20 "$CACHE/debootstrap.log" >&2
            exit 1
        fi
        rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
        run tar -C "$rootfs" -cf "$tarball.part" . && mv "$tarball.part" "$tarball"
        rm -rf "$rootfs"
    fi
    say "importing $tarball as $base"
    run podman import --quiet "$tarball" "$base" >/dev/null
fi

# 4. the image; docker format, as OCI images have no HEALTHCHECK
ca=/etc/ssl/certs/ca-certificates.crt
ca_args=()
[ -f "$ca" ] && ca_args=(-v "$ca:$ca:ro" --build-arg "PIP_CERT=$ca")
old=$(podman image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)
say "building $IMAGE from $base"
run podman build --quiet --layers=false --format docker --isolation chroot --network host "${ca_args[@]}" \
    --build-arg "BASE=$base" -t "$IMAGE" . >&2
new=$(podman image inspect --format '{{.Id}}' "$IMAGE")
if [ -n "$old" ] && [ "$old" != "$new" ]; then
    podman rmi "$old" >/dev/null 2>&1 || true   # the previous build, unless a container uses it
fi
size=$(podman image inspect --format '{{.Size}}' "$IMAGE")
say "$IMAGE: $((size / 1000000)) MB ($size bytes)"
printf 'export CONTAINERS_CONF=%q CKPTWATCH_IMAGE=%q CKPTWATCH_BASE_IMAGE=%q\n' "$conf" "$IMAGE" "$base"
