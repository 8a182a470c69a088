#!/usr/bin/env bash
# Static checks of deploy/, no container engine needed.
# 1. The runtime stages of deploy/Dockerfile (users, from source) and
#    deploy/Dockerfile.prebuilt (no registry: CI and offline machines) are
#    the same text, so the tested image is the shipped one.
# 2. deploy/k8s against Kubernetes' own OpenAPI schemas, strictly
# (an unknown or misspelt field fails), with kubernetes-validate from PyPI
# (its wheel carries the schemas: no network at check time). Checks the
# oldest and newest versions we claim. Then checks what a schema cannot:
# the Job's completions, the shard count in its --shard and the server's
# --min-clients agree, and the clients reach the server's Service and port.
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
by_kind = {d["kind"]: d for d in docs}
job, sts, svc = by_kind["Job"], by_kind["StatefulSet"], by_kind["Service"]
errors = []

def container(workload):
    return workload["spec"]["template"]["spec"]["containers"][0]

def arg(c, flag):
    for a in c.get("args", []):
        if a.startswith(flag + "="):
            return a.split("=", 1)[1].split()[0]
    return None

client, server = container(job), container(sts)
if job["spec"].get("completionMode") != "Indexed":
    errors.append("the clients Job must be Indexed (completion index = shard)")
completions = job["spec"]["completions"]
shard = arg(client, "--shard") or ""
m = re.fullmatch(r"\$\(JOB_COMPLETION_INDEX\)/(\d+)", shard)
if not m:
    errors.append(f"--shard must be $(JOB_COMPLETION_INDEX)/N, not {shard!r}")
elif int(m.group(1)) != completions:
    errors.append(f"--shard counts {m.group(1)} shards but the Job has {completions} completions")
if int(arg(server, "--min-clients") or 0) > job["spec"]["parallelism"]:
    errors.append("the server waits for more clients than the Job runs at once")
env = {e["name"]: e.get("value") for e in client.get("env", [])}
url = env.get("FUSION_SERVER", "")
ports = {p["port"] for p in svc["spec"]["ports"]}
if not re.fullmatch(rf"https://{svc['metadata']['name']}:(\d+)", url) or int(url.rsplit(":", 1)[1]) not in ports:
    errors.append(f"clients dial {url!r}, not the Service {svc['metadata']['name']} on {sorted(ports)}")
if sts["spec"]["serviceName"] != svc["metadata"]["name"]:
    errors.append("the StatefulSet's serviceName is not the Service")
if not sts["spec"].get("volumeClaimTemplates"):
    errors.append("the server's state needs a PersistentVolumeClaim")
for w in (sts, job):
    secrets = [v["secret"]["secretName"] for v in w["spec"]["template"]["spec"]["volumes"] if "secret" in v]
    if not secrets:
        errors.append(f"{w['metadata']['name']} takes no TLS Secret")
if errors:
    sys.exit("deploy/k8s: " + "; ".join(errors))
print(f"deploy/k8s: {completions} indexed clients, shards, server and Service agree: ok")
PY
