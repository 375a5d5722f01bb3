"""Merges that commit ``analysis.json`` directly, and the checks every merge passes.

A caller's graph merge (a function) cannot be stored in a delta, and a fencing
token must be checked against the commit point itself: such merges skip the
journal's append and commit ``analysis.json`` directly (folding whatever the
journal holds first).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping

from .. import codec, layout
from ..errors import InvalidKeyError
from ..merge import GraphUpdate, apply_file_changes, apply_graph_update, refresh_derived
from ..models import CodebaseAnalysis, FileAnalysis
from ..retry import RetryPolicy, TransactionStats
from .compact import update
from .context import Engine, retrying
from .hashes import check_hashes, merge_hashes, withdraw_first, withdraw_overtaken_hashes

# The manager's logger: these records were the manager's before the engine was
# split out of it, and handlers and filters configured for it keep working.
logger = logging.getLogger("documee_remote.manager")

#: A caller's merge of what a merge cannot recompute: called with the committed
#: analysis (already holding the new file analyses) and the merged paths.
GraphMerge = Callable[[CodebaseAnalysis, Mapping[str, FileAnalysis], frozenset[str]], None]


def check_merge(
    codebase_id: str,
    analyses: Mapping[str, FileAnalysis],
    file_hashes: Mapping[str, str],
    removed: Iterable[str],
) -> None:
    """Refuse a merge whose paths, analyses or hashes do not fit together."""
    for path, fa in analyses.items():
        layout.validate_file_path(path)
        if fa.file_path != path:
            raise InvalidKeyError(
                f"analysis for {path!r} names another file, {fa.file_path!r}",
                codebase_id=codebase_id,
            )
    for path in removed:
        layout.validate_file_path(path)
    check_hashes(file_hashes, codebase_id)
    stray = set(file_hashes) - set(analyses)
    if stray:
        raise InvalidKeyError(
            f"file_hashes names {len(stray)} file(s) with no analysis in this merge, e.g. "
            f"{sorted(stray)[0]!r}: a hash may only be recorded with its analysis",
            codebase_id=codebase_id,
        )


def merge_directly(
    eng: Engine,
    codebase_id: str,
    ours: Mapping[str, FileAnalysis],
    file_hashes: Mapping[str, str],
    removed: frozenset[str],
    *,
    graph: GraphUpdate | None,
    merge: GraphMerge | None,
    analysis_time_ms: float,
    retry: RetryPolicy | None,
    stats: TransactionStats | None,
    fencing_token: int | None,
) -> CodebaseAnalysis:
    """Per-file objects, withdrawn claims, the commit, then hashes; returns the committed analysis.

    See :meth:`~documee_remote.PersistenceManager.merge_file_analyses`.
    """
    # A caller's graph merge cannot be stored in a delta, and a fencing
    # token must be checked against the commit point itself: both commit
    # analysis.json directly (folding whatever the journal holds first).
    per_file = {
        layout.file_analysis_key(codebase_id, path): codec.dump_file_analysis(fa)
        for path, fa in ours.items()
    }
    retrying(eng, lambda: eng.store.put_many(per_file), retry)
    withdraw_first(eng, codebase_id, set(removed) - set(ours), retry or eng.retry)
    merged = frozenset(ours)

    def change(analysis: CodebaseAnalysis) -> None:
        apply_file_changes(analysis, ours, removed)
        if graph is not None:
            apply_graph_update(analysis, graph, ours, removed)
        if merge is not None:
            merge(analysis, ours, removed)
        refresh_derived(analysis, add_analysis_time_ms=analysis_time_ms)

    txn = update(eng, codebase_id, change, retry, fencing_token)
    txn_stats = txn.stats
    committed = txn.analysis
    gone = [p for p in removed if p not in committed.file_analyses]
    if gone:
        eng.store.delete_many([layout.file_analysis_key(codebase_id, p) for p in gone])
    merge_hashes(eng, codebase_id, file_hashes, removed, retry=retry, stats=txn_stats)
    withdraw_overtaken_hashes(eng, codebase_id, txn.etag, ours, file_hashes)
    if stats is not None:
        stats.add(txn_stats)
    logger.info(
        "merged %d file(s), removed %d, into %s in %d attempt(s)",
        len(merged),
        len(removed),
        codebase_id,
        txn_stats.attempts,
    )
    return committed
