"""``verify``, ``gc`` and ``compact``: checking and tidying codebases."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click
from rich.table import Table
from rich.text import Text

from .. import integrity, layout
from ..error_codes import (
    EXIT_PROBLEMS,
    exit_code_for,
)
from ..errors import (
    CorruptObjectError,
    DocumeeRemoteError,
    NotFoundError,
)
from ._app import (
    _F,
    CliState,
    _command,
    pass_state,
    require_store,
)
from ._output import (
    _codebase_not_found,
    _emit_json,
    _right,
    _spinner,
    _table,
)
from .ls_show import summarise_codebases

if TYPE_CHECKING:
    from ..integrity import VerifyReport
    from ..manager import PersistenceManager

_R = TypeVar("_R")

# -- verify, gc, compact ---------------------------------------------------------------------------


def _codebases_to_check(
    state: CliState, pm: PersistenceManager, codebase_id: str | None
) -> list[str]:
    if codebase_id is not None:
        layout.validate_codebase_id(codebase_id)
        if next(iter(pm.store.list(layout.codebase_prefix(codebase_id))), None) is None:
            _codebase_not_found(state, pm, codebase_id)
        return [codebase_id]
    return [s.codebase_id for s in summarise_codebases(pm.store.list_meta(""))]


def _grace_seconds_option(help_text: str) -> Callable[[_F], _F]:
    """``--grace-seconds``, defaulting to the library's grace (verify's and gc's alike)."""
    return click.option(
        "--grace-seconds",
        type=float,
        default=integrity.DEFAULT_GRACE_SECONDS,
        show_default=True,
        help=help_text,
    )


@_command("verify")
@click.argument("codebase_id", metavar="[ID]", required=False)
@click.option("--repair", is_flag=True, help="Fix what can be fixed from analysis.json.")
@_grace_seconds_option("Orphaned per-file objects younger than this may be a merge in flight.")
@click.option(
    "--all",
    "show_all",
    is_flag=True,
    help="List every finding (default: the first 10 of each kind).",
)
@pass_state
def verify_command(
    state: CliState, codebase_id: str | None, repair: bool, grace_seconds: float, show_all: bool
) -> None:
    """Check a codebase's invariants (every codebase's, without ID).

    analysis.json parses; every per-file object matches its entry in
    analysis.json; file_hashes.json claims no file analysis.json lacks.
    Exits 1 when a problem is left (after --repair: one it could not fix).
    """
    reports: list[VerifyReport] = []
    with state.manager() as pm:
        require_store(pm.store)
        for cid in _codebases_to_check(state, pm, codebase_id):
            with _spinner(state, f"verifying {cid}"):
                reports.append(pm.verify(cid, repair=repair, grace_seconds=grace_seconds))
    ok = all(r.ok for r in reports)
    if state.json:
        _emit_json({"ok": ok, "repair": repair, "codebases": [r.to_dict() for r in reports]})
    else:
        _print_verify(state, reports, repair=repair, show_all=show_all)
    if not ok:
        raise click.exceptions.Exit(EXIT_PROBLEMS)


def _print_verify(
    state: CliState, reports: list[VerifyReport], *, repair: bool, show_all: bool
) -> None:
    out = state.out
    for report in reports:
        findings = list(report.findings)
        status = "ok" if report.ok else "PROBLEMS"
        style = "green" if report.ok else "red"
        repaired = sum(1 for f in findings if f.repaired)
        line = Text(f"{report.codebase_id}: ", style="bold")
        line.append(status, style=style)
        line.append(f" ({report.files_checked} files checked, {len(findings)} finding(s)")
        if repair:
            line.append(f", {repaired} repaired")
        line.append(")")
        out.print(line)
        if not findings:
            continue
        table = _table("kind", "key / file", "detail", "repaired")
        shown: dict[str, int] = {}
        hidden = 0
        for f in findings:
            kind = str(f.kind)
            shown[kind] = shown.get(kind, 0) + 1
            if not show_all and shown[kind] > 10:
                hidden += 1
                continue
            table.add_row(
                Text(kind),
                Text(f.file_path or f.key),
                Text(f.detail),
                Text("yes" if f.repaired else "no", style="green" if f.repaired else "red"),
            )
        out.print(table)
        if hidden:
            out.print(Text(f"... and {hidden} more (use --all or --json)"))


