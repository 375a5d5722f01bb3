"""The state every command is given, the options all of them take, and how they are declared."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import click
from rich.console import Console

from ..errors import (
    ConfigurationError,
)
from ..stores import Store

if TYPE_CHECKING:
    from ..config import Settings
    from ..manager import PersistenceManager


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

    def settings(self) -> Settings:
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
    def manager(self) -> Iterator[PersistenceManager]:
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


#: Passes the command's :class:`CliState` (the group's, with the command's own options
#: applied) as its first argument; ``ensure``: a command invoked on its own gets one too.
pass_state = click.make_pass_decorator(CliState, ensure=True)


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


def _command(name: str) -> Callable[[_F], click.Command]:
    """``@click.command`` with the common options and the exit codes in the help.

    The command is registered on the group by :mod:`documee_remote.cli`.
    """

    def decorate(fn: _F) -> click.Command:
        return click.command(name, epilog=EXIT_CODES_HELP)(common_options(fn))

    return decorate


def require_store(store: Store) -> None:
    """For commands that read the store: a file, a codebase folder or a missing directory
    is an error naming it, not an empty store."""
    from ..transfer import check_store_location

    check_store_location(store, must_exist=True)
