"""The runtime hook client: what the LLM service imports to use the released hooks.

    from stream.client.hook_client import HookClient
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
from aiokafka.errors import KafkaError

from stream.contract.events import HookRelease
from stream.contract.hooks import template as hook_template
from stream.contract.hooks.generator import HookScriptGenerator
from stream.contract.hooks.release import SIGNING_KEY_ENV, ReleaseError, slug, verify_release

log = logging.getLogger(__name__)

_decoder = msgspec.json.Decoder(HookRelease)
_FROM_ENV = object()
DECODE_ERROR = "decode_error"


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
            self._on_update(hook)
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
        return loaded

    # ----------------------------------------------------------------- following the topic
    async def run(self, stop: asyncio.Event | None = None, *, retry_s: float = 2.0) -> None:
        """Follow the topic until ``stop`` is set (or :meth:`close`); reconnects after broker errors."""
        if self.bootstrap is None:
            raise ValueError("HookClient needs a bootstrap address to follow the hooks topic")
        stop = stop or asyncio.Event()
        while not stop.is_set() and not self._stop.is_set():
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False, auto_offset_reset="earliest",
                client_id="vt-hook-client",
            )
            try:
                await consumer.start()
                await self._follow(consumer, stop)
            except KafkaError as exc:
                log.warning("hooks topic unreachable (%s); serving the last known versions, retrying in %.0fs", exc, retry_s)
            finally:
                await consumer.stop()
            if not stop.is_set() and not self._stop.is_set():
                await asyncio.sleep(retry_s)

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
            for records in batch.values():
                for record in records:
                    if record.value is not None:
                        self.offer(record.value)
                    elif record.key is not None:
                        self.forget(record.key.decode("utf-8", "replace"))

    def start(self) -> HookClient:
        """Follow the topic from a background thread (for sync and async services alike)."""
        if self._thread is not None:
            return self

        def main() -> None:
            asyncio.run(self.run())

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
