"""The Kafka side of hook administration (``vector-trainer hooks …``).

The feedback engine's admin functions (:mod:`processors.feedback.admin`) work on
records and releases; reading the hooks topic and publishing a release is done here.
"""

from __future__ import annotations

from processors.feedback.admin import sync_from_records
from processors.feedback.versions import VersionStore
from stream.contract.events import HookRelease, encode
from stream.contract.topics import HOOKS, TopicNames
from stream.runtime import kafka


async def sync_store(bootstrap: str, names: TopicNames, store: VersionStore, signing_key: str | None) -> tuple[int, int]:
    """Copy every trusted release still on the hooks topic into the store; (stored, refused)."""
    records = await kafka.read_topic(bootstrap, names.physical(HOOKS), idle_timeout=0.5)
    return sync_from_records(records, store, signing_key)


async def publish_release(bootstrap: str, names: TopicNames, release: HookRelease) -> None:
    """Put a release (e.g. a rollback) on the hooks topic, keyed by its function."""
    await kafka.publish(
        bootstrap, names.physical(HOOKS), release.function_name.encode("utf-8"), encode(release), client_id="vt-hooks-cli"
    )
