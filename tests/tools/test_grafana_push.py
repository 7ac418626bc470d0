"""``vector-trainer dashboards push`` through the real grafana-client against a loopback Grafana API.

The server (tests/fake_grafana.py) checks what Grafana checks: the bearer token,
JSON bodies, the folder of ``folderUid`` and ``overwrite`` for an existing uid.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stream.cli import app
from stream.runtime.broker import free_port
from stream.tools.dashboards import all_dashboards
from stream.tools.grafana import DashboardPusher, PushError, folder_uid
from tests.support import ROOT
from tests.support.fake_grafana import FakeGrafana

TOKEN = "glsa_TESTtoken_0123456789abcdef_SECRET"
UIDS = {d.uid for d in all_dashboards()}


def boards() -> list[dict]:
    return [d.to_json() for d in all_dashboards()]


def test_push_creates_the_folder_and_every_dashboard_with_the_requests_grafana_expects() -> None:
    with FakeGrafana(TOKEN) as grafana:
        pushed = DashboardPusher(grafana.url, TOKEN).push(boards(), "vector-trainer")
        reqs = list(grafana.requests)
    assert {p.uid for p in pushed} == UIDS and all(p.version == 1 for p in pushed)
    assert all(p.url.startswith(f"{grafana.url}/d/{p.uid}/") for p in pushed)
    # Every request carried the token as a bearer token, and only in that header.
    assert all(r.authorization == f"Bearer {TOKEN}" for r in reqs)
    assert [(r.method, r.path) for r in reqs[:2]] == [("GET", "/api/folders/vector-trainer"), ("POST", "/api/folders")]
    assert reqs[1].body == {"title": "vector-trainer", "uid": "vector-trainer"}
    saves = [r for r in reqs if r.path == "/api/dashboards/db"]
    assert len(saves) == len(UIDS) and all(r.method == "POST" and r.content_type.startswith("application/json") for r in saves)
    for r in saves:
        assert r.body["overwrite"] is True and r.body["folderUid"] == "vector-trainer"
        assert r.body["dashboard"]["id"] is None and r.body["dashboard"]["uid"] in UIDS
        assert r.body["dashboard"]["templating"]["list"][0]["name"] == "datasource"
    assert set(grafana.dashboards) == UIDS and {d["folderUid"] for d in grafana.dashboards.values()} == {"vector-trainer"}


def test_a_second_push_updates_the_same_dashboards_and_creates_no_folder() -> None:
    with FakeGrafana(TOKEN) as grafana:
        DashboardPusher(grafana.url, TOKEN).push(boards())
        first = len(grafana.requests)
        again = DashboardPusher(grafana.url, TOKEN).push(boards())
        second = grafana.requests[first:]
    assert all(p.version == 2 for p in again)
    assert len(grafana.dashboards) == len(UIDS) and len(grafana.folders) == 1
    assert not any(r.method == "POST" and r.path == "/api/folders" for r in second)


def test_the_fake_refuses_a_save_without_overwrite_so_the_check_above_means_something() -> None:
    import niquests

    with FakeGrafana(TOKEN) as grafana:
        DashboardPusher(grafana.url, TOKEN).push(boards())
        d = boards()[0]
        r = niquests.post(f"{grafana.url}/api/dashboards/db", json={"dashboard": d, "folderUid": "vector-trainer"},
                          headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
    assert r.status_code == 412


def test_an_existing_folder_of_that_title_under_another_uid_is_reused() -> None:
    with FakeGrafana(TOKEN) as grafana:
        grafana.folders["abc123"] = {"id": 99, "title": "ML pipelines"}
        DashboardPusher(grafana.url, TOKEN).push(boards(), "ML pipelines")
    assert folder_uid("ML pipelines") == "ml-pipelines"
    assert {d["folderUid"] for d in grafana.dashboards.values()} == {"abc123"} and len(grafana.folders) == 1


def test_a_wrong_token_is_a_clear_error_that_never_shows_the_token() -> None:
    with FakeGrafana(TOKEN) as grafana:
        with pytest.raises(PushError) as err:
            DashboardPusher(grafana.url, "glsa_wrong_SECRET_value").push(boards())
        result = CliRunner().invoke(app, ["dashboards", "push", "--url", grafana.url, "--token", "glsa_wrong_SECRET_value"])
    assert "401" in str(err.value) and "token" in str(err.value) and "SECRET" not in str(err.value)
    assert result.exit_code == 1 and "refused the token" in result.output and "SECRET" not in result.output
    assert not grafana.dashboards


def test_an_unreachable_server_is_a_clear_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(PushError, match="cannot reach Grafana at http://127.0.0.1"):
        DashboardPusher(url, TOKEN, timeout=2).push(boards())
    with pytest.raises(PushError, match="--url must be"):
        DashboardPusher("localhost:3000", TOKEN)
    with pytest.raises(PushError, match="no token"):
        DashboardPusher("http://localhost:3000", "")


def test_cli_push_from_the_committed_files_with_the_token_from_the_environment(tmp_path: Path) -> None:
    root = ROOT / "dashboards" / "json"
    with FakeGrafana(TOKEN) as grafana:
        result = CliRunner().invoke(app, ["dashboards", "push", "--url", grafana.url, "--dir", str(root), "--folder", "Observability"],
                                    env={"GRAFANA_TOKEN": TOKEN})
    assert result.exit_code == 0, result.output
    assert TOKEN not in result.output and "4 dashboards in folder 'Observability'" in result.output
    saved = {uid: d["dashboard"] for uid, d in grafana.dashboards.items()}
    assert saved == {p.stem: {**json.loads(p.read_text()), "id": None} for p in root.glob("*.json")}
