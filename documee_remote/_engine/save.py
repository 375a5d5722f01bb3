"""Whole-codebase writes that bypass the journal: upstream's save, and delete."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from .. import codec, journal, layout
from ..bookkeeping import recorded_folded
from ..errors import PreconditionFailedError
from ..models import CodebaseAnalysis
from ..stores import etag_of
from .context import Engine
from .journal_io import put_commit_marker, put_marker

# The manager's logger: these records were the manager's before the engine was
# split out of it, and handlers and filters configured for it keep working.
logger = logging.getLogger("documee_remote.manager")


@dataclass(frozen=True, slots=True)
class SaveReport:
    """What :meth:`PersistenceManager.save_analysis` wrote."""

    codebase_id: str
    files: int
    uploaded: int
    unchanged: int
    deleted: int
    analysis_written: bool
    bytes_written: int


def save(eng: Engine, codebase_id: str, analysis: CodebaseAnalysis) -> SaveReport:
    """Write ``analysis`` (a stored id and paths) as upstream orders it, only what changed.

    See :meth:`~documee_remote.PersistenceManager.save_analysis`.
    """
    cb_key = layout.analysis_key(codebase_id)
    prefix = layout.codebase_prefix(codebase_id)
    metas = list(eng.store.list_meta(prefix))
    stored = {meta.key: meta.etag for meta in metas}
    listed_journal = journal.parse_listing(codebase_id, metas)
    journal_seq = listed_journal.max_seq
    # This save replaces everything, deltas pending in the journal included:
    # mark them folded, or readers would replay them on top.
    superseded = analysis.model_copy()
    if journal.supersede(superseded, listed_journal):
        analysis = superseded
    per_file = {
        layout.file_analysis_key(codebase_id, path): codec.dump_file_analysis(fa)
        for path, fa in analysis.file_analyses.items()
    }
    changed = {k: v for k, v in per_file.items() if stored.get(k) != etag_of(v)}
    # Serialise analysis.json while the per-file objects upload: its PUT
    # still waits for them (it is the commit point), and the block waits
    # for the uploads even when the dump raises.
    with ThreadPoolExecutor(1, thread_name_prefix="documee-save") as uploads:
        uploaded = uploads.submit(eng.store.put_many, changed)
        body = codec.dump_codebase_analysis(analysis)
        uploaded.result()
    wrote_analysis = stored.get(cb_key) != etag_of(body)
    if wrote_analysis:
        eng.store.put(cb_key, body)
    # The superseded deltas must not lend their hashes to get_file_hashes.
    if journal_seq and journal_seq not in listed_journal.markers:
        put_marker(eng, codebase_id, journal_seq)
    commit = recorded_folded(analysis.__pydantic_extra__).commit
    if commit > listed_journal.published:
        put_commit_marker(eng, codebase_id, commit)
    stale = {
        key: etag
        for key, etag in stored.items()
        if layout.is_file_analysis_name(key[len(prefix) :]) and key not in per_file
    }
    kept = eng.store.delete_many(stale, if_match=stale) if stale else []
    report = SaveReport(
        codebase_id=codebase_id,
        files=len(per_file),
        uploaded=len(changed),
        unchanged=len(per_file) - len(changed),
        deleted=len(stale) - len(kept),
        analysis_written=wrote_analysis,
        bytes_written=sum(len(v) for v in changed.values()) + (len(body) * wrote_analysis),
    )
    logger.info(
        "saved analysis of %s: %d of %d per-file objects uploaded, %d deleted, "
        "analysis.json %s (%d bytes)",
        codebase_id,
        report.uploaded,
        report.files,
        report.deleted,
        "written" if wrote_analysis else "unchanged",
        len(body),
    )
    return report


def delete(eng: Engine, codebase_id: str) -> bool:
    """Delete everything stored for a codebase (a stored id); ``False`` when there was nothing.

    See :meth:`~documee_remote.PersistenceManager.delete_analysis`.
    """
    eng.floors.pop(codebase_id, None)
    listing = {m.key: m for m in eng.store.list_meta(layout.codebase_prefix(codebase_id))}
    if not listing:
        return False
    cb_key = layout.analysis_key(codebase_id)
    seen = listing.pop(cb_key, None)
    if seen is not None:
        try:
            eng.store.delete(cb_key, if_match=seen.etag)
        except PreconditionFailedError as exc:
            raise PreconditionFailedError(
                f"not deleting {codebase_id!r}: its analysis.json changed while deleting "
                "(another writer merged into it); nothing was deleted",
                key=cb_key,
            ) from exc
    skipped = eng.store.delete_many(
        listing, if_match={key: meta.etag for key, meta in listing.items()}
    )
    logger.info(
        "deleted %d objects of %s (%d changed meanwhile and were kept)",
        len(listing) + (seen is not None) - len(skipped),
        codebase_id,
        len(skipped),
    )
    return True
