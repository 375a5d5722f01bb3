"""``push``, ``pull``, ``sync`` and ``migrate``: :mod:`documee_remote.transfer` as commands."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)
from rich.text import Text

from ..error_codes import (
    EXIT_CONFLICT,
    EXIT_CORRUPT,
)
from ._app import (
    _F,
    CliState,
    _command,
    pass_state,
)
from ._output import (
    _emit_json,
    _right,
    _table,
    human_size,
)

if TYPE_CHECKING:
    from ..transfer import TransferEvent, TransferReport


# -- transfers ----------------------------------------------------------------------------------


class _BinarySpeedColumn(TransferSpeedColumn):
    """Transfer speed in MiB/s (rich's own column says MB/s)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        if speed is None:
            return Text("?", style="progress.data.speed")
        return Text(f"{human_size(speed)}/s", style="progress.data.speed")


class _TransferProgress:
    """Rich progress bars (on stderr) fed by transfer events."""

    def __init__(self, state: CliState) -> None:
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(binary_units=True),  # MiB, as the summary line says
            _BinarySpeedColumn(),
            TextColumn("{task.fields[objects]}"),
            TimeElapsedColumn(),
            console=state.err,
            disable=not state.show_progress,
            transient=False,
        )
        self.tasks: dict[str, TaskID] = {}
        self.counts: dict[str, list[int]] = {}

    def __enter__(self) -> _TransferProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(None, None, None)

    def __call__(self, event: TransferEvent) -> None:
        direction = event.direction
        if event.kind == "plan":
            self.counts[direction] = [0, event.total_objects]
            self.tasks[direction] = self.progress.add_task(
                direction,
                total=max(event.total_bytes, 1),
                objects=f"0/{event.total_objects}",
            )
            return
        task = self.tasks.get(direction)
        if task is None:
            return
        done = self.counts[direction]
        if event.kind in ("put", "delete"):
            done[0] += 1
            self.progress.update(task, advance=event.size, objects=f"{done[0]}/{done[1]}")
        elif event.kind == "conflict":
            self.progress.console.print(Text(f"conflict: {event.key}: {event.detail}", style="red"))


def _transfer_output(state: CliState, report: TransferReport) -> None:
    """Print a transfer report and exit 5 on conflicts, 6 on mismatches."""
    if state.json:
        _emit_json(report.to_dict())
    else:
        out = state.out
        verb = "would copy" if report.dry_run else "copied"
        title = f"{report.operation}: {report.source} -> {report.destination}"
        if report.dry_run:
            title += " (dry run: nothing written)"
        out.print(Text(title, style="bold"))
        if report.codebases:
            table = _table("codebase", "action", _right("objects"), _right("bytes"))
            for codebase_id, decision in sorted(report.codebases.items()):
                actions = [a for a in report.actions if a.codebase_id == codebase_id]
                table.add_row(
                    Text(codebase_id),
                    Text(decision, style="red" if decision == "conflict" else ""),
                    str(sum(1 for a in actions if a.op == "put")),
                    human_size(sum(a.size for a in actions)),
                )
            out.print(table)
        line = (
            f"{verb} {len(report.copied)} object(s), {human_size(report.bytes)}; "
            f"{report.skipped_same} already identical"
        )
        if report.deleted:
            line += f"; {'would delete' if report.dry_run else 'deleted'} {len(report.deleted)}"
        if report.operation == "migrate" and not report.dry_run and not report.refused:
            line += f"; verified {report.verified}"
        out.print(Text(line))
        for conflict in report.conflicts:
            where = conflict.key or conflict.codebase_id
            out.print(Text(f"conflict: {where}: {conflict.reason}", style="red"))
        if report.refused:
            out.print(
                Text(
                    "nothing was written: the store already holds different data; "
                    "re-run with --force to overwrite it",
                    style="red",
                )
            )
        for key in report.mismatched:
            out.print(Text(f"mismatch after upload: {key}", style="red"))
        if report.conflicts and report.operation == "sync" and not report.refused:
            out.print(
                Text(
                    "hint: settle conflicts with --prefer local|remote|newer, or pull/push "
                    "the codebase explicitly",
                    style="yellow",
                )
            )
    if report.mismatched or any(c.corrupt for c in report.conflicts):
        raise click.exceptions.Exit(EXIT_CORRUPT)
    if report.conflicts or report.refused:
        raise click.exceptions.Exit(EXIT_CONFLICT)


_dry_run_option = click.option(
    "--dry-run", is_flag=True, help="Only show what would be copied; write nothing."
)
_delete_option = click.option(
    "--delete",
    is_flag=True,
    help="Also delete objects of the transferred codebases that the source lacks.",
)


