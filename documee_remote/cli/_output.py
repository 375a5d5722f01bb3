"""What every command prints with: JSON documents, tables, sizes, times, errors."""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click
from rich.markup import escape
from rich.table import Column, Table
from rich.text import Text

from ..error_codes import (
    EXIT_CONFIG,
    EXIT_NOT_FOUND,
    exit_code_for,
)
from ..errors import (
    ObjectTooLargeError,
)
from ._app import (
    CliState,
)

if TYPE_CHECKING:
    from ..manager import PersistenceManager


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


def _fail(state: CliState, message: str, code: int) -> NoReturn:
    """Report a CLI-level failure (not a library error) and exit with ``code``."""
    _exit_with_error(state, "CliError", message, code)


def _codebase_not_found(state: CliState, pm: PersistenceManager, codebase_id: str) -> NoReturn:
    _fail(state, f"codebase {codebase_id!r} not found in {pm.store.url}", EXIT_NOT_FOUND)


@contextlib.contextmanager
def _spinner(state: CliState, what: str) -> Iterator[None]:
    if not state.show_progress:
        yield
        return
    with state.err.status(escape(what)):
        yield


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
