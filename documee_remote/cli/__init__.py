"""``documee-remote``: the command line of documee-remote.

Commands
--------
``ls``                  codebases in the store: files, size, last update, status
``show ID``             one codebase's metrics and top teaching files (``--file PATH``:
                        one file's analysis)
``push LOCAL_DIR``      copy a local ``.documee/analysis`` directory to the store
``pull LOCAL_DIR``      copy the store into a local directory
``sync LOCAL_DIR``      two-way sync, codebase by codebase (see :mod:`documee_remote.transfer`)
``migrate LOCAL_DIR``   move an upstream Documee directory into the store, verified
``verify [ID]``         check every invariant (``--repair`` fixes what it can)
``gc [ID]``             remove per-file objects no analysis refers to
``compact [ID]``        fold a codebase's journal into ``analysis.json``
``doctor``              check credentials, bucket settings and conditional writes
``analyze PATH``        analyse a source tree and merge the results into the store

Every command takes ``--store URL`` (default: ``DOCUMEE_STORE_URL``),
``--backend``, ``--read-only``, ``--json``, ``--quiet`` and ``--debug``, either
before the command (``documee-remote --store X ls``) or after it
(``documee-remote ls --store X``); the S3 options come from the environment
(``DOCUMEE_S3_ENDPOINT_URL``, ``DOCUMEE_S3_REGION``, ``DOCUMEE_S3_PROFILE``, ...;
see :class:`documee_remote.config.Settings`).

With ``--json`` a command prints exactly one JSON document on stdout and
nothing else there (NaN and infinities, legal in Documee's files, are written
as the strings ``"NaN"``, ``"Infinity"`` and ``"-Infinity"`` so that the
output is standard JSON). Progress bars are drawn on stderr, and only when
stderr is a terminal and neither ``--json`` nor ``--quiet`` is given.

Exit codes
----------
===  =====================================================================
0    success
1    ``verify`` found problems, ``doctor`` found a failing check
2    usage error: a bad option, argument or codebase id
3    not found: no such codebase, file or local directory
4    permission denied (including writes with ``--read-only``)
5    conflict: another writer won, or a transfer refused to overwrite
6    corrupt object: stored bytes that do not parse
7    transient: the service is unavailable, throttling or timing out (also
     S3's 409 ConditionalRequestConflict: worth retrying)
8    configuration: no or bad store URL, bad environment, missing dependency
9    any other error
10   ``analyze``: some files could not be read or analysed (the others merged)
11   ``analyze``: files failed and nothing was merged
130  interrupted (Ctrl-C)
143  terminated (SIGTERM)
===  =====================================================================

Library errors map to these codes through
:data:`documee_remote.error_codes.ERROR_CODES`, the table the Lambda handler
reads its statuses from.

Errors are printed as ``error: <message>`` on stderr (and, with ``--json``,
as ``{"ok": false, "error": {...}}`` on stdout), without a traceback unless
``--debug`` is given. Messages never contain credentials.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)
from rich.table import Column, Table
from rich.text import Text

from .. import __version__, integrity, layout
from ..error_codes import (
    EXIT_CONFIG,
    EXIT_CONFLICT,
    EXIT_CORRUPT,
    EXIT_ERROR,
    EXIT_FILES_FAILED,
    EXIT_NOT_FOUND,
    EXIT_NOTHING_ANALYSED,
    EXIT_OK,
    EXIT_PERMISSION,
    EXIT_PROBLEMS,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    exit_code_for,
)
from ..errors import (
    ConfigurationError,
    CorruptObjectError,
    DocumeeRemoteError,
    InvalidKeyError,
    NotFoundError,
    ObjectTooLargeError,
    UnsupportedOperationError,
)
from ..stores import ObjectMeta, Store

if TYPE_CHECKING:
    from ..analyser import ProgressEvent
    from ..transfer import TransferEvent, TransferReport

__all__ = [
    "EXIT_CONFIG",
    "EXIT_CONFLICT",
    "EXIT_CORRUPT",
    "EXIT_ERROR",
    "EXIT_FILES_FAILED",
    "EXIT_NOTHING_ANALYSED",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_PERMISSION",
    "EXIT_PROBLEMS",
    "EXIT_UNAVAILABLE",
    "EXIT_USAGE",
    "cli",
    "exit_code_for",
    "main",
]

EXIT_CODES_HELP = """\b
Exit codes:
  0  success
  1  verify found problems / doctor found a failing check
  2  usage error (bad option, argument or codebase id)
  3  not found (codebase, file, local directory)
  4  permission denied (also writes with --read-only)
  5  conflict (another writer won; a transfer refused to overwrite)
  6  corrupt object (stored bytes that do not parse)
  7  transient (service unavailable, throttled, timed out)
  8  configuration (no/bad store URL or environment, missing dependency)
  9  any other error
 10  analyze: some files failed (the others were merged)
 11  analyze: files failed and nothing was merged
