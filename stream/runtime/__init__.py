"""The Kafka runtime: the consumer loop and everything it needs to run processors.

:mod:`.loop` (fetch → decode → process on the worker thread → produce → checkpoint),
:mod:`.checkpointer` (flush outputs → save state → commit offsets), :mod:`.statestore`
(per-partition state on disk, written atomically), :mod:`.services` (background tasks
beside the loop), :mod:`.kafka` (every Kafka client, built in one place),
:mod:`.partitioning`, :mod:`.metrics` (Prometheus, /metrics /healthz /ready),
:mod:`.sensors` (the engines' sensors as Prometheus metrics) and :mod:`.broker`
(the embedded broker launcher).

Importing this package imports none of them.
"""
