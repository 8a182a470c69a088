#!/usr/bin/env bash
# The foreign-client contract, end to end: a client written in Python from
# the proto alone (client.py) and a fusion-client running the NumPy
# trainer join a real fusion-server with per-client tokens; both updates
# are merged into one round.
#   tests/foreign-client/run.sh BIN_DIR   (CI: target/debug)
# Needs python3 with grpcio, grpcio-tools and numpy ($FUSION_PYTHON).
set -euo pipefail
bin=$(cd "${1:?usage: run.sh BIN_DIR}" && pwd)
root=$(cd "$(dirname "$0")/../.." && pwd)
python=${FUSION_PYTHON:-python3}
work=$(mktemp -d)
cleanup() {
  kill $(jobs -p) 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

"$python" -m grpc_tools.protoc -I "$root/proto" --python_out="$work" \
  --grpc_python_out="$work" fusion/v1/fusion.proto
"$python" "$root/examples/numpy/init.py" --out "$work/init.safetensors" >/dev/null
"$bin/fusion" export-data --shard 1/2 --out "$work/silo" >/dev/null
port=$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
printf 'python-client python-client-token-0123\nclient-1 native-client-token-0123\n' >"$work/tokens"
chmod 600 "$work/tokens"

RUST_LOG=warn "$bin/fusion-server" --listen "127.0.0.1:$port" --rounds 1 --min-clients 2 \
  --strategy align --init-model "$work/init.safetensors" --spec mlp \
  --token-file "$work/tokens" --state-dir "$work/state" --poll-ms 50 &
server=$!
RUST_LOG=warn "$bin/fusion-client" --server "http://127.0.0.1:$port" --client-id client-1 \
  --token native-client-token-0123 --model-file "$work/init.safetensors" --examples 6000 \
  --trainer-cmd "'$python' '$root/examples/numpy/train.py' --data '$work/silo'" &
native=$!
timeout 120 "$python" "$root/tests/foreign-client/client.py" --stubs "$work" \
  --server "127.0.0.1:$port" --token python-client-token-0123 --client-id python-client \
  --model "$work/init.safetensors" --examples 500
wait "$native"
wait "$server"

"$python" - "$work/state/rounds.jsonl" <<'PY'
import json, sys
records = [json.loads(line) for line in open(sys.argv[1])]
assert len(records) == 1, records
updates = {u["client"]: u["examples"] for u in records[0]["updates"]}
assert updates == {"python-client": 500, "client-1": 6000}, updates
print(f"foreign client merged beside fusion-client: {updates}")
PY
