"""Supervision of background services (:class:`stream.contract.processing.Service`).

The runtime runs every service a processor asks for beside the consumer loop;
:func:`supervise` restarts one that raises or returns early, with back-off, until the
runtime stops.  A crash is logged and counted; it never takes the loop down.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from stream.contract.processing import Service, ServiceContext

log = logging.getLogger(__name__)


async def supervise(service: Service, ctx: ServiceContext, on_crash: Callable[[], None], backoff_s: float = 1.0) -> None:
    """Run ``service`` until the runtime stops, restarting it (with back-off) when it raises."""
    delay = backoff_s
    while not ctx.stopping.is_set():
        try:
            await service.run(ctx)
            if not ctx.stopping.is_set():
                log.warning("service %s returned before the runtime stopped; restarting it", service.name)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("service %s crashed; restarting it in %.1fs", service.name, delay)
            on_crash()
        if await ctx.sleep(delay):
            return
        delay = min(delay * 2, 60.0)
