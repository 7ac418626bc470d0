"""Where the hook client used to live; it is :mod:`stream.client.hook_client` now.

Kept so that services importing ``from stream.hook_client import HookClient`` keep working.
"""

from stream.client.hook_client import DECODE_ERROR, ActiveHook, HookClient

__all__ = ["DECODE_ERROR", "ActiveHook", "HookClient"]