130  interrupted (Ctrl-C); 143 terminated (SIGTERM)
"""

logger = logging.getLogger("documee_remote.cli")

_F = TypeVar("_F", bound=Callable[..., Any])


# -- state shared by the group and its commands -----------------------------------------------


@dataclass
class CliState:
    """Options given to the group or to a command, and the consoles to print on."""

    store_url: str | None = None
    backend: str | None = None
    read_only: bool = False
    json: bool = False
    quiet: bool = False
    debug: bool = False
    _out: Console | None = field(default=None, repr=False)
    _err: Console | None = field(default=None, repr=False)

    @property
    def out(self) -> Console:
        """Rich console on stdout (made on first use, so test runners' streams are used)."""
        if self._out is None:
            self._out = _console(sys.stdout)
        return self._out

    @property
    def err(self) -> Console:
        """Rich console on stderr, for progress bars."""
        if self._err is None:
            self._err = _console(sys.stderr)
        return self._err

    @property
    def show_progress(self) -> bool:
        """Progress bars only on a terminal, and never with --json or --quiet."""
        return not (self.json or self.quiet) and self.err.is_terminal

    def settings(self) -> Any:
        """The environment's :class:`~documee_remote.config.Settings`, with the CLI's overrides."""
        from ..config import Settings

        overrides: dict[str, Any] = {}
        if self.store_url:
            overrides["store_url"] = self.store_url
        if self.backend:
            overrides["backend"] = self.backend
        if self.read_only:
            overrides["read_only"] = True
        return Settings.load(**overrides)

    def resolve_url(self) -> str:
        """The store URL: ``--store``, else ``DOCUMEE_STORE_URL``, else exit 8."""
        url: str | None = self.settings().store_url
        if not url:
            raise ConfigurationError(
                "no store given: pass --store URL (s3://bucket/prefix, file:///path) "
                "or set DOCUMEE_STORE_URL"
            )
        return url

    def open_store(self) -> Store:
        """Open the store the options and the environment name.

        --backend and --read-only are explicit arguments; open_store fills in
        the rest from the DOCUMEE_* environment, as on every other path.
        """
        from ..stores import open_store

        url = self.resolve_url()
        explicit: dict[str, Any] = {"backend": self.backend}
        if self.read_only:
            explicit["read_only"] = True
        logger.debug("opening %s (backend=%s)", url, self.backend)
        return open_store(url, **explicit)

    @contextlib.contextmanager
    def manager(self) -> Iterator[Any]:
        """A PersistenceManager on the store, closed afterwards."""
        from ..manager import PersistenceManager

        with PersistenceManager(self.open_store()) as pm, pm.store:
            yield pm


def _console(stream: Any) -> Console:
    terminal = bool(getattr(stream, "isatty", lambda: False)())
    # Off a terminal: no colour codes, and wide enough that tables do not fold ids.
    return Console(
        file=stream,
        highlight=False,
        soft_wrap=False,
        width=None if terminal else 160,
        force_terminal=None if terminal else False,
        no_color=not terminal,
    )


def _state() -> CliState:
    ctx = click.get_current_context()
    state = ctx.find_object(CliState)
    if state is None:  # pragma: no cover - the group always makes one
        state = ctx.ensure_object(CliState)
    return state


def _state_option(attr: str, *param_decls: str, **kwargs: Any) -> Callable[[_F], _F]:
    """An option that sets ``CliState.<attr>`` when given (so a command's overrides the group's)."""

    def remember(ctx: click.Context, param: click.Parameter, value: Any) -> None:
        state = ctx.ensure_object(CliState)
        if value is None or value is False:
            return
        setattr(state, attr, value)
        if attr == "debug":
            _configure_debug_logging()

    return click.option(*param_decls, attr, expose_value=False, callback=remember, **kwargs)


_COMMON_OPTIONS = [
    _state_option(
        "store_url",
        "--store",
        metavar="URL",
        default=None,
        help="Store URL (s3://bucket/prefix, file:///path, memory://). Default: DOCUMEE_STORE_URL.",
    ),
    _state_option(
        "backend",
        "--backend",
        type=click.Choice(["s3", "fsspec", "obstore"]),
        default=None,
        help="Backend for s3:// URLs: s3 (boto3, default), fsspec (s3fs) or obstore.",
    ),
    _state_option(
        "read_only",
        "--read-only",
        is_flag=True,
        default=False,
        help="Refuse every write to the store.",
    ),
    _state_option(
        "json",
        "--json",
        is_flag=True,
        default=False,
        help="Print one JSON document on stdout instead of tables.",
    ),
    _state_option(
        "quiet",
        "--quiet",
        "-q",
        is_flag=True,
        default=False,
        help="No progress bars or progress messages.",
    ),
    _state_option(
        "debug",
        "--debug",
        "-v",
        is_flag=True,
        default=False,
        help="Log debug messages and show tracebacks of errors.",
    ),
]


def common_options(fn: _F) -> _F:
    """The options every command accepts, also accepted by the group."""
    for option in reversed(_COMMON_OPTIONS):
        fn = option(fn)
    return fn


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Logs to whatever ``sys.stderr`` is at the time (test runners swap it)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def _reset_logging() -> None:
    """Remove what --debug added (in-process runners invoke the CLI many times)."""
    root = logging.getLogger("documee_remote")
    for handler in [h for h in root.handlers if isinstance(h, _StderrHandler)]:
        root.removeHandler(handler)
        root.setLevel(logging.NOTSET)


def _configure_debug_logging() -> None:
    root = logging.getLogger("documee_remote")
    if not any(isinstance(h, _StderrHandler) for h in root.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.DEBUG)


# -- output helpers ----------------------------------------------------------------------------


def _json_safe(value: Any) -> Any:
    """Make ``value`` standard JSON: non-finite floats as strings, datetimes as ISO."""
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_json_safe(v) for v in value]
    if isinstance(value, datetime):
        return _iso(value)
    if isinstance(value, Path):
        return os.fspath(value)
    return value


