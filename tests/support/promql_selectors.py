"""Find the vector selectors in a PromQL expression (enough of a lexer for our rules/dashboards).

An alert expression such as ``sum(rate(x[5m])) > 3`` rightly returns nothing while
all is well, so "returns nothing" cannot be the test for it; instead every series
it reads (``x``) must exist.  This module lists those selectors.
"""

from __future__ import annotations

import re

_KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "offset", "bool", "atan2", "inf", "nan",
    # aggregation operators, which may be followed by "by (...)" rather than "("
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk", "quantile",
}
_TOKEN = re.compile(
    r"""
    (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<range>\[[^\]]*\])
  | (?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)
  | (?P<braces>\{[^}]*\})
  | (?P<number>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?[smhdwy]?)
  | (?P<other>\S)
    """,
    re.VERBOSE,
)


def selectors(expr: str) -> list[str]:
    """Vector selectors (metric name plus label matchers) in ``expr``, in order, deduplicated."""
    tokens = [(m.lastgroup, m.group()) for m in _TOKEN.finditer(expr)]
    out: list[str] = []
    i = 0
    while i < len(tokens):
        kind, text = tokens[i]
        nxt = tokens[i + 1] if i + 1 < len(tokens) else (None, "")
        if kind == "ident" and text in {"by", "without", "on", "ignoring", "group_left", "group_right"}:
            # skip the label list that follows: ( a, b )
            i += 1
            if i < len(tokens) and tokens[i][1] == "(":
                while i < len(tokens) and tokens[i][1] != ")":
                    i += 1
            i += 1
            continue
        if kind == "ident" and text not in _KEYWORDS and nxt[1] != "(":
            sel = text + (nxt[1] if nxt[0] == "braces" else "")
            if sel not in out:
                out.append(sel)
        elif kind == "braces" and (i == 0 or tokens[i - 1][0] != "ident"):
            if text not in out:
                out.append(text)  # {__name__=~"..."} form
        i += 1
    return out