def _each_codebase(
    state: CliState,
    codebase_id: str | None,
    what: str,
    run: Callable[[PersistenceManager, str], _R],
) -> tuple[list[_R], list[tuple[str, DocumeeRemoteError]]]:
    """``run(pm, cid)`` on the codebase (every codebase's, for None).

    With several codebases, one failing does not stop the others: its error is
    returned beside the results.
    """
    results: list[_R] = []
    failures: list[tuple[str, DocumeeRemoteError]] = []
    with state.manager() as pm:
        ids = _codebases_to_check(state, pm, codebase_id)
        for cid in ids:
            with _spinner(state, f"{what} {cid}"):
                try:
                    results.append(run(pm, cid))
                except (CorruptObjectError, NotFoundError) as exc:
                    if len(ids) == 1:
                        raise
                    failures.append((cid, exc))
    return results, failures


def _each_codebase_output(
    state: CliState,
    document: dict[str, Any],
    table: Table,
    failures: list[tuple[str, DocumeeRemoteError]],
) -> None:
    """Print ``document`` (with ``ok`` and ``errors`` added) or ``table`` and the failures.

    Exits with the worst failure's code, if any.
    """
    if state.json:
        errors = [
            {"codebase_id": cid, "type": type(exc).__name__, "message": str(exc)}
            for cid, exc in failures
        ]
        _emit_json({"ok": not failures, **document, "errors": errors})
    else:
        state.out.print(table)
        for cid, exc in failures:
            click.echo(f"error: {cid}: skipped: {exc}", err=True)
    if failures:
        raise click.exceptions.Exit(max(exit_code_for(exc) for _, exc in failures))


@_command("gc")
@click.argument("codebase_id", metavar="[ID]", required=False)
@_grace_seconds_option("Keep unreferenced objects younger than this (a merge may be in flight).")
@click.option("--dry-run", is_flag=True, help="Only report what would be removed; delete nothing.")
@pass_state
def gc_command(
    state: CliState, codebase_id: str | None, grace_seconds: float, dry_run: bool
) -> None:
    """Remove per-file objects no analysis.json entry refers to (every codebase's, without ID).

    A codebase whose analysis.json is unreadable is skipped (nothing can be
    known to be garbage) and reported; the exit code is then 6.
    """
    reports, failures = _each_codebase(
        state,
        codebase_id,
        "collecting garbage in",
        lambda pm, cid: pm.gc(cid, grace_seconds=grace_seconds, dry_run=dry_run),
    )
    table = _table(
        "codebase",
        _right("would remove" if dry_run else "removed"),
        _right("kept (too young)"),
        title="gc (dry run: nothing removed)" if dry_run else "gc",
    )
    for r in reports:
        table.add_row(Text(r.codebase_id), str(len(r.removed)), str(len(r.kept_young)))
    document = {"dry_run": dry_run, "codebases": [r.to_dict() for r in reports]}
    _each_codebase_output(state, document, table, failures)


@_command("compact")
@click.argument("codebase_id", metavar="[ID]", required=False)
@pass_state
def compact_command(state: CliState, codebase_id: str | None) -> None:
    """Fold a codebase's journal into analysis.json (every codebase's, without ID)."""
    reports, failures = _each_codebase(
        state, codebase_id, "compacting", lambda pm, cid: pm.compact(cid)
    )
    docs = [r.to_dict() for r in reports]
    table = _table(
        "codebase",
        _right("folded"),
        _right("watermark"),
        _right("commit"),
        "analysis.json",
        _right("deltas removed"),
        _right("kept (too young)"),
        _right("attempts"),
        title="compact",
    )
    for doc in docs:
        table.add_row(
            Text(str(doc.get("codebase_id", "?"))),
            str(doc.get("folded", "-")),
            str(doc.get("watermark", "-")),
            str(doc.get("commit", "-")),
            "written" if doc.get("analysis_written") else "unchanged",
            str(doc.get("deleted", "-")),
            str(doc.get("kept_young", "-")),
            str(doc.get("attempts", "-")),
        )
    _each_codebase_output(state, {"codebases": docs}, table, failures)
