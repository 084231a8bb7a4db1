"""Checks of deploy/k8s that the Kubernetes schemas cannot make, run by
deploy/local/checks/10-k8s-manifests on the rendered overlays:

* the base's copy of the configuration file is identical to deploy/config/capsight.toml;
* the Dockerfile copies exactly the workspace's binary targets (from `cargo metadata`), and every
  workload runs one of them;
* the scorer never has more replicas than the signals topic has partitions;
* the collectors that must not run twice are single-instance (1 replica, Recreate);
* no credential is in a ConfigMap's environment, and every `CAPSIGHT_*` variable the manifests
  set names a key of deploy/config/capsight.toml (a misspelt key would crash-loop the pods);
* every workload has CPU and memory requests and a memory limit, and its own NetworkPolicy
  (ingress and egress); every replicated service has a PodDisruptionBudget.

usage: check_manifests.py REPO_ROOT CARGO_METADATA_JSON RENDERED_YAML...
"""

import json
import re
import sys
import tomllib
from pathlib import Path

import yaml

# Two of these would double-probe or double-publish (deploy/k8s/base/<name>.yaml says why).
SINGLE_INSTANCE = {
    "capsight-quota",
    "capsight-spot",
    "capsight-gpuclouds",
    "capsight-status",
    "capsight-probe",
    "capsight-notifier",
}
# Environment keys that carry credentials: they belong in Secrets.
CREDENTIAL_KEY = re.compile(r"PASSWORD|SECRET|SASL_USERNAME|AMQP__URL|AWS_ACCESS_KEY|API_KEY")
NAME = "app.kubernetes.io/name"

failures = []
passed = []


def check(ok, what):
    if ok:
        passed.append(what)
    else:
        print("FAIL: " + what)
        failures.append(what)


def config_copy(root):
    source = (root / "deploy/config/capsight.toml").read_bytes()
    copy = (root / "deploy/k8s/base/capsight.toml").read_bytes()
    check(
        source == copy,
        "deploy/k8s/base/capsight.toml is identical to deploy/config/capsight.toml"
        + ("" if source == copy else " (run deploy/k8s/sync-config)"),
    )


def image_binaries(root, metadata_path):
    metadata = json.loads(Path(metadata_path).read_text())
    targets = {
        t["name"]
        for p in metadata["packages"]
        for t in p["targets"]
        if "bin" in t["kind"]
    }
    dockerfile = (root / "deploy/k8s/Dockerfile").read_text()
    copied = set(re.findall(r"target/release/([A-Za-z0-9_-]+)", dockerfile))
    check(
        "cargo build --release --locked" in dockerfile,
        "the Dockerfile builds with cargo build --release --locked",
    )
    check(
        copied == targets,
        f"the Dockerfile copies the workspace's {len(targets)} binary targets"
        + (
            ""
            if copied == targets
            else f" (missing: {sorted(targets - copied)}, not a target: {sorted(copied - targets)})"
        ),
    )
    return copied


def names_a_key(defaults, variable):
    """Whether CAPSIGHT_<SECTION>__<KEY> names a key of the defaults (free-form under
    kafka.properties); CAPSIGHT_CONFIG is the config file's path."""
    if variable == "CAPSIGHT_CONFIG":
        return True
    node = defaults
    path = variable.removeprefix("CAPSIGHT_").lower().split("__")
    for depth, part in enumerate(path):
        if path[:depth] == ["kafka", "properties"]:
            return True
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def env_variables(docs):
    """(where, name) of every CAPSIGHT_* variable set by a ConfigMap, a Secret or a container."""
    for d in docs:
        where = f"{d['kind']} {d['metadata']['name']}"
        if d["kind"] in ("ConfigMap", "Secret"):
            for k in {**d.get("data", {}), **d.get("stringData", {})}:
                yield where, k
        if d["kind"] in ("Deployment", "Job"):
            for c in d["spec"]["template"]["spec"]["containers"]:
                for e in c.get("env", []):
                    yield where, e["name"]


