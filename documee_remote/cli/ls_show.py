"""``ls`` and ``show``: what the store holds."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click
from rich.table import Column
from rich.text import Text

from .. import integrity, layout
from ..error_codes import (
    EXIT_NOT_FOUND,
)
from ..errors import (
    CorruptObjectError,
    InvalidKeyError,
    ObjectTooLargeError,
)
from ..stores import ObjectMeta
from ._app import (
    CliState,
    _command,
    pass_state,
    require_store,
)
from ._output import (
    _codebase_not_found,
    _emit_json,
    _fail,
    _iso,
    _right,
    _spinner,
    _table,
    _when,
    human_size,
)

if TYPE_CHECKING:
    from ..manager import PersistenceManager


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
@pass_state
def ls_command(state: CliState, deep: bool) -> None:
    """List the codebases in the store.

    FILES counts the per-file objects (file_*.json), SIZE sums every object of
    the codebase, UPDATED is its newest object. Only the listing is read, so
    this is fast on any store; --deep also parses each analysis.json and
    reports its metrics.total_files and whether it is corrupt.
    """
    with state.manager() as pm:
        require_store(pm.store)
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
@pass_state
def show_command(state: CliState, codebase_id: str, file_path: str | None, top: int) -> None:
    """Summarise a codebase: metrics, top teaching files, counts.

    With --file PATH, print that file's analysis instead (read from its
    per-file object, falling back on the entry embedded in analysis.json).
    """
    layout.validate_codebase_id(codebase_id)
    with state.manager() as pm:
        if file_path is not None:
            _show_file(state, pm, codebase_id, file_path)
            return
        analysis = pm.load_analysis(codebase_id)
        if analysis is None:
            _codebase_not_found(state, pm, codebase_id)
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


def _show_file(state: CliState, pm: PersistenceManager, codebase_id: str, file_path: str) -> None:
    fa = pm.load_file_analysis(codebase_id, file_path)
    source = "per-file object"
    if fa is None:
        analysis = pm.load_analysis(codebase_id)
        if analysis is None:
            _codebase_not_found(state, pm, codebase_id)
        fa = analysis.file_analyses.get(file_path)
        source = "analysis.json"
        if fa is None:
            _fail(
                state, f"no analysis of {file_path!r} in codebase {codebase_id!r}", EXIT_NOT_FOUND
            )
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
