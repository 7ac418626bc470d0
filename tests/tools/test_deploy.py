"""The deployment files agree with each other and with the code: ports, the metrics and
health endpoints, topic settings, environment variables, replica counts, mounted paths.

No container runtime can pull images here, so the files are parsed and checked, not run;
the settings they pass are loaded through the real ``Settings`` so a typo fails here.
"""

from __future__ import annotations

import json
import re
import shlex
from typing import Any

import pytest
import yaml

from processors.training.trainers.openai_trainer import KEY_ENV
from stream.contract.config import Settings
from stream.contract.hooks.release import SIGNING_KEY_ENV
from tests.support import ROOT

DEPLOY = ROOT / "deploy"
DEFAULTS = Settings.load(environ={})
SETTING_ENVS = {env for _path, env, _value, _help in DEFAULTS.describe()}
SECRET_ENVS = {SIGNING_KEY_ENV, *KEY_ENV}  # read from the environment directly, never settings


def _dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) per instruction, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", (DEPLOY / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


def _k8s() -> dict[str, dict[str, Any]]:
    docs: dict[str, dict[str, Any]] = {}
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs[doc["kind"]] = doc
    return docs


def _settings_from(env: dict[str, Any]) -> Settings:
    vt = {k: str(v) for k, v in env.items() if k.startswith("VT_")}
    unknown = set(vt) - SETTING_ENVS - SECRET_ENVS
    assert not unknown, f"environment variables that are no setting: {sorted(unknown)}"
    return Settings.load(environ=vt)


# ----------------------------------------------------------------------------- Dockerfile
def test_dockerfile_is_slim_non_root_and_health_checked_on_ready() -> None:
    ins = _dockerfile()
    froms = [a for i, a in ins if i == "FROM"]
    assert froms and all("slim" in f for f in froms), froms
    copies = [a.split() for i, a in ins if i == "COPY" and "--from" not in a]
    for args in copies:
        for src in args[:-1]:
            assert (ROOT / src).exists(), f"COPY {src}: no such path in the repository"
    user = [a for i, a in ins if i == "USER"][-1]
    assert user not in ("root", "0")
    uid = re.search(r"--uid (\d+)", next(a for i, a in ins if i == "RUN" and "useradd" in a))
    assert uid and int(uid.group(1)) != 0
    env = dict(kv.split("=", 1) for i, a in ins if i == "ENV" for kv in shlex.split(a))
    s = _settings_from(env)
    assert s.metrics_host == "0.0.0.0", "reachable from outside the container"
    exposed = [int(a) for i, a in ins if i == "EXPOSE"]
    assert exposed == [s.metrics_port] == [DEFAULTS.metrics_port]
    health = next(a for i, a in ins if i == "HEALTHCHECK")
    assert f"127.0.0.1:{s.metrics_port}/ready" in health
    volume = json.loads(next(a for i, a in ins if i == "VOLUME"))
    assert volume == [str(s.state_dir)]
    assert json.loads(next(a for i, a in ins if i == "ENTRYPOINT")) == ["vector-trainer"]
    assert json.loads(next(a for i, a in ins if i == "CMD")) == ["run"]


