"""The console's FastAPI application: JSON API under ``/api/v1`` and the pages that use it."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import msgspec
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import BaseModel, Field

from stream.contract.config import Settings
from stream.contract.deadletter import REASONS
from stream.contract.events import Curation, GoldenSample, HookRelease, TrainingEvent
from .replay import preview, replay, select
from .state import ConsoleState, parse_since

log = logging.getLogger(__name__)

API = "/api/v1"
HERE = Path(__file__).resolve().parent
TOKEN_ENV = "VT_CONSOLE_TOKEN"
FunctionPath = Annotated[str, Field(min_length=1, max_length=256)]

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)


def plotly_js() -> Path:
    """Plotly's bundle as the ``plotly`` package ships it (served by the console: no CDN)."""
    import plotly

    return Path(plotly.__file__).resolve().parent / "package_data" / "plotly.min.js"


# ---------------------------------------------------------------------------- response models
class MetricsSourceOut(BaseModel):
    url: str
    ok: bool
    error: str | None = None
    age_s: float | None = None


class StatusOut(BaseModel):
    read_only: bool = Field(description="true when the console was started without VT_CONSOLE_TOKEN: no call changes anything")
    topic_prefix: str
    revision: int = Field(description="grows with every change the console sees; poll it")
    caught_up: list[str] = Field(description="topics read up to their end at least once")
    missing_topics: list[str]
    metrics: list[MetricsSourceOut]
    state_dir: bool = Field(description="a processor state dir was given (density map, training cancel)")


class JobBrief(BaseModel):
    job_id: str
    status: str
    at: datetime
    trainer: str


class FunctionOut(BaseModel):
    name: str
    logs_indexed: float | None = Field(None, description="from the processors' /metrics (vt_density_index_logs)")
    golden_steady: int
    golden_anomaly: int
    hook_version: int | None = None
    hook_rules: int | None = None
    last_job: JobBrief | None = None
    model: str | None = None


class FunctionsOut(BaseModel):
    revision: int
    functions: list[FunctionOut]


class OverviewOut(FunctionsOut):
    status: StatusOut
    dead_letters_by_reason: dict[str, int]
    dead_letters_seen: int
    consumer_lag: float | None = None
    consumed_total: float | None = None


class MessageOut(BaseModel):
    role: str
    content: str


class GoldenOut(BaseModel):
    uuid: str
    strategy: str
    density: float
    selected_at: datetime
    source_timestamp: datetime
    messages: list[MessageOut]
    pinned: bool = Field(False, description="kept whatever its density (an operator pinned it)")


class GoldenPage(BaseModel):
    function: str
    total: int = Field(description="samples matching the filters")
    golden: int = Field(description="the function's whole golden set")
    offset: int
    limit: int
    items: list[GoldenOut]


class CurationIn(BaseModel):
    reason: str | None = Field(None, max_length=2000, description="why (kept with the decision)")


class CurationOut(BaseModel):
    function: str
    uuid: str
    decision: Literal["reject", "pin"] | None = Field(description="the decision published; null: cleared")
    reason: str | None = None
    by: str | None = None
    at: datetime | None = None


class CurationList(BaseModel):
    function: str
    items: list[CurationOut]


class RuleOut(BaseModel):
    kind: str
    description: str
    support: int = Field(description="training pairs the rule improved on its own when synthesised")
    against: int = Field(0, description="training pairs it made worse on its own")
    confidence: float | None = Field(None, description="support / (support + against); null for rules never measured (before this field)")
    origin: str
    data: dict[str, Any]


class HookVersionOut(BaseModel):
    version: int
    parent_version: int | None = None
    rollback_of: int | None = None
    created_at: datetime
    sha256: str
    signed: bool
    rules: list[RuleOut]
    vetoed: list[RuleOut]
    validation: dict[str, Any]


class HooksOut(BaseModel):
    function: str
    refused: int = Field(description="releases on the topic that failed verification (all functions)")
    versions: list[HookVersionOut]


class DiffOut(BaseModel):
    function: str
    a: int
    b: int
    added: list[RuleOut]
    removed: list[RuleOut]
    kept: list[RuleOut]


