"""Rendering ``generated_prompt_hook.py`` (the seed's ``HookScriptGenerator``).

The module is the template :mod:`stream.contract.hooks.template` with exactly
three lines changed: ``FUNCTION_NAME``, ``VERSION`` and ``_RULES_JSON`` get literal
values.  Strings are written with :func:`repr` of ASCII-only JSON, so no feedback
text can ever become code: whatever quotes, backslashes, newlines or
``__import__`` it holds, it stays inside one string literal.  Every render is
checked: the result must parse and its AST must equal the template's once those
three values are blanked.  :meth:`HookScriptGenerator.extract` reads the data back
without executing anything.

Checking a received release needs no parser at all (:meth:`HookScriptGenerator.is_rendering_of`):
the module must be, character for character, what the template renders from the
release's own data.  That keeps the runtime hook client away from ``ast.parse``,
which CPython 3.11 cannot run in two threads at once (``SystemError: AST
constructor recursion depth mismatch``); the parses that remain here take one
process-wide lock for the same reason.
"""

from __future__ import annotations

import ast
import json
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stream.contract.hooks.rules import Rule, from_data, to_data

TEMPLATE_PATH = Path(__file__).with_name("template.py")
# Every template version ever rendered, frozen as package data (``v1.py.txt``, ``v2.py.txt``, …): a
# release is verified against the version its module names, so changing the template never
# breaks the verification of releases already published.  ``template.py`` is the newest one.
TEMPLATES_DIR = Path(__file__).with_name("templates")
_VERSION_LINE = re.compile(r"^TEMPLATE_VERSION = (\d{1,6})$", re.MULTILINE)
DATA_NAMES = ("FUNCTION_NAME", "VERSION", "_RULES_JSON")
_LINES = {
    "FUNCTION_NAME": ('FUNCTION_NAME = ""', "  # data: the function these rules were learnt for"),
    "VERSION": ("VERSION = 0", "  # data: the release version"),
    "_RULES_JSON": ('_RULES_JSON = "[]"', "  # data: the rules, as JSON"),
}


# CPython 3.11's ast.parse is not safe in two threads at once; every parse in this module takes it.
_PARSE_LOCK = threading.Lock()


def _parse(source: str) -> ast.Module:
    with _PARSE_LOCK:
        return ast.parse(source)


class HookModuleError(ValueError):
    """A module is not a rendering of the hook template (or a render went wrong)."""


@dataclass(frozen=True, slots=True)
class HookData:
    function_name: str
    version: int
    rules_json: str

    def rules(self) -> list[dict[str, Any]]:
        return json.loads(self.rules_json)  # type: ignore[no-any-return]


def rules_json(rules: list[Rule]) -> str:
    """Canonical, ASCII-only JSON of the rules (what the module embeds)."""
    return json.dumps(to_data(rules), ensure_ascii=True, sort_keys=True, separators=(",", ":"))


def _blank(tree: ast.Module) -> str:
    """The AST dump with the data assignments' values replaced by a placeholder."""
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            if node.targets[0].id in DATA_NAMES:
                node.value = ast.Constant(value=None)
    return ast.dump(tree, include_attributes=False)


def _data_assignments(tree: ast.Module) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if name in DATA_NAMES:
                if name in found or not isinstance(node.value, ast.Constant):
                    raise HookModuleError(f"{name} must be assigned exactly once, to a literal")
                found[name] = node.value.value
    missing = set(DATA_NAMES) - set(found)
    if missing:
        raise HookModuleError(f"module lacks {', '.join(sorted(missing))}")
    return found


def template_version_of(source: str) -> int:
    """The template version a module (or a template) was written with: its ``TEMPLATE_VERSION``
    line, or 1 for modules of the first template, which had none.  A text scan, no parser; the
    data lines cannot fake it (they are one-line ASCII literals)."""
    match = _VERSION_LINE.search(source)
    return int(match.group(1)) if match else 1


def frozen_template(version: int) -> str | None:
    """The frozen text of template ``version`` (None if this install does not know it)."""
    path = TEMPLATES_DIR / f"v{int(version)}.py.txt"
    return path.read_text(encoding="utf-8") if version >= 1 and path.is_file() else None


