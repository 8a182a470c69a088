#!/usr/bin/env bash
# Runs the README's NumPy federation block ("Federate your PyTorch model")
# exactly as written, in a scratch directory whose target/release holds
# the binaries of BIN_DIR, then the same block with the NumPy CNN and its
# spec file. Checks that the server and all three clients exit 0, that
# rounds.jsonl has two rounds of three clients scored by the evaluator,
# and that the global model has the trainer's tensors.
#   tests/examples/readme-numpy.sh BIN_DIR   (CI: target/debug)
# Needs python3 with venv, and PyPI for `pip install numpy`.
set -euo pipefail
bin=$(cd "${1:?usage: readme-numpy.sh BIN_DIR}" && pwd)
root=$(cd "$(dirname "$0")/../.." && pwd)
block=$(awk '/<!-- readme-numpy:/ { found = 1; next }
             found && /^```sh/ { inside = 1; next }
             inside && /^```/ { exit }
             inside { print }' "$root/README.md")
[ -n "$block" ] || { echo "README has no readme-numpy block" >&2; exit 1; }

# The block, with each `from` replaced by `to`; every `from` must occur.
substitute() {
  local text=$1; shift
  while [ $# -gt 0 ]; do
    case "$text" in *"$1"*) ;; *) echo "the README block lost '$1'" >&2; exit 1 ;; esac
    text=${text//"$1"/"$2"}
    shift 2
  done
  printf '%s\n' "$text"
}

# Runs `$2` in a fresh directory `$1`, with binaries that record their exit status.
run_block() {
  local dir=$1 script=$2
  mkdir -p "$dir/target/release"
  ln -s "$root/examples" "$dir/examples"
  for b in fusion fusion-server fusion-client; do
    cat >"$dir/target/release/$b" <<WRAP
#!/usr/bin/env bash
"$bin/$b" "\$@"; code=\$?
echo "\$code" >>"$dir/exit-$b"
exit "\$code"
WRAP
    chmod +x "$dir/target/release/$b"
  done
  (cd "$dir" && RUST_LOG=warn timeout 900 bash -euo pipefail -c "$script")
  for b in fusion fusion-server fusion-client; do
    local codes
    codes=$(sort -u "$dir/exit-$b" | tr '\n' ' ')
    [ "$codes" = "0 " ] || { echo "$b exited with: $codes" >&2; exit 1; }
  done
  [ "$(wc -l <"$dir/exit-fusion-client")" -eq 3 ] || { echo "not 3 clients" >&2; exit 1; }
}

# Two rounds of three clients each, scored; the model is the trainer's.
check() {
  local state=$1 min_accuracy=$2
  "$dir/.venv/bin/python" - "$state" "$dir/init.safetensors" "$min_accuracy" <<'PY'
import json, sys
sys.path.insert(0, "examples/numpy")
import fusion_files
state, init, least = sys.argv[1], sys.argv[2], float(sys.argv[3])
records = [json.loads(line) for line in open(f"{state}/rounds.jsonl")]
assert [r["round"] for r in records] == [1, 2], records
for r in records:
    assert r["clients"] == 3, r
    assert r["strategy"] == "align", r
    assert r.get("test_acc") is not None and "score_error" not in r, r
final = fusion_files.load(f"{state}/global.safetensors")
first = fusion_files.load(init)
assert {k: v.shape for k, v in final.items()} == {k: v.shape for k, v in first.items()}
assert records[-1]["test_acc"] >= least, f"accuracy {records[-1]['test_acc']} below {least}"
print(f"{state}: 2 rounds, tensors {sorted(final)}, test accuracy {records[-1]['test_acc']:.3f}")
PY
}

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

dir=$scratch/mlp
run_block "$dir" "$block"
(cd "$dir" && check numpy-state 0.5)

dir=$scratch/cnn
cnn=$(substitute "$block" \
  "init.py --out" "init.py --model cnn --out" \
  "--spec mlp" "--spec examples/numpy/cnn-spec.toml" \
  "numpy-state" "cnn-state")
run_block "$dir" "$cnn"
(cd "$dir" && check cnn-state 0.25)