def _emit_json(document: Any) -> None:
    text = json.dumps(_json_safe(document), indent=2, ensure_ascii=False, allow_nan=False)
    click.echo(text)


def _utc(moment: datetime) -> datetime:
    """``moment`` in UTC (a naive one is taken to be UTC already)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _iso(moment: datetime) -> str:
    return _utc(moment).strftime("%Y-%m-%dT%H:%M:%SZ")


def _when(moment: datetime | None) -> str:
    return "-" if moment is None else _utc(moment).strftime("%Y-%m-%d %H:%M UTC")


def human_size(size: float) -> str:
    """``1536`` -> ``"1.5 KiB"``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def _table(*headers: str | Column, title: str | Text | None = None, **kwargs: Any) -> Table:
    """A table with these columns and, if any, a title on its left."""
    return Table(*headers, title=title, title_justify="left", **kwargs)


def _right(header: str) -> Column:
    """A right-aligned column, for numbers."""
    return Column(header, justify="right")


def _exit_with_error(
    state: CliState, error_type: str, message: str, code: int, hint: str | None = None
) -> NoReturn:
    """Print ``error: <message>`` (and, with --json, the error document) and exit ``code``."""
    if state.json:
        _emit_json(
            {"ok": False, "error": {"type": error_type, "message": message, "exit_code": code}}
        )
    click.echo(f"error: {message}", err=True)
    if hint:
        click.echo(f"hint: {hint}", err=True)
    raise click.exceptions.Exit(code)


def _fail(message: str, code: int) -> NoReturn:
    """Report a CLI-level failure (not a library error) and exit with ``code``."""
    _exit_with_error(_state(), "CliError", message, code)


def _codebase_not_found(pm: Any, codebase_id: str) -> NoReturn:
    _fail(f"codebase {codebase_id!r} not found in {pm.store.url}", EXIT_NOT_FOUND)


# -- the group ------------------------------------------------------------------------------------


