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
``cache info|clear``    the read cache's directory: what it holds; empty it

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

import signal
import threading
from typing import Any

import click

from .. import __version__
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
from ..errors import DocumeeRemoteError
from ._app import EXIT_CODES_HELP, CliState, _reset_logging, common_options
from ._output import _report_error
from .analyze import analyze_command
from .cache import cache_group
from .doctor import doctor_command
from .ls_show import ls_command, show_command
from .maintenance import compact_command, gc_command, verify_command
from .transfer import migrate_command, pull_command, push_command, sync_command

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


cli.add_command(ls_command)
cli.add_command(show_command)
cli.add_command(push_command)
cli.add_command(pull_command)
cli.add_command(sync_command)
cli.add_command(migrate_command)
cli.add_command(verify_command)
cli.add_command(gc_command)
cli.add_command(compact_command)
cli.add_command(doctor_command)
cli.add_command(analyze_command)
cli.add_command(cache_group)


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
