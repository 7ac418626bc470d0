"""Engine 2: feedback pairs → rules (data) → validated, versioned prompt hooks.

One module per job: ``diff`` (word-level diff analysis), ``rules`` (typed rules and
the one applier, which lives in ``hook_template``), ``synthesizer`` (rule synthesis
with support and conflicts), ``hookgen`` (rendering ``generated_prompt_hook.py``),
``validation`` (replay before release), ``release`` (digest and signature),
``versions`` (the version store), ``llm`` (optional LLM rule proposer) and
``processor`` (the stream processor).
"""

from .diff import DiffAnalysis, Edit, FeedbackDiffAnalyzer
from .hookgen import HookScriptGenerator
from .processor import FeedbackProcessor
from .synthesizer import RuleSetSynthesizer, Synthesis
from .validation import ValidationReport, validate
from .versions import VersionStore

__all__ = [
    "DiffAnalysis", "Edit", "FeedbackDiffAnalyzer", "FeedbackProcessor", "HookScriptGenerator",
    "RuleSetSynthesizer", "Synthesis", "ValidationReport", "VersionStore", "validate",
]
