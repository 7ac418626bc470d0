"""What an LLM service loads when it embeds the hook client: the contract and aiokafka, nothing of the engines."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support import ROOT

# Engines, metrics and numeric libraries: none of them may come with the client.
FORBIDDEN = ("processors", "prometheus_client", "rapidfuzz", "numpy", "hnswlib", "sklearn", "openai")
FORBIDDEN_OURS = ("stream.runtime", "stream.tools", "stream.pipeline", "stream.cli", "stream.vectorwave_bridge")


@pytest.mark.parametrize("module", ["stream.client.hook_client", "stream.hook_client"])
def test_importing_the_hook_client_loads_no_engine_no_prometheus_no_numeric_library(module: str) -> None:
    code = f"import json, sys, {module}; print(json.dumps(sorted(sys.modules)))"
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    loaded = set(json.loads(res.stdout.splitlines()[-1]))
    assert "aiokafka" in loaded and "stream.contract.hooks.template" in loaded  # the test looks at the right thing
    unwanted = sorted(
        m for m in loaded if m.split(".")[0] in FORBIDDEN or any(m == p or m.startswith(p + ".") for p in FORBIDDEN_OURS)
    )
    assert unwanted == []


def test_the_old_import_path_is_the_same_client() -> None:
    import stream.hook_client as alias
    from stream.client import hook_client

    assert alias.HookClient is hook_client.HookClient and alias.ActiveHook is hook_client.ActiveHook
