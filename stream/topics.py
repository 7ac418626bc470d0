"""Topic names and idempotent topic creation.

Topics are addressed by a short *logical* name (``executions``) everywhere in the
code; the physical name adds the configured prefix (``vt.executions``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

log = logging.getLogger(__name__)

EXECUTIONS = "executions"
FEEDBACK = "feedback"
GOLDEN = "golden"
HOOKS = "hooks"
TRAINING = "training"
MODELS = "models"
DLQ = "dlq"

ALL = (EXECUTIONS, FEEDBACK, GOLDEN, HOOKS, TRAINING, MODELS, DLQ)
COMPACTED = frozenset({GOLDEN, HOOKS})
INPUTS = (EXECUTIONS, FEEDBACK)


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
        # The compacted topics *are* the current golden set / current hook per function.
        return {"cleanup.policy": "compact"}
    return {"cleanup.policy": "delete"}


async def ensure_topics(
    bootstrap: str,
    names: TopicNames,
    partitions: int,
    replication_factor: int = 1,
    client_id: str = "vector-trainer-admin",
) -> dict[str, str]:
    """Create any missing topic; return ``{physical name: "created" | "exists"}``.

    Idempotent: a topic that already exists is left as it is (its partition count is
    not changed, since that would move keys between partitions).
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id=client_id)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(names.physical(t), partitions, replication_factor, topic_configs=topic_configs(t))
            for t in ALL
            if names.physical(t) not in existing
        ]
        result = {names.physical(t): "exists" for t in ALL if names.physical(t) in existing}
        if wanted:
            try:
                response = await admin.create_topics(wanted)
            except TopicAlreadyExistsError:
                response = None
            errors = {t: (code, msg) for t, code, msg in getattr(response, "topic_errors", [])}
            for topic in wanted:
                code, msg = errors.get(topic.name, (0, None))
                if code == 0:
                    result[topic.name] = "created"
                    log.info("created topic %s (%d partitions)", topic.name, partitions)
                elif code == TopicAlreadyExistsError.errno:
                    result[topic.name] = "exists"
                else:
                    raise RuntimeError(f"could not create topic {topic.name}: error {code} {msg or ''}".strip())
        return result
    finally:
        await admin.close()
