#!/usr/bin/env bash
# Fuzzes one target of fusion-fuzz with AFL++ on stable Rust (cargo-afl):
#   cargo install cargo-afl        # once; builds AFL++ (needs cc and make)
#   fuzz/run.sh TARGET [EXECUTIONS]
# TARGET: upload, safetensors, spec or server_config. Stops after about
# EXECUTIONS runs (default 1,000,000), prints AFL++'s statistics and fails
# if any input crashed or hung. Findings: target/fuzz/TARGET/default/.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:?usage: fuzz/run.sh TARGET [EXECUTIONS]}
executions=${2:-1000000}
[ -d "fuzz/corpus/$target" ] || { echo "no corpus for target '$target' in fuzz/corpus/" >&2; exit 2; }
(cd fuzz/afl && cargo afl build --release --quiet)
out="target/fuzz/$target"
rm -rf "$out"
mkdir -p "$out"
# No UI, no CPU-frequency or core-pattern checks (containers cannot change
# them); -E stops after the given number of executions.
AFL_NO_UI=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 \
AFL_NO_AFFINITY=1 FUSION_FUZZ_TARGET="$target" \
  cargo afl fuzz -i "fuzz/corpus/$target" -o "$out" -E "$executions" \
  fuzz/afl/target/release/fusion-fuzz-afl >"$out/afl.log" 2>&1 || {
    tail -30 "$out/afl.log" >&2
    exit 1
  }
stats="$out/default/fuzzer_stats"
grep -E '^(execs_done|execs_per_sec|run_time|corpus_count|saved_crashes|saved_hangs|bitmap_cvg) ' "$stats"
crashes=$(awk '$1 == "saved_crashes" {print $3}' "$stats")
hangs=$(awk '$1 == "saved_hangs" {print $3}' "$stats")
if [ "$crashes" != 0 ] || [ "$hangs" != 0 ]; then
  echo "error: $target: $crashes crashes, $hangs hangs; inputs in $out/default/{crashes,hangs}/" >&2
  exit 1
fi
