"""Engine 2: feedback pairs → rules (data) → validated, versioned prompt hooks.

One module per job: ``diff`` (word-level diff analysis), ``ruleset`` (comparing,
ordering and describing rules, and applying them through the one applier),
``synthesizer`` (rule synthesis with support and conflicts), ``validation`` (replay
before release), ``versions`` (the version store), ``pairs``, ``llm`` (optional LLM
rule proposer), ``admin`` (operator actions) and ``processor`` (the stream processor).

What a rule is, the applier (the hook module template), rendering hook modules and
trusting releases are shared with the hook client: :mod:`stream.contract.hooks`.
"""

from stream.contract.hooks.generator import HookScriptGenerator

from .diff import DiffAnalysis, Edit, FeedbackDiffAnalyzer
from .processor import FeedbackProcessor
from .synthesizer import RuleSetSynthesizer, Synthesis
from .validation import ValidationReport, validate
from .versions import VersionStore

__all__ = [
    "DiffAnalysis", "Edit", "FeedbackDiffAnalyzer", "FeedbackProcessor", "HookScriptGenerator",
    "RuleSetSynthesizer", "Synthesis", "ValidationReport", "VersionStore", "validate",
]
