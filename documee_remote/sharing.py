"""Share one analysis between checkouts of a codebase at different paths.

Documee names a codebase ``sha256(absolute checkout path)[:16]`` and keys every
file by its absolute path, so the same repository checked out at
``/home/alice/repo``, ``/Users/bob/src/repo`` and ``C:\\work\\repo`` gives three
ids and three analyses that never meet in a store. A :class:`Checkout` maps one
local checkout to a *shared codebase*: a shared id and a neutral root (such as
``/srv/code/repo``, the same idea as the reference analyser's ``path_prefix``).
:class:`Sharing` holds a machine's checkouts; the
:class:`~documee_remote.PersistenceManager` applies it at its edge:

* **on the way out** (saves, merges, hashes) the local id becomes the shared id
  and every path under the local root is moved under the shared root, with
  ``/`` as separator, so the stored bytes carry only the shared root;
* **on the way back in** (loads) the shared id and root become the local ones
  again, so Documee finds its own id and its own absolute paths, and its
  incremental run reuses every analysis whose file content is unchanged.

What moves (every field of Documee's format that holds a file path):
``CodebaseAnalysis.codebase_id`` (when it is the local / shared id),
``file_analyses`` keys, ``FileAnalysis.file_path``, ``DetectedPattern.file_path``
(per-file and global patterns), dependency-graph ``nodes`` keys and their
``file_path``, ``imports`` and ``imported_by``, ``edges[].from_file`` and
``to_file``, ``circular_dependencies[].cycle``, ``top_teaching_files`` paths,
``file_hashes.json`` keys, and the paths of merges (``removed``, a
:class:`~documee_remote.merge.GraphUpdate`). Documee's format has no field
holding the codebase's root itself. What does not move: paths outside the
checkout (relative ones, ``<codebase>``, other directories), free text that
mentions a path (docstrings, evidence, explanations, linter messages), module
names (``external_imports``, ``external_dependencies``), and unknown fields a
newer Documee may add, which are kept untouched (a path in one of them is
stored as it is). A merge's ``merge=`` function and a ``transaction()`` work on the
stored form (shared id and root).

Paths are compared as text, exactly as Documee writes them (it does not resolve
symlinks or case either). A Windows root (``C:\\...`` or ``\\\\server\\share``)
maps ``\\`` to ``/`` on the way out and back on the way in; a ``/`` inside such
a path is read as a separator too and comes back as ``\\`` (Documee on Windows
never writes one). The shared root should be a path that no machine uses for
anything else: a path outside a checkout but under the shared root would be
read back as a path inside it.

Configuration, once per machine (see :meth:`Sharing.from_environment`):

* ``DOCUMEE_SHARE_CONFIG``: a TOML file with one ``[[checkout]]`` table per
  checkout (``local_root``, ``shared_root``, optional ``shared_id`` and
  ``local_id``);
* or, for one checkout, ``DOCUMEE_CHECKOUT_ROOT`` + ``DOCUMEE_SHARED_ROOT``
  (+ optional ``DOCUMEE_SHARED_ID``).

Ids that no checkout configures pass through unchanged, with their paths.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import posixpath
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, overload

from . import interop, layout
from .errors import ConfigurationError, InvalidKeyError
from .interop import AnalysisInput
from .merge import GraphUpdate
from .models import (
    CircularDependency,
    CodebaseAnalysis,
    DependencyEdge,
    DependencyGraph,
    DetectedPattern,
    FileAnalysis,
    FileNode,
)

__all__ = [
    "ENV_CHECKOUT_ROOT",
    "ENV_SHARED_ID",
    "ENV_SHARED_ROOT",
    "ENV_SHARE_CONFIG",
    "Checkout",
    "Sharing",
    "documee_codebase_id",
    "move_analysis",
    "move_file_analysis",
    "move_graph_update",
    "move_hashes",
]

#: A TOML file mapping this machine's checkouts to shared codebases.
ENV_SHARE_CONFIG = "DOCUMEE_SHARE_CONFIG"
#: One checkout without a file: its local root ...
ENV_CHECKOUT_ROOT = "DOCUMEE_CHECKOUT_ROOT"
#: ... the shared root its paths are stored under ...
ENV_SHARED_ROOT = "DOCUMEE_SHARED_ROOT"
#: ... and, optionally, the shared id (default: Documee's id of the shared root).
ENV_SHARED_ID = "DOCUMEE_SHARED_ID"

#: A path mover: one path in, the same path under the other root out.
Move = Callable[[str], str]

_WINDOWS_ROOT = re.compile(r"(?:[A-Za-z]:[\\/]|\\\\)")

_K = TypeVar("_K")


def documee_codebase_id(root: str) -> str:
    """The id Documee gives the codebase at absolute path ``root``.

    ``sha256`` of the path with ``\\`` turned into ``/``, first 16 hex digits,
    as Documee's ``generate_codebase_id`` computes it (after its ``abspath``,
    which ``root`` is expected to have had already).
    """
    return hashlib.sha256(root.replace("\\", "/").encode("utf-8")).hexdigest()[:16]


def _is_windows(root: str) -> bool:
    return _WINDOWS_ROOT.match(root) is not None


def _local_root(root: str) -> str:
    """Normalise a checkout's root as Documee would have spelled it."""
    if not isinstance(root, str) or not root:
        raise ConfigurationError("a checkout's local_root must be a non-empty path")
    if _is_windows(root):
        # Documee's sanitize_path turns every separator into the OS's one.
        text = root.replace("/", "\\")
        stripped = text.rstrip("\\")
        if len(stripped) <= 2 or (text.startswith("\\\\") and stripped.count("\\") < 3):
            raise ConfigurationError(
                f"local_root {root!r} is a drive or share root: a checkout must be a directory "
                "inside it"
            )
        return stripped
    # Documee takes os.path.abspath of the scanned path; so do we (no symlink resolving).
    path = os.path.abspath(root)
    if path in ("/", "//"):
        raise ConfigurationError("local_root '/' would claim every path on the machine")
    return path


