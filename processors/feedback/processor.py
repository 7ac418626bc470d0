"""The feedback engine as a stream processor: ``feedback`` (+ ``hooks``) in, ``hooks`` out.

* ``feedback`` records become pairs in a per-function window (newest
  ``max_pairs_per_function``, deduplicated by uuid) and mark the function dirty.
* ``tick`` re-synthesises a dirty function once it has been quiet for
  ``debounce_s`` (or waited ``max_delay_s``); with the LLM proposer on, it first asks the
  model on a thread of the proposer's own and synthesises on a later tick, when the answer is
  there (or the proposer's deadline passed), so a slow provider never holds the worker.  One
  tick synthesises for at most ``synthesis_budget_s`` (then the next tick goes on, oldest
  waiting first), so functions due together do not stall the records.  It validates the candidate against the
  current release and publishes a new ``HookRelease`` only if it changes behaviour
  (or, with unchanged rules, once the pairs grew ``revalidate_growth``-fold, so the
  published validation scores stay representative) and passes validation.
* ``hooks`` records (this engine's own releases, the CLI's rollbacks, releases of a
  previous owner of the partition) tell it the newest version of each function, so
  version numbers stay monotonic and rollbacks' vetoes are honoured.  A release that
  fails verification (digest, module, signature) is dead-lettered, never adopted.

A release is deterministic in its inputs (``created_at`` is the newest pair's
timestamp), so a replay after a crash rewrites the same bytes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, ClassVar

import msgspec

from processors.feedback.ruleset import behaviour, describe
from stream.contract.config import FeedbackSettings
from stream.contract.deadletter import INVALID_VALUE, OVERSIZE
from stream.contract.events import Feedback, HookRelease, encode
from stream.contract.hooks.generator import HookScriptGenerator
from stream.contract.hooks.release import ReleaseError, build_release, history_key, verify_release
from stream.contract.processing import FROM_BEGINNING, Output, Processor, Record, Rejection, Result
from stream.contract.sensors import FeedbackSensor

from .diff import FeedbackDiffAnalyzer
from .llm import LLMRuleProposer
from .pairs import Pair, split
from .synthesizer import RuleSetSynthesizer
from .validation import validate
from .versions import VersionStore

log = logging.getLogger(__name__)


class _FunctionState(msgspec.Struct):
    pairs: list[Feedback] = []
    dirty: bool = False


class _FeedbackPartition(msgspec.Struct):
    functions: dict[str, _FunctionState] = {}
    releases: dict[str, HookRelease] = {}


class _HooksPartition(msgspec.Struct):
    releases: dict[str, HookRelease] = {}


class FeedbackProcessor(Processor):
    """Feedback pairs → rules → validated, versioned hook releases on ``hooks``."""

    name: ClassVar[str] = "feedback"
    inputs: ClassVar[tuple[str, ...]] = ("feedback", "hooks")
    stateful: ClassVar[bool] = True

    def __init__(
        self,
        settings: FeedbackSettings | None = None,
        *,
        store_dir: Path,
        signing_key: str | None = None,
        sensor: FeedbackSensor | None = None,
        proposer: LLMRuleProposer | None = None,
        analyzer: FeedbackDiffAnalyzer | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``analyzer``: how pairs are diffed; one with an embedder (``semantic_analyzer``) also
        holds out pairs that rewrote the answer's meaning (``feedback.rewrite_difference``)."""
        self.settings = settings or FeedbackSettings()
        self._key = signing_key or None
        self._clock = clock
        self.store = VersionStore(store_dir)
        self.generator = HookScriptGenerator()
        self.synthesizer = RuleSetSynthesizer(
            min_support=self.settings.min_support,
            min_confidence=self.settings.min_confidence,
            max_rules=self.settings.max_rules,
            analyzer=analyzer,
            rewrite_difference=self.settings.rewrite_difference,
        )
        self.proposer = proposer
        self.sensor = sensor if sensor is not None else FeedbackSensor()
        # partition -> function -> uuid -> pair (insertion order = arrival order)
        self._pairs: dict[int, dict[str, dict[str, Feedback]]] = {}
        self._dirty: dict[str, tuple[float, float]] = {}  # function -> (first, last) unsynthesised arrival
        self._owner: dict[str, int] = {}  # function -> feedback partition holding its pairs
        self._latest: dict[str, HookRelease] = {}
        self._hooks_seen: dict[int, set[str]] = {}  # hooks partition -> functions read from it
        self._asking: dict[str, tuple[Future[list[Any]], float]] = {}  # function -> (LLM proposals, give up at)
        self._rewrites: dict[str, int] = {}  # function -> training pairs its last synthesis held out as rewrites

    # ----------------------------------------------------------------- input
    def process(self, records: list[Record]) -> Result:
        result = Result()
        for record in records:
            if record.topic == "hooks":
                self._on_release(record, result)
            else:
                self._on_feedback(record, result)
        return result

    def _on_feedback(self, record: Record, result: Result) -> None:
        fb: Feedback = record.value
        limit = self.settings.max_output_chars
        longest = max(len(fb.bad_output), len(fb.fixed_output))
        if longest > limit:
            result.rejected.append(
                Rejection(record, OVERSIZE, f"an output has {longest} characters; diff analysis takes at most {limit}")
            )
            return
        if not fb.fixed_output.strip():
            result.rejected.append(Rejection(record, INVALID_VALUE, "fixed_output is empty: there is no correction to learn from - at `$.fixed_output`"))
            return
        window = self._pairs.setdefault(record.partition, {}).setdefault(fb.function_name, {})
        known = window.get(fb.uuid)
        if known is not None and (known.bad_output, known.fixed_output) == (fb.bad_output, fb.fixed_output):
            return  # the same pair again (a replay): nothing new to learn
        window[fb.uuid] = fb
        while len(window) > self.settings.max_pairs_per_function:
            del window[next(iter(window))]
        self._owner[fb.function_name] = record.partition
        now = self._clock()
        first = self._dirty.get(fb.function_name, (now, now))[0]
        self._dirty[fb.function_name] = (first, now)
        self.sensor.on_pair(fb.function_name)

    def _on_release(self, record: Record, result: Result) -> None:
        release: HookRelease | None = record.value
        if release is None:
            # A tombstone: someone removed the function's hook.  Forget it as the baseline for
            # validation; version numbers still continue after the store's newest.
            fn = (record.key or b"").decode("utf-8", "replace")
            if self._latest.pop(fn, None) is not None:
                log.warning("hook of %r deleted by a tombstone on the hooks topic", fn)
            return
        try:
            verify_release(release, self.generator, self._key)
        except ReleaseError as exc:
            result.rejected.append(Rejection(record, INVALID_VALUE, f"hook release not trusted ({exc.reason}): {exc}"))
            return
        self._hooks_seen.setdefault(record.partition, set()).add(release.function_name)
        self._adopt(release)

    def _adopt(self, release: HookRelease) -> None:
        """Remember a trusted release; the newest version (last write wins on a tie) becomes current."""
        self.store.put(release)
        current = self._latest.get(release.function_name)
        if current is None or release.version > current.version or (
            release.version == current.version and release.sha256 != current.sha256
        ):
            self._latest[release.function_name] = release
            self.sensor.on_current(release)

    # ----------------------------------------------------------------- synthesis
    def tick(self, now: float) -> Result:
        result = Result()
        s = self.settings
        spent = 0.0
        # Oldest waiting first; once this tick has spent its synthesis budget, the rest wait for the
        # next tick (records are processed in between), so due functions do not stall the worker together.
        for fn in sorted(self._dirty, key=lambda f: (self._dirty[f][0], f)):
            if s.synthesis_budget_s and spent >= s.synthesis_budget_s:
                break
            first, last = self._dirty[fn]
            asking = self._asking.get(fn)
            if asking is None:
                if now - last < s.debounce_s and now - first < s.max_delay_s:
                    continue
                if fn not in self._owner:
                    del self._dirty[fn]
                    continue
                if self.proposer is not None:
                    future = self.proposer.submit(fn, self._train(fn))
                    if future is not None:
                        self._asking[fn] = (future, now + self.proposer.deadline_s)
                        continue  # synthesised on a later tick, with the answer
                    log.warning("%d LLM proposer calls still out: synthesising %r without one", self.proposer.max_in_flight, fn)
                extra: list[Any] = []
            else:
                future, give_up_at = asking
                if not future.done() and now < give_up_at:
                    continue
                del self._asking[fn]
                extra = self._answer(fn, future)
            del self._dirty[fn]
            started = time.perf_counter()
            try:
                output = self.synthesize(fn, extra)
            except Exception:
                # A bug must not stop the consumer loop; the next new pair retries.
                log.exception("synthesis for %r failed", fn)
                self.sensor.on_synthesis_error(fn)
                continue
            finally:
                took = time.perf_counter() - started
                spent += took
                self.sensor.on_synthesis_seconds(took)
            if output is not None:
                result.outputs.append(output)
                current = self._latest.get(fn)
                if current is not None:
                    result.outputs.append(self.history_output(current))
        return result

    def _train(self, fn: str) -> list[Pair]:
        """The training split of a function's current pairs (what synthesis and the LLM see)."""
        window = self._pairs.get(self._owner[fn], {}).get(fn, {})
        train, _heldout = split([Pair.of(f) for f in window.values()], self.settings.heldout_fraction)
        return train

    def _answer(self, fn: str, future: Future[list[Any]]) -> list[Any]:
        """The proposals of a finished (or abandoned) LLM call; [] when it failed or took too long."""
        if not future.done():
            assert self.proposer is not None
            self.proposer.failures += 1
            log.warning("LLM rule proposer gave no answer for %r within %.0fs: synthesising without it", fn, self.proposer.deadline_s)
            return []
        try:
            return list(future.result())
        except Exception:
            log.exception("LLM rule proposer failed for %r", fn)
            return []

    def synthesize(self, fn: str, extra: list[Any] | None = None) -> Output | None:
        """Re-synthesise one function's rules; the release to publish, or None (unchanged or refused).

        ``extra``: the LLM's proposals, already fetched; None asks the proposer (if any) here and now.
        """
        window = self._pairs.get(self._owner[fn], {}).get(fn, {})
        if not window:
            return None
        self.sensor.on_synthesis(fn)
        pairs = [Pair.of(f) for f in window.values()]
        train, _heldout = split(pairs, self.settings.heldout_fraction)
        current = self._latest.get(fn)
        current_rules = list(current.rules) if current else []
        vetoed = list(current.vetoed) if current else []
        if extra is None:
            extra = self.proposer.propose(fn, train) if self.proposer is not None else []
        if self.proposer is not None:
            self.sensor.on_llm_proposals(fn, len(extra))
        synthesis = self.synthesizer.synthesize(train, current=current_rules, vetoed=vetoed, extra=extra)
        self._rewrites[fn] = len(synthesis.rewrites)
        if behaviour(synthesis.rules) == behaviour(current_rules) and not self._stale(current, len(pairs)):
            return None
        report = validate(synthesis.rules, current_rules, pairs, self.settings.heldout_fraction)
        if not report.ok:
            assert report.reason is not None
            self.sensor.on_refused(fn, report.reason)
            log.info("hook for %r not released (%s): %s", fn, report.reason, report.summary())
            return None
        created_at = max(f.timestamp_utc for f in window.values())
        parent = current.version if current else None
        version = (parent or 0) + 1
        release = self._build(fn, version, synthesis.rules, report.validation, created_at, parent, vetoed)
        stored = self.store.versions(fn)
        if version in stored and self.store.get(fn, version).sha256 != release.sha256:
            # This version number was already used (e.g. published before a crash, with other pairs).
            release = self._build(fn, stored[-1] + 1, synthesis.rules, report.validation, created_at, parent, vetoed)
        self._adopt(release)
        self.sensor.on_release(fn)
        log.info(
            "released hook %r v%d with %d rules: %s (semantic diff %s, %d rewrites neither proposed nor voted)\n  %s",
            fn, release.version, len(release.rules), report.summary(), self.semantic_method, len(synthesis.rewrites),
            "\n  ".join(describe(r) for r in release.rules),
        )
        return Output("hooks", fn.encode("utf-8"), encode(release))

    @staticmethod
    def history_output(release: HookRelease) -> Output:
        """The release as a record of ``hooks.history`` (key ``function/version``: every version stays)."""
        return Output("hooks.history", history_key(release.function_name, release.version), encode(release))

    def _stale(self, current: HookRelease | None, pairs: int) -> bool:
        """Whether the current release's validation covers so few of today's pairs that it is worth refreshing."""
        growth = self.settings.revalidate_growth
        return current is not None and growth > 0 and pairs >= growth * max(1, current.validation.pairs)

    def _build(self, fn: str, version: int, rules: list[Any], validation: Any, created_at: Any, parent: int | None, vetoed: list[Any]) -> HookRelease:
        return build_release(
            self.generator,
            function_name=fn,
            version=version,
            rules=rules,
            validation=validation,
            created_at=created_at,
            parent_version=parent,
            vetoed=vetoed,
            signing_key=self._key,
        )

    # ----------------------------------------------------------------- state
    def save_state(self, topic: str, partition: int, directory: Path) -> None:
        if topic == "hooks":
            fns = self._hooks_seen.get(partition, set())
            state: msgspec.Struct = _HooksPartition(
                releases={fn: self._latest[fn] for fn in sorted(fns) if fn in self._latest}
            )
        else:
            part = self._pairs.get(partition, {})
            state = _FeedbackPartition(
                functions={
                    fn: _FunctionState(pairs=list(window.values()), dirty=fn in self._dirty)
                    for fn, window in sorted(part.items())
                },
                releases={fn: self._latest[fn] for fn in sorted(part) if fn in self._latest},
            )
        (directory / f"{topic}.json").write_bytes(msgspec.json.encode(state))

    def load_state(self, topic: str, partition: int, directory: Path | None) -> int:
        if topic == "hooks":
            self._hooks_seen[partition] = set()
            if directory is not None:
                hooks = msgspec.json.decode((directory / "hooks.json").read_bytes(), type=_HooksPartition)
                self._hooks_seen[partition] = set(hooks.releases)
                for release in hooks.releases.values():
                    self._adopt(release)
            return FROM_BEGINNING  # the compacted topic is small: without a checkpoint, read it all
        self._pairs[partition] = {}
        if directory is not None:
            state = msgspec.json.decode((directory / "feedback.json").read_bytes(), type=_FeedbackPartition)
            now = self._clock()
            for fn, fstate in state.functions.items():
                self._pairs[partition][fn] = {p.uuid: p for p in fstate.pairs}
                self._owner[fn] = partition
                if fstate.dirty:
                    self._dirty[fn] = (now, now)
            for release in state.releases.values():
                self._adopt(release)
        return FROM_BEGINNING  # without a checkpoint, rebuild the pair windows from the topic

    def release(self, topic: str, partition: int) -> None:
        if topic == "hooks":
            self._hooks_seen.pop(partition, None)
            return
        for fn in self._pairs.pop(partition, {}):
            if self._owner.get(fn) == partition:
                del self._owner[fn]
                self._dirty.pop(fn, None)
                self._asking.pop(fn, None)  # the call ends on its own thread; its answer is dropped

    # ----------------------------------------------------------------- introspection
    def current(self, fn: str) -> HookRelease | None:
        return self._latest.get(fn)

    @property
    def semantic_method(self) -> str:
        """``cosine:<embedder>`` or ``token-jaccard``: how the diff measures a correction's meaning."""
        return self.synthesizer.analyzer.semantic_method

    def status(self) -> dict[str, Any]:
        return {
            "semantic_diff": self.semantic_method,
            "functions": {
                fn: {
                    "pairs": len(self._pairs.get(part, {}).get(fn, {})),
                    "version": self._latest[fn].version if fn in self._latest else None,
                    "pending": fn in self._dirty,
                    "rewrites": self._rewrites.get(fn, 0),
                }
                for fn, part in sorted(self._owner.items())
            }
        }