class RollbackIn(BaseModel):
    to: int = Field(ge=1, le=10_000_000, description="the version whose rules to restore")


class RollbackOut(BaseModel):
    function: str
    version: int
    rollback_of: int
    rules: int
    vetoed: int


class LossPoint(BaseModel):
    step: int | None = None
    train_loss: float | None = None
    valid_loss: float | None = None


class JobOut(BaseModel):
    job_id: str
    trainer: str
    base_model: str
    status: str
    created_at: datetime
    updated_at: datetime
    n_train: int
    n_val: int
    est_tokens: int
    est_cost_usd: float
    fine_tuned_model: str | None = None
    dataset_path: str | None = None
    error: str | None = None
    active: bool
    loss: list[LossPoint]


class TrainingOut(BaseModel):
    function: str
    golden: int
    new_since_last_job: int
    jobs: list[JobOut]
    model: str | None = None


class CancelOut(BaseModel):
    function: str
    job_id: str
    request: str


class DeadLetterOut(BaseModel):
    id: str = Field(description="partition-offset on the dead-letter topic")
    key: str | None
    source_topic: str
    partition: int
    offset: int
    error_type: str
    error: str
    at: datetime
    value_bytes: int
    value_truncated: bool
    processor: str | None = None
    preview: str


class DlqPage(BaseModel):
    total: int
    seen: int = Field(description="dead letters read since the console started (it keeps the newest)")
    by_reason: dict[str, int]
    offset: int
    limit: int
    items: list[DeadLetterOut]


class ReplayIn(BaseModel):
    ids: list[Annotated[str, Field(max_length=40)]] | None = Field(None, max_length=10_000, description="dead-letter ids to replay")
    reason: Literal[REASONS] | None = None  # type: ignore[valid-type]
    since: str | None = Field(None, max_length=64, description="ISO time or 90s / 15m / 2h / 7d")
    dry_run: bool = False


class SkippedOut(BaseModel):
    id: str
    why: str


class ReplayOut(BaseModel):
    replayed: list[str]
    skipped: list[SkippedOut]
    dry_run: bool


class ErrorOut(BaseModel):
    detail: str


# ---------------------------------------------------------------------------- conversions
def _rule(rule: Any) -> RuleOut:
    from processors.feedback.ruleset import confidence, describe, kind

    data = msgspec.to_builtins(rule)
    return RuleOut(kind=kind(rule), description=describe(rule), support=rule.support, against=rule.against,
                   confidence=confidence(rule), origin=rule.origin, data=data)


def _release(r: HookRelease) -> HookVersionOut:
    return HookVersionOut(
        version=r.version, parent_version=r.parent_version, rollback_of=r.rollback_of, created_at=r.created_at,
        sha256=r.sha256, signed=r.signature is not None, rules=[_rule(x) for x in r.rules],
        vetoed=[_rule(x) for x in r.vetoed], validation=msgspec.to_builtins(r.validation),
    )


def _golden(s: GoldenSample) -> GoldenOut:
    return GoldenOut(
        uuid=s.uuid, strategy=s.strategy, density=s.density, selected_at=s.selected_at, source_timestamp=s.source_timestamp,
        messages=[MessageOut(role=m.role, content=m.content) for m in s.messages], pinned=s.pinned,
    )


def _curation(c: Curation) -> CurationOut:
    return CurationOut(function=c.function_name, uuid=c.uuid, decision=c.decision, reason=c.reason, by=c.by, at=c.at)


def _key_text(key: bytes | None) -> str | None:
    return None if key is None else key.decode("utf-8", errors="replace")[:300]


@dataclass(slots=True)
class Console:
    state: ConsoleState
    settings: Settings
    token: str | None

    @property
    def read_only(self) -> bool:
        return not self.token


def _console(request: Request) -> Console:
    return request.app.state.console  # type: ignore[no-any-return]


ConsoleDep = Annotated[Console, Depends(_console)]