def _shared_root(root: str) -> str:
    if not isinstance(root, str) or not root.startswith("/") or "\\" in root:
        raise ConfigurationError(
            f"shared_root {root!r} must be an absolute POSIX path such as /srv/code/repo"
        )
    path = posixpath.normpath(root)
    if path in ("/", "//"):
        raise ConfigurationError("shared_root '/' would claim every path in the store")
    return path


def _nested(a: str, b: str) -> bool:
    """Whether one of two roots (either style) lies strictly inside the other."""
    a, b = a.replace("\\", "/"), b.replace("\\", "/")
    return a != b and (a.startswith(b + "/") or b.startswith(a + "/"))


@dataclass(frozen=True, slots=True)
class Checkout:
    """One local checkout of a shared codebase.

    Parameters
    ----------
    local_root:
        The checkout's absolute path on this machine, as Documee scans it
        (a relative POSIX path is made absolute, as Documee does). A Windows
        path (``C:\\...``) is recognised on any OS.
    shared_root:
        The neutral absolute POSIX root stored instead, e.g. ``/srv/code/repo``.
        Every machine sharing the codebase uses the same one.
    shared_id:
        The codebase id in the store; default: Documee's id of ``shared_root``
        (so the store holds what Documee would write for a checkout there).
    local_id:
        The id Documee uses on this machine; default: Documee's id of
        ``local_root``.

    Raises
    ------
    ConfigurationError
        A root is not absolute, is a filesystem root, or one root lies inside
        the other (paths would be ambiguous); an id is not a valid codebase id.
    """

    local_root: str
    shared_root: str
    shared_id: str = ""
    local_id: str = ""
    _windows: bool = field(init=False, repr=False, compare=False, default=False)
    _sep: str = field(init=False, repr=False, compare=False, default="/")

    def __post_init__(self) -> None:
        local = _local_root(self.local_root)
        shared = _shared_root(self.shared_root)
        if _nested(local, shared):
            raise ConfigurationError(
                f"local_root {local!r} and shared_root {shared!r} lie inside one another: "
                "paths between them would be ambiguous"
            )
        windows = _is_windows(local)
        shared_id = self.shared_id or documee_codebase_id(shared)
        local_id = self.local_id or documee_codebase_id(local)
        for what, value in (("shared_id", shared_id), ("local_id", local_id)):
            try:
                layout.validate_codebase_id(value)
            except InvalidKeyError as exc:
                raise ConfigurationError(f"checkout {local!r}: bad {what}: {exc}") from exc
        # Frozen: normalised values are set once, here.
        object.__setattr__(self, "local_root", local)
        object.__setattr__(self, "shared_root", shared)
        object.__setattr__(self, "shared_id", shared_id)
        object.__setattr__(self, "local_id", local_id)
        object.__setattr__(self, "_windows", windows)
        object.__setattr__(self, "_sep", "\\" if windows else "/")

    def path_out(self, path: str) -> str:
        """``path`` as stored: under the shared root if it is under the local root."""
        root = self.local_root
        if path == root:
            return self.shared_root
        if self._windows:
            if path.startswith(root) and path[len(root) : len(root) + 1] in ("\\", "/"):
                return self.shared_root + "/" + path[len(root) + 1 :].replace("\\", "/")
            return path
        if path.startswith(root) and path[len(root) : len(root) + 1] == "/":
            return self.shared_root + path[len(root) :]
        return path

    def path_in(self, path: str) -> str:
        """``path`` as this machine knows it: moved under the local root if stored under ours."""
        root = self.shared_root
        if path == root:
            return self.local_root
        if path.startswith(root) and path[len(root) : len(root) + 1] == "/":
            rest = path[len(root) + 1 :]
            if self._windows:
                rest = rest.replace("/", "\\")
            return self.local_root + self._sep + rest
        return path


