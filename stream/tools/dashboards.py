"""The Grafana dashboards, built in Python so every panel's PromQL lives in one reviewed place.

``vector-trainer dashboards build`` writes them to ``dashboards/json/`` (committed;
Grafana provisions them from there in compose, and a test keeps the files equal to
this module); ``vector-trainer dashboards push`` uploads them through the Grafana API.
Each dashboard has a ``datasource`` variable (any Prometheus) and, where panels are
per function, a ``function`` variable (multi-value, "All" = ``.*``).  Every
expression is evaluated against a real Prometheus scraping a running processor in
``tests/test_observability_live.py``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DS = {"type": "prometheus", "uid": "${datasource}"}
FN = 'function=~"$function"'
RATE = "$__rate_interval"
TAG = "vector-trainer"


@dataclass
class Target:
    expr: str
    legend: str = ""
    format: str = "time_series"  # or "heatmap" (cumulative le buckets -> per-bucket counts)
    instant: bool = False


@dataclass
class Panel:
    title: str
    targets: list[Target]
    kind: str = "timeseries"  # timeseries | stat | heatmap | bargauge
    unit: str = "short"
    description: str = ""
    width: int = 12
    height: int = 8
    stack: bool = False
    decimals: int | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Dashboard:
    uid: str
    title: str
    description: str
    rows: list[tuple[str, list[Panel]]]
    per_function: bool = True

    def panels(self) -> Iterator[Panel]:
        for _title, panels in self.rows:
            yield from panels

    def to_json(self) -> dict[str, Any]:
        """Grafana's dashboard model (schemaVersion 39, Grafana 10/11)."""
        out: list[dict[str, Any]] = []
        next_id = 1
        y = 0
        for row_title, panels in self.rows:
            out.append({"id": next_id, "type": "row", "title": row_title, "collapsed": False,
                        "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
            next_id += 1
            y += 1
            x = 0
            row_height = 0
            for p in panels:
                if x + p.width > 24:
                    x, y = 0, y + row_height
                    row_height = 0
                out.append(_panel_json(p, next_id, x, y))
                next_id += 1
                x += p.width
                row_height = max(row_height, p.height)
            y += row_height
        variables: list[dict[str, Any]] = [
            {"name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus",
             "current": {}, "hide": 0, "refresh": 1, "regex": "", "options": []},
        ]
        if self.per_function:
            query = "label_values(vt_density_index_logs, function)"
            variables.append({
                "name": "function", "label": "function", "type": "query", "datasource": DS,
                "definition": query, "query": {"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
                "refresh": 2, "sort": 1, "multi": True, "includeAll": True, "allValue": ".*",
                "current": {"selected": True, "text": ["All"], "value": ["$__all"]}, "hide": 0, "options": [], "regex": "",
            })
        return {
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": [TAG],
            "timezone": "browser",
            "editable": True,
            "graphTooltip": 1,
            "schemaVersion": 39,
            "version": 1,
            "refresh": "10s",
            "time": {"from": "now-1h", "to": "now"},
            "annotations": {"list": [{
                "builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True, "hide": True,
                "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts", "type": "dashboard",
            }]},
            "links": [{"type": "dashboards", "tags": [TAG], "asDropdown": True, "title": "vector-trainer", "includeVars": True, "keepTime": True}],
            "templating": {"list": variables},
            "panels": out,
        }


def _panel_json(p: Panel, pid: int, x: int, y: int) -> dict[str, Any]:
    targets = []
    for i, t in enumerate(p.targets):
        target: dict[str, Any] = {"refId": chr(ord("A") + i), "datasource": DS, "expr": t.expr, "legendFormat": t.legend or "__auto",
                                  "range": not t.instant, "instant": t.instant}
        if t.format != "time_series":
            target["format"] = t.format
        targets.append(target)
    defaults: dict[str, Any] = {"unit": p.unit}
    if p.decimals is not None:
        defaults["decimals"] = p.decimals
    options: dict[str, Any]
    if p.kind == "timeseries":
        defaults["custom"] = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 20 if p.stack else 10, "showPoints": "never",
                              "stacking": {"mode": "normal" if p.stack else "none", "group": "A"}}
        options = {"legend": {"displayMode": "table", "placement": "bottom", "calcs": ["lastNotNull", "max"]},
                   "tooltip": {"mode": "multi", "sort": "desc"}}
    elif p.kind == "stat":
        options = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}, "colorMode": "value",
                   "graphMode": "area", "textMode": "auto", "orientation": "auto"}
    elif p.kind == "bargauge":
        options = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}, "orientation": "horizontal",
                   "displayMode": "gradient", "showUnfilled": True}
    elif p.kind == "heatmap":
        options = {"calculate": False, "yAxis": {"axisPlacement": "left", "unit": "short"},
                   "rowsFrame": {"layout": "le"}, "color": {"mode": "scheme", "scheme": "Oranges", "steps": 64, "exponent": 0.5},
                   "cellGap": 1, "tooltip": {"mode": "single", "yHistogram": True}, "legend": {"show": True},
                   "filterValues": {"le": 1e-9}}
    else:
        raise ValueError(f"unknown panel kind {p.kind!r}")
    options.update(p.options)
    return {
        "id": pid, "type": p.kind, "title": p.title, "description": p.description, "datasource": DS,
        "gridPos": {"h": p.height, "w": p.width, "x": x, "y": y}, "targets": targets,
        "fieldConfig": {"defaults": defaults, "overrides": []}, "options": options,
    }


