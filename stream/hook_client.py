"""Where the hook client used to live; it is :mod:`stream.client.hook_client` now.

Kept so that services importing ``from stream.hook_client import HookClient`` keep working.
"""

from stream.client.hook_client import CALLBACK_ERROR, DECODE_ERROR, INTERNAL_ERROR, STALE_AFTER_S, ActiveHook, ClientHealth, HookClient

__all__ = ["CALLBACK_ERROR", "DECODE_ERROR", "INTERNAL_ERROR", "STALE_AFTER_S", "ActiveHook", "ClientHealth", "HookClient"]
