"""Copy analyses between a local ``.documee/analysis`` directory and a store.

The engine behind ``documee-remote push``, ``pull``, ``sync`` and ``migrate``,
usable as a library::

    from documee_remote.transfer import push, pull, sync, migrate

    report = push(".documee/analysis", store)            # local -> store
    report = pull(store, ".documee/analysis")            # store -> local
    report = sync(".documee/analysis", store)            # both ways, see below
    report = migrate("/old/.documee/analysis", store)    # upstream dir -> store, verified

Every function returns a :class:`TransferReport`; with ``dry_run=True``
nothing is written and the report lists what would be.

What is copied
--------------
Only what differs. Both sides are listed with ``list_meta`` and objects are
compared by ETag, which is the quoted MD5 of the bytes on every backend here
and on S3 for single-part uploads. An ETag that is not a plain MD5 (S3's
multipart ETags contain ``-``; some fsspec services use other schemes) cannot
be compared: both objects are then read and their contents compared. Objects
are copied as raw bytes, never parsed and re-serialised, so what arrives is
exactly what left ("unchanged": upstream's empty ``analysis.json`` files
included). Hidden names (``.tmp-*`` files of interrupted writes, editors'
``.swp``) are never listed, so never copied.

Order and races
---------------
Per codebase, a copy keeps the order merges keep (the README's invariant 3:
``file_hashes.json`` never claims a file ``analysis.json`` lacks), whether it
is interrupted or races other writers:

1. per-file objects (and journal deltas) first;
2. the destination's hash claims that the source does not make are withdrawn
   (compare-and-swap), so no claim outlives the commit that drops its file;
3. ``analysis.json``, the commit point: a reader never sees an
   ``analysis.json`` whose per-file objects are not there yet;
4. the source's ``file_hashes.json``: byte for byte when the destination's
   has not moved since step 2, else its claims merged in; then claims that
   another writer's later commit overtook are withdrawn, as a merge does;
5. deletions (only with ``delete=True``); when ``analysis.json`` itself is
   deleted, every claim is withdrawn and it goes first.

Steps 2 and 4 are the manager's own (``withdraw_hash_claims``,
``claim_hashes_after_commit``). Every write of steps 1 and 3 is conditional on
what the plan saw at the destination (``If-Match`` its ETag, or
``If-None-Match: *`` when it was absent), so a transfer racing another writer
(an analyser merging into the remote) fails clearly for that codebase instead
of clobbering the other writer's work: the conflict is reported, that
codebase's ``analysis.json`` and hashes are not written, and other codebases
proceed. Stores without atomic conditional writes (see
``Store.capabilities``) get plain writes. A source ``file_hashes.json`` that
itself claims files its ``analysis.json`` lacks (upstream leaves such files)
is copied as it is, with a warning: ``verify --repair`` withdraws them.

Pending merges at the destination: a journal delta the destination's
``analysis.json`` does not hold (a legacy one above its watermark, a named one
not in its folded map) is a merge not yet folded into it. A copy replaces the
``analysis.json`` the plan saw, merges folded into it included; when the
destination's bookkeeping (journal watermark, folded map, lease fence) is
ahead of the copied file's (upstream's files have none), ``analysis.json`` is
written with the union of both, so readers do not fold those merges again on
top of the copy (``TransferReport.rebased``; the only case where a copy is not
byte for byte), and with a commit marker, so no compaction publishes their
hashes. Pending deltas stay pending and are folded on top of it, so nothing
is lost; the source's named deltas are written after the commit, so a copy
whose commit loses a race leaves no merge of its own behind. A codebase is
refused (reported as a conflict, nothing of it written) when a different
source delta would overwrite a pending one, or a mirror would delete one (the
journals diverged), when the copied watermark or folded map (by name or
floor) would hide a pending delta the source does not hold, when a merge
pending in the source's journal is one the replaced ``analysis.json`` had
folded (the copy would lose it), or when the copied watermark is above the
destination's newest seq (merges appended next would be hidden): compact and
pull first.

Unreadable objects: an object of the source that does not parse (upstream
ships 0-byte ``analysis.json`` files) never replaces a readable one at the
destination without ``force``: the codebase is left untouched and reported
(``Conflict.corrupt``; the CLI exits 6). Over nothing, or over an object just
as unreadable, it is copied as it is, so a migration stays byte for byte.

Where the store is: :func:`check_store_location` refuses a local store that is
a file or a codebase folder; a missing directory is fine as a destination
(push, migrate and sync create it) and an error for ``pull``.

Sync
----
:func:`sync` is a three-way sync per codebase, a codebase being one unit
(its ``analysis.json`` embeds its file analyses, so mixing one side's
per-file objects with the other side's ``analysis.json`` would make an
inconsistent codebase). A state file in the local directory,
``.documee-remote-sync.json`` (hidden, so never transferred), records for
each store URL and codebase the ETags of both sides when they last agreed
(after a sync, push or pull). Then, per codebase:

* only on one side: copied to the other;
* identical on both sides: nothing;
* changed since the last agreement on one side only: that side wins (a push
  or a pull of the codebase);
* changed on both sides, or never synced and different: a **conflict**,
  left untouched and reported (the CLI exits 5), unless ``prefer`` says
  ``"local"``, ``"remote"`` or ``"newer"`` (the side whose newest object has
  the later ``last_modified``; mind clock skew between machines).

Sync never deletes unless ``delete=True``: without it an object missing on
one side is left alone (a codebase that exists only on one side is copied
over). With it, an object deleted on the winning side since the last
agreement is deleted on the other side too.

Modules, each using only those before it: :mod:`.report` (actions, conflicts,
events, the report), :mod:`._listing` (locations, listings, what differs),
:mod:`._executor` (a plan executed in the order merges keep), :mod:`._plan`
(one-way plans and the refusals that protect pending merges), :mod:`._sync`
(sync's decisions and state) and :mod:`.operations` (the four operations).
"""

from __future__ import annotations

from ._listing import check_store_location
from ._sync import SYNC_STATE_NAME
from .operations import migrate, pull, push, sync
from .report import Conflict, Direction, PlannedAction, Prefer, TransferEvent, TransferReport

__all__ = [
    "SYNC_STATE_NAME",
    "Conflict",
    "Direction",
    "PlannedAction",
    "Prefer",
    "TransferEvent",
    "TransferReport",
    "check_store_location",
    "migrate",
    "pull",
    "push",
    "sync",
]
