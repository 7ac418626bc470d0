"""Realistic synthetic traffic for the demo, the tests and the benchmarks, and paced producing of it.

Several functions of an imaginary LLM service, each with clustered inputs (a few
kinds of request make up most calls), rare-but-successful requests, some ERROR
calls, and user feedback whose corrections are systematic (a greeting users always
delete, a term they always replace, a sign-off they always add, padding they cut),
plus the occasional one-off edit.  Events carry their ground truth in
:class:`Labelled` so tests can check what the engines find.

Everything is deterministic for a given seed.
"""

from __future__ import annotations

import asyncio
import base64
import random
import time
import uuid as uuid_mod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import msgspec
import numpy as np

from stream.contract.events import ExecutionLog, Feedback, encode, vector_b64
from stream.runtime import kafka


@dataclass(frozen=True, slots=True)
class Cluster:
    """One kind of request: a prompt template, an answer template and slot values."""

    name: str
    weight: float
    prompt: str
    answer: str
    slots: dict[str, tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class Correction:
    """A systematic edit users make to this function's outputs."""

    kind: str  # strip_prefix | replace | add_suffix | strip_suffix
    old: str = ""
    new: str = ""

    def apply(self, text: str) -> str:
        if self.kind == "strip_prefix" and text.startswith(self.old):
            return text[len(self.old) :]
        if self.kind == "replace":
            return text.replace(self.old, self.new)
        if self.kind == "add_suffix" and not text.endswith(self.new):
            return text + self.new
        if self.kind == "strip_suffix" and text.endswith(self.old):
            return text[: -len(self.old)]
        return text


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    name: str
    input_key: str
    clusters: tuple[Cluster, ...]
    rare: tuple[tuple[str, str], ...]  # (prompt, answer) asked once in a while, answered fine
    dim: int | None = None  # events carry vectors of this dimension; None = no vector
    error_rate: float = 0.05
    rare_rate: float = 0.03
    corrections: tuple[Correction, ...] = ()
    output_prefix: str = ""
    output_suffix: str = ""


@dataclass(slots=True)
class Labelled:
    """A generated event with its ground truth."""

    topic: str  # "executions" | "feedback"
    key: bytes
    value: bytes | None  # None: a null value (a tombstone where none belongs)
    event: ExecutionLog | Feedback | None
    label: str  # cluster name, "rare:<n>", "error", "feedback", or "bad:<kind>"


_GREETING = "Hello! Thanks for reaching out. "
_PADDING = " I hope this helps! Let me know if you have any other questions."
_SIGNOFF = " -- Support Team"

DEFAULT_FUNCTIONS: tuple[FunctionSpec, ...] = (
    FunctionSpec(
        name="summarize_ticket",
        input_key="ticket",
        dim=64,
        output_prefix=_GREETING,
        corrections=(Correction("strip_prefix", old=_GREETING), Correction("replace", old="customer", new="client")),
        clusters=(
            Cluster("billing", 3, "My {item} invoice for {month} charged me twice, please fix the billing",
                    "The customer was double charged on the {month} {item} invoice and wants a refund of the duplicate.",
                    {"item": ("pro plan", "team plan", "storage add-on", "annual plan"), "month": ("March", "April", "May", "June")}),
            Cluster("login", 3, "I cannot log in to my account from {device}, the password reset email never arrives",
                    "The customer cannot sign in on {device}; the password reset email is not delivered.",
                    {"device": ("my phone", "the desktop app", "Firefox", "the tablet app")}),
            Cluster("shipping", 2, "My order {order} has not shipped after {days} days, where is my package",
                    "The customer's order {order} is {days} days late and has not shipped.",
                    {"order": ("A-1042", "B-2210", "C-3301", "D-4123"), "days": ("five", "seven", "ten", "twelve")}),
        ),
        rare=(
            ("The invoice PDF renders in Klingon when printed from a fax gateway", "The customer reports a locale bug in fax-printed invoice PDFs."),
            ("Your API returns HTTP 418 for batch uploads over 2 GB on Tuesdays", "The customer sees HTTP 418 on very large batch uploads."),
            ("A solar storm corrupted my sync folder checksum index", "The customer's sync checksum index is corrupted and needs a rebuild."),
        ),
    ),
    FunctionSpec(
        name="answer_faq",
        input_key="question",
        dim=32,
        output_suffix=_PADDING,
        corrections=(Correction("strip_suffix", old=_PADDING), Correction("add_suffix", new=_SIGNOFF)),
        clusters=(
            Cluster("refund", 3, "How do I get a refund for {thing}?",
                    "Refunds for {thing} are issued within 5 business days from the Billing page.",
                    {"thing": ("a cancelled order", "an annual plan", "a duplicate charge", "a gift card")}),
            Cluster("password", 2, "How can I change my password on {where}?",
                    "Open Settings, then Security, on {where} and choose Change password.",
                    {"where": ("the web app", "iOS", "Android", "the desktop client")}),
            Cluster("export", 2, "Can I export my {data} to {fmt}?",
                    "Yes: go to Data, choose Export, pick {fmt} and your {data} is emailed to you.",
                    {"data": ("contacts", "invoices", "projects", "notes"), "fmt": ("CSV", "JSON", "Excel", "PDF")}),
        ),
        rare=(
            ("Is the service usable from Antarctica research stations?", "Yes, over any connection; offline mode syncs when the link returns."),
            ("Can my parrot have its own seat license?", "Licenses are per human user; a shared login is not allowed."),
        ),
    ),
    FunctionSpec(
        name="classify_intent",
        input_key="utterance",
        dim=None,
        corrections=(),
        clusters=(
            Cluster("cancel", 3, "please cancel my {plan} subscription {when}",
                    "intent=cancel_subscription plan={plan}", {"plan": ("monthly", "yearly", "family", "student"), "when": ("today", "now", "right away", "at renewal")}),
            Cluster("upgrade", 2, "I want to upgrade to the {plan} plan",
                    "intent=upgrade plan={plan}", {"plan": ("pro", "business", "enterprise", "premium")}),
            Cluster("support", 2, "talk to a human agent about {topic}",
                    "intent=human_handoff topic={topic}", {"topic": ("billing", "a bug", "my data", "security")}),
        ),
        rare=(("wie spät ist es in Tokio", "intent=out_of_scope language=de"),),
    ),
    FunctionSpec(
        name="translate_ko_en",
        input_key="text",
        dim=None,
        corrections=(Correction("replace", old="Mr. Customer", new="valued customer"),),
        clusters=(
            Cluster("greeting", 3, "{name}님, 안녕하세요. 주문해 주셔서 감사합니다.",
                    "Hello Mr. Customer {name}, thank you for your order.", {"name": ("김민수", "이지은", "박서준", "최유진")}),
            Cluster("delay", 2, "배송이 {days}일 지연되어 죄송합니다.",
                    "We are sorry, Mr. Customer, that delivery is delayed by {days} days.", {"days": ("2", "3", "5", "7")}),
        ),
        rare=(("우주 정거장으로도 배송이 가능한가요?", "Can you deliver to the space station too?"),),
    ),
)

_AREAS = ("billing", "login", "shipping", "mobile app", "data export")
_PROBLEMS = (
    ("is broken since {when}", "priority=high"),
    ("question about {when}", "priority=low"),
    ("feature request for {when}", "priority=low"),
    ("complaint, third time {when}", "priority=urgent"),
)

# A function with many kinds of request (5 areas x 4 problems): its golden set has one
# representative per kind, enough for a fine-tuning dataset.  Part of the demo traffic.
ROUTE_TICKET = FunctionSpec(
    name="route_ticket",
    input_key="ticket",
    dim=48,
    error_rate=0.03,
    clusters=tuple(
        Cluster(
            f"{area.replace(' ', '_')}:{i}",
            1,
            f"{area} {problem}",
            f"queue={area.replace(' ', '_')} {priority}",
            {"when": ("yesterday", "this morning", "last week", "the update", "Monday")},
        )
        for area in _AREAS
        for i, (problem, priority) in enumerate(_PROBLEMS)
    ),
    rare=(("the office cat walked over the keyboard and filed this", "queue=triage priority=low"),),
)

DEMO_FUNCTIONS: tuple[FunctionSpec, ...] = (*DEFAULT_FUNCTIONS, ROUTE_TICKET)

BAD_KINDS = (
    "malformed_json", "missing_field", "wrong_type", "unknown_status", "nan_vector",
    "wrong_dimension", "oversize", "too_deep", "null_value",
)


# How generated execution logs carry their vectors: JSON floats (the default contract) or
# base64 of little-endian float32 in `vector_b64` (the same floats, fewer bytes).
VECTOR_ENCODINGS = ("json", "b64")


class TrafficGenerator:
    """Deterministic stream of labelled execution logs, feedback and (optionally) bad events."""

    def __init__(
        self,
        seed: int = 7,
        functions: tuple[FunctionSpec, ...] = DEFAULT_FUNCTIONS,
        *,
        feedback_ratio: float = 0.08,
        bad_ratio: float = 0.0,
        start: datetime | None = None,
        dim_override: int | None = None,
        event_rate: float | None = None,
        vector_encoding: str = "json",
    ) -> None:
        """``event_rate``: events per second of *event time* (timestamps spaced as a service logging
        at that rate would stamp them); by default consecutive events are 5-120 ms apart."""
        self.rng = random.Random(seed)
        self.np_rng = np.random.default_rng(seed)
        self.functions = functions
        self.feedback_ratio = feedback_ratio
        self.bad_ratio = bad_ratio
        self.clock = start or datetime(2026, 11, 1, tzinfo=UTC)
        self.dim_override = dim_override
        self.event_rate = event_rate
        if vector_encoding not in VECTOR_ENCODINGS:
            raise ValueError(f"vector_encoding must be one of {', '.join(VECTOR_ENCODINGS)}, not {vector_encoding!r}")
        self.vector_encoding = vector_encoding
        self._centers: dict[tuple[str, str], np.ndarray] = {}
        self._recent: dict[str, list[ExecutionLog]] = {f.name: [] for f in functions}
        self._bad_cycle = 0
        self.counts: dict[str, int] = {}

    # ------------------------------------------------------------------ pieces
    def _dim(self, spec: FunctionSpec) -> int | None:
        return self.dim_override if self.dim_override is not None and spec.dim is not None else spec.dim

    def _uuid(self) -> str:
        return str(uuid_mod.UUID(int=self.rng.getrandbits(128), version=4))

    def _tick(self) -> datetime:
        if self.event_rate:
            self.clock += timedelta(seconds=self.rng.uniform(0.0, 2.0 / self.event_rate))
        else:
            self.clock += timedelta(milliseconds=self.rng.randint(5, 120))
        return self.clock

    def _center(self, fn: str, name: str, dim: int) -> np.ndarray:
        key = (fn, name)
        if key not in self._centers:
            v = self.np_rng.standard_normal(dim)
            self._centers[key] = v / np.linalg.norm(v)
        return self._centers[key]

    def _vector(self, fn: str, name: str, dim: int, spread: float = 0.35) -> list[float]:
        v = self._center(fn, name, dim) + self.np_rng.standard_normal(dim) * (spread / np.sqrt(dim))
        return (v / np.linalg.norm(v)).astype(np.float32).tolist()

    def _fill(self, cluster: Cluster) -> tuple[str, str]:
        values = {k: self.rng.choice(v) for k, v in cluster.slots.items()}
        return cluster.prompt.format(**values), cluster.answer.format(**values)

    # ------------------------------------------------------------------ events
    def execution(self, spec: FunctionSpec | None = None) -> Labelled:
        spec = spec or self.rng.choice(self.functions)
        dim = self._dim(spec)
        r = self.rng.random()
        if r < spec.error_rate:
            cluster = self.rng.choices(spec.clusters, weights=[c.weight for c in spec.clusters])[0]
            prompt, _ = self._fill(cluster)
            label, status, output, err = "error", "ERROR", None, "upstream LLM timed out after 30s"
            vec_name = cluster.name
        elif r < spec.error_rate + spec.rare_rate and spec.rare:
            idx = self.rng.randrange(len(spec.rare))
            prompt, answer = spec.rare[idx]
            label, status, err = f"rare:{idx}", "SUCCESS", None
            output = spec.output_prefix + answer + spec.output_suffix
            vec_name = f"rare:{idx}"
        else:
            cluster = self.rng.choices(spec.clusters, weights=[c.weight for c in spec.clusters])[0]
            prompt, answer = self._fill(cluster)
            label, status, err = cluster.name, "SUCCESS", None
            output = spec.output_prefix + answer + spec.output_suffix
            vec_name = cluster.name
        log = ExecutionLog(
            uuid=self._uuid(),
            function_name=spec.name,
            timestamp_utc=self._tick(),
            status=status,
            inputs={spec.input_key: prompt},
            return_value=output,
            duration_ms=round(self.rng.uniform(120, 2400), 1),
            trace_id=self._uuid().replace("-", ""),
            error_message=err,
            vector=self._vector(spec.name, vec_name, dim) if dim else None,
        )
        if status == "SUCCESS":
            recent = self._recent[spec.name]
            recent.append(log)
            del recent[:-50]
        return self._labelled("executions", log, label)

    def feedback(self, spec: FunctionSpec | None = None) -> Labelled | None:
        """A correction of a recent output; None when the function has nothing to correct yet."""
        candidates = [s for s in self.functions if s.corrections and self._recent[s.name]] if spec is None else [spec]
        if not candidates:
            return None
        spec = self.rng.choice(candidates)
        if not self._recent[spec.name]:
            return None
        log = self.rng.choice(self._recent[spec.name])
        bad = str(log.return_value)
        fixed = bad
        for c in spec.corrections:
            fixed = c.apply(fixed)
        label = "feedback"
        if self.rng.random() < 0.1:  # a one-off edit only this user cares about
            words = fixed.split()
            if len(words) > 3:
                i = self.rng.randrange(len(words))
                words[i] = self.rng.choice(["really", "kindly", "promptly", "truly"])
                fixed = " ".join(words)
                label = "feedback:oneoff"
        fb = Feedback(
            uuid=self._uuid(),
            function_name=spec.name,
            log_uuid=log.uuid,
            inputs=log.inputs,
            bad_output=bad,
            fixed_output=fixed,
            timestamp_utc=self._tick(),
        )
        return self._labelled("feedback", fb, label)

    def bad(self, kind: str | None = None) -> Labelled:
        """A deliberately broken input, cycling through every kind of badness."""
        if kind is None:
            kind = BAD_KINDS[self._bad_cycle % len(BAD_KINDS)]
            self._bad_cycle += 1
        good = self.execution(self.functions[0])
        obj = msgspec.json.decode(good.value)
        if kind == "malformed_json":
            value: bytes | None = good.value[: len(good.value) // 2]
        elif kind == "missing_field":
            obj.pop("status")
            value = msgspec.json.encode(obj)
        elif kind == "wrong_type":
            obj["inputs"] = "not an object"
            value = msgspec.json.encode(obj)
        elif kind == "unknown_status":
            obj["status"] = "MAYBE"
            value = msgspec.json.encode(obj)
        elif kind == "nan_vector":
            value = msgspec.json.encode(obj).replace(b'"vector":[', b'"vector":[NaN,', 1)
        elif kind == "wrong_dimension":
            obj["vector"] = (obj.get("vector") or [0.1])[:3]
            value = msgspec.json.encode(obj)
        elif kind == "oversize":
            obj["inputs"] = {"blob": base64.b64encode(self.rng.randbytes(900_000)).decode()}
            value = msgspec.json.encode(obj)
        elif kind == "too_deep":
            obj["inputs"] = {"x": "@@DEEP@@"}
            value = msgspec.json.encode(obj).replace(b'"@@DEEP@@"', b"[" * 20000 + b"]" * 20000)
        elif kind == "null_value":
            value = None
        else:
            raise ValueError(f"unknown bad kind {kind!r}; known: {', '.join(BAD_KINDS)}")
        self.counts[f"bad:{kind}"] = self.counts.get(f"bad:{kind}", 0) + 1
        return Labelled("executions", good.key, value, None, f"bad:{kind}")

    def _labelled(self, topic: str, event: ExecutionLog | Feedback, label: str) -> Labelled:
        self.counts[label] = self.counts.get(label, 0) + 1
        if isinstance(event, ExecutionLog) and event.vector is not None and self.vector_encoding == "b64":
            wire = msgspec.structs.replace(event, vector=None)
            wire.vector_b64 = vector_b64(event.vector)
            return Labelled(topic, event.function_name.encode(), encode(wire), event, label)
        return Labelled(topic, event.function_name.encode(), encode(event), event, label)

    def stream(self) -> Iterator[Labelled]:
        """An endless mix of executions, feedback and (with bad_ratio) bad inputs."""
        while True:
            r = self.rng.random()
            if r < self.bad_ratio:
                yield self.bad()
            elif r < self.bad_ratio + self.feedback_ratio:
                fb = self.feedback()
                yield fb if fb is not None else self.execution()
            else:
                yield self.execution()

    def take(self, n: int) -> list[Labelled]:
        it = self.stream()
        return [next(it) for _ in range(n)]


@dataclass(slots=True)
class Rate:
    """Paces a producer at ``per_second`` events (``0`` = as fast as possible)."""

    per_second: float
    _sent: int = 0
    _started: float = field(default=0.0)

    def delay(self, now: float) -> float:
        if self.per_second <= 0:
            return 0.0
        if not self._started:
            self._started = now
        self._sent += 1
        return max(0.0, self._started + self._sent / self.per_second - now)


async def produce_traffic(
    bootstrap: str,
    topic_of: Callable[[str], str],
    events: Iterable[Labelled],
    *,
    rate: float = 0.0,
    duration: float | None = None,
    on_sent: Callable[[Labelled], None] | None = None,
    max_request_size: int = 4_194_304,
) -> int:
    """Send labelled events (paced at ``rate``/s, for at most ``duration`` s); return how many were acknowledged."""
    producer = kafka.producer(bootstrap, client_id="vt-traffic", max_request_size=max_request_size)
    await producer.start()
    sent = 0
    pending: list[asyncio.Future[object]] = []
    pacer = Rate(rate)
    started = time.monotonic()
    try:
        for item in events:
            now = time.monotonic()
            if duration is not None and now - started >= duration:
                break
            wait = pacer.delay(now)
            if wait > 0:
                await asyncio.sleep(wait)
            pending.append(await producer.send(topic_of(item.topic), key=item.key, value=item.value))
            if on_sent is not None:
                on_sent(item)
            if len(pending) >= 1000:
                await asyncio.gather(*pending)
                sent += len(pending)
                pending.clear()
        await asyncio.gather(*pending)
        sent += len(pending)
    finally:
        await producer.stop()
    return sent
