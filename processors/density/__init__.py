"""Engine 1: incremental density index and golden-sample selection.

Modules, one job each: :mod:`.vectors` (normalisation, fixed-point similarities),
:mod:`.rangesearch` (range queries on hnswlib), :mod:`.index` (one function's
index and densities), :mod:`.selection` (steady and anomaly samples),
:mod:`.chatml` (samples from real inputs/outputs, masking), :mod:`.embedder`
(vectors for logs without one), :mod:`.engine` (one partition: batching,
evaluation points, eviction, emission, checkpoints, snapshots), :mod:`.processor`
(the stream processor) and :mod:`.extract` (the offline entry point).  Figures go
to a :class:`stream.contract.sensors.DensitySensor`.

What tools may read of a partition's state is a :class:`FunctionSnapshot`
(:func:`read_snapshot` of a checkpoint, :func:`indexed_functions`).
"""

from .engine import FunctionSnapshot
from .processor import DensityProcessor, indexed_functions, read_snapshot

__all__ = ["DensityProcessor", "FunctionSnapshot", "indexed_functions", "read_snapshot"]
