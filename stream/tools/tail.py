"""``vector-trainer tail``: a topic's records, decoded and readable."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

from rich.console import Console
from rich.json import JSON
from rich.text import Text

from stream.runtime.kafka import follow_topic


def describe_value(value: bytes | None) -> object:
    """The value as JSON when it is JSON (with a dead letter's payload shown), else a short repr."""
    if value is None:
        return None
    try:
        obj = json.loads(value)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return {"_undecodable": repr(value[:200]), "_bytes": len(value)}
    if isinstance(obj, dict) and "value_b64" in obj:
        raw = base64.b64decode(obj["value_b64"])
        obj["value_preview"] = raw[:300].decode("utf-8", errors="replace")
        obj.pop("value_b64")
    return obj


async def tail_topic(
    bootstrap: str, topic: str, console: Console, *, follow: bool, from_end: bool, limit: int | None, raw: bool
) -> int:
    shown = 0
    async for record in follow_topic(bootstrap, topic, from_beginning=not from_end, follow=follow):
        if raw:
            console.print(Text((record.value or b"null").decode("utf-8", errors="replace")), soft_wrap=True)
        else:
            ts = datetime.fromtimestamp(record.timestamp / 1000, UTC).isoformat(timespec="milliseconds")
            key = record.key.decode("utf-8", errors="replace") if record.key else "-"
            header = Text(f"{topic}[{record.partition}]@{record.offset}  {ts}  key={key}", style="bold cyan")
            console.print(header)
            value = describe_value(record.value)
            console.print(Text("(tombstone)", style="dim") if value is None else JSON.from_data(value))
        shown += 1
        if limit is not None and shown >= limit:
            break
    return shown