# -- moving whole structures between roots ----------------------------------------------------


def _move_keys(data: Mapping[str, _K], move: Move) -> dict[str, _K]:
    moved = {move(key): value for key, value in data.items()}
    if len(moved) != len(data):
        # Two paths became one: a path outside the checkout lies under the other
        # root. Storing either would silently lose the other file.
        clash = sorted(move(k) for k in data)
        dup = next(a for a, b in itertools.pairwise(clash) if a == b)
        raise ConfigurationError(
            f"two paths map to {dup!r}: a path outside the checkout lies under the other "
            "root; choose a shared root no machine uses for anything else"
        )
    return moved


def _move_pattern(pattern: DetectedPattern, move: Move) -> DetectedPattern:
    return pattern.model_copy(update={"file_path": move(pattern.file_path)})


def move_file_analysis(analysis: FileAnalysis, move: Move) -> FileAnalysis:
    """A copy of ``analysis`` with ``file_path`` and its patterns' paths moved.

    Copies are shallow (nothing the paths do not touch is duplicated) and the
    argument is never modified: Documee keeps using its objects after a save.
    """
    return analysis.model_copy(
        update={
            "file_path": move(analysis.file_path),
            "patterns": [_move_pattern(p, move) for p in analysis.patterns],
        }
    )


def _move_node(node: FileNode, move: Move) -> FileNode:
    return node.model_copy(
        update={
            "file_path": move(node.file_path),
            "imports": [move(p) for p in node.imports],
            "imported_by": [move(p) for p in node.imported_by],
        }
    )


def _move_edge(edge: DependencyEdge, move: Move) -> DependencyEdge:
    return edge.model_copy(
        update={"from_file": move(edge.from_file), "to_file": move(edge.to_file)}
    )


def _move_cycle(cycle: CircularDependency, move: Move) -> CircularDependency:
    return cycle.model_copy(update={"cycle": [move(p) for p in cycle.cycle]})


def _move_graph(graph: DependencyGraph, move: Move) -> DependencyGraph:
    return graph.model_copy(
        update={
            "nodes": {k: _move_node(v, move) for k, v in _move_keys(graph.nodes, move).items()},
            "edges": [_move_edge(e, move) for e in graph.edges],
            "circular_dependencies": [_move_cycle(c, move) for c in graph.circular_dependencies],
        }
    )


def move_analysis(
    analysis: CodebaseAnalysis, move: Move, *, ids: tuple[str, str] | None = None
) -> CodebaseAnalysis:
    """A copy of ``analysis`` with every path moved by ``move`` (the list in the module doc).

    ``ids`` is ``(from, to)``: a ``codebase_id`` field equal to ``from``
    becomes ``to``; any other value is kept.
    """
    codebase_id = analysis.codebase_id
    if ids is not None and codebase_id == ids[0]:
        codebase_id = ids[1]
    return analysis.model_copy(
        update={
            "codebase_id": codebase_id,
            "file_analyses": {
                k: move_file_analysis(v, move)
                for k, v in _move_keys(analysis.file_analyses, move).items()
            },
            "dependency_graph": _move_graph(analysis.dependency_graph, move),
            "global_patterns": [_move_pattern(p, move) for p in analysis.global_patterns],
            "top_teaching_files": [(move(p), score) for p, score in analysis.top_teaching_files],
        }
    )


