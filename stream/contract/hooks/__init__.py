"""Prompt hooks as data, shared by the feedback engine and the hook client.

* :mod:`.rules` — what a rule is: typed structs (the ``rules`` of a ``HookRelease``);
* :mod:`.template` — how rules are applied: the fixed code of every generated
  ``generated_prompt_hook.py``, standard library only;
* :mod:`.generator` — rendering, verifying and reading hook modules (never executing them);
* :mod:`.release` — digests, signatures and the checks a release must pass to be trusted.
"""
