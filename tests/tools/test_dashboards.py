"""The dashboard files: current with stream/tools/dashboards.py, well-formed for Grafana, provisioned by compose."""

from __future__ import annotations

import json

import yaml

from stream.tools.dashboards import all_dashboards, expressions, render
from tests.support import ROOT

JSON_DIR = ROOT / "dashboards" / "json"


def test_committed_json_is_what_the_builder_writes() -> None:
    """Run `vector-trainer dashboards build` after changing stream/tools/dashboards.py."""
    built = {f"{d.uid}.json": render(d) for d in all_dashboards()}
    on_disk = {p.name: p.read_text(encoding="utf-8") for p in JSON_DIR.glob("*.json")}
    assert on_disk == built


def test_every_dashboard_has_the_datasource_variable_and_per_function_ones_the_function_variable() -> None:
    for d in all_dashboards():
        model = d.to_json()
        variables = {v["name"]: v for v in model["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
        exprs = [e for _t, _r, e in expressions(model)]
        assert exprs, d.uid
        if d.per_function:
            fn = variables["function"]
            assert fn["multi"] and fn["includeAll"] and fn["allValue"] == ".*" and fn["datasource"]["uid"] == "${datasource}"
            assert any('function=~"$function"' in e for e in exprs)
        else:
            assert not any("$function" in e for e in exprs)
        ids = [p["id"] for p in model["panels"]]
        assert len(ids) == len(set(ids))
        for p in model["panels"]:
            g = p["gridPos"]
            assert 0 <= g["x"] and g["x"] + g["w"] <= 24, (d.uid, p["title"])
            if p["type"] != "row":
                assert p["datasource"]["uid"] == "${datasource}"
                assert all(t["datasource"]["uid"] == "${datasource}" for t in p["targets"])


def test_the_four_dashboards_cover_the_mission() -> None:
    titles = {d.uid: [p.title for p in d.panels()] for d in all_dashboards()}
    assert set(titles) == {"vt-pipeline", "vt-density", "vt-hooks", "vt-training"}
    kinds = {p.kind for d in all_dashboards() for p in d.panels()}
    assert "heatmap" in kinds
    heat = next(p for p in all_dashboards()[1].panels() if p.kind == "heatmap")
    assert heat.targets[0].format == "heatmap" and "vt_density_distribution_bucket" in heat.targets[0].expr


def test_compose_provisions_the_dashboards_and_the_datasource() -> None:
    compose = yaml.safe_load((ROOT / "deploy" / "docker-compose.yml").read_text())
    volumes = compose["services"]["grafana"]["volumes"]
    mounts = {v.split(":")[1]: (ROOT / "deploy" / v.split(":")[0]).resolve() for v in volumes}
    provisioning = mounts["/etc/grafana/provisioning"]
    assert provisioning == (ROOT / "dashboards" / "provisioning").resolve()
    assert mounts["/var/lib/grafana/dashboards"] == JSON_DIR.resolve()
    providers = yaml.safe_load((provisioning / "dashboards" / "vector-trainer.yml").read_text())["providers"]
    assert providers[0]["options"]["path"] == "/var/lib/grafana/dashboards"
    sources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    assert sources[0]["type"] == "prometheus" and sources[0]["url"] == "http://prometheus:9090"
    prometheus_volumes = compose["services"]["prometheus"]["volumes"]
    assert any(v.startswith("./alerts.yml:") for v in prometheus_volumes) and (ROOT / "deploy" / "alerts.yml").is_file()
    for path in JSON_DIR.glob("*.json"):
        json.loads(path.read_text())
