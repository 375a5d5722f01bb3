"""The hash index, ``file_hashes.json``: every change a compare-and-swap.

``file_hashes.json`` describes the compacted analysis and never claims a file
that ``analysis.json`` lacks: claims of removed files are withdrawn before a
commit, new ones are merged after it, and claims another writer's later commit
overtook are withdrawn again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from .. import codec, journal, layout
from ..bookkeeping import BOOKKEEPING_KEY, Folded, peek_book, recorded_folded
from ..errors import (
    ConflictError,
    InvalidKeyError,
    NotFoundError,
    PreconditionFailedError,
    TooManyConflictsError,
    TransientError,
)
from ..journal import DeltaRef
from ..models import FileAnalysis
from ..retry import Again, Backoff, RefusalWatch, RetryPolicy, TransactionStats, cas_loop
from .context import Engine
from .reads import get_deltas, read_analysis, with_listing

# The manager's logger: these records were the manager's before the engine was
# split out of it, and handlers and filters configured for it keep working.
logger = logging.getLogger("documee_remote.manager")


def claimed(eng: Engine, codebase_id: str) -> dict[str, str]:
    """``file_hashes.json`` with the claims of deltas that may be pending laid over it.

    Pending deltas (legacy ones above the newest legacy marker, named ones
    the folded map lacks) and named deltas folded by a commit above the
    newest commit marker (their hashes may be unpublished), in fold order.
    See :meth:`~documee_remote.PersistenceManager.get_file_hashes`.
    """
    key = layout.file_hashes_key(codebase_id)
    analysis_key = layout.analysis_key(codebase_id)

    def stored() -> tuple[dict[str, str], Folded]:
        got = eng.store.get_many([key, analysis_key])
        found, analysis = got[key], got[analysis_key]
        hashes = (
            codec.load_file_hashes(found.data, key=key, codebase_id=codebase_id)
            if found is not None
            else {}
        )
        book = peek_book(analysis.data) if analysis is not None else {}
        return hashes, recorded_folded({BOOKKEEPING_KEY: book})

    (hashes, folded), listing = with_listing(eng, codebase_id, stored)
    unpublished = sorted(
        (n for n in listing.named if folded.names.get(n, 0) > listing.published),
        key=lambda n: (folded.names[n], n),
    )
    refs: list[DeltaRef] = [
        *listing.above(listing.folded_hint),
        *unpublished,
        *listing.pending_named(folded),
    ]
    if not refs:
        return hashes
    got = dict(get_deltas(eng, codebase_id, refs, tolerate_missing=True))
    claims, unclaimed = journal.fold_hashes([(ref, got[ref]) for ref in refs if ref in got])
    for path in unclaimed:
        hashes.pop(path, None)
    hashes.update(claims)
    return hashes


def merge_hashes(
    eng: Engine,
    codebase_id: str,
    hashes: Mapping[str, str],
    removed: frozenset[str],
    *,
    retry: RetryPolicy | None,
    stats: TransactionStats,
) -> None:
    if not hashes and not removed:
        return

    def merge(current: dict[str, str]) -> dict[str, str]:
        updated = {p: h for p, h in current.items() if p not in removed}
        updated.update(hashes)
        return updated

    cas_hashes(eng, codebase_id, merge, retry=retry, stats=stats)


def cas_hashes(
    eng: Engine,
    codebase_id: str,
    change: Callable[[dict[str, str]], dict[str, str]],
    *,
    retry: RetryPolicy | None,
    stats: TransactionStats,
) -> None:
    """Read-modify-write ``file_hashes.json`` with compare-and-swap."""
    key = layout.file_hashes_key(codebase_id)
    backoff = Backoff(retry or eng.retry, stats=TransactionStats())
    watch = RefusalWatch(eng.store.url, key)

    def attempt() -> Again | None:
        etag: str | None = None
        try:
            try:
                obj = eng.store.get(key)
                current = codec.load_file_hashes(obj.data, key=key, codebase_id=codebase_id)
                etag = obj.etag
            except NotFoundError:
                current, etag = {}, None
            watch.reread(etag)  # raises when the endpoint refuses true conditions
            updated = change(dict(current))
            if updated == current:
                return None
            body = codec.dump_file_hashes(updated)
            if etag is None:
                eng.store.put(key, body, if_none_match="*")
            else:
                eng.store.put(key, body, if_match=etag)
            return None
        except (PreconditionFailedError, ConflictError) as exc:
            if isinstance(exc, PreconditionFailedError):
                watch.refused(etag)
            return Again(exc, lost=True)
        except TransientError as exc:
            return Again(exc)

    def exhausted(last_error: Exception | None) -> Exception:
        return TooManyConflictsError(
            f"gave up updating {key!r} after {backoff.stats.attempts} attempts; "
            "analysis.json is committed, and files missing from file_hashes.json "
            "will simply be analysed again",
            attempts=backoff.stats.attempts,
            key=key,
        )

    cas_loop(backoff, attempt, exhausted=exhausted)
    stats.add(backoff.stats)


def withdraw_first(eng: Engine, codebase_id: str, paths: set[str], policy: RetryPolicy) -> None:
    """Withdraw hash claims of paths a commit is about to remove, before it commits.

    Withdrawing is always safe (the file is analysed again), and doing it
    first means no crash can leave ``file_hashes.json`` claiming a file
    that ``analysis.json`` no longer has.
    """
    if not paths:
        return
    cas_hashes(
        eng,
        codebase_id,
        lambda current: {p: h for p, h in current.items() if p not in paths},
        retry=policy,
        stats=TransactionStats(),
    )


def withdraw_overtaken_hashes(
    eng: Engine,
    codebase_id: str,
    committed_etag: str | None,
    analyses: Mapping[str, FileAnalysis],
    hashes: Mapping[str, str],
) -> None:
    """Undo hash claims for paths another writer re-analysed after our commit.

    Two writers merging the same path commit ``analysis.json`` in one
    order but may write ``file_hashes.json`` in the other; then the hash
    would belong to the analysis that lost. When ``analysis.json`` moved
    on after our commit (its ETag is no longer ``committed_etag``), read it
    and withdraw our hash for every path whose entry is no longer ours (only
    where the hash is still ours: the other writer's hash, if it landed, is
    the right one).
    """
    if not hashes:
        return
    key = layout.analysis_key(codebase_id)
    try:
        if eng.store.head(key).etag == committed_etag:
            return
    except NotFoundError:
        pass
    current, _, _ = read_analysis(eng, codebase_id)
    entries = current.file_analyses if current is not None else {}
    overtaken = {p for p, fa in analyses.items() if p in hashes and entries.get(p) != fa}
    if not overtaken:
        return

    def withdraw(current_hashes: dict[str, str]) -> dict[str, str]:
        return {p: h for p, h in current_hashes.items() if not (p in overtaken and h == hashes[p])}

    cas_hashes(eng, codebase_id, withdraw, retry=None, stats=TransactionStats())
    logger.info(
        "withdrew %d hash claim(s) in %s overtaken by another writer",
        len(overtaken),
        codebase_id,
    )


def check_hashes(hashes: Mapping[str, object], codebase_id: str) -> None:
    """Refuse a hash that is not a string before it reaches the index."""
    for path, digest in hashes.items():
        if not isinstance(digest, str):
            raise InvalidKeyError(
                f"the hash of {path!r} must be a string, not {type(digest).__name__}",
                codebase_id=codebase_id,
            )
