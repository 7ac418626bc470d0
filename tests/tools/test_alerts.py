"""The alert rules with the real promtool: syntax, unit tests of every rule, and that those tests bite.

``deploy/alerts.test.yml`` must test every rule both firing and not firing; a copy of
the rules that never fires and one that always fires must each fail the unit tests
for every rule (otherwise some rule's tests could not catch a broken rule).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import ROOT

ALERTS = ROOT / "deploy" / "alerts.yml"
ALERT_TESTS = ROOT / "deploy" / "alerts.test.yml"
K8S_RULE = ROOT / "deploy" / "k8s" / "prometheusrule.yaml"


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing in CI (.ci/run installs Debian's prometheus package)")
        pytest.skip("promtool not installed (apt-get install prometheus)")
    return path


def run_promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]


def test_promtool_check_rules_accepts_the_file() -> None:
    done = run_promtool("check", "rules", str(ALERTS))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules())} rules found" in done.stdout


def test_promtool_unit_tests_of_every_rule_pass() -> None:
    done = run_promtool("test", "rules", str(ALERT_TESTS))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_rule_is_tested_firing_and_not_firing() -> None:
    cases = [case for test in yaml.safe_load(ALERT_TESTS.read_text())["tests"] for case in test.get("alert_rule_test", [])]
    names = {rule["alert"] for rule in rules()}
    firing = {c["alertname"] for c in cases if c.get("exp_alerts")}
    quiet = {c["alertname"] for c in cases if not c.get("exp_alerts")}
    assert names - firing == set(), "rules never tested firing"
    assert names - quiet == set(), "rules never tested not firing"
    assert (firing | quiet) - names == set(), "tests of rules that do not exist"
    for rule in rules():  # what a receiver needs, on every rule
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]


def _mutated_failures(tmp_path: Path, expr: str) -> set[str]:
    """Run the unit tests against a copy of the rules whose every expression is ``expr``; the alerts that failed."""
    doc = yaml.safe_load(ALERTS.read_text())
    for group in doc["groups"]:
        for rule in group["rules"]:
            rule["expr"] = expr
    (tmp_path / "alerts.yml").write_text(yaml.safe_dump(doc))
    shutil.copy(ALERT_TESTS, tmp_path / "alerts.test.yml")
    done = run_promtool("test", "rules", "alerts.test.yml", cwd=tmp_path)
    assert done.returncode != 0
    return set(re.findall(r"alertname: (\w+), time:", done.stdout + done.stderr))


def test_the_unit_tests_catch_rules_that_never_fire(tmp_path: Path) -> None:
    assert _mutated_failures(tmp_path, "vector(1) < 0") == {rule["alert"] for rule in rules()}


def test_the_unit_tests_catch_rules_that_always_fire(tmp_path: Path) -> None:
    assert _mutated_failures(tmp_path, "vector(1)") == {rule["alert"] for rule in rules()}


def test_the_kubernetes_prometheusrule_holds_the_same_rules() -> None:
    k8s = yaml.safe_load(K8S_RULE.read_text())
    assert k8s["kind"] == "PrometheusRule"
    assert k8s["spec"]["groups"] == yaml.safe_load(ALERTS.read_text())["groups"]
    assert "prometheusrule.yaml" in (ROOT / "deploy" / "k8s" / "kustomization.yaml").read_text()