class _Group(click.Group):
    """A click group that turns library errors into messages and exit codes."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (DocumeeRemoteError, ImportError, ValueError, OSError) as exc:
            # Not only the library's errors: a local directory that cannot be read or an
            # analyser module that fails to import is not worth a traceback either.
            _report_error(ctx, exc)
        except KeyboardInterrupt as exc:
            # SIGTERM (a container stopping, a CI job cancelled) is told apart from
            # Ctrl-C, with the shell's convention 128 + signal number either way.
            terminated = isinstance(exc, _Terminated)
            click.echo(
                "error: terminated (SIGTERM)" if terminated else "error: interrupted", err=True
            )
            raise click.exceptions.Exit(143 if terminated else 130) from None
        finally:
            _reset_logging()


def _report_error(ctx: click.Context, exc: BaseException) -> NoReturn:
    state = ctx.find_object(CliState) or CliState()
    code = exit_code_for(exc)
    message = str(exc) or type(exc).__name__
    if state.debug:
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    hint = None
    if code == EXIT_CONFIG and "store" in message and "--store" not in message:
        hint = "check --store / DOCUMEE_STORE_URL and DOCUMEE_S3_* settings"
    elif isinstance(exc, ObjectTooLargeError):
        hint = "raise the limit with DOCUMEE_MAX_OBJECT_SIZE=<bytes>"
    _exit_with_error(state, type(exc).__name__, message, code, hint)


@click.group(cls=_Group, epilog=EXIT_CODES_HELP, context_settings={"max_content_width": 100})
@click.version_option(__version__, prog_name="documee-remote")
@common_options
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Share Documee codebase analyses through object storage.

    The store is --store URL or DOCUMEE_STORE_URL: s3://bucket/prefix (S3 or an
    S3-compatible service; options from DOCUMEE_S3_* and the usual AWS_*
    variables), file:///path, or memory://.
    """
    ctx.ensure_object(CliState)


def _command(name: str, **kwargs: Any) -> Callable[[_F], click.Command]:
    """``@cli.command`` with the common options and the exit codes in the help."""

    def decorate(fn: _F) -> click.Command:
        kwargs.setdefault("epilog", EXIT_CODES_HELP)
        return cli.command(name, **kwargs)(common_options(fn))

    return decorate


# -- ls ---------------------------------------------------------------------------------------


@dataclass
class CodebaseSummary:
    """What ``ls`` shows about one codebase, from a listing (no object is read)."""

    codebase_id: str
    files: int = 0
    objects: int = 0
    size: int = 0
    last_modified: datetime | None = None
    analysis_size: int | None = None
    has_hashes: bool = False
    status: str = "ok"
    total_files: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        data: dict[str, Any] = {
            "codebase_id": self.codebase_id,
            "files": self.files,
            "objects": self.objects,
            "size": self.size,
            "last_modified": _iso(self.last_modified) if self.last_modified else None,
            "analysis_size": self.analysis_size,
            "has_file_hashes": self.has_hashes,
            "status": self.status,
        }
        if self.total_files is not None:
            data["total_files"] = self.total_files
        return data


def summarise_codebases(metas: Iterator[ObjectMeta]) -> list[CodebaseSummary]:
    """Group a store listing by codebase: per-file objects, bytes, newest change, status.

    ``files`` counts ``file_<h16>.json`` objects, so listing never reads an
    analysis (which can be tens of megabytes); an ``analysis.json`` of 0 bytes
    (upstream ships such) is flagged without being read.
    """
    found: dict[str, CodebaseSummary] = {}
    for meta in metas:
        codebase_id, sep, name = meta.key.partition("/")
        if not sep:
            continue
        try:
            layout.validate_codebase_id(codebase_id)
        except InvalidKeyError:
            continue  # _probe/ and other names that are not codebases
        summary = found.get(codebase_id)
        if summary is None:
            summary = found[codebase_id] = CodebaseSummary(codebase_id)
        summary.objects += 1
        summary.size += meta.size
        if summary.last_modified is None or meta.last_modified > summary.last_modified:
            summary.last_modified = meta.last_modified
        if layout.is_file_analysis_name(name):
            summary.files += 1
        elif name == layout.ANALYSIS_NAME:
            summary.analysis_size = meta.size
        elif name == layout.FILE_HASHES_NAME:
            summary.has_hashes = True
    for summary in found.values():
        if summary.analysis_size is None:
            summary.status = "no analysis.json"
        elif summary.analysis_size == 0:
            summary.status = "empty analysis.json"
    return [found[k] for k in sorted(found)]


