#!/usr/bin/env bash
# The operator's live page in a real browser (Debian's chromium, headless):
#   1. a fusion-server runs two rounds with one fusion-client (real
#      processes, embedded data) and exits;
#   2. it is restarted on the same state dir for 4 rounds, so it resumes
#      and waits in round 3 with two rounds' records: a running server;
#   3. chromium loads http://127.0.0.1:PORT/, runs its JavaScript (which
#      polls /status.json), and we keep the rendered DOM and a screenshot;
#   4. the DOM must show the round count "3 / 4", a row per saved round
#      with its test accuracy from rounds.jsonl to four decimals, and both
#      curves with a point per round; a client that joined the resumed
#      server with HTML in its id must appear as that text, not as markup
#      (no element, no script run).
# The screenshot is kept at target/ci-artifacts/status-page.png.
#
#   tests/browser/status-page.sh [BIN_DIR]   (default target/debug, which
#   `cargo test --workspace --all-features` builds)
set -euo pipefail
cd "$(dirname "$0")/../.."

bin=${1:-target/debug}
for b in fusion-server fusion-client; do
  [ -x "$bin/$b" ] || { echo "error: $bin/$b is missing; build it first (cargo test --workspace --all-features)" >&2; exit 1; }
done
browser=$(command -v chromium || true)
[ -n "$browser" ] || { echo "error: chromium is not installed (apt-get install chromium)" >&2; exit 1; }

out=target/ci-artifacts
mkdir -p "$out"
work=$(mktemp -d)
server_pid=
client_pid=
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  [ -n "$client_pid" ] && kill "$client_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() {
  echo "error: status page test: $*" >&2
  for f in "$work"/*.log; do [ -f "$f" ] && { echo "---- $f" >&2; tail -15 "$f" >&2; }; done
  exit 1
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
grpc=$(free_port)
http=$(free_port)
server() {
  "$bin/fusion-server" --listen "127.0.0.1:$grpc" --state-dir "$work/state" \
    --model mlp:64 --test-data embedded --poll-ms 50 \
    --finish-grace 1 --metrics-listen "127.0.0.1:$http" "$@"
}

# 1. Two rounds with one client; both exit.
server --rounds 2 --min-clients 1 >"$work/server-1.log" 2>&1 &
server_pid=$!
"$bin/fusion-client" --server "http://127.0.0.1:$grpc" --shard 0/10 --model mlp:64 \
  --give-up-after 60 >"$work/client.log" 2>&1 || fail "the client failed"
wait "$server_pid" || fail "the first server run failed"
server_pid=

# 2. Resumed for 4 rounds: waits in round 3 for two clients, of which
#    only one comes, with markup in its id.
server --rounds 4 --min-clients 2 >"$work/server-2.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do
  answered=$(python3 -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$http/healthz', timeout=1); print('up')" 2>/dev/null || true)
  [ "$answered" = up ] && break
  sleep 0.1
done
[ "${answered:-}" = up ] || fail "the resumed server never answered /healthz"
hostile='<img src=x onerror="document.title=1">&amp;'
"$bin/fusion-client" --server "http://127.0.0.1:$grpc" --shard 1/10 --model mlp:64 \
  --client-id "$hostile" --give-up-after 60 >"$work/client-2.log" 2>&1 &
client_pid=$!
for _ in $(seq 1 100); do
  seen=$(python3 -c "import json,urllib.request; print(len(json.load(urllib.request.urlopen('http://127.0.0.1:$http/status.json', timeout=1))['clients']))" 2>/dev/null || true)
  [ "$seen" = 1 ] && break
  sleep 0.1
done
[ "${seen:-}" = 1 ] || fail "the client with markup in its id never joined"

# 3. The page in chromium: its script fetches /status.json and renders.
flags=(--headless --no-sandbox --disable-gpu --disable-dev-shm-usage --hide-scrollbars
  --window-size=1100,1300 --virtual-time-budget=4000 --user-data-dir="$work/profile")
"$browser" "${flags[@]}" --dump-dom "http://127.0.0.1:$http/" >"$work/dom.html" 2>"$work/chromium.log" \
  || fail "chromium could not load the page"
"$browser" "${flags[@]}" --screenshot="$out/status-page.png" "http://127.0.0.1:$http/" \
  >>"$work/chromium.log" 2>&1 || fail "chromium could not take the screenshot"
cp "$work/dom.html" "$out/status-page.html"

# 4. What it rendered must be the running server's state.
python3 - "$work/dom.html" "$work/state/rounds.jsonl" "$out/status-page.png" "$hostile" <<'PY'
import html, json, re, sys
dom = open(sys.argv[1]).read()
records = [json.loads(line) for line in open(sys.argv[2])]
png = open(sys.argv[3], "rb").read()

def text(element_id):
    m = re.search(rf'id="{element_id}"[^>]*>(.*?)</', dom, re.S)
    assert m, f"no element #{element_id} in the rendered page"
    return m.group(1).strip()

assert len(records) == 2, f"rounds.jsonl holds {len(records)} rounds, expected 2"
assert text("round") == "3 / 4", f"the page shows round {text('round')!r}, the server is in round 3 of 4"
assert text("clients") == "1", f"clients seen {text('clients')!r}; one client joined the resumed server"
want = "waiting for clients: 1 of the 2 needed to open round 3"
assert text("phase") == want, f"the page says {text('phase')!r}, expected {want!r}"
assert text("accepted") == "2", f"updates merged {text('accepted')!r}: the two rounds before the restart count"
assert text("scoring").startswith("scored by the built-in network on the embedded test set"), f"the page says {text('scoring')!r} of what scores rounds"
hostile = sys.argv[4]
clients = re.search(r'<table id="clientlist">.*?<tbody>(.*?)</tbody>', dom, re.S).group(1)
cell = re.findall(r"<td>(.*?)</td>", clients)[0]
assert html.unescape(cell) == hostile, f"the client id renders as {cell!r}, expected the text {hostile!r}"
assert "<img" not in dom, "the client id was inserted as markup"
assert re.search(r"<title>Fusion server</title>", dom), "a script in the client id ran"
body = re.search(r'<table id="rounds">.*?<tbody>(.*?)</tbody>', dom, re.S).group(1)
rendered = [re.findall(r"<td>(.*?)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", body)]
expected = [[str(r["round"]), "1", f"{r['test_acc']:.4f}"] for r in records]
assert [row[:3] for row in rendered] == expected, f"the rounds table renders {rendered}, expected {expected}"
svg = re.search(r'<svg id="curve".*?</svg>', dom, re.S).group(0)
assert svg.count("<polyline") == 2 and svg.count("<circle") == 2 * len(records), \
    f"the curves do not show a point per round: {svg[:300]}"
labels = re.findall(r"<text[^>]*>(.*?)</text>", svg)
assert {"test accuracy", "test loss", "round", "0", "0.5", "1"} <= set(labels), f"the chart's axes are not labelled: {labels}"
assert [str(r["round"]) for r in records] == [l for l in labels if l in {"1", "2"}][-2:], f"rounds along the bottom: {labels}"
assert "never" not in text("updated") and "failed" not in text("updated"), "the page never refreshed"
assert png.startswith(b"\x89PNG") and len(png) > 10_000, "the screenshot is not a real PNG"
print(f"status page: round 3 / 4 and rounds {[row[:3] for row in rendered]} rendered by chromium; "
      f"screenshot {len(png) // 1024} KiB")
PY