def _quantiles(metric: str, by: str, what: str) -> list[Target]:
    return [
        Target(f"histogram_quantile({q}, sum by (le, {by}) (rate({metric}_bucket[{RATE}])))", f"p{int(float(q) * 100)} {{{{{by}}}}}")
        for q in ("0.5", "0.95", "0.99")
    ] if by else [
        Target(f"histogram_quantile({q}, sum by (le) (rate({metric}_bucket[{RATE}])))", f"p{int(float(q) * 100)} {what}")
        for q in ("0.5", "0.95", "0.99")
    ]


def pipeline() -> Dashboard:
    return Dashboard(
        uid="vt-pipeline",
        title="vector-trainer / pipeline",
        description="Throughput, latency, consumer lag and dead letters of every vector-trainer instance.",
        per_function=False,
        rows=[
            ("Health", [
                Panel("Instances up", [Target('sum(up{job=~".*vector-trainer.*"})', "up")], kind="stat", width=4, height=4,
                      description="Scrape targets of the vector-trainer job answering /metrics."),
                Panel("Instances consuming", [Target("sum(vt_ready)", "ready")], kind="stat", width=4, height=4,
                      description="Instances that joined the consumer group (vt_ready)."),
                Panel("Input records/s", [Target(f"sum(rate(vt_events_consumed_total[{RATE}]))", "in")], kind="stat", unit="ops", width=4, height=4),
                Panel("Consumer lag", [Target("sum(vt_consumer_lag_records)", "lag")], kind="stat", width=4, height=4,
                      description="Records not yet processed, all topics and partitions."),
                Panel("Dead-letter ratio", [Target(
                    f"sum(rate(vt_dead_letters_total[{RATE}])) / sum(rate(vt_events_consumed_total[{RATE}]))", "dead-lettered")],
                      kind="stat", unit="percentunit", width=4, height=4, decimals=2,
                      description="Share of input records sent to the dead-letter topic (alert above 5%)."),
                Panel("Processing errors (1h)", [Target("sum(increase(vt_processing_errors_total[1h])) + sum(increase(vt_service_crashes_total[1h]))", "errors")],
                      kind="stat", width=4, height=4, decimals=0,
                      description="Batches a processor raised on plus background-service crashes in the last hour."),
            ]),
            ("Throughput", [
                Panel("Input records/s by topic", [Target(f"sum by (topic) (rate(vt_events_consumed_total[{RATE}]))", "{{topic}}")], unit="ops"),
                Panel("Output records/s by topic", [Target(f"sum by (topic) (rate(vt_events_produced_total[{RATE}]))", "{{topic}}")], unit="ops",
                      description="Acknowledged records on golden, hooks, training, models and dlq."),
            ]),
            ("Latency", [
                Panel("Record latency (broker timestamp to outputs acknowledged)", _quantiles("vt_record_latency_seconds", "topic", ""), unit="s"),
                Panel("Batch processing time by processor", _quantiles("vt_batch_processing_seconds", "processor", ""), unit="s",
                      description="Time to process one fetched partition batch, outputs acknowledged included."),
            ]),
            ("Consumer lag", [
                Panel("Lag by topic", [Target("sum by (topic) (vt_consumer_lag_records)", "{{topic}}")],
                      description="highwater - processed offset, summed over partitions (alert: above 10000 for 10 minutes)."),
                Panel("Lag by partition", [Target("max by (topic, partition) (vt_consumer_lag_records)", "{{topic}}[{{partition}}]")]),
                Panel("Assigned partitions by instance", [Target("sum by (instance, topic) (vt_assigned_partitions)", "{{instance}} {{topic}}")],
                      stack=True),
                Panel("Offset commits and checkpoints/s", [
                    Target(f"sum(rate(vt_offset_commits_total[{RATE}]))", "offset commits"),
                    Target(f"sum by (processor) (rate(vt_checkpoints_total[{RATE}]))", "checkpoints {{processor}}"),
                ], unit="ops"),
            ]),
            ("Dead letters and errors", [
                Panel("Dead letters/s by reason", [Target(f"sum by (topic, reason) (rate(vt_dead_letters_total[{RATE}]))", "{{topic}} {{reason}}")],
                      unit="ops", stack=True, description="Every reason of the closed vocabulary; `vector-trainer tail dlq` shows the records."),
                Panel("Dead letters by reason (1h)", [Target("sum by (reason) (increase(vt_dead_letters_total[1h]))", "{{reason}}")],
                      kind="bargauge", decimals=0),
                Panel("Errors, crashes, re-sends/s", [
                    Target(f"sum by (processor) (rate(vt_processing_errors_total[{RATE}]))", "errors {{processor}}"),
                    Target(f"sum by (service) (rate(vt_service_crashes_total[{RATE}]))", "crashes {{service}}"),
                    Target(f"sum(rate(vt_send_retries_total[{RATE}]))", "output re-sends"),
                ], unit="ops"),
                Panel("Checkpoint duration", _quantiles("vt_checkpoint_duration_seconds", "processor", ""), unit="s"),
            ]),
        ],
    )