@_command("ls")
@click.option(
    "--deep",
    is_flag=True,
    help="Also read each analysis.json: its file count, and whether it parses (slower).",
)
def ls_command(deep: bool) -> None:
    """List the codebases in the store.

    FILES counts the per-file objects (file_*.json), SIZE sums every object of
    the codebase, UPDATED is its newest object. Only the listing is read, so
    this is fast on any store; --deep also parses each analysis.json and
    reports its metrics.total_files and whether it is corrupt.
    """
    state = _state()
    with state.manager() as pm:
        _require_store(pm.store)
        with _spinner(state, "listing the store"):
            summaries = summarise_codebases(pm.store.list_meta(""))
        if deep:
            for summary in summaries:
                if summary.analysis_size in (None, 0):
                    continue
                try:
                    analysis = pm.load_analysis(summary.codebase_id)
                except CorruptObjectError as exc:
                    summary.status = f"corrupt: {exc}"
                    continue
                except ObjectTooLargeError as exc:
                    # Say so for this codebase and go on to the others.
                    size = (
                        summary.analysis_size
                        if exc.key and exc.key.endswith("/analysis.json")
                        else None
                    )
                    summary.status = f"too large: {exc.key}: " + integrity.too_large_detail(
                        pm.store.max_object_size, size
                    )
                    continue
                if analysis is not None:
                    summary.total_files = analysis.metrics.total_files
        url = pm.store.url
    if state.json:
        _emit_json({"store": url, "codebases": [s.to_dict() for s in summaries]})
        return
    if not summaries:
        state.out.print(Text(f"no codebases in {url}"))
        return
    headers: list[str | Column] = ["codebase", _right("files")]
    if deep:
        headers.append(_right("analysed"))
    headers += [_right("objects"), _right("size"), "updated", "status"]
    table = _table(*headers, title=Text(f"codebases in {url}"))
    for s in summaries:
        row: list[Text | str] = [Text(s.codebase_id), str(s.files)]
        if deep:
            row.append(str(s.total_files) if s.total_files is not None else "-")
        row += [
            str(s.objects),
            human_size(s.size),
            _when(s.last_modified),
            Text(s.status, style="green" if s.status == "ok" else "red"),
        ]
        table.add_row(*row)
    state.out.print(table)


@contextlib.contextmanager
def _spinner(state: CliState, what: str) -> Iterator[None]:
    if not state.show_progress:
        yield
        return
    with state.err.status(escape(what)):
        yield


# -- show -------------------------------------------------------------------------------------