def _transfer_command(name: str) -> Callable[[_F], click.Command]:
    """``_command`` with what every transfer takes: LOCAL_DIR, --codebase and --dry-run."""
    options = [
        click.argument(
            "local_dir", metavar="LOCAL_DIR", type=click.Path(file_okay=False, path_type=Path)
        ),
        click.option(
            "--codebase",
            "codebase_ids",
            metavar="ID",
            multiple=True,
            help="Only this codebase (repeatable). Default: all.",
        ),
        _dry_run_option,
    ]

    def decorate(fn: _F) -> click.Command:
        for option in reversed(options):
            fn = option(fn)
        return _command(name)(fn)

    return decorate


def _run_transfer(
    state: CliState,
    operation: Callable[..., TransferReport],
    local_dir: Path,
    codebase_ids: tuple[str, ...],
    **options: Any,
) -> None:
    """Run one of :mod:`documee_remote.transfer`'s operations on the store, and report."""
    with state.manager() as pm, _TransferProgress(state) as progress:
        report = operation(
            local_dir=local_dir,
            store=pm.store,
            codebase_ids=codebase_ids or None,
            progress=progress,
            **options,
        )
    _transfer_output(state, report)


_force_option = click.option(
    "--force",
    is_flag=True,
    help="Copy an unreadable (corrupt or empty) object over a readable one (else: exit 6).",
)


@_transfer_command("push")
@_delete_option
@_force_option
@pass_state
def push_command(
    state: CliState,
    *,
    local_dir: Path,
    codebase_ids: tuple[str, ...],
    dry_run: bool,
    delete: bool,
    force: bool,
) -> None:
    """Copy LOCAL_DIR (a .documee/analysis directory) to the store.

    Only objects whose ETag differs are sent: per-file objects, then
    analysis.json, then file_hashes.json, as merges order them, each write
    conditional on what was seen at the store, so a push racing another writer
    reports a conflict (exit 5) instead of overwriting its work. An unreadable
    local object never replaces a readable one in the store (exit 6) unless
    --force. A store directory that does not exist yet is created.
    """
    from .. import transfer

    _run_transfer(
        state, transfer.push, local_dir, codebase_ids, dry_run=dry_run, delete=delete, force=force
    )


@_transfer_command("pull")
@_delete_option
@_force_option
@pass_state
def pull_command(
    state: CliState,
    *,
    local_dir: Path,
    codebase_ids: tuple[str, ...],
    dry_run: bool,
    delete: bool,
    force: bool,
) -> None:
    """Copy the store's codebases into LOCAL_DIR (created if missing); only what differs.

    The store must exist. A corrupt object in the store never replaces a
    readable local file (exit 6) unless --force.
    """
    from .. import transfer

    _run_transfer(
        state, transfer.pull, local_dir, codebase_ids, dry_run=dry_run, delete=delete, force=force
    )


@_transfer_command("sync")
@click.option(
    "--delete",
    is_flag=True,
    help="Propagate deletions made on the winning side since the last sync.",
)
@click.option(
    "--prefer",
    type=click.Choice(["local", "remote", "newer"]),
    default=None,
    help="Settle codebases changed on both sides this way (default: report a conflict).",
)
@_force_option
@pass_state
def sync_command(
    state: CliState,
    *,
    local_dir: Path,
    codebase_ids: tuple[str, ...],
    dry_run: bool,
    delete: bool,
    prefer: str | None,
    force: bool,
) -> None:
    """Two-way sync of LOCAL_DIR with the store, codebase by codebase.

    A codebase changed on one side since the last sync (or push, or pull) is
    copied to the other; one changed on both sides is a conflict, left
    untouched (exit 5) unless --prefer settles it. Nothing is deleted without
    --delete. The last agreed state is kept in LOCAL_DIR/.documee-remote-sync.json.
    """
    from .. import transfer

    _run_transfer(
        state,
        transfer.sync,
        local_dir,
        codebase_ids,
        dry_run=dry_run,
        delete=delete,
        prefer=prefer,
        force=force,
    )


@_transfer_command("migrate")
@click.option(
    "--force",
    is_flag=True,
    help="Overwrite objects the store holds differently, even with unreadable ones.",
)
@pass_state
def migrate_command(
    state: CliState, local_dir: Path, codebase_ids: tuple[str, ...], dry_run: bool, force: bool
) -> None:
    """Move an upstream Documee directory into the store, byte for byte, verified.

    Refuses (exit 5, nothing written) if the store already holds different
    data for any object, unless --force (exit 6 where an unreadable local object
    would replace a readable one). After the upload every object's ETag
    is checked against the local file (exit 6 on a mismatch). LOCAL_DIR is
    left untouched.
    """
    from .. import transfer

    _run_transfer(state, transfer.migrate, local_dir, codebase_ids, dry_run=dry_run, force=force)
