"""Engine 2 commands: hook versions (list, show, diff, rollback, export) and offline synthesis."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import (
    Bootstrap,
    Prefix,
    Sets,
    StateDir,
    _need_bootstrap,
    app,
    console,
    load_settings,
    out,
)

hooks_app = typer.Typer(help="Prompt hooks: list, show, diff, roll back and export released versions.", no_args_is_help=True)
app.add_typer(hooks_app, name="hooks", rich_help_panel="Engines")

def _hook_store(state_dir: Optional[Path], bootstrap: Optional[str], topic_prefix: Optional[str]):  # type: ignore[no-untyped-def]
    """The version store under the state dir, first refreshed from the hooks topic when a broker is configured."""
    import os

    from processors.feedback.versions import VersionStore
    from stream.contract.hooks.release import SIGNING_KEY_ENV
    from stream.contract.topics import TopicNames
    from stream.tools.hooks import sync_store

    s = load_settings(state_dir=state_dir, bootstrap=bootstrap, topic_prefix=topic_prefix)
    store = VersionStore(s.state_dir / "hooks")
    if s.bootstrap is not None:
        try:
            stored, refused = asyncio.run(sync_store(s.bootstrap, TopicNames(s.topic_prefix), store, os.environ.get(SIGNING_KEY_ENV) or None))
        except LookupError as exc:
            console.print(f"[yellow]{exc}[/yellow]")
        else:
            if refused:
                console.print(f"[yellow]{refused} release(s) on the topic failed verification and were not stored[/yellow]")
    return s, store


def _fmt_pair(a: float, b: float) -> str:
    return f"{a:.3f} → {b:.3f}"


@hooks_app.command("list")
def hooks_list(
    function: Annotated[Optional[str], typer.Argument(help="Only this function.")] = None,
    state_dir: StateDir = None,
    bootstrap: Bootstrap = None,
    topic_prefix: Prefix = None,
) -> None:
    """Every stored hook version with its validation (exact match and similarity, before → after)."""
    from rich.table import Table

    _s, store = _hook_store(state_dir, bootstrap, topic_prefix)
    functions = [function] if function else store.functions()
    table = Table("function", "version", "parent", "rules", "pairs (held out)", "exact", "held-out exact", "held-out similarity", "created", "note")
    for fn in functions:
        for v in store.summaries(fn):
            note = f"rollback to v{v['rollback_of']}" if v.get("rollback_of") else ""
            table.add_row(
                fn, str(v["version"]), str(v.get("parent_version") or "-"), str(v["rules"]), f"{v['pairs']} ({v['heldout_pairs']})",
                _fmt_pair(*v["exact_match"]), _fmt_pair(*v["heldout_exact_match"]), _fmt_pair(*v["heldout_similarity"]),
                v["created_at"][:19], note,
            )
    if not table.row_count:
        console.print("no hook versions stored (give --bootstrap to read them from the hooks topic)")
        return
    out.print(table)


@hooks_app.command("show")
def hooks_show(
    function: Annotated[str, typer.Argument(help="Function name.")],
    version: Annotated[Optional[int], typer.Option("--version", "-v", help="Version (default: newest).")] = None,
    state_dir: StateDir = None,
    bootstrap: Bootstrap = None,
    topic_prefix: Prefix = None,
) -> None:
    """One version: its rules with their support, the prompt instructions, validation and digest."""
    from processors.feedback.ruleset import describe

    _s, store = _hook_store(state_dir, bootstrap, topic_prefix)
    try:
        release = store.get(function, version)
    except KeyError as exc:
        console.print(f"[red]{exc.args[0]}[/red]")
        raise typer.Exit(1) from None
    v = release.validation
    out.print(f"[bold]{release.function_name}[/bold] v{release.version} (parent {release.parent_version or '-'}"
              + (f", rollback to v{release.rollback_of}" if release.rollback_of else "") + f"), created {release.created_at.isoformat()}")
    out.print(f"sha256 {release.sha256}  signed: {'yes' if release.signature else 'no'}")
    out.print(f"validation on {v.pairs} pairs ({v.heldout_pairs} held out): exact {_fmt_pair(v.exact_match_before, v.exact_match_after)}, "
              f"similarity {_fmt_pair(v.similarity_before, v.similarity_after)}; held-out exact "
              f"{_fmt_pair(v.heldout_exact_match_before, v.heldout_exact_match_after)}, similarity "
              f"{_fmt_pair(v.heldout_similarity_before, v.heldout_similarity_after)}")
    out.print(f"rules ({len(release.rules)}):")
    for rule in release.rules:
        out.print(f"  {describe(rule)}", markup=False)
    for rule in release.vetoed:
        out.print(f"  vetoed: {describe(rule)}", markup=False)


@hooks_app.command("diff")
def hooks_diff(
    function: Annotated[str, typer.Argument(help="Function name.")],
    a: Annotated[int, typer.Argument(help="Older version.")],
    b: Annotated[int, typer.Argument(help="Newer version.")],
    state_dir: StateDir = None,
    bootstrap: Bootstrap = None,
    topic_prefix: Prefix = None,
) -> None:
    """Rules added (+), removed (-) and kept between two versions."""
    _s, store = _hook_store(state_dir, bootstrap, topic_prefix)
    try:
        diff = store.diff(function, a, b)
    except KeyError as exc:
        console.print(f"[red]{exc.args[0]}[/red]")
        raise typer.Exit(1) from None
    for line in diff.lines():
        out.print(line, markup=False)


@hooks_app.command("rollback")
def hooks_rollback(
    function: Annotated[str, typer.Argument(help="Function name.")],
    to: Annotated[int, typer.Option("--to", help="The version whose rules to restore.")],
    state_dir: StateDir = None,
    bootstrap: Bootstrap = None,
    topic_prefix: Prefix = None,
) -> None:
    """Publish the rules of an older version as a new version.

    The rules it drops are vetoed (the processor will not synthesise them again).
    """
    import os

    from processors.feedback.admin import rollback_release
    from stream.contract.hooks.release import SIGNING_KEY_ENV
    from stream.contract.topics import TopicNames
    from stream.tools.hooks import publish_release

    s, store = _hook_store(state_dir, bootstrap, topic_prefix)
    bootstrap_ = _need_bootstrap(s)
    try:
        release = rollback_release(store, function, to, os.environ.get(SIGNING_KEY_ENV) or None)
    except (KeyError, ValueError) as exc:
        console.print(f"[red]{exc.args[0]}[/red]")
        raise typer.Exit(1) from None
    asyncio.run(publish_release(bootstrap_, TopicNames(s.topic_prefix), release))
    store.put(release)
    out.print(f"published {function} v{release.version} with the {len(release.rules)} rules of v{to}; {len(release.vetoed)} rule(s) vetoed")


@hooks_app.command("export")
def hooks_export(
    function: Annotated[str, typer.Argument(help="Function name.")],
    out_path: Annotated[Path, typer.Option("--out", "-o", help="Where to write the module.")] = Path("generated_prompt_hook.py"),
    version: Annotated[Optional[int], typer.Option("--version", "-v", help="Version (default: newest).")] = None,
    state_dir: StateDir = None,
    bootstrap: Bootstrap = None,
    topic_prefix: Prefix = None,
) -> None:
    """Write a version's generated_prompt_hook.py (after checking its digest and, with a key, its signature)."""
    import os

    from stream.contract.hooks.generator import HookScriptGenerator
    from stream.contract.hooks.release import (
        SIGNING_KEY_ENV,
        ReleaseError,
        verify_release,
    )

    _s, store = _hook_store(state_dir, bootstrap, topic_prefix)
    try:
        release = store.get(function, version)
        verify_release(release, HookScriptGenerator(), os.environ.get(SIGNING_KEY_ENV) or None)
    except KeyError as exc:
        console.print(f"[red]{exc.args[0]}[/red]")
        raise typer.Exit(1) from None
    except ReleaseError as exc:
        console.print(f"[red]stored release failed verification:[/red] {exc}")
        raise typer.Exit(1) from None
    out_path.write_text(release.module_source, encoding="utf-8")
    out.print(f"wrote {out_path} ({function} v{release.version}, sha256 {release.sha256[:12]}…)")


