"""``cache info`` and ``cache clear``: the read cache's directory (:mod:`documee_remote.cache`)."""

from __future__ import annotations

from pathlib import Path

import click
from rich.text import Text

from ._app import CliState, _command, pass_state
from ._output import _emit_json, _table

_DIR_OPTION = click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The cache directory (default: DOCUMEE_CACHE_DIR, else the platform's cache directory).",
)


def _cache(state: CliState, cache_dir: Path | None) -> object:
    from ..stores._cache_config import resolve_cache

    # The same resolution as a store opened with cache=True: the explicit option wins.
    found = resolve_cache(cache_dir if cache_dir is not None else True, state.settings())
    assert found is not None  # True always resolves to a cache
    return found


@click.group("cache")
def cache_group() -> None:
    """The read cache: what it holds, and emptying it.

    The cache is used when DOCUMEE_CACHE_DIR (or DOCUMEE_CACHE=true) is set; every
    read through it is revalidated by ETag, so clearing it never changes a result.
    """


@_command("info")
@_DIR_OPTION
@pass_state
def cache_info_command(state: CliState, cache_dir: Path | None) -> None:
    """Where the cache is, how many entries and bytes it holds, and its bound."""
    from ..stores._cache import ReadCache

    cache = _cache(state, cache_dir)
    assert isinstance(cache, ReadCache)
    info = cache.info()
    if state.json:
        _emit_json(
            {
                "ok": True,
                "directory": info.directory,
                "entries": info.entries,
                "bytes": info.bytes,
                "max_bytes": info.max_bytes,
            }
        )
        return
    table = _table("directory", "entries", "bytes", "bound", title=Text("read cache"))
    table.add_row(info.directory, str(info.entries), str(info.bytes), str(info.max_bytes))
    state.out.print(table)


@_command("clear")
@_DIR_OPTION
@pass_state
def cache_clear_command(state: CliState, cache_dir: Path | None) -> None:
    """Remove every entry of the cache's directory."""
    from ..stores._cache import ReadCache

    cache = _cache(state, cache_dir)
    assert isinstance(cache, ReadCache)
    removed = cache.clear()
    if state.json:
        _emit_json({"ok": True, "directory": str(cache.directory), "removed": removed})
    elif not state.quiet:
        state.out.print(Text(f"removed {removed} entries from {cache.directory}"))


cache_group.add_command(cache_info_command)
cache_group.add_command(cache_clear_command)
