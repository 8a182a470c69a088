#!/usr/bin/env bash
# The deploy test: builds the images, runs deploy/compose.yaml (one server,
# three clients, mutual TLS) for 2 rounds exactly as a user would
# (`compose up`, in the foreground), kills one client container in the
# middle of round 2, and checks that:
#   - `compose up` returns 0 and the server exits 0 after round 2;
#   - the server and the clients reported healthy on the way;
#   - the server's state volume holds global.safetensors and a
#     rounds.jsonl with 2 rounds, round 2 merged from the two live clients.
# Without a Docker engine it fails when CI=true and warns loudly otherwise.
#
#   deploy/tests/compose.sh [BUILD-IMAGES OPTIONS]
# The options go to deploy/build-images.sh; the default, `--profile debug`,
# takes the binaries `cargo test --workspace --all-features` built.
# `--no-build` takes release binaries already built.
set -euo pipefail
cd "$(dirname "$0")/../.."

[ $# -gt 0 ] || set -- --profile debug

if ! docker info >/dev/null 2>&1; then
  msg="DEPLOY TEST NOT RUN: no Docker engine answers (docker info failed)"
  if [ "${CI:-}" = true ]; then
    echo "error: $msg, and CI=true requires it" >&2
    exit 1
  fi
  printf '\n!!!!! %s: skipped outside CI !!!!!\n\n' "$msg" >&2
  exit 0
fi
if docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
elif command -v docker-compose >/dev/null; then
  compose=(docker-compose)
else
  echo "error: neither 'docker compose' nor 'docker-compose' is installed" >&2
  exit 1
fi

deploy/build-images.sh "$@" --tag test

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
project=fusiontest$$
# Local training of several seconds leaves time to kill a client mid-round.
export FUSION_IMAGE_TAG=test FUSION_ROUNDS=2 FUSION_DEADLINE=30 FUSION_LOCAL_EPOCHS=8
FUSION_STATUS_PORT=$(free_port)
FUSION_GRPC_PORT=$(free_port)
export FUSION_STATUS_PORT FUSION_GRPC_PORT
dc() { "${compose[@]}" --project-name "$project" --file deploy/compose.yaml "$@"; }
log=target/deploy/compose-$project.log
ok=false
cleanup() {
  if [ "$ok" != true ]; then
    echo "---- compose logs (last 80 lines) ----" >&2
    dc logs --no-color 2>&1 | tail -80 >&2 || true
    echo "---- compose up output: $log ----" >&2
    tail -20 "$log" >&2 || true
  fi
  dc down --volumes --remove-orphans >/dev/null 2>&1 || true
}
trap cleanup EXIT
fail() { echo "error: deploy test: $*" >&2; exit 1; }

# What a user runs, in the foreground; it returns when every container exits.
dc up --no-color >"$log" 2>&1 &
up_pid=$!

container() { dc ps -a -q "$1"; }
health() { docker inspect --format '{{if .State.Health}}{{.State.Health.Status}}{{end}}' "$1" 2>/dev/null; }

# Look containers up once, now: compose's CLI is too slow to call mid-round.
victim=
for _ in $(seq 1 300); do
  victim=$(container client-2 2>/dev/null || true)
  [ -n "$victim" ] && break
  kill -0 "$up_pid" 2>/dev/null || fail "compose up ended before client-2 started"
  sleep 0.5
done
[ -n "$victim" ] || fail "client-2 never started"
server_id=$(container fusion-server)
client0_id=$(container client-0)

echo "waiting for round 2 to open (status page on 127.0.0.1:$FUSION_STATUS_PORT)"
python3 - "$FUSION_STATUS_PORT" "$victim" <<'PY' || fail "round 2 never opened with all three clients sampled"
import json, subprocess, sys, time, urllib.request
port, victim = sys.argv[1], sys.argv[2]
deadline = time.time() + 300
while time.time() < deadline:
    try:
        s = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/status.json", timeout=2))
    except OSError:
        s = {}
    if s.get("round") == 2 and s.get("sampled") == 3 and s.get("accepted_in_round") == 0:
        # Clients fetch the model and train for seconds: kill before any upload.
        subprocess.run(["docker", "kill", victim], check=True, stdout=subprocess.DEVNULL)
        sys.exit(0)
    if s.get("round", 0) > 2 or s.get("accepted_in_round", 0) > 0 and s.get("round") == 2:
        sys.exit("round 2 got an update before the test could kill client-2")
    time.sleep(0.05)
sys.exit("timed out")
PY
echo "killed client-2 in round 2; the round must close at its deadline with two updates"

saw_server=false saw_client=false
for _ in $(seq 1 180); do
  kill -0 "$up_pid" 2>/dev/null || break
  [ "$(health "$server_id")" = healthy ] && saw_server=true
  [ "$(health "$client0_id")" = healthy ] && saw_client=true
  sleep 1
done
kill -0 "$up_pid" 2>/dev/null && fail "compose up still running 180 s after the kill"
wait "$up_pid" || fail "compose up exited with status $?"

code() { docker inspect --format '{{.State.ExitCode}}' "$(container "$1")"; }
[ "$(code fusion-server)" = 0 ] || fail "server exit status $(code fusion-server)"
[ "$(code certs)" = 0 ] || fail "certs exit status $(code certs)"
for c in client-0 client-1; do
  [ "$(code $c)" = 0 ] || fail "$c exit status $(code $c)"
done
[ "$(code client-2)" = 137 ] || fail "killed client-2 exit status $(code client-2), expected 137"
$saw_server || fail "the server never reported healthy"
$saw_client || fail "client-0 never reported healthy"

# Read the state volume through a throwaway container of the same image.
state() { docker run --rm --volume "${project}_state:/state:ro" --entrypoint "$1" "fusion-server:test" "${@:2}"; }
state test -s /state/global.safetensors || fail "no global.safetensors in the state volume"
state cat /state/rounds.jsonl >"target/deploy/rounds-$project.jsonl"
python3 - "target/deploy/rounds-$project.jsonl" <<'PY'
import json, sys
rounds = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
assert [r["round"] for r in rounds] == [1, 2], f"rounds.jsonl holds rounds {[r['round'] for r in rounds]}"
assert rounds[0]["clients"] == 3, f"round 1 merged {rounds[0]['clients']} updates, expected 3"
names = sorted(u["client"] for u in rounds[1]["updates"])
assert names == ["client-0", "client-1"], f"round 2 merged {names}, expected the two live clients"
print(f"rounds.jsonl: round 1 from 3 clients (test acc {rounds[0]['test_acc']:.3f}), "
      f"round 2 from {names} after client-2 was killed (test acc {rounds[1]['test_acc']:.3f})")
PY
ok=true
echo "deploy test: ok"