class HookScriptGenerator:
    """Renders, verifies and reads hook modules (renders always with its own template; verifies and
    reads any known template version through :meth:`for_version`)."""

    def __init__(self, template_path: Path = TEMPLATE_PATH, *, text: str | None = None) -> None:
        self.template = text if text is not None else template_path.read_text(encoding="utf-8")
        self.template_version = template_version_of(self.template)
        self._versions: dict[int, HookScriptGenerator] = {self.template_version: self}
        self._dump: str | None = None  # the template's blanked AST, parsed on the first verify()
        for line, comment in _LINES.values():
            if self.template.count(f"\n{line}{comment}\n") != 1:
                raise HookModuleError(f"the template must hold the line {line!r} exactly once")

    def for_version(self, version: int) -> HookScriptGenerator:
        """A generator for frozen template ``version`` (this one for its own); HookModuleError if unknown."""
        found = self._versions.get(version)
        if found is None:
            text = frozen_template(version)
            if text is None:
                raise HookModuleError(f"unknown hook template version {version}")
            found = self._versions[version] = HookScriptGenerator(text=text)
        return found

    def for_source(self, source: str) -> HookScriptGenerator:
        """The generator of the template version ``source`` names (see :func:`template_version_of`)."""
        return self.for_version(template_version_of(source))

    def render_text(self, function_name: str, version: int, rules_json_text: str) -> str:
        """The template with the three data lines filled in: string replacement only, no parsing."""
        # ascii() is repr() with every non-ASCII character escaped: a literal that round-trips exactly.
        values = {"FUNCTION_NAME": ascii(function_name), "VERSION": str(int(version)), "_RULES_JSON": ascii(rules_json_text)}
        source = self.template
        for name, (line, comment) in _LINES.items():
            left = line.split(" = ", 1)[0]
            source = source.replace(f"\n{line}{comment}\n", f"\n{left} = {values[name]}{comment}\n", 1)
        return source

    def is_rendering_of(self, source: str, function_name: str, version: int, rules_json_text: str) -> bool:
        """True when ``source`` is exactly what :meth:`render_text` gives for this data (thread-safe, no parser)."""
        return source == self.render_text(function_name, version, rules_json_text)

    def render(self, function_name: str, version: int, rules: list[Rule]) -> str:
        """The module source for one release; raises if the result is not the template plus data."""
        source = self.render_text(function_name, version, rules_json(rules))
        self.verify(source)
        data = self.extract(source)
        if (data.function_name, data.version, data.rules_json) != (function_name, version, rules_json(rules)):
            raise HookModuleError("rendered module does not round-trip its data")
        return source

    def verify(self, source: str) -> None:
        """Raise unless ``source`` is the template with only the data literals changed."""
        try:
            tree = _parse(source)
        except SyntaxError as exc:
            raise HookModuleError(f"module does not parse: {exc.msg} (line {exc.lineno})") from None
        _data_assignments(tree)
        if self._dump is None:
            self._dump = _blank(_parse(self.template))
        if _blank(tree) != self._dump:
            raise HookModuleError("module code differs from the hook template")
        expected = self.template.splitlines()
        got = source.splitlines()
        data_lines = {line for line, _ in _LINES.values()}
        if len(got) != len(expected) or any(
            g != e for g, e in zip(got, expected, strict=True) if e.split("  #", 1)[0] not in data_lines
        ):
            raise HookModuleError("module text differs from the hook template outside the data lines")

    def extract(self, source: str) -> HookData:
        """The data of a module, read from its AST (never executed)."""
        try:
            tree = _parse(source)
        except SyntaxError as exc:
            raise HookModuleError(f"module does not parse: {exc.msg}") from None
        found = _data_assignments(tree)
        fn, version, rules = found["FUNCTION_NAME"], found["VERSION"], found["_RULES_JSON"]
        if not isinstance(fn, str) or not isinstance(rules, str) or not isinstance(version, int) or isinstance(version, bool):
            raise HookModuleError("FUNCTION_NAME and _RULES_JSON must be strings, VERSION an integer")
        return HookData(fn, version, rules)

    def rules_of(self, source: str) -> list[Rule]:
        """The typed rules a module holds (validated strictly)."""
        return from_data(self.extract(source).rules())
