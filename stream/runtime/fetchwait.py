"""A longer broker-side fetch wait while the consumer is idle, the short one while records flow.

A fetch with nothing to return is held by the broker for ``fetch_max_wait_ms`` and then
asked again.  The short wait the runtime uses for latency (the embedded broker answers a
held fetch late even when records arrive meanwhile) makes an instance with no traffic send
~20 fetches a second, each ~1 ms of CPU in aiokafka's protocol code: an instance whose
partitions are quiet (more instances than busy partitions, low-traffic functions, nights)
burns CPU for nothing.  After :data:`QUIET_S` without a record the wait becomes
``idle_fetch_max_wait_ms``; the first record brings it back.

aiokafka fixes the wait when the consumer is made and has no setter: the fetcher's attribute
is changed in place, and where a later aiokafka has no such attribute this does nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

QUIET_S = 1.0  # seconds without a record before the consumer counts as idle


class FetchWait:
    """Switches one started consumer's fetch wait between ``busy_ms`` and ``idle_ms`` as records come and stop."""

    def __init__(self, consumer: Any, busy_ms: int, idle_ms: int, clock: Callable[[], float] = time.monotonic) -> None:
        fetcher = getattr(consumer, "_fetcher", None)  # noqa: SLF001 - aiokafka has no setter for the wait
        self._fetcher = fetcher if hasattr(fetcher, "_fetch_max_wait_ms") else None
        self.enabled = idle_ms > busy_ms and self._fetcher is not None
        if idle_ms > busy_ms and self._fetcher is None:
            log.info("this aiokafka has no fetch wait to change; idle fetches stay at %d ms", busy_ms)
        self._busy_ms, self._idle_ms = busy_ms, idle_ms
        self._clock = clock
        self._last_record = clock()
        self.idle = False

    def saw(self, records: int) -> None:
        """Called after each poll with the number of records it returned."""
        if not self.enabled:
            return
        now = self._clock()
        if records:
            self._last_record = now
            if self.idle:
                self._set(self._busy_ms, idle=False)
        elif not self.idle and now - self._last_record >= QUIET_S:
            self._set(self._idle_ms, idle=True)

    def _set(self, wait_ms: int, *, idle: bool) -> None:
        self._fetcher._fetch_max_wait_ms = wait_ms  # type: ignore[union-attr]  # noqa: SLF001
        self.idle = idle