def density() -> Dashboard:
    return Dashboard(
        uid="vt-density",
        title="vector-trainer / density and golden set",
        description="Engine 1: the density index per function, the distribution of densities, the golden set by strategy.",
        rows=[
            ("Index", [
                Panel("Logs in the index", [Target(f"max by (function) (vt_density_index_logs{{{FN}}})", "{{function}}")],
                      description="Logs in each function's density index after TTL/cap evictions."),
                Panel("Logs indexed/s", [Target(f"sum by (function) (rate(vt_density_indexed_total{{{FN}}}[{RATE}]))", "{{function}}")], unit="ops"),
                Panel("Density distribution (logs by density, now)", [Target(
                    f"sum by (le) (vt_density_distribution_bucket{{{FN}}})", "{{le}}", format="heatmap")],
                      kind="heatmap", width=24, height=10,
                      description="Gauge histogram: how many indexed logs have each density D(i) (sum of cosine similarities within epsilon). "
                                  "Dense regions are the steady candidates; the bottom rows hold the anomaly candidates."),
                Panel("Density quantiles", [Target(f"max by (function, quantile) (vt_density_quantile{{{FN}}})", "{{function}} q{{quantile}}")]),
                Panel("Skipped and evicted logs/s", [
                    Target(f"sum by (function, reason) (rate(vt_density_skipped_total{{{FN}}}[{RATE}]))", "skipped {{function}} {{reason}}"),
                    Target(f"sum by (function, reason) (rate(vt_density_evictions_total{{{FN}}}[{RATE}]))", "evicted {{function}} {{reason}}"),
                ], unit="ops"),
            ]),
            ("Golden set", [
                Panel("Golden set by strategy", [Target(f"sum by (function, strategy) (vt_golden_samples{{{FN}}})", "{{function}} {{strategy}}")],
                      stack=True, description="Samples in each function's golden set (steady = dense centres, anomaly = rare but successful)."),
                Panel("Golden set now", [Target(f"sum by (strategy) (vt_golden_samples{{{FN}}})", "{{strategy}}")], kind="bargauge", decimals=0),
                Panel("Samples entering / leaving per minute", [Target(
                    f"sum by (strategy, change) (rate(vt_golden_changes_total{{{FN}}}[{RATE}])) * 60", "{{change}} {{strategy}}")],
                      unit="short", description="GoldenSample (enter) and tombstone (leave) records on the golden topic."),
                Panel("Freshness: logs waiting for evaluation", [
                    Target(f"max by (function) (vt_density_unevaluated_age_seconds{{{FN}}})", "oldest waiting {{function}}"),
                    *_quantiles("vt_density_evaluation_wait_seconds", "", "wait at evaluation"),
                ], unit="s", width=24,
                      description="How long each function's indexed logs have waited for an evaluation (0 when all are evaluated), and, "
                                  "at each evaluation, how long its oldest log had waited. A burst is evaluated after density.idle_evaluate_s "
                                  "of quiet; steady traffic at each select_interval_s window of event time."),
            ]),
            ("Range search", [
                Panel("Range-cap hits and brute-force queries/s", [
                    Target(f"sum by (function) (rate(vt_density_range_cap_hits_total{{{FN}}}[{RATE}]))", "cap hits {{function}}"),
                    Target(f"sum by (function) (rate(vt_density_brute_force_queries_total{{{FN}}}[{RATE}]))", "brute force {{function}}"),
                ], unit="ops", description="Cap hits truncate densities (raise density.max_k); brute force is exact and only costs time."),
                Panel("Batch insert and selection time", [
                    *_quantiles("vt_density_batch_insert_seconds", "", "insert"),
                    *_quantiles("vt_density_selection_seconds", "", "selection"),
                ], unit="s"),
            ]),
        ],
    )