@_command("show")
@click.argument("codebase_id", metavar="ID")
@click.option("--file", "file_path", metavar="PATH", help="Show one file's analysis.")
@click.option(
    "--top",
    type=click.IntRange(min=0),
    default=10,
    show_default=True,
    help="How many top teaching files.",
)
def show_command(codebase_id: str, file_path: str | None, top: int) -> None:
    """Summarise a codebase: metrics, top teaching files, counts.

    With --file PATH, print that file's analysis instead (read from its
    per-file object, falling back on the entry embedded in analysis.json).
    """
    state = _state()
    layout.validate_codebase_id(codebase_id)
    with state.manager() as pm:
        if file_path is not None:
            _show_file(state, pm, codebase_id, file_path)
            return
        analysis = pm.load_analysis(codebase_id)
        if analysis is None:
            _codebase_not_found(pm, codebase_id)
        prefix = layout.codebase_prefix(codebase_id)
        per_file = sum(
            1 for k in pm.store.list(prefix) if layout.is_file_analysis_name(k[len(prefix) :])
        )
        # Only a count is shown: an unreadable file_hashes.json is a note, not a failure.
        hashes_error: str | None = None
        try:
            hashes_count: int | None = len(pm.get_file_hashes(codebase_id))
        except CorruptObjectError as exc:
            hashes_count = None
            hashes_error = f"{exc}; `documee-remote verify {codebase_id} --repair` removes it"
        except ObjectTooLargeError as exc:
            hashes_count = None
            hashes_error = f"{exc}; raise the limit with DOCUMEE_MAX_OBJECT_SIZE=<bytes>"
    metrics = analysis.metrics.to_dict()
    graph = analysis.dependency_graph
    languages = dict(Counter(fa.language for fa in analysis.file_analyses.values()).most_common())
    counts = {
        "files_in_analysis": len(analysis.file_analyses),
        "per_file_objects": per_file,
        "file_hashes": hashes_count,
        "dependency_nodes": len(graph.nodes),
        "dependency_edges": len(graph.edges),
        "circular_dependencies": len(graph.circular_dependencies),
        "global_patterns": len(analysis.global_patterns),
    }
    top_files = [(path, score) for path, score in analysis.top_teaching_files[:top]]
    if state.json:
        _emit_json(
            {
                "codebase_id": codebase_id,
                "analyzed_at": analysis.analyzed_at,
                "metrics": metrics,
                "counts": counts,
                "languages": languages,
                "top_teaching_files": [{"file_path": p, "score": s} for p, s in top_files],
                "file_hashes_error": hashes_error,
            }
        )
        return
    out = state.out
    out.print(Text(f"codebase {codebase_id} (analysed {analysis.analyzed_at})", style="bold"))
    table = _table("metric", _right("value"), title="metrics")
    for name, value in metrics.items():
        table.add_row(name, Text(str(value)))
    out.print(table)
    table = _table("what", _right("count"), title="counts")
    for name, value in counts.items():
        table.add_row(name.replace("_", " "), "unreadable" if value is None else str(value))
    for language, n in languages.items():
        table.add_row(Text(f"language: {language}"), str(n))
    out.print(table)
    table = _table(
        _right("#"), "file", _right("score"), title=f"top {len(top_files)} teaching files"
    )
    for rank, (path, score) in enumerate(top_files, 1):
        table.add_row(str(rank), Text(path), f"{score:.3f}" if math.isfinite(score) else str(score))
    out.print(table)
    if hashes_error is not None:
        out.print(
            Text(
                f"note: file_hashes.json was not read: {hashes_error}",
                style="yellow",
            )
        )
    if counts["per_file_objects"] != counts["files_in_analysis"]:
        out.print(
            Text(
                f"note: {per_file} per-file objects for {len(analysis.file_analyses)} analysed "
                f"files; run `documee-remote verify {codebase_id}`",
                style="yellow",
            )
        )


def _show_file(state: CliState, pm: Any, codebase_id: str, file_path: str) -> None:
    fa = pm.load_file_analysis(codebase_id, file_path)
    source = "per-file object"
    if fa is None:
        analysis = pm.load_analysis(codebase_id)
        if analysis is None:
            _codebase_not_found(pm, codebase_id)
        fa = analysis.file_analyses.get(file_path)
        source = "analysis.json"
        if fa is None:
            _fail(f"no analysis of {file_path!r} in codebase {codebase_id!r}", EXIT_NOT_FOUND)
    if state.json:
        _emit_json(
            {
                "codebase_id": codebase_id,
                "file_path": file_path,
                "source": source,
                "analysis": fa.to_dict(),
            }
        )
        return
    out = state.out
    out.print(Text(f"{file_path} ({fa.language}; from the {source})", style="bold"))
    table = _table("field", "value", show_header=False)
    tv = fa.teaching_value
    cm = fa.complexity_metrics
    rows = [
        ("analysed at", fa.analyzed_at),
        ("teaching value", f"{tv.total_score} ({tv.explanation})"),
        ("documentation coverage", str(fa.documentation_coverage)),
        ("complexity avg / max", f"{cm.avg_complexity} / {cm.max_complexity}"),
        ("functions", ", ".join(f.name for f in fa.symbol_info.functions) or "-"),
        ("classes", ", ".join(c.name for c in fa.symbol_info.classes) or "-"),
        ("imports", str(len(fa.symbol_info.imports))),
        ("patterns", ", ".join(p.pattern_type for p in fa.patterns) or "-"),
        ("linter issues", str(len(fa.linter_issues))),
        ("parse errors", f"{fa.has_errors} ({len(fa.errors)})"),
    ]
    for name, value in rows:
        table.add_row(name, Text(value))
    out.print(table)


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
    operation: Callable[..., TransferReport],
    local_dir: Path,
    codebase_ids: tuple[str, ...],
    **options: Any,
) -> None:
    """Run one of :mod:`documee_remote.transfer`'s operations on the store, and report."""
    state = _state()
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
def push_command(
    local_dir: Path, codebase_ids: tuple[str, ...], dry_run: bool, delete: bool, force: bool
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
        transfer.push, local_dir, codebase_ids, dry_run=dry_run, delete=delete, force=force
    )


