"""Bridge between VectorWave (the ``@vectorize`` execution logger) and vector-trainer.

- :mod:`.mapping`: a VectorWave execution record -> an ``ExecutionLog`` value (or why not).
- :mod:`.mirror`: :func:`mirror_executions`, the one-line opt-in that forwards every
  execution VectorWave writes to ``vt.executions`` in real time.
- :mod:`.backfill`: ``vector-trainer import vectorwave``, paging stored executions onto
  the topic with a persisted, resumable cursor.
- :mod:`.golden`: a processor registering ``vt.golden`` samples in VectorWave's golden dataset.

Importing this package does not import ``vectorwave`` (an optional extra); the
functions that need it import it lazily and say how to install it when missing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .mirror import ExecutionMirror

__all__ = ["mirror_executions"]


def mirror_executions(bootstrap: str | None = None, **kwargs: Any) -> ExecutionMirror:
    """Forward every execution VectorWave writes to ``vt.executions`` (see :func:`.mirror.mirror_executions`)."""
    from .mirror import mirror_executions as _mirror

    return _mirror(bootstrap, **kwargs)