def require_token(request: Request, console: ConsoleDep) -> None:
    """Bearer token in the Authorization header (never a cookie, so a cross-site form cannot send it); same-origin only."""
    if console.read_only:
        raise HTTPException(403, f"the console is read-only: start it with {TOKEN_ENV} set to allow changes")
    origin = request.headers.get("origin")
    if origin is not None and urlsplit(origin).netloc != request.headers.get("host"):
        raise HTTPException(403, "cross-origin request refused")
    auth = request.headers.get("authorization", "")
    scheme, _, given = auth.partition(" ")
    assert console.token is not None
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), console.token.encode()):
        raise HTTPException(401, "a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"})


Authorized = Depends(require_token)
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut}, 403: {"model": ErrorOut}, 404: {"model": ErrorOut}, 409: {"model": ErrorOut},
}


# ---------------------------------------------------------------------------- the application
def create_app(state: ConsoleState, settings: Settings, token: str | None, *, follow: bool = True) -> FastAPI:
    """The console application over ``state`` (which it runs while serving, unless ``follow`` is False)."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(state.run()) if follow else None
        try:
            yield
        finally:
            if task is not None:
                state.stop()
                await asyncio.wait_for(task, timeout=10)

    app = FastAPI(
        title="vector-trainer console API",
        version="1.0.0",
        description="Read the loop's golden sets, hooks, training jobs and dead letters; roll back hooks, cancel jobs, "
        "replay dead letters. State-changing calls need `Authorization: Bearer <VT_CONSOLE_TOKEN>`.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.console = Console(state, settings, token)
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True, default_for_string=True))
    templates = Jinja2Templates(env=env)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("X-Frame-Options", "DENY")
        return response

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("console: %s %s failed", request.method, request.url.path)
        return JSONResponse({"detail": f"internal error ({type(exc).__name__})"}, status_code=500)

    # ------------------------------------------------------------------ pages
    def page(request: Request, name: str, **ctx: Any) -> HTMLResponse:
        c = _console(request)
        return templates.TemplateResponse(request, name, {"read_only": c.read_only, "prefix": c.settings.topic_prefix, **ctx})

    @app.get("/", include_in_schema=False)
    async def overview_page(request: Request) -> HTMLResponse:
        return page(request, "overview.html", title="Overview", active="overview")

    @app.get("/functions/{name}", include_in_schema=False)
    async def function_page(request: Request, name: str) -> HTMLResponse:
        return page(request, "function.html", title=name, function=name, active="golden")

    @app.get("/functions/{name}/hooks", include_in_schema=False)
    async def hooks_page(request: Request, name: str) -> HTMLResponse:
        return page(request, "hooks.html", title=f"{name}: hooks", function=name, active="hooks")

    @app.get("/functions/{name}/training", include_in_schema=False)
    async def training_page(request: Request, name: str) -> HTMLResponse:
        return page(request, "training.html", title=f"{name}: training", function=name, active="training")

    @app.get("/dlq", include_in_schema=False)
    async def dlq_page(request: Request) -> HTMLResponse:
        return page(request, "dlq.html", title="Dead letters", active="dlq", reasons=REASONS)

    @app.get("/vendor/plotly.min.js", include_in_schema=False)
    async def plotly_bundle() -> FileResponse:
        return FileResponse(plotly_js(), media_type="text/javascript", headers={"Cache-Control": "public, max-age=86400"})

    # ------------------------------------------------------------------ API: reading
    def status(c: Console) -> StatusOut:
        import time

        s = c.state
        return StatusOut(
            read_only=c.read_only, topic_prefix=c.settings.topic_prefix, revision=s.revision, caught_up=sorted(s.caught_up),
            missing_topics=sorted(s.missing), state_dir=s.state_dir is not None,
            metrics=[MetricsSourceOut(url=m.url, ok=m.scrape is not None and m.error is None, error=m.error,
                                      age_s=round(time.time() - m.at, 1) if m.at else None) for m in s.metrics],
        )

    def functions(c: Console) -> list[FunctionOut]:
        s = c.state
        indexed = s.metric_by("vt_density_index_logs", "function")
        out = []
        for fn in s.functions():
            samples = s.golden.get(fn, {}).values()
            steady = sum(1 for x in samples if x.strategy == "steady")
            release = s.latest_release(fn)
            evs = s.training.get(fn, [])
            last = evs[-1] if evs else None
            model = s.models.get(fn)
            out.append(FunctionOut(
                name=fn, logs_indexed=indexed.get(fn), golden_steady=steady, golden_anomaly=len(samples) - steady,
                hook_version=release.version if release else None, hook_rules=len(release.rules) if release else None,
                last_job=JobBrief(job_id=last.job_id, status=last.status, at=last.at, trainer=last.trainer) if last else None,
                model=model.model if model else None,
            ))
        return out

    @app.get(f"{API}/status", response_model=StatusOut, tags=["console"])
    async def get_status(c: ConsoleDep) -> StatusOut:
        """Whether the console is read-only, how far it has read, and its metrics sources."""
        return status(c)

    @app.get(f"{API}/functions", response_model=FunctionsOut, tags=["functions"])
    async def get_functions(c: ConsoleDep) -> FunctionsOut:
        """Every function seen on the topics or in the metrics, with its golden counts, hook version and last job."""
        return FunctionsOut(revision=c.state.revision, functions=functions(c))

    @app.get(f"{API}/overview", response_model=OverviewOut, tags=["functions"])
    async def get_overview(c: ConsoleDep) -> OverviewOut:
        """What the overview page shows: functions, dead letters by reason, consumer lag, status."""
        by_reason: dict[str, int] = {}
        for e in c.state.dlq:
            by_reason[e.letter.error_type] = by_reason.get(e.letter.error_type, 0) + 1
        return OverviewOut(
            revision=c.state.revision, functions=functions(c), status=status(c), dead_letters_by_reason=by_reason,
            dead_letters_seen=c.state.dlq_seen, consumer_lag=c.state.metric_total("vt_consumer_lag_records"),
            consumed_total=c.state.metric_total("vt_events_consumed_total"),
        )

    def _samples(c: Console, name: str, q: str | None, strategy: str | None) -> list[GoldenSample]:
        samples = list(c.state.golden.get(name, {}).values())
        if strategy:
            samples = [s for s in samples if s.strategy == strategy]
        if q:
            needle = q.casefold()
            samples = [s for s in samples if needle in s.uuid.casefold() or any(needle in m.content.casefold() for m in s.messages)]
        samples.sort(key=lambda s: (s.selected_at, s.uuid), reverse=True)
        return samples

    @app.get(f"{API}/functions/{{name}}/golden", response_model=GoldenPage, tags=["golden"])
    async def get_golden(
        c: ConsoleDep,
        name: str,
        q: Annotated[str | None, Query(max_length=500, description="case-insensitive text in a message or the uuid")] = None,
        strategy: Literal["steady", "anomaly"] | None = None,
        offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> GoldenPage:
        """A function's golden samples, newest selection first, with search and paging."""
        samples = _samples(c, name, q, strategy)
        return GoldenPage(
            function=name, total=len(samples), golden=len(c.state.golden.get(name, {})), offset=offset, limit=limit,
            items=[_golden(s) for s in samples[offset : offset + limit]],
        )

    @app.get(f"{API}/functions/{{name}}/golden.jsonl", tags=["golden"],
             responses={200: {"content": {"application/x-ndjson": {}}, "description": "one ChatML object per line"}})
    async def download_golden(
        c: ConsoleDep, name: str,
        q: Annotated[str | None, Query(max_length=500)] = None,
        strategy: Literal["steady", "anomaly"] | None = None,
    ) -> Response:
        """The golden set (or the filtered part of it) as ChatML JSONL: ``{"messages": [...]}`` per line."""
        samples = _samples(c, name, q, strategy)
        body = "".join(
            json.dumps({"messages": [{"role": m.role, "content": m.content} for m in s.messages]}, ensure_ascii=False) + "\n"
            for s in samples
        ).encode("utf-8")
        # ASCII only: a header value is latin-1 at best (schemathesis found '¹' breaking it)
        safe = "".join(ch if ch.isascii() and (ch.isalnum() or ch in "-_.") else "_" for ch in name)[:80] or "function"
        return Response(body, media_type="application/x-ndjson",
                        headers={"Content-Disposition": f'attachment; filename="{safe}-golden.jsonl"'})

    @app.get(f"{API}/functions/{{name}}/map", tags=["golden"], responses=ERRORS)
    async def get_map(c: ConsoleDep, name: str) -> dict[str, Any]:
        """The function's indexed vectors projected to 2-D (PCA, as ``vector-trainer plot``), density and golden marks."""
        from .densitymap import MapUnavailable

        maps = getattr(app.state, "maps", None)
        if maps is None:
            if c.state.state_dir is None:
                raise HTTPException(409, "no --state-dir given: the map is read from the processor's density checkpoints")
            from .densitymap import DensityMaps

            maps = app.state.maps = DensityMaps(c.state.state_dir, c.settings.density)
        try:
            return await asyncio.to_thread(maps.get, name)
        except MapUnavailable as exc:
            raise HTTPException(404, str(exc)) from None
        except (OSError, ValueError, KeyError, msgspec.DecodeError) as exc:  # a checkpoint replaced while read
            raise HTTPException(409, f"the checkpoint could not be read ({type(exc).__name__}); try again") from None

    @app.get(f"{API}/functions/{{name}}/hooks", response_model=HooksOut, tags=["hooks"])
    async def get_hooks(c: ConsoleDep, name: str) -> HooksOut:
        """Every known hook version of a function (newest last) with its rules, vetoes and validation figures."""
        return HooksOut(function=name, refused=c.state.hooks_refused, versions=[_release(r) for r in c.state.releases(name)])

    @app.get(f"{API}/functions/{{name}}/hooks/diff", response_model=DiffOut, tags=["hooks"], responses=ERRORS)
    async def get_hooks_diff(
        c: ConsoleDep, name: str, a: Annotated[int, Query(ge=1, le=10_000_000)], b: Annotated[int, Query(ge=1, le=10_000_000)]
    ) -> DiffOut:
        """Rules added, removed and kept from version ``a`` to version ``b``."""
        from processors.feedback.versions import diff_rules

        try:
            ra, rb = c.state.get(name, a), c.state.get(name, b)
        except KeyError as exc:
            raise HTTPException(404, str(exc.args[0])) from None
        d = diff_rules(ra.rules, rb.rules)
        return DiffOut(function=name, a=a, b=b, added=[_rule(r) for r in d.added], removed=[_rule(r) for r in d.removed],
                       kept=[_rule(r) for r in d.kept])

    @app.get(f"{API}/functions/{{name}}/training", response_model=TrainingOut, tags=["training"])
    async def get_training(c: ConsoleDep, name: str) -> TrainingOut:
        """A function's jobs (newest first) with status, cost estimate and loss curve, its golden count and newest model."""
        from processors.training.dataset import Sample
        from processors.training.jobs import records_from_events
        from processors.training.trigger import new_since, trained_through

        evs: list[TrainingEvent] = c.state.training.get(name, [])
        jobs = records_from_events(evs)
        curves: dict[str, list[LossPoint]] = {}
        for ev in evs:
            m = ev.metrics
            if m is not None and (m.train_loss is not None or m.valid_loss is not None):
                curves.setdefault(ev.job_id, []).append(LossPoint(step=m.step, train_loss=m.train_loss, valid_loss=m.valid_loss))
        golden = c.state.golden.get(name, {})
        samples = [Sample(s.uuid, s.selected_at, (), s.strategy) for s in golden.values()]
        model = c.state.models.get(name)
        return TrainingOut(
            function=name, golden=len(golden), new_since_last_job=new_since(samples, trained_through(jobs.values())),
            model=model.model if model else None,
            jobs=[
                JobOut(
                    job_id=j.job_id, trainer=j.last.trainer, base_model=j.last.base_model, status=j.status,
                    created_at=j.created_at, updated_at=j.updated_at, n_train=j.last.n_train, n_val=j.last.n_val,
                    est_tokens=j.last.est_tokens, est_cost_usd=j.last.est_cost_usd, fine_tuned_model=j.last.fine_tuned_model,
                    dataset_path=j.last.dataset_path, error=j.last.error, active=j.active, loss=curves.get(j.job_id, []),
                )
                for j in sorted(jobs.values(), key=lambda j: j.created_at, reverse=True)
            ],
        )

    @app.get(f"{API}/dlq", response_model=DlqPage, tags=["dead letters"])
    async def get_dlq(
        c: ConsoleDep,
        reason: Literal[REASONS] | None = None,  # type: ignore[valid-type]
        since: Annotated[str | None, Query(max_length=64, description="ISO time or 90s / 15m / 2h / 7d")] = None,
        source_topic: Annotated[str | None, Query(max_length=300)] = None,
        offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> DlqPage:
        """Dead letters, newest first, by reason / time / source topic, each with a text preview of the bad value."""
        try:
            since_ts = parse_since(since) if since else None
        except ValueError:
            raise HTTPException(422, f"since: {since!r} is neither an ISO time nor a duration like 15m") from None
        entries = select(c.state.dlq, reason=reason, since=since_ts, source_topic=source_topic)
        entries.reverse()
        by_reason: dict[str, int] = {}
        for e in c.state.dlq:
            by_reason[e.letter.error_type] = by_reason.get(e.letter.error_type, 0) + 1
        items = [
            DeadLetterOut(
                id=e.id, key=_key_text(e.key), source_topic=e.letter.source_topic, partition=e.letter.partition,
                offset=e.letter.offset, error_type=e.letter.error_type, error=e.letter.error, at=e.letter.at,
                value_bytes=e.letter.value_bytes, value_truncated=e.letter.value_truncated, processor=e.letter.processor,
                preview=preview(e.letter),
            )
            for e in entries[offset : offset + limit]
        ]
        return DlqPage(total=len(entries), seen=c.state.dlq_seen, by_reason=by_reason, offset=offset, limit=limit, items=items)

    @app.get(f"{API}/functions/{{name}}/curation", response_model=CurationList, tags=["golden"])
    async def get_curation(c: ConsoleDep, name: str) -> CurationList:
        """The decisions in force for a function's golden keys (rejected and pinned), as on the curation topic."""
        decided = c.state.curation.get(name, {})
        return CurationList(function=name, items=[_curation(d) for _u, d in sorted(decided.items())])

    # ------------------------------------------------------------------ API: changing
    async def _decide(c: Console, name: str, uuid: str, decision: str | None, reason: str | None) -> CurationOut:
        from stream.contract.events import encode, utcnow
        from stream.runtime.kafka import publish

        event = Curation(function_name=name, uuid=uuid, decision=decision or "pin", at=utcnow(), reason=reason, by="console")  # type: ignore[arg-type]
        try:  # the constructor does not check the contract's constraints; decoding does
            msgspec.json.decode(encode(event), type=Curation)
        except msgspec.ValidationError as exc:
            raise HTTPException(422, str(exc)) from None
        value = encode(event) if decision is not None else None
        await publish(c.state.bootstrap, c.state.names.physical("curation"), f"{name}/{uuid}".encode(), value, client_id="vt-console")
        log.info("console: %s/%s %s", name, uuid, decision or "decision cleared")
        if decision is None:
            return CurationOut(function=name, uuid=uuid, decision=None)
        return _curation(event)

    @app.post(f"{API}/functions/{{name}}/golden/{{uuid}}/reject", response_model=CurationOut, status_code=202,
              tags=["golden"], dependencies=[Authorized], responses=ERRORS)
    async def post_reject(c: ConsoleDep, name: str, uuid: str, body: CurationIn | None = None) -> CurationOut:
        """Reject a sample: it leaves the golden set (the processor publishes its tombstone) and never enters a dataset."""
        return await _decide(c, name, uuid, "reject", body.reason if body else None)

    @app.post(f"{API}/functions/{{name}}/golden/{{uuid}}/pin", response_model=CurationOut, status_code=202,
              tags=["golden"], dependencies=[Authorized], responses=ERRORS)
    async def post_pin(c: ConsoleDep, name: str, uuid: str, body: CurationIn | None = None) -> CurationOut:
        """Pin a log: it is in the golden set whatever its density (while the processor still indexes it)."""
        return await _decide(c, name, uuid, "pin", body.reason if body else None)

    @app.delete(f"{API}/functions/{{name}}/golden/{{uuid}}/curation", response_model=CurationOut, status_code=202,
                tags=["golden"], dependencies=[Authorized], responses=ERRORS)
    async def delete_curation(c: ConsoleDep, name: str, uuid: str) -> CurationOut:
        """Clear the decision about a key (a tombstone on the curation topic): plain selection decides again."""
        return await _decide(c, name, uuid, None, None)

    @app.post(f"{API}/functions/{{name}}/hooks/rollback", response_model=RollbackOut, status_code=202, tags=["hooks"],
              dependencies=[Authorized], responses=ERRORS)
    async def post_rollback(c: ConsoleDep, name: str, body: RollbackIn) -> RollbackOut:
        """Publish the rules of an older version as a new version on the hooks topic (as ``vector-trainer hooks rollback``).

        The rules it drops are vetoed.  The new version shows here once it is read back from the topic.
        """
        from processors.feedback.admin import rollback_release

        try:
            release = rollback_release(c.state, name, body.to, c.state.signing_key)  # type: ignore[arg-type]
        except KeyError as exc:
            raise HTTPException(404, str(exc.args[0])) from None
        except ValueError as exc:
            raise HTTPException(409, str(exc.args[0])) from None
        await _publish_release(c, release)
        log.info("console: %s rolled back to v%d as v%d", name, body.to, release.version)
        return RollbackOut(function=name, version=release.version, rollback_of=body.to, rules=len(release.rules),
                           vetoed=len(release.vetoed))

    @app.post(f"{API}/functions/{{name}}/training/cancel", response_model=CancelOut, status_code=202, tags=["training"],
              dependencies=[Authorized], responses=ERRORS)
    async def post_cancel(c: ConsoleDep, name: str) -> CancelOut:
        """Ask the running processor (same state dir) to cancel the function's job in flight (as ``vector-trainer train cancel``)."""
        from processors.training.jobs import records_from_events
        from processors.training.runner import request_cancel

        if c.state.state_dir is None:
            raise HTTPException(409, "no --state-dir given: cancel requests go to the processor's state dir")
        jobs = [j for j in records_from_events(c.state.training.get(name, [])).values() if j.active]
        if not jobs:
            raise HTTPException(404, f"{name!r} has no job in flight")
        job = max(jobs, key=lambda j: j.created_at)
        path = await asyncio.to_thread(request_cancel, c.state.state_dir, name, job.job_id)
        log.info("console: cancel requested for %s job %s", name, job.job_id)
        return CancelOut(function=name, job_id=job.job_id, request=path.name)

    @app.post(f"{API}/dlq/replay", response_model=ReplayOut, tags=["dead letters"], dependencies=[Authorized], responses=ERRORS)
    async def post_replay(c: ConsoleDep, body: ReplayIn) -> ReplayOut:
        """Send chosen dead letters' values back to their source topic (by ids, or by reason and/or time)."""
        if body.ids is None and body.reason is None and body.since is None:
            raise HTTPException(422, "say which dead letters: ids, reason and/or since")
        try:
            since_ts = parse_since(body.since) if body.since else None
        except ValueError:
            raise HTTPException(422, f"since: {body.since!r} is neither an ISO time nor a duration like 15m") from None
        chosen = select(c.state.dlq, ids=body.ids, reason=body.reason, since=since_ts)
        result = await replay(c.state.bootstrap, c.state.names, chosen, dry_run=body.dry_run)
        log.info("console: replayed %d dead letter(s), skipped %d", len(result.replayed), len(result.skipped))
        return ReplayOut(replayed=result.replayed, skipped=[SkippedOut(id=i, why=w) for i, w in result.skipped], dry_run=body.dry_run)

    return app


async def _publish_release(c: Console, release: HookRelease) -> None:
    """On the hooks history topic, then the hooks topic (as ``vector-trainer hooks rollback``)."""
    from stream.tools.hooks import publish_release

    await publish_release(c.state.bootstrap, c.state.names, release)
