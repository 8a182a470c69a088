#!/usr/bin/env bash
# Makes the runtime base image `fusion-base:bookworm` without pulling
# anything: debootstraps a minimal Debian bookworm from the Debian archive,
# trims it to about the size of debian:bookworm-slim, and `docker import`s
# it. Used where no registry is reachable (this project's machines and CI);
# with registry access, `deploy/Dockerfile` uses debian:bookworm-slim.
#
# The trimmed root file system is cached as a tarball under
# target/deploy/ (keyed by suite, mirror and this script's hash), so a
# second run only re-imports it (seconds).
#
# Usage: deploy/base/build-base.sh [IMAGE]   (needs root and debootstrap)
set -euo pipefail
cd "$(dirname "$0")/../.."

image=${1:-fusion-base:bookworm}
suite=bookworm
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
key=$(printf '%s %s ' "$suite" "$mirror" | cat - "$0" | sha256sum | cut -c1-16)
cache=target/deploy/base-$suite-$key.tar

if [ ! -s "$cache" ]; then
  command -v debootstrap >/dev/null || {
    echo "debootstrap is missing: apt-get install debootstrap" >&2
    exit 1
  }
  mkdir -p target/deploy
  root=$(mktemp -d target/deploy/rootfs.XXXXXX)
  trap 'rm -rf "$root"' EXIT
  echo "debootstrap $suite from $mirror (cached afterwards in $cache)"
  debootstrap --variant=minbase "$suite" "$root" "$mirror" >"$root.log" 2>&1 || {
    tail -20 "$root.log" >&2
    echo "debootstrap failed; full log in $root.log" >&2
    exit 1
  }
  rm -f "$root.log"
  # What debian:bookworm-slim leaves out: documentation, manuals, locales
  # other than C, package lists and caches.
  rm -rf "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
    "$root"/usr/share/locale/* "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin \
    "$root"/var/cache/apt/archives/*.deb "$root"/var/log/* "$root"/tmp/* 2>/dev/null || true
  tar --numeric-owner -C "$root" -cf "$cache.partial" .
  rm -f target/deploy/base-"$suite"-*.tar   # superseded versions
  mv "$cache.partial" "$cache"
fi

if [ "$(docker image inspect --format '{{index .Config.Labels "fusion.base.key"}}' "$image" 2>/dev/null)" = "$key" ]; then
  echo "$image is up to date ($cache)"
  exit 0
fi
docker import --change 'CMD ["bash"]' --change "LABEL fusion.base.key=$key" "$cache" "$image" >/dev/null
echo "imported $image from $cache ($(du -h "$cache" | cut -f1))"
