"""One vector dimension per function: the first vector seen fixes it."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class DimensionGuard:
    """Remembers each function's vector dimension and says when a vector does not fit."""

    fixed: int | None = None  # a deployment-wide dimension, when configured
    dims: dict[str, int] = field(default_factory=dict)

    def check(self, function_name: str, dim: int) -> str | None:
        """None when ``dim`` fits (recording it if it is the first), else the reason why not."""
        expected = self.fixed if self.fixed is not None else self.dims.get(function_name)
        if expected is None:
            self.dims[function_name] = dim
            return None
        if dim != expected:
            return f"vector has {dim} dimensions but {function_name!r} uses {expected} - at `$.vector`"
        self.dims.setdefault(function_name, dim)
        return None

    def forget(self, function_name: str) -> None:
        self.dims.pop(function_name, None)