@app.command(rich_help_panel="Engines")
def synthesize(
    pairs: Annotated[Path, typer.Option("--pairs", help="JSON lines: {\"bad_output\": …, \"fixed_output\": …} per line.")],
    out_path: Annotated[Path, typer.Option("--out", "-o", help="Where to write the module.")] = Path("generated_prompt_hook.py"),
    function: Annotated[Optional[str], typer.Option("--function", help="Function name recorded in the module.")] = None,
    sets: Sets = None,
) -> None:
    """Offline: feedback pairs in, a validated generated_prompt_hook.py out.

    The seed's batch use.  Settings such as -c feedback.min_support=5 apply.
    """
    from processors.feedback.admin import PairsFileError, read_pairs, synthesize_offline
    from processors.feedback.ruleset import describe

    s = load_settings(sets=sets)
    try:
        loaded, functions = read_pairs(pairs)
    except (OSError, PairsFileError) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    name = function or (next(iter(functions)) if len(functions) == 1 else "default")
    result = synthesize_offline(loaded, name, s.feedback)
    out.print(f"{len(loaded)} pairs, {result.synthesis.train_pairs} used for synthesis; {len(result.synthesis.rules)} rules:")
    for rule in result.synthesis.rules:
        out.print(f"  {describe(rule)}", markup=False)
    out.print(f"validation: {result.report.summary()}")
    if result.module_source is None:
        console.print(f"[red]not written: validation refused the rules ({result.report.reason})[/red]")
        raise typer.Exit(1)
    out_path.write_text(result.module_source, encoding="utf-8")
    out.print(f"wrote {out_path}")