def hooks() -> Dashboard:
    def ratio(metric: str, split: str) -> list[Target]:
        return [Target(f'max by (function, stage) ({metric}{{{FN}, split="{split}"}})', "{{function}} {{stage}}")]

    return Dashboard(
        uid="vt-hooks",
        title="vector-trainer / prompt hooks",
        description="Engine 2: feedback pairs, hook versions and their validation scores before (no hook) and after (hook).",
        rows=[
            ("Versions", [
                Panel("Hook version", [Target(f"max by (function) (vt_hook_version{{{FN}}})", "{{function}}")], decimals=0,
                      description="Current release of each function's generated_prompt_hook.py; a step is a release or a rollback."),
                Panel("Rules in the current hook", [Target(f"max by (function) (vt_hook_rules{{{FN}}})", "{{function}}")], kind="bargauge", decimals=0),
                Panel("Releases and refusals (1h)", [
                    Target(f"sum by (function) (increase(vt_hook_releases_total{{{FN}}}[1h]))", "released {{function}}"),
                    Target(f"sum by (function, reason) (increase(vt_hook_releases_refused_total{{{FN}}}[1h]))", "refused {{function}} {{reason}}"),
                ], description="Candidates refused by validation never reach the hooks topic (alert: 3 refusals in an hour)."),
                Panel("Feedback pairs/s", [Target(f"sum by (function) (rate(vt_feedback_pairs_total{{{FN}}}[{RATE}]))", "{{function}}")], unit="ops"),
            ]),
            ("Validation (held-out pairs: never used to synthesise)", [
                Panel("Held-out exact match, before → after", ratio("vt_hook_validation_exact_match_ratio", "heldout"), unit="percentunit"),
                Panel("Held-out similarity, before → after", ratio("vt_hook_validation_similarity_ratio", "heldout"), unit="percentunit"),
                Panel("All pairs exact match, before → after", ratio("vt_hook_validation_exact_match_ratio", "all"), unit="percentunit"),
                Panel("All pairs similarity, before → after", ratio("vt_hook_validation_similarity_ratio", "all"), unit="percentunit"),
            ]),
            ("Synthesis", [
                Panel("Syntheses and errors/s", [
                    Target(f"sum by (function) (rate(vt_feedback_synthesis_runs_total{{{FN}}}[{RATE}]))", "runs {{function}}"),
                    Target(f"sum by (function) (rate(vt_feedback_synthesis_errors_total{{{FN}}}[{RATE}]))", "errors {{function}}"),
                ], unit="ops"),
                Panel("Synthesis time", _quantiles("vt_feedback_synthesis_seconds", "", "synthesis"), unit="s"),
            ]),
        ],
    )


