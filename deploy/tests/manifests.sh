#!/usr/bin/env bash
# Static checks of deploy/, no container engine needed.
# 1. The runtime stages of deploy/Dockerfile (users, from source) and
#    deploy/Dockerfile.prebuilt (no registry: CI and offline machines) are
#    the same text, so the tested image is the shipped one.
# 2. deploy/k8s against Kubernetes' own OpenAPI schemas, strictly
# (an unknown or misspelt field fails), with kubernetes-validate from PyPI
# (its wheel carries the schemas: no network at check time). Checks the
# oldest and newest versions we claim. Then checks what a schema cannot:
# one Job per client, each with its own shard and TLS Secret, as many as
# the server's --min-clients needs; the server stays up after its last
# round; the clients reach the server's Service and port.
set -euo pipefail
cd "$(dirname "$0")/../.."

runtime() { sed -n '/^# ---- runtime:/,$p' "$1" | tail -n +2; }
[ -n "$(runtime deploy/Dockerfile)" ] || { echo "deploy/Dockerfile has no '# ---- runtime:' marker" >&2; exit 1; }
if ! diff <(runtime deploy/Dockerfile) <(runtime deploy/Dockerfile.prebuilt) >&2; then
  echo "error: the runtime stages of deploy/Dockerfile and deploy/Dockerfile.prebuilt differ (diff above)" >&2
  exit 1
fi
echo "deploy/Dockerfile and Dockerfile.prebuilt: same runtime stages: ok"

venv=target/ci-venv
if [ ! -x "$venv/bin/kubernetes-validate" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check kubernetes-validate==1.37.0
fi

manifests=(deploy/k8s/server.yaml deploy/k8s/clients.yaml)
for version in 1.30.0 1.37.0; do
  "$venv/bin/kubernetes-validate" --strict --quiet -k "$version" "${manifests[@]}"
  echo "deploy/k8s: schemas of Kubernetes $version: ok"
done

"$venv/bin/python" - "${manifests[@]}" <<'PY'
import re, sys, yaml

docs = [d for path in sys.argv[1:] for d in yaml.safe_load_all(open(path)) if d]
jobs = [d for d in docs if d["kind"] == "Job"]
by_kind = {d["kind"]: d for d in docs if d["kind"] != "Job"}
sts, svc = by_kind["StatefulSet"], by_kind["Service"]
errors = []

def container(workload):
    return workload["spec"]["template"]["spec"]["containers"][0]

def arg(c, flag):
    for a in c.get("args", []):
        if a.startswith(flag + "="):
            return a.split("=", 1)[1].split()[0]
    return None

def secrets(workload):
    return [v["secret"]["secretName"] for v in workload["spec"]["template"]["spec"]["volumes"] if "secret" in v]

server = container(sts)
shards = []
for job in jobs:
    name, client = job["metadata"]["name"], container(job)
    m = re.fullmatch(r"(\d+)/(\d+)", arg(client, "--shard") or "")
    if not m:
        errors.append(f"{name}: --shard must be i/N")
        continue
    shards.append((int(m.group(1)), int(m.group(2))))
    env = {e["name"]: e.get("value") for e in client.get("env", [])}
    url = env.get("FUSION_SERVER", "")
    ports = {p["port"] for p in svc["spec"]["ports"]}
    if not re.fullmatch(rf"https://{svc['metadata']['name']}:(\d+)", url) or int(url.rsplit(":", 1)[1]) not in ports:
        errors.append(f"{name} dials {url!r}, not the Service {svc['metadata']['name']} on {sorted(ports)}")
# Each client its own shard and its own Secret: a pod that could read
# another client's key could act as that client.
if sorted(i for i, _ in shards) != list(range(len(jobs))) or any(n != len(jobs) for _, n in shards):
    errors.append(f"the {len(jobs)} client Jobs must take shards 0/{len(jobs)} … {len(jobs) - 1}/{len(jobs)} once each, not {sorted(shards)}")
client_secrets = [s for job in jobs for s in secrets(job)]
if len(client_secrets) != len(jobs) or len(set(client_secrets)) != len(jobs):
    errors.append(f"each client Job needs a TLS Secret of its own, not {client_secrets}")
if int(arg(server, "--min-clients") or 0) > len(jobs):
    errors.append("the server waits for more clients than there are client Jobs")
if "--serve-final" not in server.get("args", []):
    errors.append("a StatefulSet restarts a server that exits: it needs --serve-final")
if sts["spec"]["serviceName"] != svc["metadata"]["name"]:
    errors.append("the StatefulSet's serviceName is not the Service")
if not sts["spec"].get("volumeClaimTemplates"):
    errors.append("the server's state needs a PersistentVolumeClaim")
if not secrets(sts):
    errors.append("the server takes no TLS Secret")
if errors:
    sys.exit("deploy/k8s: " + "; ".join(errors))
print(f"deploy/k8s: {len(jobs)} client Jobs with their own shards and Secrets, server and Service agree: ok")
PY
