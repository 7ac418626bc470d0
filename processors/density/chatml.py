"""ChatML samples from real execution logs, and the text the embedder sees.

The user message is the function's real inputs, the assistant message its real
output; nothing is paraphrased.  Values of configured sensitive input keys are
masked (at any depth, case-insensitively) before a log is indexed or stored, so
they never reach a checkpoint, a vector or the golden topic.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import msgspec

from stream.contract.events import ChatMessage

MASK = "[MASKED]"

_json = msgspec.json.Encoder(order="deterministic")


def masker(keys: Iterable[str]) -> Callable[[Any], Any]:
    """A function that masks the values of ``keys`` in a JSON-like value (identity when no keys)."""
    wanted = frozenset(k.lower() for k in keys)

    def mask(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: (MASK if isinstance(k, str) and k.lower() in wanted else mask(v)) for k, v in value.items()}
        if isinstance(value, list):
            return [mask(v) for v in value]
        return value

    if not wanted:
        return lambda value: value
    return mask


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return _json.encode(value).decode("utf-8")


def render_inputs(inputs: dict[str, Any]) -> str:
    """The user message: a lone string input as it is, anything else as JSON."""
    if len(inputs) == 1:
        (only,) = inputs.values()
        if isinstance(only, str):
            return only
    return msgspec.json.encode(inputs).decode("utf-8")


def render_output(return_value: Any) -> str:
    """The assistant message: a string output as it is, anything else as JSON."""
    return _text(return_value)


def embedding_text(inputs: dict[str, Any], return_value: Any) -> str:
    """What the embedder reads: input values (keys sorted, names left out) and the output.

    Key names are the same in every call of a function, so they would only add a
    constant to every vector.
    """
    parts = [_text(inputs[k]) for k in sorted(inputs)]
    parts.append(_text(return_value))
    return "\n".join(parts)


def messages(system_prompt: str, function_name: str, inputs: dict[str, Any], return_value: Any) -> list[ChatMessage]:
    """system (configurable, ``{function}`` replaced), user = inputs, assistant = output."""
    out = []
    system = system_prompt.replace("{function}", function_name)
    if system:
        out.append(ChatMessage(role="system", content=system))
    out.append(ChatMessage(role="user", content=render_inputs(inputs)))
    out.append(ChatMessage(role="assistant", content=render_output(return_value)))
    return out