def workloads(docs):
    return [d for d in docs if d["kind"] in ("Deployment", "Job")]


def signals_partitions(docs):
    """The signals topic's partitions as the workloads see them: the env ConfigMap over the file."""
    for d in docs:
        if d["kind"] != "ConfigMap":
            continue
        data = d.get("data", {})
        if "CAPSIGHT_KAFKA__TOPICS__SIGNALS_PARTITIONS" in data:
            return int(data["CAPSIGHT_KAFKA__TOPICS__SIGNALS_PARTITIONS"])
    for d in docs:
        if d["kind"] == "ConfigMap" and "capsight.toml" in d.get("data", {}):
            return tomllib.loads(d["data"]["capsight.toml"])["kafka"]["topics"]["signals_partitions"]
    raise SystemExit("no capsight.toml ConfigMap rendered")


def rendered(path, binaries, defaults):
    docs = [d for d in yaml.safe_load_all(Path(path).read_text()) if d]
    label = Path(path).name
    by_kind = lambda kind: [d for d in docs if d["kind"] == kind]  # noqa: E731
    hpas = {h["spec"]["scaleTargetRef"]["name"]: h for h in by_kind("HorizontalPodAutoscaler")}

    partitions = signals_partitions(docs)
    for d in by_kind("Deployment"):
        name = d["metadata"]["name"]
        if name == "capsight-scorer":
            most = max(d["spec"].get("replicas", 1), hpas.get(name, {}).get("spec", {}).get("maxReplicas", 0))
            check(most <= partitions, f"{label}: scorer replicas {most} <= {partitions} signals partitions")
        if name in SINGLE_INSTANCE:
            single = d["spec"].get("replicas") == 1 and d["spec"]["strategy"]["type"] == "Recreate" and name not in hpas
            check(single, f"{label}: {name} is single-instance (replicas 1, Recreate)")

    for d in by_kind("ConfigMap"):
        leaked = [k for k in d.get("data", {}) if CREDENTIAL_KEY.search(k)]
        check(not leaked, f"{label}: ConfigMap {d['metadata']['name']} holds no credentials {leaked or ''}")

    unknown = [
        f"{k} ({where})"
        for where, k in env_variables(docs)
        if k.startswith("CAPSIGHT_") and not names_a_key(defaults, k)
    ]
    check(not unknown, f"{label}: every CAPSIGHT_* variable names a configuration key {unknown or ''}")

    policies = by_kind("NetworkPolicy")
    budgets = by_kind("PodDisruptionBudget")
    for w in workloads(docs):
        name = w["metadata"]["name"]
        container = w["spec"]["template"]["spec"]["containers"][0]
        binary = container["command"][0].rsplit("/", 1)[-1]
        check(binary in binaries, f"{label}: {name} runs {binary}, a binary of the image")
        res = container.get("resources", {})
        sized = all(k in res.get("requests", {}) for k in ("cpu", "memory")) and "memory" in res.get("limits", {})
        check(sized, f"{label}: {name} has cpu/memory requests and a memory limit")
        own = [
            p
            for p in policies
            if p["spec"]["podSelector"].get("matchLabels", {}).get(NAME) == name
            and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        ]
        check(len(own) == 1, f"{label}: {name} has its own NetworkPolicy (ingress and egress)")
        replicated = w["kind"] == "Deployment" and (w["spec"].get("replicas", 1) > 1 or name in hpas)
        if replicated:
            covered = any(b["spec"]["selector"]["matchLabels"].get(NAME) == name for b in budgets)
            check(covered, f"{label}: {name} has a PodDisruptionBudget")


def main():
    root = Path(sys.argv[1])
    config_copy(root)
    binaries = image_binaries(root, sys.argv[2])
    defaults = tomllib.loads((root / "deploy/config/capsight.toml").read_text())
    for path in sys.argv[3:]:
        rendered(path, binaries, defaults)
    print(f"check_manifests: {len(passed)} passed, {len(failures)} failed")
    if failures:
        sys.exit(1)


if __name__ == "__main__":
    main()