def training() -> Dashboard:
    return Dashboard(
        uid="vt-training",
        title="vector-trainer / fine-tuning",
        description="Engine 3: the trigger's inputs, jobs by status, loss curves, estimated cost and the age of each function's model.",
        rows=[
            ("Jobs", [
                Panel("Jobs in flight", [Target("sum(vt_training_jobs_in_flight)", "in flight")], kind="stat", width=6, height=6),
                Panel("Newest model age", [Target(f"time() - max by (function) (vt_training_last_model_timestamp_seconds{{{FN}}})", "{{function}}")],
                      kind="stat", unit="s", width=6, height=6, description="Alert when new golden data waits and the model is over 7 days old."),
                Panel("Job status changes (24h)", [Target(f"sum by (status) (increase(vt_training_jobs_total{{{FN}}}[24h]))", "{{status}}")],
                      kind="bargauge", width=12, height=6, decimals=0,
                      description="queued → validating → queued → running → succeeded | failed | cancelled; exported and rejected_budget are decisions."),
                Panel("Job status changes/min", [Target(f"sum by (function, status) (rate(vt_training_jobs_total{{{FN}}}[{RATE}])) * 60",
                                                        "{{function}} {{status}}")], width=24),
            ]),
            ("Loss", [
                Panel("Loss curves (latest train / valid loss)", [Target(f"max by (function, split) (vt_training_loss{{{FN}}})", "{{function}} {{split}}")],
                      width=24, height=9, description="The trainer's loss at each reported step, as it arrives; `vector-trainer plot` draws whole jobs from the training topic."),
            ]),
            ("Trigger and cost", [
                Panel("Golden samples and new since the last job", [
                    Target(f"max by (function) (vt_training_golden_samples{{{FN}}})", "golden {{function}}"),
                    Target(f"max by (function) (vt_training_new_samples{{{FN}}})", "new {{function}}"),
                ], description="A job starts when 'new' reaches training.threshold (cooldown and one job in flight permitting)."),
                Panel("Estimated cost of the latest job", [Target(f"max by (function) (vt_training_estimated_cost_usd{{{FN}}})", "{{function}}")],
                      unit="currencyUSD", decimals=4),
                Panel("Estimated spend of started jobs (24h)", [Target(
                    f"sum by (function) (increase(vt_training_started_cost_usd_total{{{FN}}}[24h]))", "{{function}}")],
                      unit="currencyUSD", decimals=4, description="Compare with training.max_day_usd (the cost guard refuses jobs beyond it)."),
                Panel("Billed tokens of the latest job", [Target(f"max by (function) (vt_training_estimated_tokens{{{FN}}})", "{{function}}")]),
            ]),
        ],
    )


def all_dashboards() -> list[Dashboard]:
    return [pipeline(), density(), hooks(), training()]


def write(directory: Path) -> list[Path]:
    """Write every dashboard as ``<uid>.json`` (sorted keys, so the committed files diff cleanly)."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for d in all_dashboards():
        path = directory / f"{d.uid}.json"
        path.write_text(render(d), encoding="utf-8")
        paths.append(path)
    return paths


def render(d: Dashboard) -> str:
    return json.dumps(d.to_json(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def load(directory: Path) -> list[dict[str, Any]]:
    """Dashboard JSON files of a directory (what ``push --dir`` uploads)."""
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(directory.glob("*.json"))]


def expressions(dashboard: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(panel title, refId, expr) of every query in a dashboard's JSON, rows' nested panels included."""
    def walk(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for p in panels:
            yield p
            yield from walk(p.get("panels", []))

    for p in walk(dashboard.get("panels", [])):
        for t in p.get("targets", []):
            if t.get("expr"):
                yield p["title"], t["refId"], t["expr"]
