"""Topic names: the logical names, which topics are compacted, and the configured prefix.

Topics are addressed by a short *logical* name (``executions``) everywhere in the
code; the physical name adds the configured prefix (``vt.executions``).  Creating
them is the runtime's job (:func:`stream.runtime.kafka.ensure_topics`).
"""

from __future__ import annotations

from dataclasses import dataclass

EXECUTIONS = "executions"
FEEDBACK = "feedback"
GOLDEN = "golden"
HOOKS = "hooks"
TRAINING = "training"
MODELS = "models"
DLQ = "dlq"
CURATION = "curation"
# Every hook release ever made, key ``function_name/version`` (compacted: one record per version),
# so version history, diff and rollback need only the broker, not the disk of the instance that made them.
HOOK_HISTORY = "hooks.history"
# Processor state kept in Kafka so that a partition can move to an instance with an empty disk:
# ``state`` holds snapshot chunks, ``state.index`` one small record per snapshot naming its chunks
# (see stream.runtime.snapshots).  Partition p of both belongs to input partition p.
STATE = "state"
STATE_INDEX = "state.index"

ALL = (EXECUTIONS, FEEDBACK, GOLDEN, HOOKS, TRAINING, MODELS, DLQ, CURATION, HOOK_HISTORY, STATE, STATE_INDEX)
# curation: an operator's decision per golden key (reject or pin); a tombstone clears it.
COMPACTED = frozenset({GOLDEN, HOOKS, CURATION, HOOK_HISTORY, STATE, STATE_INDEX})
INPUTS = (EXECUTIONS, FEEDBACK, CURATION)
INTERNAL = (STATE, STATE_INDEX)  # the runtime's own; not events


@dataclass(frozen=True, slots=True)
class TopicNames:
    """Maps logical topic names to physical ones and back."""

    prefix: str = "vt."

    def physical(self, logical: str) -> str:
        if logical not in ALL:
            raise KeyError(f"unknown topic {logical!r}; known: {', '.join(ALL)}")
        return f"{self.prefix}{logical}"

    def logical(self, physical: str) -> str:
        if physical.startswith(self.prefix) and physical[len(self.prefix) :] in ALL:
            return physical[len(self.prefix) :]
        raise KeyError(f"{physical!r} is not one of vector-trainer's topics (prefix {self.prefix!r})")

    def resolve(self, name: str) -> str:
        """Accept either a logical or a physical name and return the physical one."""
        return self.physical(name) if name in ALL else self.physical(self.logical(name))

    def all(self) -> list[str]:
        return [self.physical(t) for t in ALL]


def topic_configs(logical: str) -> dict[str, str]:
    if logical in COMPACTED:
        # The compacted topics *are* the current golden set / current hook per function / current decisions /
        # every hook version / the newest snapshot of each partition's state (chunks in two alternating slots).
        return {"cleanup.policy": "compact"}
    return {"cleanup.policy": "delete"}

