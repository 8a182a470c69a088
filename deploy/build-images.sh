#!/usr/bin/env bash
# Builds the fusion-server and fusion-client images with no registry:
# binaries from this checkout's cargo build, base from a debootstrapped
# Debian (deploy/base/build-base.sh), runtime stages from
# deploy/Dockerfile.prebuilt (the same as deploy/Dockerfile's).
#
#   deploy/build-images.sh                 release build (what users run;
#                                          cargo only rebuilds what changed)
#   deploy/build-images.sh --profile debug binaries `cargo test` already
#                                          built (CI: no second build)
#   deploy/build-images.sh --no-build      release binaries already built
#                                          (with whatever features)
#   deploy/build-images.sh --tag v1        image tag (default: latest)
#
# With registry access, `docker build -f deploy/Dockerfile` does the same
# from source in a rust image.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
tag=latest
build=true
while [ $# -gt 0 ]; do
  case $1 in
    --profile) profile=${2:?--profile needs release or debug}; shift 2 ;;
    --tag) tag=${2:?--tag needs a value}; shift 2 ;;
    --no-build) build=false; shift ;;
    -h|--help) sed -n '2,/^set /{/^set /!p}' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (deploy/build-images.sh --help lists them)" >&2; exit 2 ;;
  esac
done

docker info >/dev/null 2>&1 || {
  echo "the Docker engine does not answer (docker info failed); start it first" >&2
  exit 1
}

bins=(fusion-server fusion-client fusion)
case $profile in
  release) ! $build || cargo build --release --locked -p fusion-server -p fusion-client -p fusion-cli ;;
  debug) ;; # built by `cargo test --workspace --all-features`; checked below
  *) echo "--profile must be release or debug, not $profile" >&2; exit 2 ;;
esac
for bin in "${bins[@]}"; do
  [ -x "target/$profile/$bin" ] || {
    echo "target/$profile/$bin is missing: build it first (cargo test --workspace --all-features builds the debug ones)" >&2
    exit 1
  }
done

deploy/base/build-base.sh fusion-base:bookworm

context=target/deploy/context
rm -rf "$context"
mkdir -p "$context/bin"
for bin in "${bins[@]}"; do
  # Debug info is for developers' machines, not for images.
  strip -o "$context/bin/$bin" "target/$profile/$bin"
done
cp deploy/Dockerfile.prebuilt "$context/Dockerfile"

for role in server client; do
  # The legacy builder: BuildKit needs the buildx plugin, which Debian's
  # docker.io lacks; the Dockerfile needs nothing BuildKit-only.
  DOCKER_BUILDKIT=0 docker build --quiet --target "$role" --tag "fusion-$role:$tag" "$context" \
    >"$context/build-$role.log" 2>&1 || { cat "$context/build-$role.log" >&2; exit 1; }
  echo "built fusion-$role:$tag ($(docker image inspect --format '{{.Size}}' "fusion-$role:$tag" | awk '{printf "%.0f MB", $1/1e6}'))"
done
# The binaries' staging stage, left dangling by the legacy builder.
docker image prune --force --filter label=org.fusion.stage=prebuilt-binaries >/dev/null
