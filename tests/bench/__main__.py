"""Run the benchmarks and write their figures as JSON.

    python -m tests.bench [--only NAME ...] [--quick] [--out bench-results/bench.json]

Every benchmark reports ratios against a baseline measured in the same process,
because the machine is noisy; absolute numbers are printed for context.
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import pkgutil
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Context:
    quick: bool = False
    scratch: Path = field(default_factory=lambda: Path("bench-results") / "scratch")


def discover() -> list[str]:
    here = Path(__file__).parent
    return sorted(m.name[len("bench_") :] for m in pkgutil.iter_modules([str(here)]) if m.name.startswith("bench_"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", default=None, help=f"benchmarks to run (default all: {', '.join(discover())})")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    parser.add_argument("--out", type=Path, default=Path("bench-results") / "bench.json")
    args = parser.parse_args(argv)
    names = args.only or discover()
    ctx = Context(quick=args.quick)
    # Every run starts on fresh brokers: state left by an earlier run would not match them.
    shutil.rmtree(ctx.scratch, ignore_errors=True)
    ctx.scratch.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "machine": {"python": sys.version.split()[0], "platform": platform.platform(), "cpus": __import__("os").cpu_count()},
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "quick": args.quick,
        "benchmarks": {},
    }
    failed = False
    for name in names:
        module = importlib.import_module(f"tests.bench.bench_{name}")
        print(f"== {name}", flush=True)
        started = time.perf_counter()
        try:
            figures = module.run(ctx)
        except Exception as exc:  # a failing benchmark is reported, the others still run
            figures = {"error": f"{type(exc).__name__}: {exc}"}
            failed = True
        figures["seconds"] = round(time.perf_counter() - started, 1)
        results["benchmarks"][name] = figures
        print(json.dumps(figures, indent=2), flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
