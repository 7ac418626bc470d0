"""The Kafka side of hook administration (``vector-trainer hooks …``).

The feedback engine's admin functions (:mod:`processors.feedback.admin`) work on
records and releases; reading the hooks topic and publishing a release is done here.
"""

from __future__ import annotations

from processors.feedback.admin import sync_from_records
from processors.feedback.versions import VersionStore
from stream.contract.events import HookRelease, encode
from stream.contract.hooks.release import history_key
from stream.contract.topics import HOOK_HISTORY, HOOKS, TopicNames
from stream.runtime import kafka


async def sync_store(bootstrap: str, names: TopicNames, store: VersionStore, signing_key: str | None) -> tuple[int, int]:
    """Copy every trusted release on the hooks history topic (every version) and the hooks topic (the
    current one per function) into the store; (stored, refused).  A missing history topic (a deployment
    older than it) is skipped: then only the current versions are found."""
    try:
        history = await kafka.read_topic(bootstrap, names.physical(HOOK_HISTORY), idle_timeout=0.5)
    except LookupError:
        history = []
    current = await kafka.read_topic(bootstrap, names.physical(HOOKS), idle_timeout=0.5)
    stored, refused = sync_from_records(history, store, signing_key)
    more, refused_more = sync_from_records(current, store, signing_key)
    return stored + more, refused + refused_more


async def publish_release(bootstrap: str, names: TopicNames, release: HookRelease) -> None:
    """Put a release (e.g. a rollback) on the hooks history topic, then on the hooks topic (the one
    services and processors follow), each acknowledged before the next."""
    value = encode(release)
    await kafka.publish(
        bootstrap, names.physical(HOOK_HISTORY), history_key(release.function_name, release.version), value, client_id="vt-hooks-cli"
    )
    await kafka.publish(bootstrap, names.physical(HOOKS), release.function_name.encode("utf-8"), value, client_id="vt-hooks-cli")
