"""The runtime hook client: what the LLM service imports to use the released hooks.

    from stream.client.hook_client import HookClient   # or, as before, from stream.hook_client
    hooks = HookClient("kafka:9092", cache_dir="/var/cache/vt-hooks").start()

    @hooks.hook("summarize_ticket")          # sync or async; ``messages`` gets the instructions,
    async def summarize(messages): ...       # the returned text is post-processed

It follows the compacted ``hooks`` topic from the beginning without a consumer
group, and trusts a release only if its sha256 matches ``module_source``, the
module's embedded rules equal the release's rules and, when ``VT_HOOK_SIGNING_KEY``
is set (or a key is passed), its HMAC signature matches.  It applies the rules
with its own fixed code (the hook template's applier): ``module_source`` is never
executed.  A newer version replaces the old one atomically (one reference swap; a
call in flight finishes with the rules it started with).  Every accepted release
is written to ``cache_dir``, so after a restart without Kafka the service still
runs the last version it saw.

It cannot die: an exception while handling one record (whatever it is) is counted
in ``rejected`` under a reason, logged once per kind, and following goes on with
the next record; any error of the consumer reconnects with a growing backoff.
:meth:`HookClient.health` (and ``healthy``, ``last_error``, ``last_record_at``)
tells the service's own health checks whether it is still following the topic.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition

from stream.contract.events import HookRelease
from stream.contract.hooks import template as hook_template
from stream.contract.hooks.generator import HookScriptGenerator
from stream.contract.hooks.release import SIGNING_KEY_ENV, ReleaseError, slug, verify_release

log = logging.getLogger(__name__)

_decoder = msgspec.json.Decoder(HookRelease)
_FROM_ENV = object()
# Reasons in ``rejected`` besides the verification ones (release.BAD_*): a bounded vocabulary.
DECODE_ERROR = "decode_error"
INTERNAL_ERROR = "internal_error"  # an unexpected exception while handling one record
CALLBACK_ERROR = "callback_error"  # the service's on_update callback raised (the release is applied)
# The client is healthy while its last successful poll of the topic is at most this old.
STALE_AFTER_S = 30.0


@dataclass(frozen=True, slots=True)
class ClientHealth:
    """A snapshot for the service's health checks (times are ``time.time()`` seconds)."""

    healthy: bool
    connected: bool
    last_poll_at: float | None
    last_record_at: float | None
    last_error: str | None
    last_error_at: float | None
    reconnects: int
    accepted: int
    rejected: dict[str, int]
    versions: dict[str, int]


@dataclass(frozen=True, slots=True)
class ActiveHook:
    """One function's trusted release, ready to apply (immutable: swapped, never changed)."""

    function_name: str
    version: int
    sha256: str
    rules: list[dict[str, Any]]

    def apply_output(self, text: Any) -> Any:
        return hook_template.apply_rules_to_output(self.rules, text)

    def apply_prompt(self, messages: Any) -> Any:
        return hook_template.apply_rules_to_prompt(self.rules, messages)