# ----------------------------------------------------------------------------- compose
def test_compose_wires_kafka_topics_processors_prometheus_and_grafana() -> None:
    c = _compose()
    svc = c["services"]
    assert {"kafka", "topic-init", "processor", "prometheus", "grafana"} <= set(svc)
    kafka_env = svc["kafka"]["environment"]
    assert "controller" in kafka_env["KAFKA_PROCESS_ROLES"], "KRaft: no ZooKeeper"
    advertised = kafka_env["KAFKA_ADVERTISED_LISTENERS"].split("//", 1)[1]

    proc = svc["processor"]
    s = _settings_from(proc["environment"])
    init = _settings_from(svc["topic-init"]["environment"])
    assert s.bootstrap == init.bootstrap == advertised
    assert (s.topic_prefix, s.partitions) == (init.topic_prefix, init.partitions) == (DEFAULTS.topic_prefix, DEFAULTS.partitions)
    assert svc["topic-init"]["command"] == ["topics", "create"] and proc["command"] == ["run"]
    assert proc["depends_on"]["topic-init"]["condition"] == "service_completed_successfully"
    assert proc["expose"] == [str(s.metrics_port)] and s.metrics_host == "0.0.0.0"
    assert 1 <= proc["deploy"]["replicas"] <= s.partitions, "replicas beyond the partition count idle"
    assert proc["stop_grace_period"], "time for the final checkpoint and commit on SIGTERM"

    # Prometheus: its config and rules are mounted where prometheus.yml says, and it scrapes the processors' port.
    mounts = dict(v.split(":")[:2] for v in svc["prometheus"]["volumes"])
    for src in mounts:
        assert (DEPLOY / src).is_file(), src
    prom = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    for rule_file in prom["rule_files"]:
        assert rule_file in mounts.values(), f"{rule_file} is not mounted into the Prometheus container"
    assert "/etc/prometheus/prometheus.yml" in mounts.values()
    job = prom["scrape_configs"][0]
    assert job["metrics_path"] == "/metrics"
    sd = job["dns_sd_configs"][0]
    assert sd["names"] == ["processor"] and sd["port"] == s.metrics_port
    assert "vector-trainer" in job["job_name"], "the alert rules select job=~'.*vector-trainer.*'"

    # Grafana: provisioning and dashboards mounted where the provisioning files expect them.
    gmounts = dict(v.split(":")[:2] for v in svc["grafana"]["volumes"])
    for src in gmounts:
        assert (DEPLOY / src).resolve().is_dir(), src
    by_target = {t: (DEPLOY / s_).resolve() for s_, t in gmounts.items()}
    assert by_target["/etc/grafana/provisioning"] == ROOT / "dashboards" / "provisioning"
    provider = yaml.safe_load((ROOT / "dashboards/provisioning/dashboards/vector-trainer.yml").read_text())["providers"][0]
    json_dir = by_target[provider["options"]["path"]]
    boards = sorted(json_dir.glob("*.json"))
    assert len(boards) >= 4
    for board in boards:
        body = json.loads(board.read_text())
        assert any(v.get("type") == "datasource" for v in body["templating"]["list"]), f"{board.name}: datasource variable"
    ds = yaml.safe_load((ROOT / "dashboards/provisioning/datasources/prometheus.yml").read_text())["datasources"][0]
    host, port = ds["url"].split("//", 1)[1].split(":")
    ports = {p.split(":")[-1] for p in svc["prometheus"]["ports"]}
    assert host == "prometheus" and port in ports


# ----------------------------------------------------------------------------- Kubernetes
def test_kubernetes_manifests_agree_with_each_other_and_the_image() -> None:
    docs = _k8s()
    kust = yaml.safe_load((DEPLOY / "k8s/kustomization.yaml").read_text())
    for res in kust["resources"]:
        assert (DEPLOY / "k8s" / res).is_file(), res
    assert {"ConfigMap", "Deployment", "Service", "PodMonitor", "PodDisruptionBudget", "Job", "PrometheusRule"} <= set(docs)
    s = _settings_from(docs["ConfigMap"]["data"])
    dep = docs["Deployment"]
    assert dep["spec"]["replicas"] == s.partitions, "one replica per partition"
    pod = dep["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert dep["spec"]["selector"]["matchLabels"] == labels
    container = pod["spec"]["containers"][0]
    assert container["args"] == ["run"]
    port = next(p for p in container["ports"] if p["name"] == "metrics")
    assert port["containerPort"] == s.metrics_port and s.metrics_host == "0.0.0.0"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert {e["name"] for e in container.get("env", [])} <= SECRET_ENVS, "secrets only from Secrets"
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == str(s.state_dir))
    assert any(v["name"] == mount["name"] for v in pod["spec"]["volumes"])
    dockerfile_uid = int(re.search(r"--uid (\d+)", (DEPLOY / "Dockerfile").read_text()).group(1))  # type: ignore[union-attr]
    assert pod["spec"]["securityContext"]["runAsUser"] == dockerfile_uid and pod["spec"]["securityContext"]["runAsNonRoot"]

    svc = docs["Service"]["spec"]
    assert svc["selector"] == labels and svc["ports"][0]["targetPort"] == "metrics" and svc["ports"][0]["port"] == s.metrics_port
    pm = docs["PodMonitor"]["spec"]
    assert pm["selector"]["matchLabels"] == labels
    assert pm["podMetricsEndpoints"][0]["port"] == "metrics" and pm["podMetricsEndpoints"][0]["path"] == "/metrics"
    assert docs["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == labels
    job = docs["Job"]["spec"]["template"]["spec"]["containers"][0]
    assert job["args"] == ["topics", "create"] and job["image"] == container["image"]
    assert job["envFrom"] == container["envFrom"], "the topics are created with the processors' prefix and partitions"


@pytest.mark.parametrize("where", ["compose", "k8s"])
def test_the_same_topic_layout_everywhere(where: str) -> None:
    env = _compose()["services"]["processor"]["environment"] if where == "compose" else _k8s()["ConfigMap"]["data"]
    s = _settings_from(env)
    assert (s.topic_prefix, s.partitions, s.group_id) == (DEFAULTS.topic_prefix, DEFAULTS.partitions, DEFAULTS.group_id)
