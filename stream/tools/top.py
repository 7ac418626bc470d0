"""``vector-trainer top``: a live terminal dashboard read from a processor's /metrics.

For people without Grafana: throughput and lag per topic, dead letters, and per
function the index, golden set, hook version and training state.  :func:`render`
is pure (scrapes in, a rich renderable out), so it is tested on real scrapes with
a recording console; :func:`run` only fetches, renders and sleeps.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from stream.tools.scrape import Scrape

INPUTS = ("executions", "feedback", "golden", "hooks")
OUTPUTS = ("golden", "hooks", "training", "models", "dlq")
ACTIVE = ("queued", "validating", "running")


@dataclass(frozen=True, slots=True)
class Snapshot:
    scrape: Scrape
    at: float  # time.monotonic() of the scrape


def _rate(now: Snapshot, before: Snapshot | None, name: str, **labels: str) -> float | None:
    if before is None or now.at <= before.at:
        return None
    delta = now.scrape.total(name, **labels) - before.scrape.total(name, **labels)
    return max(0.0, delta) / (now.at - before.at)  # a restarted process resets its counters


def _num(v: float | None, fmt: str = "{:,.0f}") -> str:
    return "-" if v is None else fmt.format(v)


def _value(scrape: Scrape, name: str, **labels: str) -> float | None:
    samples = scrape.select(name, **labels)
    return max(s.value for s in samples) if samples else None


def render(url: str, now: Snapshot | None, before: Snapshot | None = None, error: str | None = None) -> RenderableType:
    """The whole screen for one refresh."""
    if now is None:
        return Panel(Text(f"cannot read {url}: {error or 'no answer'}; retrying", style="red"), title="vector-trainer top")
    s = now.scrape
    up, ready = s.total("vt_up"), s.total("vt_ready")
    state = "[green]consuming[/green]" if ready else ("[yellow]running, not in its group yet[/yellow]" if up else "[red]stopped[/red]")
    in_rate = _rate(now, before, "vt_events_consumed_total")
    header = Text.from_markup(
        f"[bold]{url}[/bold]  {state}  in {_num(in_rate, '{:,.1f}')}/s  lag {_num(s.total('vt_consumer_lag_records'))}  "
        f"dead letters {_num(s.total('vt_dead_letters_total'))}  jobs in flight {_num(s.total('vt_training_jobs_in_flight'))}"
    )
    parts: list[RenderableType] = [header, _topics(now, before)]
    dead = {k: v for k, v in s.by("vt_dead_letters_total", "reason").items() if v}
    if dead:
        parts.append(Text("dead letters by reason: " + ", ".join(f"{k}={v:.0f}" for k, v in sorted(dead.items(), key=lambda kv: -kv[1]))))
    parts.append(_functions(s))
    errors = s.total("vt_processing_errors_total") + s.total("vt_service_crashes_total")
    if errors:
        parts.append(Text(f"processing errors + service crashes: {errors:.0f} (see the processor's log)", style="red"))
    return Panel(Group(*parts), title="vector-trainer top", subtitle=time.strftime("%H:%M:%S"))


def _topics(now: Snapshot, before: Snapshot | None) -> Table:
    s = now.scrape
    table = Table(title="topics", title_justify="left", expand=False)
    for col in ("topic", "in/s", "consumed", "lag", "dead letters", "out/s", "produced"):
        table.add_column(col, justify="left" if col == "topic" else "right")
    consumed = s.by("vt_events_consumed_total", "topic")
    produced = s.by("vt_events_produced_total", "topic")
    for topic in sorted(set(consumed) | set(produced), key=lambda t: (t not in INPUTS, t)):
        table.add_row(
            topic,
            _num(_rate(now, before, "vt_events_consumed_total", topic=topic), "{:,.1f}") if topic in consumed else "",
            _num(consumed.get(topic)) if topic in consumed else "",
            _num(s.total("vt_consumer_lag_records", topic=topic)) if topic in consumed else "",
            _num(s.total("vt_dead_letters_total", topic=topic)) if topic in consumed else "",
            _num(_rate(now, before, "vt_events_produced_total", topic=topic), "{:,.1f}") if topic in produced else "",
            _num(produced.get(topic)) if topic in produced else "",
        )
    return table


def _functions(s: Scrape) -> Table:
    names = set()
    for metric in ("vt_density_index_logs", "vt_golden_samples", "vt_hook_version", "vt_training_golden_samples"):
        names.update(x.labels["function"] for x in s.select(metric) if "function" in x.labels)
    table = Table(title="functions", title_justify="left")
    for col in ("function", "index logs", "density p50", "golden steady", "golden anomaly", "hook", "rules",
                "held-out exact", "new of golden", "training", "loss train/valid", "model age"):
        table.add_column(col, justify="left" if col in ("function", "training") else "right")
    now = time.time()
    for fn in sorted(names):
        statuses = {x.labels["status"]: x.value for x in s.select("vt_training_jobs_total", function=fn) if x.value}
        training = ", ".join(f"{k} {v:.0f}" for k, v in sorted(statuses.items())) or "-"
        before = _value(s, "vt_hook_validation_exact_match_ratio", function=fn, split="heldout", stage="before")
        after = _value(s, "vt_hook_validation_exact_match_ratio", function=fn, split="heldout", stage="after")
        train, valid = _value(s, "vt_training_loss", function=fn, split="train"), _value(s, "vt_training_loss", function=fn, split="valid")
        model_at = _value(s, "vt_training_last_model_timestamp_seconds", function=fn)
        hook = _value(s, "vt_hook_version", function=fn)
        table.add_row(
            fn,
            _num(_value(s, "vt_density_index_logs", function=fn)),
            _num(_value(s, "vt_density_quantile", function=fn, quantile="0.5"), "{:,.1f}"),
            _num(_value(s, "vt_golden_samples", function=fn, strategy="steady")),
            _num(_value(s, "vt_golden_samples", function=fn, strategy="anomaly")),
            f"v{hook:.0f}" if hook is not None else "-",
            _num(_value(s, "vt_hook_rules", function=fn)),
            f"{before:.0%} → {after:.0%}" if before is not None and after is not None else "-",
            f"{_num(_value(s, 'vt_training_new_samples', function=fn))} of {_num(_value(s, 'vt_training_golden_samples', function=fn))}",
            training,
            f"{_num(train, '{:.3f}')} / {_num(valid, '{:.3f}')}" if train is not None or valid is not None else "-",
            _age(now - model_at) if model_at else "-",
        )
    return table


def _age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


def fetch(url: str, timeout: float = 2.0) -> tuple[Snapshot | None, str | None]:
    try:
        return Snapshot(Scrape.fetch(url, timeout=timeout), time.monotonic()), None
    except (OSError, ValueError) as exc:
        return None, str(exc)


def run(url: str, interval: float, console: Console, iterations: int | None = None) -> None:
    """Refresh every ``interval`` seconds until Ctrl-C (or ``iterations`` refreshes)."""
    before: Snapshot | None = None
    done = 0
    with Live(console=console, refresh_per_second=4, screen=False, transient=False) as live:
        while iterations is None or done < iterations:
            now, error = fetch(url)
            live.update(render(url, now, before, error))
            before = now or before
            done += 1
            if iterations is None or done < iterations:
                time.sleep(interval)
