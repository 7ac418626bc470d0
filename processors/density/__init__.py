"""Engine 1: incremental density index and golden-sample selection.

Modules, one job each: :mod:`.vectors` (normalisation, fixed-point similarities),
:mod:`.rangesearch` (range queries on hnswlib), :mod:`.index` (one function's
index and densities), :mod:`.selection` (steady and anomaly samples),
:mod:`.chatml` (samples from real inputs/outputs, masking), :mod:`.embedder`
(vectors for logs without one), :mod:`.engine` (one partition: batching,
evaluation points, eviction, emission, checkpoints), :mod:`.metrics`,
:mod:`.processor` (the stream processor) and :mod:`.extract` (the offline entry point).
"""

from .processor import DensityProcessor

__all__ = ["DensityProcessor"]