def move_hashes(hashes: Mapping[str, str], move: Move) -> dict[str, str]:
    """``{path: sha256}`` with every path moved; the hashes are kept."""
    return _move_keys(hashes, move)


def move_graph_update(update: GraphUpdate, move: Move) -> GraphUpdate:
    """A merge's :class:`~documee_remote.merge.GraphUpdate` with its paths moved."""
    circular = update.circular_dependencies
    patterns = update.global_patterns
    return update.model_copy(
        update={
            "nodes": {k: _move_node(v, move) for k, v in _move_keys(update.nodes, move).items()},
            "edges": [_move_edge(e, move) for e in update.edges],
            "circular_dependencies": (
                None if circular is None else [_move_cycle(c, move) for c in circular]
            ),
            "global_patterns": (
                None if patterns is None else [_move_pattern(p, move) for p in patterns]
            ),
        }
    )


# -- a machine's checkouts, as the manager applies them ---------------------------------------


class Sharing:
    """This machine's checkouts, keyed by the id Documee uses for each.

    Every method takes the caller's (local) ``codebase_id``; for an id no
    checkout configures, it returns its arguments unchanged, so an empty
    ``Sharing`` costs a dictionary lookup per call.
    """

    __slots__ = ("_by_local_id",)

    def __init__(self, checkouts: Iterable[Checkout] = ()) -> None:
        by_id: dict[str, Checkout] = {}
        roots: dict[str, Checkout] = {}
        for checkout in checkouts:
            if checkout.local_id in by_id:
                raise ConfigurationError(
                    f"two checkouts have the local id {checkout.local_id!r}"
                    f" ({by_id[checkout.local_id].local_root!r}, {checkout.local_root!r})"
                )
            for other in roots.values():
                if other.local_root == checkout.local_root or _nested(
                    other.local_root, checkout.local_root
                ):
                    raise ConfigurationError(
                        f"checkouts {other.local_root!r} and {checkout.local_root!r} overlap"
                    )
            by_id[checkout.local_id] = checkout
            roots[checkout.local_root] = checkout
        shared_roots: dict[str, str] = {}
        for checkout in by_id.values():
            # The manager's own calls use stored ids (verify, leases): one that is
            # also another checkout's local id must map to itself, paths and id.
            twin = by_id.get(checkout.shared_id)
            if twin is not None and (
                twin.local_root != twin.shared_root or twin.shared_id != twin.local_id
            ):
                raise ConfigurationError(
                    f"shared id {checkout.shared_id!r} is also the local id of checkout "
                    f"{twin.local_root!r}"
                )
            root = shared_roots.setdefault(checkout.shared_id, checkout.shared_root)
            if root != checkout.shared_root:
                raise ConfigurationError(
                    f"shared id {checkout.shared_id!r} is given two shared roots, "
                    f"{root!r} and {checkout.shared_root!r}"
                )
        self._by_local_id = by_id

    def __bool__(self) -> bool:
        return bool(self._by_local_id)

    def __repr__(self) -> str:
        return f"Sharing({list(self._by_local_id.values())!r})"

    @property
    def checkouts(self) -> list[Checkout]:
        """The configured checkouts."""
        return list(self._by_local_id.values())

    def checkout(self, codebase_id: str) -> Checkout | None:
        """The checkout Documee calls ``codebase_id``, if configured."""
        return self._by_local_id.get(codebase_id)

    def stored_id(self, codebase_id: str) -> str:
        """The id under which ``codebase_id`` is stored (itself when not configured)."""
        checkout = self._by_local_id.get(codebase_id)
        return codebase_id if checkout is None else checkout.shared_id

    # Each method below is one call at one manager entry point.

    def analysis_out(
        self, codebase_id: str, analysis: CodebaseAnalysis
    ) -> tuple[str, CodebaseAnalysis]:
        """``(stored id, analysis as stored)`` for a save."""
        c = self._by_local_id.get(codebase_id)
        if c is None:
            return codebase_id, analysis
        return c.shared_id, move_analysis(analysis, c.path_out, ids=(c.local_id, c.shared_id))

    @overload
    def analysis_in(self, codebase_id: str, analysis: CodebaseAnalysis) -> CodebaseAnalysis: ...
    @overload
    def analysis_in(self, codebase_id: str, analysis: None) -> None: ...
    @overload
    def analysis_in(
        self, codebase_id: str, analysis: CodebaseAnalysis | None
    ) -> CodebaseAnalysis | None: ...
    def analysis_in(
        self, codebase_id: str, analysis: CodebaseAnalysis | None
    ) -> CodebaseAnalysis | None:
        """A stored analysis as the checkout ``codebase_id`` sees it."""
        c = self._by_local_id.get(codebase_id)
        if c is None or analysis is None:
            return analysis
        return move_analysis(analysis, c.path_in, ids=(c.shared_id, c.local_id))

    def hashes_out(self, codebase_id: str, hashes: Mapping[str, str]) -> tuple[str, dict[str, str]]:
        """``(stored id, hashes as stored)`` for ``save_file_hashes``."""
        c = self._by_local_id.get(codebase_id)
        if c is None:
            return codebase_id, dict(hashes)
        return c.shared_id, move_hashes(hashes, c.path_out)

    def hashes_in(self, codebase_id: str, hashes: dict[str, str]) -> dict[str, str]:
        """Stored hashes as the checkout ``codebase_id`` sees them."""
        c = self._by_local_id.get(codebase_id)
        return hashes if c is None else move_hashes(hashes, c.path_in)

    def path_out(self, codebase_id: str, path: str) -> tuple[str, str]:
        """``(stored id, stored path)`` for a read of one per-file object."""
        c = self._by_local_id.get(codebase_id)
        return (codebase_id, path) if c is None else (c.shared_id, c.path_out(path))

    def paths_out(self, codebase_id: str, paths: Iterable[str]) -> tuple[str, dict[str, str]]:
        """``(stored id, {stored path: local path})``, for reads of per-file objects."""
        c = self._by_local_id.get(codebase_id)
        move = (lambda p: p) if c is None else c.path_out
        return self.stored_id(codebase_id), {move(p): p for p in paths}

    def file_in(self, codebase_id: str, analysis: FileAnalysis | None) -> FileAnalysis | None:
        """A stored per-file analysis as the checkout ``codebase_id`` sees it."""
        c = self._by_local_id.get(codebase_id)
        if c is None or analysis is None:
            return analysis
        return move_file_analysis(analysis, c.path_in)

    def files_in(
        self, codebase_id: str, found: Mapping[str, FileAnalysis | None], local: Mapping[str, str]
    ) -> dict[str, FileAnalysis | None]:
        """Read per-file analyses keyed by local paths (``local`` from :meth:`paths_out`)."""
        return {local[p]: self.file_in(codebase_id, fa) for p, fa in found.items()}

    def merge_out(
        self,
        codebase_id: str,
        analyses: Mapping[str, FileAnalysis],
        file_hashes: Mapping[str, str],
        removed: Iterable[str],
        graph: GraphUpdate | None,
    ) -> tuple[
        str, Mapping[str, FileAnalysis], Mapping[str, str], Iterable[str], GraphUpdate | None
    ]:
        """A merge's arguments as stored: ``(id, analyses, file_hashes, removed, graph)``."""
        c = self._by_local_id.get(codebase_id)
        if c is None:
            return codebase_id, analyses, file_hashes, removed, graph
        move = c.path_out
        return (
            c.shared_id,
            {k: move_file_analysis(v, move) for k, v in _move_keys(analyses, move).items()},
            move_hashes(file_hashes, move),
            [move(p) for p in removed],
            None if graph is None else move_graph_update(graph, move),
        )

    def update_fn(
        self,
        codebase_id: str,
        fn: Callable[[CodebaseAnalysis], AnalysisInput | None],
    ) -> tuple[str, Callable[[CodebaseAnalysis], AnalysisInput | None]]:
        """``(stored id, fn)`` for ``update_analysis``: ``fn`` sees and returns local paths."""
        c = self._by_local_id.get(codebase_id)
        if c is None:
            return codebase_id, fn

        def wrapped(stored: CodebaseAnalysis) -> CodebaseAnalysis:
            local = move_analysis(stored, c.path_in, ids=(c.shared_id, c.local_id))
            result = fn(local)
            # What fn returns or put in place may be Documee's own objects.
            ours = interop.as_codebase_analysis(
                local if result is None else result, codebase_id=c.local_id
            )
            return move_analysis(ours, c.path_out, ids=(c.local_id, c.shared_id))

        return c.shared_id, wrapped

    # -- configuration --------------------------------------------------------------------

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Sharing:
        """Read a TOML file of ``[[checkout]]`` tables.

        ::

            [[checkout]]
            local_root = "/home/alice/src/repo"
            shared_root = "/srv/code/repo"
            shared_id = "repo"        # optional

        Raises
        ------
        ConfigurationError
            The file is missing, is not TOML, or a table is malformed.
        """
        import tomllib  # only machines that configure sharing pay for it

        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except OSError as exc:
            raise ConfigurationError(f"{ENV_SHARE_CONFIG}: cannot read {path}: {exc}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigurationError(f"{ENV_SHARE_CONFIG}: {path} is not TOML: {exc}") from exc
        tables = data.get("checkout", [])
        if not isinstance(tables, list) or set(data) - {"checkout"}:
            raise ConfigurationError(
                f"{ENV_SHARE_CONFIG}: {path} must hold only [[checkout]] tables"
            )
        checkouts = []
        allowed = {"local_root", "shared_root", "shared_id", "local_id"}
        for n, table in enumerate(tables, 1):
            if not isinstance(table, dict):
                raise ConfigurationError(f"{ENV_SHARE_CONFIG}: checkout {n} is not a table")
            unknown = set(table) - allowed
            missing = {"local_root", "shared_root"} - set(table)
            if unknown or missing or not all(isinstance(v, str) for v in table.values()):
                raise ConfigurationError(
                    f"{ENV_SHARE_CONFIG}: checkout {n} of {path} needs string local_root and "
                    f"shared_root (optional shared_id, local_id); unknown: {sorted(unknown)}, "
                    f"missing: {sorted(missing)}"
                )
            checkouts.append(_checkout(table, f"{ENV_SHARE_CONFIG} checkout {n}"))
        return cls(checkouts)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Sharing:
        """This machine's checkouts, from the environment.

        ``DOCUMEE_SHARE_CONFIG`` names a TOML file (:meth:`from_file`);
        ``DOCUMEE_CHECKOUT_ROOT`` with ``DOCUMEE_SHARED_ROOT`` (and optionally
        ``DOCUMEE_SHARED_ID``) adds one more checkout. Neither: no sharing.

        Raises
        ------
        ConfigurationError
            A value is malformed, or only one of the two roots is set.
        """
        env = os.environ if environ is None else environ
        sharing = cls.from_file(env[ENV_SHARE_CONFIG]) if env.get(ENV_SHARE_CONFIG) else cls()
        local, shared = env.get(ENV_CHECKOUT_ROOT, ""), env.get(ENV_SHARED_ROOT, "")
        shared_id = env.get(ENV_SHARED_ID, "")
        if not (local or shared or shared_id):
            return sharing
        if not (local and shared):
            raise ConfigurationError(
                f"{ENV_CHECKOUT_ROOT} and {ENV_SHARED_ROOT} must be set together "
                f"({ENV_SHARED_ID} is optional)"
            )
        table = {"local_root": local, "shared_root": shared, "shared_id": shared_id}
        return cls([*sharing.checkouts, _checkout(table, ENV_CHECKOUT_ROOT)])


def _checkout(table: Mapping[str, Any], where: str) -> Checkout:
    try:
        return Checkout(**table)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{where}: {exc}") from exc


def resolve(checkout: Checkout | Sharing | Iterable[Checkout] | None) -> Sharing:
    """The manager's sharing: the argument's, or else the environment's."""
    if checkout is None:
        return Sharing.from_environment()
    if isinstance(checkout, Sharing):
        return checkout
    if isinstance(checkout, Checkout):
        return Sharing([checkout])
    return Sharing(checkout)
