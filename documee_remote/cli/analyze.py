"""``analyze``: run an analyser over a source tree and merge into the store."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from .. import layout
from ..error_codes import (
    EXIT_FILES_FAILED,
    EXIT_NOTHING_ANALYSED,
)
from ._app import (
    CliState,
    _command,
    pass_state,
)
from ._output import (
    _emit_json,
    _json_safe,
    _right,
    _table,
)

if TYPE_CHECKING:
    from ..analysis import AnalyseReport, ProgressEvent


# -- analyze ---------------------------------------------------------------------------------------


@_command("analyze")
@click.argument("path", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--codebase-id", required=True, metavar="ID", help="The codebase to merge into.")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Parallel analysers.")
@click.option("--shard", metavar="K/N", default=None, help="Analyse only shard K of N (1-based).")
@click.option(
    "--analyser",
    "analyser_spec",
    metavar="MODULE:FUNCTION",
    default=None,
    help="The analyser to run (default: the built-in reference analyser).",
)
@click.option("--path-prefix", metavar="P", default=None, help="Only files under P.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Files per merge.")
@click.option(
    "--events",
    is_flag=True,
    help="Write each progress event as a JSON line on stderr (for other programs).",
)
@pass_state
def analyze_command(
    state: CliState,
    *,
    path: Path,
    codebase_id: str,
    workers: int | None,
    shard: str | None,
    analyser_spec: str | None,
    path_prefix: str | None,
    batch_size: int | None,
    events: bool,
) -> None:
    """Analyse the source tree at PATH and merge the results into codebase ID.

    Several analysers (processes or machines, each with its own --shard) can
    merge into the same codebase at once: merges are compare-and-swap and
    retried on conflict.
    """
    from .. import analysis as analyser_mod

    layout.validate_codebase_id(codebase_id)
    try:
        shard_value = analyser_mod.parse_shard(shard) if shard else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--shard") from None
    analyser = (
        analyser_mod.load_analyser(analyser_spec)
        if analyser_spec
        else analyser_mod.reference_analyser
    )
    given: dict[str, Any] = {
        "shard": shard_value,
        "workers": workers,
        "path_prefix": path_prefix,
        "batch_size": batch_size,
    }
    # Options not given are left to analyse_codebase's defaults.
    options = {name: value for name, value in given.items() if value is not None}
    started = time.monotonic()
    with state.manager() as pm, _AnalyseProgress(state, events=events) as progress:
        report = analyser_mod.analyse_codebase(
            pm, codebase_id, path, analyser=analyser, progress=progress, **options
        )
    document = report.to_dict()
    if state.json:
        _emit_json(document)
    else:
        _print_analysis(state, report, document, f"analysed {path} into {codebase_id}", started)
    if report.errors:
        # Files failed: their hashes were not recorded, so a rerun retries them. Whether
        # anything was merged at all tells a partial run from one that did nothing.
        nothing = report.analysed == 0 and report.removed == 0
        raise click.exceptions.Exit(EXIT_NOTHING_ANALYSED if nothing else EXIT_FILES_FAILED)


def _print_analysis(
    state: CliState,
    report: AnalyseReport,
    document: dict[str, Any],
    title: str,
    started: float,
) -> None:
    elapsed = time.monotonic() - started
    table = _table("what", _right("value"), title=Text(title))
    for name, value in document.items():
        if isinstance(value, dict | list) or name == "elapsed":
            continue
        table.add_row(Text(str(name).replace("_", " ")), Text(str(value)))
    table.add_row("errors", str(len(report.errors)))
    table.add_row("elapsed", f"{elapsed:.1f} s")
    state.out.print(table)
    for file_path, message in report.errors[:20]:
        state.out.print(Text(f"error: {file_path}: {message}", style="red"))
    if len(report.errors) > 20:
        state.out.print(Text(f"... and {len(report.errors) - 20} more (use --json)", style="red"))
    if report.errors:
        merged = report.analysed + report.removed
        state.err.print(
            Text(
                f"{len(report.errors)} file(s) failed"
                + (f"; {merged} merged" if merged else "; nothing was merged")
                + " (a rerun retries the failed ones)",
                style="red",
            )
        )


class _AnalyseProgress:
    """Progress of ``analyse_codebase``: a rich bar, or event lines on stderr."""

    def __init__(self, state: CliState, *, events: bool) -> None:
        self.state = state
        self.events = events
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[note]}"),
            TimeElapsedColumn(),
            console=state.err,
            disable=events or not state.show_progress,
        )
        self.task: TaskID | None = None

    def __enter__(self) -> _AnalyseProgress:
        self.progress.__enter__()
        self.task = self.progress.add_task("analysing", total=None, note="")
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(None, None, None)

    def __call__(self, event: ProgressEvent) -> None:
        if self.events:
            click.echo(json.dumps(_json_safe(asdict(event)), ensure_ascii=False), err=True)
            return
        if self.task is None:
            return
        if event.kind == "discovered":
            self.progress.update(self.task, total=event.total, note=f"{event.unchanged} unchanged")
        elif event.kind in ("analysed", "error"):
            self.progress.update(self.task, total=event.total, completed=event.done)
        elif event.kind == "merged":
            self.progress.update(self.task, note=f"{event.merged} merged")
        elif event.kind == "conflict" and self.state.show_progress:
            self.progress.console.print(
                Text(
                    f"a merge of {event.batch} file(s) lost {event.conflicts} race(s) to "
                    f"other writers; committed on attempt {event.attempts}",
                    style="yellow",
                )
            )