class HookClient:
    """Follows ``vt.hooks`` and applies each function's newest trusted rules."""

    def __init__(
        self,
        bootstrap: str | None,
        *,
        topic: str = "vt.hooks",
        functions: Iterable[str] | None = None,
        cache_dir: Path | str | None = None,
        signing_key: Any = _FROM_ENV,
        on_update: Callable[[ActiveHook], None] | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.functions = frozenset(functions) if functions is not None else None
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._key: str | None = os.environ.get(SIGNING_KEY_ENV) if signing_key is _FROM_ENV else signing_key
        self._key = self._key or None
        self._on_update = on_update
        self._generator = HookScriptGenerator()
        self._active: dict[str, ActiveHook] = {}
        self._lock = threading.Lock()  # serialises writers; readers only take the current dict reference
        self.rejected: Counter[str] = Counter()
        self.accepted = 0
        self.reconnects = 0
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.last_record_at: float | None = None
        self.last_poll_at: float | None = None
        self._connected = False
        self._polls = 0
        self._logged_kinds: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loaded_from_cache = self._load_cache()

    # ----------------------------------------------------------------- using hooks
    def current(self, function_name: str) -> ActiveHook | None:
        return self._active.get(function_name)

    def version(self, function_name: str) -> int:
        hook = self._active.get(function_name)
        return hook.version if hook else 0

    def rules(self, function_name: str) -> list[dict[str, Any]]:
        hook = self._active.get(function_name)
        return hook.rules if hook else []

    def apply_output(self, function_name: str, text: Any) -> Any:
        return hook_template.apply_rules_to_output(self.rules(function_name), text)

    def apply_prompt(self, function_name: str, messages: Any) -> Any:
        return hook_template.apply_rules_to_prompt(self.rules(function_name), messages)

    def hook(self, function_name: str, *, messages_arg: str = "messages") -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator for an LLM call (sync or async) using ``function_name``'s current rules at each call."""
        return hook_template.make_hook(lambda: self.rules(function_name), messages_arg)  # type: ignore[no-any-return]

    # ----------------------------------------------------------------- accepting releases
    def offer(self, value: bytes | HookRelease) -> bool:
        """Verify a release and make it current if it is newer; False (and counted) when refused or stale."""
        if isinstance(value, (bytes, bytearray)):
            try:
                release = _decoder.decode(value)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                self.rejected[DECODE_ERROR] += 1
                log.warning("hooks record is not a valid HookRelease: %s", exc)
                return False
        else:
            release = value
        if self.functions is not None and release.function_name not in self.functions:
            return False
        try:
            verify_release(release, self._generator, self._key)
        except ReleaseError as exc:
            self.rejected[exc.reason] += 1
            log.warning("refusing hook %r v%d: %s", release.function_name, release.version, exc)
            return False
        except Exception as exc:  # noqa: BLE001 - one bad record must never stop the client
            self._failed(INTERNAL_ERROR, exc, f"verifying hook {release.function_name!r} v{release.version}")
            return False
        with self._lock:
            current = self._active.get(release.function_name)
            newer = current is None or release.version > current.version or (
                release.version == current.version and release.sha256 != current.sha256
            )
            if not newer:
                return False
            hook = ActiveHook(release.function_name, release.version, release.sha256, hook_template.parse_rules(
                msgspec.to_builtins(release.rules)
            ))
            self._active = {**self._active, release.function_name: hook}  # the atomic swap
            self.accepted += 1
        self._persist(release)
        log.info("hook %r now at v%d (%d rules)", release.function_name, release.version, len(hook.rules))
        if self._on_update is not None:
            try:
                self._on_update(hook)
            except Exception as exc:  # noqa: BLE001 - the service's callback must not stop the client
                self._failed(CALLBACK_ERROR, exc, f"on_update for hook {release.function_name!r} v{release.version}")
        return True

    def forget(self, function_name: str) -> None:
        """A tombstone on the topic: the function has no hook any more (here and in the cache)."""
        with self._lock:
            if function_name not in self._active:
                return
            self._active = {k: v for k, v in self._active.items() if k != function_name}
        if self.cache_dir is not None:
            (self.cache_dir / f"{slug(function_name)}.json").unlink(missing_ok=True)
        log.info("hook %r removed by a tombstone on the hooks topic", function_name)

    # ----------------------------------------------------------------- health
    def _failed(self, reason: str, exc: BaseException, what: str) -> None:
        """Count a failure under ``reason``; the first of each kind is logged with its traceback."""
        self.rejected[reason] += 1
        self.last_error = f"{what}: {type(exc).__name__}: {exc}"
        self.last_error_at = time.time()
        kind = f"{reason}:{type(exc).__name__}"
        if kind not in self._logged_kinds:
            self._logged_kinds.add(kind)
            log.error("hook client: %s failed (%s); counted as %r, going on (later ones are counted, not logged)",
                      what, type(exc).__name__, reason, exc_info=exc)

    @property
    def healthy(self) -> bool:
        """Following the topic: connected and polled it within ``STALE_AFTER_S``."""
        polled = self.last_poll_at
        return self._connected and polled is not None and time.time() - polled <= STALE_AFTER_S

    def health(self) -> ClientHealth:
        return ClientHealth(
            healthy=self.healthy, connected=self._connected, last_poll_at=self.last_poll_at,
            last_record_at=self.last_record_at, last_error=self.last_error, last_error_at=self.last_error_at,
            reconnects=self.reconnects, accepted=self.accepted, rejected=dict(self.rejected),
            versions={name: hook.version for name, hook in self._active.items()},
        )

    # ----------------------------------------------------------------- offline cache
    def _persist(self, release: HookRelease) -> None:
        if self.cache_dir is None:
            return
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            path = self.cache_dir / f"{slug(release.function_name)}.json"
            tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
            tmp.write_bytes(msgspec.json.encode(release))
            os.replace(tmp, path)
        except OSError as exc:
            log.warning("could not cache hook %r: %s", release.function_name, exc)

    def _load_cache(self) -> int:
        if self.cache_dir is None or not self.cache_dir.is_dir():
            return 0
        loaded = 0
        for path in sorted(self.cache_dir.glob("*.json")):
            try:
                loaded += self.offer(path.read_bytes())
            except OSError as exc:
                log.warning("could not read cached hook %s: %s", path, exc)
            except Exception as exc:  # noqa: BLE001 - a broken cache file must not stop the service
                self._failed(INTERNAL_ERROR, exc, f"cached hook {path.name}")
        return loaded

    # ----------------------------------------------------------------- following the topic
    async def run(self, stop: asyncio.Event | None = None, *, retry_s: float = 2.0, max_retry_s: float = 30.0) -> None:
        """Follow the topic until ``stop`` is set (or :meth:`close`).

        Any error of the consumer (broker gone, metadata, anything else) closes it and
        reconnects after a backoff that doubles from ``retry_s`` up to ``max_retry_s``
        and starts again once records flow.
        """
        if self.bootstrap is None:
            raise ValueError("HookClient needs a bootstrap address to follow the hooks topic")
        stop = stop or asyncio.Event()
        delay = retry_s
        while not stop.is_set() and not self._stop.is_set():
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False, auto_offset_reset="earliest",
                client_id="vt-hook-client",
            )
            polls_before = self._polls
            try:
                await consumer.start()
                await self._follow(consumer, stop)
            except Exception as exc:  # noqa: BLE001 - the client must outlive any consumer error
                self.last_error = f"following {self.topic}: {type(exc).__name__}: {exc}"
                self.last_error_at = time.time()
                log.warning("hooks topic unreachable (%s: %s); serving the last known versions, retrying in %.1fs",
                            type(exc).__name__, exc, delay)
            finally:
                self._connected = False
                try:
                    await consumer.stop()
                except Exception as exc:  # noqa: BLE001
                    log.debug("closing the hooks consumer: %s", exc)
            if not stop.is_set() and not self._stop.is_set():
                delay = retry_s if self._polls > polls_before else min(delay * 2, max_retry_s)
                self.reconnects += 1
                await self._sleep(delay, stop)

    async def _sleep(self, seconds: float, stop: asyncio.Event) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not stop.is_set() and not self._stop.is_set():
            await asyncio.sleep(min(0.2, max(0.0, deadline - time.monotonic())))

    async def _follow(self, consumer: AIOKafkaConsumer, stop: asyncio.Event) -> None:
        tps: list[TopicPartition] = []
        while not tps:
            if stop.is_set() or self._stop.is_set():
                return
            parts = consumer.partitions_for_topic(self.topic)
            if parts:
                tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
                break
            await consumer._client.force_metadata_update()  # noqa: SLF001 - aiokafka has no public call for this
            await asyncio.sleep(0.5)
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        while not stop.is_set() and not self._stop.is_set():
            batch = await consumer.getmany(timeout_ms=200)
            self._polls += 1
            self._connected = True
            self.last_poll_at = time.time()
            for records in batch.values():
                for record in records:
                    self._handle(record)

    def _handle(self, record: Any) -> None:
        """One record of the topic; never raises (whatever goes wrong is counted and the next record comes)."""
        self.last_record_at = time.time()
        try:
            if record.value is not None:
                self.offer(record.value)
            elif record.key is not None:
                self.forget(record.key.decode("utf-8", "replace"))
        except Exception as exc:  # noqa: BLE001 - one bad record must never stop the client
            self._failed(INTERNAL_ERROR, exc, f"record {record.topic}[{record.partition}]@{record.offset}")

    def start(self) -> HookClient:
        """Follow the topic from a background thread (for sync and async services alike)."""
        if self._thread is not None:
            return self

        def main() -> None:
            try:
                asyncio.run(self.run())
            except BaseException as exc:  # noqa: BLE001 - say why the thread ends instead of dying silently
                self._failed(INTERNAL_ERROR, exc, "the hook client thread")

        self._stop.clear()
        self._thread = threading.Thread(target=main, name="vt-hook-client", daemon=True)
        self._thread.start()
        return self

    def close(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def wait_for(self, function_name: str, version: int = 1, timeout: float = 30.0) -> bool:
        """Block until ``function_name`` is at ``version`` or later (True), or the timeout passes (False)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.version(function_name) >= version:
                return True
            time.sleep(0.05)
        return self.version(function_name) >= version

    def __enter__(self) -> HookClient:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
