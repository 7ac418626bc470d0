"""Engine 2's processor with plain calls: debounce, releases, state, rollback, bad input."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
from prometheus_client import CollectorRegistry

from processors.feedback.admin import rollback_release
from processors.feedback.processor import FeedbackProcessor
from processors.feedback.ruleset import ReplacePhrase, StripPrefix, behaviour, rule_key
from processors.feedback.versions import VersionStore
from stream.contract.config import FeedbackSettings
from stream.contract.events import Feedback, HookRelease, HookValidation, decode, encode
from stream.contract.hooks.generator import HookScriptGenerator
from stream.contract.hooks.release import build_release
from stream.contract.processing import FROM_BEGINNING, Output, Record
from stream.runtime.sensors import PrometheusSensors
from tests.support.feedback import feedback_event, traffic_feedback, uuids

KEY = "unit-test-signing-key"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _proc(tmp_path: Path, clock: Clock, **kw) -> tuple[FeedbackProcessor, CollectorRegistry]:  # type: ignore[no-untyped-def]
    registry = CollectorRegistry()
    kw.setdefault("synthesis_budget_s", 0.0)  # every due function in one tick (the budget has its own test)
    proc = FeedbackProcessor(FeedbackSettings(**kw), store_dir=tmp_path / "hooks", sensor=PrometheusSensors(registry).feedback, clock=clock, signing_key=KEY)
    for topic in ("feedback", "hooks"):
        assert proc.load_state(topic, 0, None) == FROM_BEGINNING
    return proc, registry


def _records(fbs: list[Feedback], start: int = 0) -> list[Record]:
    return [Record("feedback", 0, start + i, f.function_name.encode(), f, encode(f)) for i, f in enumerate(fbs)]


def _hooks_record(release: HookRelease, offset: int = 0) -> Record:
    return Record("hooks", 0, offset, release.function_name.encode(), decode("hooks", encode(release)), encode(release))


def _releases(outputs: list[Output]) -> dict[str, HookRelease]:
    """The releases on ``hooks``; each must come with the same bytes on ``hooks.history`` (key function/version)."""
    out = {}
    history = {o.key: o.value for o in outputs if o.topic == "hooks.history"}
    for o in outputs:
        if o.topic == "hooks.history":
            continue
        assert o.topic == "hooks" and o.value is not None
        release = decode("hooks", o.value)
        assert isinstance(release, HookRelease) and o.key == release.function_name.encode()
        assert history.get(f"{release.function_name}/{release.version:09d}".encode()) == o.value, "every release is kept in the history"
        out[release.function_name] = release
    return out


def _sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_debounced_synthesis_publishes_validated_signed_releases(tmp_path: Path) -> None:
    clock = Clock()
    proc, registry = _proc(tmp_path, clock)
    fbs = [f for fs in traffic_feedback(seed=3, events=5000).values() for f in fs]
    assert proc.process(_records(fbs)).outputs == []
    assert proc.tick(clock.now + 0.5).outputs == []  # still within the debounce
    released = _releases(proc.tick(clock.now + 1.5).outputs)
    assert set(released) == {"summarize_ticket", "answer_faq", "translate_ko_en"}
    for fn, release in released.items():
        v = release.validation
        assert release.version == 1 and release.parent_version is None and release.signature
        assert v.worse_pairs == 0 and v.heldout_pairs > 0
        assert v.heldout_exact_match_after > v.heldout_exact_match_before + 0.5
        assert v.heldout_similarity_after > v.heldout_similarity_before
        assert release.created_at == max(f.timestamp_utc for f in fbs if f.function_name == fn)
        assert _sample(registry, "vt_hook_version", function=fn) == 1
        assert _sample(registry, "vt_hook_rules", function=fn) == len(release.rules)
        assert _sample(registry, "vt_hook_validation_exact_match_ratio", function=fn, split="heldout", stage="after") == pytest.approx(
            v.heldout_exact_match_after
        )
    assert _sample(registry, "vt_feedback_pairs_total", function="answer_faq") == sum(f.function_name == "answer_faq" for f in fbs)
    # Nothing new: no further release, and a replay of the same records changes nothing.
    assert proc.tick(clock.now + 60).outputs == []
    proc.process(_records(fbs))
    assert proc.tick(clock.now + 120).outputs == []
    # Its own releases read back from the hooks topic are adopted without a new version.
    for i, release in enumerate(released.values()):
        assert proc.process([_hooks_record(release, i)]).rejected == []
    assert {fn: proc.current(fn).version for fn in released} == {fn: 1 for fn in released}  # type: ignore[union-attr]
    assert VersionStore(tmp_path / "hooks").versions("answer_faq") == [1]


def test_max_delay_bounds_the_wait_under_steady_feedback(tmp_path: Path) -> None:
    clock = Clock()
    proc, _ = _proc(tmp_path, clock, debounce_s=1.0, max_delay_s=5.0)
    fbs = traffic_feedback(seed=3, events=5000)["summarize_ticket"]
    released = []
    for i, fb in enumerate(fbs):
        clock.now = 1000.0 + i * 0.5  # a pair every half second: never quiet for a whole second
        proc.process(_records([fb], i))
        released += proc.tick(clock.now).outputs
    assert released, "steady feedback must not postpone synthesis forever"


def test_one_tick_spends_at_most_its_synthesis_budget_and_the_oldest_goes_first(tmp_path: Path) -> None:
    clock = Clock()
    proc, registry = _proc(tmp_path, clock, synthesis_budget_s=1e-9)  # any synthesis spends it
    fbs = traffic_feedback(seed=2, events=3000)
    order = ["translate_ko_en", "answer_faq", "summarize_ticket"]  # the order their first pairs arrive
    for i, fn in enumerate(order):
        clock.now = 1000.0 + i
        proc.process(_records(fbs[fn], 100 * i))
    ticks = []
    for step in range(1, 6):
        released = _releases(proc.tick(clock.now + 10 + 0.1 * step).outputs)
        ticks.append(sorted(released))
    assert ticks == [[fn] for fn in order] + [[], []], ticks
    assert _sample(registry, "vt_feedback_synthesis_runs_total", function="answer_faq") == 1


def test_a_replay_rewrites_the_same_release_bytes(tmp_path: Path) -> None:
    fbs = traffic_feedback(seed=4, events=3000)["answer_faq"]
    outputs = []
    for run in ("a", "b"):
        clock = Clock()
        proc, _ = _proc(tmp_path / run, clock)
        proc.process(_records(fbs))
        outputs.append(proc.tick(clock.now + 5).outputs)
    assert outputs[0] == outputs[1] and [o.topic for o in outputs[0]] == ["hooks", "hooks.history"]


def test_bad_feedback_is_dead_lettered_with_a_reason(tmp_path: Path) -> None:
    clock = Clock()
    proc, _ = _proc(tmp_path, clock, max_output_chars=200)
    good = feedback_event("fn", "Hello there.", "Hi there.", "u1")
    huge = feedback_event("fn", "x " * 200, "y", "u2")
    empty = feedback_event("fn", "Hello there.", "   ", "u3")
    result = proc.process(_records([good, huge, empty]))
    assert [(r.record.offset, r.error_type) for r in result.rejected] == [(1, "oversize"), (2, "invalid_value")]
    assert "fixed_output is empty" in result.rejected[1].error
    assert proc.status()["functions"]["fn"]["pairs"] == 1


def test_untrusted_releases_on_the_hooks_topic_are_dead_lettered(tmp_path: Path) -> None:
    clock = Clock()
    proc, _ = _proc(tmp_path, clock)
    gen = HookScriptGenerator()

    def release(key: str | None, version: int = 5) -> HookRelease:
        return build_release(gen, function_name="fn", version=version, rules=[ReplacePhrase(old="a", new="b")],
                             validation=HookValidation(pairs=1), created_at=feedback_event("fn", "a", "b", "x").timestamp_utc,
                             parent_version=None, signing_key=key)

    forged = release("not-the-key")
    unsigned = release(None)
    tampered = release(KEY)
    tampered.module_source += "\n"
    result = proc.process([_hooks_record(forged, 0), _hooks_record(unsigned, 1), _hooks_record(tampered, 2)])
    assert [r.error_type for r in result.rejected] == ["invalid_value"] * 3
    assert ["bad_signature" in r.error for r in result.rejected] == [True, False, False]
    assert KEY not in " ".join(r.error for r in result.rejected)
    assert proc.current("fn") is None
    assert proc.process([_hooks_record(release(KEY), 3)]).rejected == []
    assert proc.current("fn").version == 5  # type: ignore[union-attr]


def test_versions_follow_the_topic_and_stay_monotonic(tmp_path: Path) -> None:
    clock = Clock()
    proc, _ = _proc(tmp_path, clock)
    fbs = traffic_feedback(seed=3, events=4000)["summarize_ticket"]
    older = build_release(HookScriptGenerator(), function_name="summarize_ticket", version=7,
                          rules=[StripPrefix(text="Hello! Thanks for reaching out.")], validation=HookValidation(pairs=3),
                          created_at=fbs[0].timestamp_utc, parent_version=6, signing_key=KEY)
    proc.process([_hooks_record(older)])
    proc.process(_records(fbs))
    (release,) = _releases(proc.tick(clock.now + 5).outputs).values()
    assert (release.version, release.parent_version) == (8, 7)
    assert {rule_key(r) for r in release.rules} >= {rule_key(r) for r in older.rules}


def test_state_survives_a_checkpoint_and_a_new_instance(tmp_path: Path) -> None:
    clock = Clock()
    proc, _ = _proc(tmp_path, clock)
    fbs = traffic_feedback(seed=3, events=4000)["answer_faq"]
    proc.process(_records(fbs[:40]))
    release = next(iter(_releases(proc.tick(clock.now + 5).outputs).values()))
    proc.process(_records(fbs[40:], 40))  # pending, not yet synthesised
    ckpt = tmp_path / "ckpt"
    for topic in ("feedback", "hooks"):
        (ckpt / topic).mkdir(parents=True)
        proc.save_state(topic, 0, ckpt / topic)

    clock2 = Clock()
    fresh = FeedbackProcessor(FeedbackSettings(), store_dir=tmp_path / "other-store", clock=clock2, signing_key=KEY)
    fresh.load_state("feedback", 0, ckpt / "feedback")
    fresh.load_state("hooks", 0, ckpt / "hooks")
    assert fresh.status()["functions"]["answer_faq"] == {"pairs": len(fbs), "version": 1, "pending": True, "rewrites": 0}
    assert fresh.current("answer_faq") == release
    # The pending pairs are synthesised after the restart: the rules are unchanged, but the pairs grew
    # five-fold, so the same rules are re-released with a validation on every pair.
    (refresh,) = _releases(fresh.tick(clock2.now + 5).outputs).values()
    assert behaviour(refresh.rules) == behaviour(release.rules)
    assert (refresh.version, refresh.parent_version, refresh.validation.pairs) == (2, 1, len(fbs))
    assert release.validation.pairs == 40
    fresh.process(_records(fbs[:5], 900))  # replays: nothing new
    assert fresh.tick(clock2.now + 60).outputs == []
    fresh.release("feedback", 0)
    assert fresh.status()["functions"] == {}


def test_rollback_is_a_new_version_and_its_vetoes_hold(tmp_path: Path) -> None:
    clock = Clock()
    proc, _ = _proc(tmp_path, clock)
    store = VersionStore(tmp_path / "hooks")
    fbs = traffic_feedback(seed=3, events=6000)["summarize_ticket"]
    # v1 from the first pairs, then a v2 an operator dislikes (with an extra rule).
    proc.process(_records(fbs))
    v1 = _releases(proc.tick(clock.now + 5).outputs)["summarize_ticket"]
    extra = [*v1.rules, ReplacePhrase(old="charged", new="billed")]
    v2 = build_release(HookScriptGenerator(), function_name="summarize_ticket", version=2, rules=extra,
                       validation=v1.validation, created_at=v1.created_at, parent_version=1, signing_key=KEY)
    proc.process([_hooks_record(v2)])
    assert store.versions("summarize_ticket") == [1, 2]
    assert [line[0] for line in store.diff("summarize_ticket", 1, 2).lines()] == ["+", " ", " "]

    v3 = rollback_release(store, "summarize_ticket", 1, KEY)
    assert (v3.version, v3.parent_version, v3.rollback_of) == (3, 2, 1)
    assert [rule_key(r) for r in v3.rules] == [rule_key(r) for r in v1.rules]
    assert [rule_key(r) for r in v3.vetoed] == [rule_key(ReplacePhrase(old="charged", new="billed"))]
    proc.process([_hooks_record(v3)])
    assert proc.current("summarize_ticket").version == 3  # type: ignore[union-attr]
    with pytest.raises(ValueError):
        rollback_release(store, "summarize_ticket", 3, KEY)

    # Users now ask for exactly the vetoed rule: it must not come back.
    more = [feedback_event("summarize_ticket", f"It was charged twice ({i}).", f"It was billed twice ({i}).", u, minute=i)
            for i, u in enumerate(uuids(30, tag="veto"))]
    proc.process(_records(more, 1000))
    for release in _releases(proc.tick(clock.now + 10).outputs).values():
        assert rule_key(ReplacePhrase(old="charged", new="billed")) not in {rule_key(r) for r in release.rules}
        assert release.vetoed == v3.vetoed and release.version == 4
    assert msgspec.json.decode((tmp_path / "hooks" / "manifest.json").read_bytes())["summarize_ticket"]["versions"]["3"]["rollback_of"] == 1


def test_a_refused_candidate_is_counted_and_not_released(tmp_path: Path) -> None:
    clock = Clock()
    proc, registry = _proc(tmp_path, clock)
    train = [feedback_event("fn", f"The customer called ({i}).", f"The client called ({i}).", u, i)
             for i, u in enumerate(uuids(12, heldout=False, tag="r"))]
    # Held-out users keep "customer": the rule the training pairs support makes them worse.
    held = [feedback_event("fn", f"The customer called ({i}).", f"The customer called back ({i}).", u, 50 + i)
            for i, u in enumerate(uuids(4, heldout=True, tag="r"))]
    proc.process(_records(train + held))
    assert proc.tick(clock.now + 5).outputs == []
    assert _sample(registry, "vt_hook_releases_refused_total", function="fn", reason="worse_pairs") == 1
    assert proc.current("fn") is None


def test_synthesis_errors_do_not_escape_tick(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    proc, registry = _proc(tmp_path, clock)
    proc.process(_records(traffic_feedback(seed=3, events=2000)["answer_faq"]))

    def boom(*_a, **_k):  # type: ignore[no-untyped-def]
        raise RuntimeError("synthesiser bug")

    monkeypatch.setattr(proc.synthesizer, "synthesize", boom)
    assert proc.tick(clock.now + 5).outputs == []
    assert _sample(registry, "vt_feedback_synthesis_errors_total", function="answer_faq") == 1


def test_rollback_to_a_release_of_the_first_template_renders_with_the_current_one(tmp_path: Path) -> None:
    """Versions published with template v1 stay in the store and verify; rolling back to one
    publishes its rules in a module of the current template."""
    from datetime import datetime, timezone

    from stream.contract.hooks.generator import template_version_of
    from stream.contract.hooks.release import verify_release
    from stream.contract.hooks.rules import FixCase

    gen = HookScriptGenerator()
    store = VersionStore(tmp_path / "hooks")
    rules = [ReplacePhrase(old="customer", new="client")]
    v1 = build_release(gen.for_version(1), function_name="fn", version=1, rules=rules,
                       validation=HookValidation(pairs=1), created_at=datetime(2026, 1, 1, tzinfo=timezone.utc),
                       parent_version=None, signing_key=KEY)
    v2 = build_release(gen, function_name="fn", version=2, rules=[*rules, FixCase(word="VectorWave")],
                       validation=v1.validation, created_at=v1.created_at, parent_version=1, signing_key=KEY)
    assert store.put(v1) and store.put(v2)
    v3 = rollback_release(store, "fn", 1, KEY)
    verify_release(v3, gen, KEY)
    assert template_version_of(store.get("fn", 1).module_source) == 1
    assert template_version_of(v3.module_source) == 2
    assert [rule_key(r) for r in v3.rules] == [rule_key(r) for r in rules]
    assert [rule_key(r) for r in v3.vetoed] == [rule_key(FixCase(word="VectorWave"))]
