"""Which partition an output record goes to: one function, one partition.

Keys are ``function_name`` on most topics but ``function_name/uuid`` on the golden
topic.  Kafka's default partitioner hashes the whole key, which would scatter one
function's golden samples over every partition, so no single instance would see a
function's whole golden set (and two instances could each start a training job for
it).  :func:`function_partitioner` hashes only the part before the first ``/``: for
keys without a ``/`` it is exactly Kafka's default (murmur2, as the Java client), so
foreign producers and consumers agree with it.
"""

from __future__ import annotations

import random

from aiokafka.partitioner import murmur2


def function_partition(key: bytes, partitions: int) -> int:
    """The partition (0-based index) of a key among ``partitions`` partitions."""
    head = key.split(b"/", 1)[0]
    return (murmur2(head) & 0x7FFFFFFF) % partitions


def function_partitioner(key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
    """aiokafka partitioner: hash the function-name part of the key (see the module docstring)."""
    if key is None:
        return random.choice(available or all_partitions)
    return all_partitions[function_partition(key, len(all_partitions))]