@_transfer_command("pull")
@_delete_option
@_force_option
def pull_command(
    local_dir: Path, codebase_ids: tuple[str, ...], dry_run: bool, delete: bool, force: bool
) -> None:
    """Copy the store's codebases into LOCAL_DIR (created if missing); only what differs.

    The store must exist. A corrupt object in the store never replaces a
    readable local file (exit 6) unless --force.
    """
    from .. import transfer

    _run_transfer(
        transfer.pull, local_dir, codebase_ids, dry_run=dry_run, delete=delete, force=force
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
def sync_command(
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
def migrate_command(
    local_dir: Path, codebase_ids: tuple[str, ...], dry_run: bool, force: bool
) -> None:
    """Move an upstream Documee directory into the store, byte for byte, verified.

    Refuses (exit 5, nothing written) if the store already holds different
    data for any object, unless --force (exit 6 where an unreadable local object
    would replace a readable one). After the upload every object's ETag
    is checked against the local file (exit 6 on a mismatch). LOCAL_DIR is
    left untouched.
    """
    from .. import transfer

    _run_transfer(transfer.migrate, local_dir, codebase_ids, dry_run=dry_run, force=force)


# -- verify, gc, compact ---------------------------------------------------------------------------


def _require_store(store: Store) -> None:
    """Commands that read the store: a file, a codebase folder or a missing directory is
    an error naming it, not an empty store."""
    from ..transfer import check_store_location

    check_store_location(store, must_exist=True)


def _codebases_to_check(pm: Any, codebase_id: str | None) -> list[str]:
    if codebase_id is not None:
        layout.validate_codebase_id(codebase_id)
        if next(iter(pm.store.list(layout.codebase_prefix(codebase_id))), None) is None:
            _codebase_not_found(pm, codebase_id)
        return [codebase_id]
    return [s.codebase_id for s in summarise_codebases(pm.store.list_meta(""))]


def _require(pm: Any, method: str) -> Callable[..., Any]:
    fn = getattr(pm, method, None)
    if fn is None:
        raise UnsupportedOperationError(
            f"this version of documee-remote has no PersistenceManager.{method}"
        )
    return fn  # type: ignore[no-any-return]


@_command("verify")
@click.argument("codebase_id", metavar="[ID]", required=False)
@click.option("--repair", is_flag=True, help="Fix what can be fixed from analysis.json.")
@click.option(
    "--grace-seconds",
    type=float,
    default=3600.0,
    show_default=True,
    help="Orphaned per-file objects younger than this may be a merge in flight.",
)
@click.option(
    "--all",
    "show_all",
    is_flag=True,
    help="List every finding (default: the first 10 of each kind).",
)
def verify_command(
    codebase_id: str | None, repair: bool, grace_seconds: float, show_all: bool
) -> None:
    """Check a codebase's invariants (every codebase's, without ID).

    analysis.json parses; every per-file object matches its entry in
    analysis.json; file_hashes.json claims no file analysis.json lacks.
    Exits 1 when a problem is left (after --repair: one it could not fix).
    """
    state = _state()
    reports: list[Any] = []
    with state.manager() as pm:
        _require_store(pm.store)
        verify = _require(pm, "verify")
        for cid in _codebases_to_check(pm, codebase_id):
            with _spinner(state, f"verifying {cid}"):
                reports.append(verify(cid, repair=repair, grace_seconds=grace_seconds))
    ok = all(r.ok for r in reports)
    if state.json:
        _emit_json({"ok": ok, "repair": repair, "codebases": [r.to_dict() for r in reports]})
    else:
        _print_verify(state, reports, repair=repair, show_all=show_all)
    if not ok:
        raise click.exceptions.Exit(EXIT_PROBLEMS)


def _print_verify(state: CliState, reports: list[Any], *, repair: bool, show_all: bool) -> None:
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
    state: CliState, codebase_id: str | None, method: str, what: str, **kwargs: Any
) -> tuple[list[Any], list[tuple[str, DocumeeRemoteError]]]:
    """``PersistenceManager.<method>(cid, **kwargs)`` on the codebase (every codebase, for None).

    With several codebases, one failing does not stop the others: its error is
    returned beside the results.
    """
    results: list[Any] = []
    failures: list[tuple[str, DocumeeRemoteError]] = []
    with state.manager() as pm:
        fn = _require(pm, method)
        ids = _codebases_to_check(pm, codebase_id)
        for cid in ids:
            with _spinner(state, f"{what} {cid}"):
                try:
                    results.append(fn(cid, **kwargs))
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
@click.option(
    "--grace-seconds",
    type=float,
    default=3600.0,
    show_default=True,
    help="Keep unreferenced objects younger than this (a merge may be in flight).",
)
@click.option("--dry-run", is_flag=True, help="Only report what would be removed; delete nothing.")
def gc_command(codebase_id: str | None, grace_seconds: float, dry_run: bool) -> None:
    """Remove per-file objects no analysis.json entry refers to (every codebase's, without ID).

    A codebase whose analysis.json is unreadable is skipped (nothing can be
    known to be garbage) and reported; the exit code is then 6.
    """
    state = _state()
    reports, failures = _each_codebase(
        state,
        codebase_id,
        "gc",
        "collecting garbage in",
        grace_seconds=grace_seconds,
        dry_run=dry_run,
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
def compact_command(codebase_id: str | None) -> None:
    """Fold a codebase's journal into analysis.json (every codebase's, without ID)."""
    state = _state()
    reports, failures = _each_codebase(state, codebase_id, "compact", "compacting")
    docs = [r.to_dict() for r in reports]
    table = _table(
        "codebase",
        _right("folded"),
        _right("watermark"),
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
            "written" if doc.get("analysis_written") else "unchanged",
            str(doc.get("deleted", "-")),
            str(doc.get("kept_young", "-")),
            str(doc.get("attempts", "-")),
        )
    _each_codebase_output(state, {"codebases": docs}, table, failures)


# -- doctor ----------------------------------------------------------------------------------------


#: How a check's ``ok`` (True, False, or None: skipped) is shown.
_CHECK_RESULTS = {True: ("pass", "green"), False: ("FAIL", "red"), None: ("skip", "dim")}


@_command("doctor")
@click.option(
    "--no-probe",
    is_flag=True,
    help="Skip the conditional-write probe (it writes and deletes one scratch object).",
)
def doctor_command(no_probe: bool) -> None:
    """Check the store: credentials, bucket, versioning, encryption, public access, CAS.

    Prints a pass/fail table; exits 1 if any check failed. The probe writes
    one scratch object under _probe/ and deletes it; it is skipped with
    --read-only or --no-probe.
    """
    from .. import doctor

    state = _state()
    try:
        url: str | None = state.resolve_url()
        options = state.settings().store_options()
    except ConfigurationError as exc:
        url, options = None, {}
        error: str | None = str(exc)
    else:
        error = None
    with _spinner(state, "running checks"):
        results = doctor.run_checks(url, options, probe=not no_probe, config_error=error)
    ok = doctor.all_passed(results)
    if state.json:
        _emit_json({"ok": ok, "store": url, "checks": [r.to_dict() for r in results]})
    else:
        table = _table("check", "result", "detail", title=Text(f"doctor: {url or '(no store)'}"))
        for r in results:
            label, style = _CHECK_RESULTS[r.ok]
            table.add_row(Text(r.name), Text(label, style=style), Text(r.detail))
        state.out.print(table)
        failed = sum(1 for r in results if r.ok is False)
        state.out.print(
            Text(
                "all checks passed" if ok else f"{failed} check(s) failed",
                style="green" if ok else "red",
            )
        )
    if not ok:
        raise click.exceptions.Exit(EXIT_PROBLEMS)


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
def analyze_command(
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
    from .. import analyser as analyser_mod

    state = _state()
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
    state: CliState, report: Any, document: dict[str, Any], title: str, started: float
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


# -- entry points ----------------------------------------------------------------------------------


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread as Ctrl-C raises ``KeyboardInterrupt``.

    A ``KeyboardInterrupt`` so that it unwinds the same way (``except Exception``
    does not swallow it, ``finally`` blocks and context managers run).
    """


def _on_sigterm(signum: int, frame: object) -> None:
    raise _Terminated


def main(argv: list[str] | None = None) -> None:
    """The ``documee-remote`` console script (and ``python -m documee_remote``).

    SIGTERM is handled like Ctrl-C: the command unwinds, says so, and exits
    143 (Ctrl-C: 130). Only here, not on import: a library must not take over
    its host's signals.
    """
    installed = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if installed else None
    try:
        cli.main(args=argv, prog_name="documee-remote")
    finally:
        if installed:
            signal.signal(signal.SIGTERM, previous)
