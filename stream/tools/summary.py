"""What appeared on every topic, as rich tables (the end of ``make demo``).

Engines add their own section with :func:`section`; each section gets the records
of every topic, already read, and returns a renderable (or None to stay silent).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import msgspec
from aiokafka import ConsumerRecord
from rich.console import RenderableType
from rich.table import Table

from processors.training.report import summary as training_summary
from stream.contract import events
from stream.contract.topics import ALL

Records = dict[str, list[ConsumerRecord[bytes, bytes]]]  # logical topic -> records
Section = Callable[[Records], RenderableType | None]

_SECTIONS: list[tuple[int, Section]] = []


def section(order: int) -> Callable[[Section], Section]:
    """Register a summary section; lower ``order`` prints first."""

    def register(fn: Section) -> Section:
        _SECTIONS.append((order, fn))
        _SECTIONS.sort(key=lambda item: item[0])
        return fn

    return register


def sections() -> list[Section]:
    return [fn for _order, fn in _SECTIONS]


def _values(records: list[ConsumerRecord[bytes, bytes]], topic: str | None = None) -> list[Any]:
    """Decoded values; with ``topic``, only those that are valid events of that topic (as dicts)."""
    out = []
    for r in records:
        if r.value is None:
            continue
        try:
            if topic is None:
                out.append(msgspec.json.decode(r.value))
            else:
                out.append(msgspec.to_builtins(events.decode(topic, r.value)))
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
            continue  # the broken inputs the demo sends on purpose
    return out


@section(0)
def topic_counts(records: Records) -> Table:
    table = Table(title="Records per topic", title_justify="left")
    table.add_column("topic")
    table.add_column("records", justify="right")
    table.add_column("tombstones", justify="right")
    for topic in ALL:
        recs = records.get(topic, [])
        table.add_row(topic, str(len(recs)), str(sum(1 for r in recs if r.value is None)))
    return table


@section(10)
def inputs_by_function(records: Records) -> Table | None:
    execs = _values(records.get("executions", []), "executions")
    if not execs:
        return None
    fb = Counter(v.get("function_name") for v in _values(records.get("feedback", []), "feedback") if isinstance(v, dict))
    per: dict[str, Counter[str]] = {}
    for v in execs:
        if isinstance(v, dict) and isinstance(v.get("function_name"), str):
            per.setdefault(v["function_name"], Counter())[str(v.get("status"))] += 1
    statuses = sorted({s for c in per.values() for s in c})
    table = Table(title="Execution logs and feedback per function", title_justify="left")
    table.add_column("function")
    for s in statuses:
        table.add_column(s, justify="right")
    table.add_column("feedback", justify="right")
    for fn in sorted(per):
        table.add_row(fn, *(str(per[fn].get(s, 0)) for s in statuses), str(fb.get(fn, 0)))
    return table


@section(20)
def dead_letters(records: Records) -> Table | None:
    letters = _values(records.get("dlq", []))
    if not letters:
        return None
    reasons = Counter((v.get("source_topic"), v.get("error_type")) for v in letters)
    example = {}
    for v in letters:
        example.setdefault((v.get("source_topic"), v.get("error_type")), v.get("error", ""))
    table = Table(title="Dead letters by reason", title_justify="left")
    table.add_column("source topic")
    table.add_column("reason")
    table.add_column("count", justify="right")
    table.add_column("example error")
    for (topic, reason), n in sorted(reasons.items(), key=lambda kv: -kv[1]):
        table.add_row(str(topic), str(reason), str(n), str(example[(topic, reason)])[:70])
    return table


@section(15)
def golden_by_function(records: Records) -> Table | None:
    """The golden set as the compacted topic holds it (last value per key; tombstones delete)."""
    recs = records.get("golden", [])
    if not recs:
        return None
    current: dict[bytes, bytes | None] = {}
    for r in recs:
        if r.key is not None:
            current[r.key] = r.value
    per: dict[str, Counter[str]] = {}
    example: dict[str, tuple[float, str]] = {}
    for value in current.values():
        if value is None:
            continue
        try:
            sample = events.decode("golden", value)
        except (msgspec.DecodeError, msgspec.ValidationError):
            continue
        assert isinstance(sample, events.GoldenSample)
        per.setdefault(sample.function_name, Counter())[sample.strategy] += 1
        if sample.strategy == "steady" and sample.density > example.get(sample.function_name, (-1.0, ""))[0]:
            user = next((m.content for m in sample.messages if m.role == "user"), "")
            example[sample.function_name] = (sample.density, user)
    table = Table(title="Golden samples per function (current set on the golden topic)", title_justify="left")
    table.add_column("function")
    table.add_column("steady", justify="right")
    table.add_column("anomaly", justify="right")
    table.add_column("densest steady sample (user message)")
    for fn in sorted(per):
        table.add_row(fn, str(per[fn].get("steady", 0)), str(per[fn].get("anomaly", 0)), example.get(fn, (0.0, ""))[1][:60])
    entered = sum(1 for r in recs if r.value is not None)
    left = len(recs) - entered
    table.caption = f"{entered} samples entered and {left} left over the run (tombstones)"
    return table


@section(30)
def hook_versions(records: Records) -> Table | None:
    """Engine 2: every hook release on the topic with its validation (held-out = pairs never used to synthesise)."""
    releases = _values(records.get("hooks", []), "hooks")
    if not releases:
        return None
    table = Table(
        title="Prompt hooks: share of answers equal to the user's fix, no hook → hook\n"
        "(held out = pairs never used to synthesise; sim. = mean word-level similarity)",
        title_justify="left",
    )
    table.add_column("function", no_wrap=True)
    for col in ("hook", "rules", "pairs (held out)", "held-out exact", "held-out sim.", "all exact"):
        table.add_column(col, justify="right")

    def pct(v: dict[str, float], name: str) -> str:
        return f"{v.get(name + '_before', 0.0):.0%}→{v.get(name + '_after', 0.0):.0%}"

    seen = set()
    for r in sorted(releases, key=lambda r: (r["function_name"], r["version"])):
        if (r["function_name"], r["version"], r["sha256"]) in seen:
            continue
        seen.add((r["function_name"], r["version"], r["sha256"]))
        v = r["validation"]
        table.add_row(
            r["function_name"],
            f"v{r['version']}" + (f" (rollback to v{r['rollback_of']})" if r.get("rollback_of") else ""),
            str(len(r["rules"])),
            f"{v['pairs']} ({v.get('heldout_pairs', 0)})",
            pct(v, "heldout_exact_match"),
            pct(v, "heldout_similarity"),
            pct(v, "exact_match"),
        )
    return table


@section(40)
def training(records: Records) -> RenderableType | None:
    """Engine 3: the dataset export or the job of each function."""
    return training_summary(records)
