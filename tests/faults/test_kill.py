"""Power loss on local disk: writer processes killed with SIGKILL at random points of merges.

Three writer slots merge into one LocalStore codebase without pause; each
writer reports every merge through a pipe *before* starting the next one (a
pipe write that returned survives the writer's death). The parent kills a
random writer at a random moment (``DOCUMEE_KILLS``, 60 by default) and
starts a new one in its slot. Afterwards: everything acknowledged is there
(at its acknowledged version or newer), every object parses, the invariants
hold, ``verify(repair=True, grace_seconds=0)`` leaves nothing for a second
``verify()`` to find, and no ``.tmp-*`` file is visible to listings.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import random
import signal
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from documee_remote import PersistenceManager, codec
from documee_remote._engine.reads import read_analysis
from documee_remote.errors import NotFoundError
from documee_remote.journal import CompactionPolicy, decode_delta
from documee_remote.models import FileAnalysis
from documee_remote.stores import LocalStore

from ._helpers import assert_consistent, check_objects_parse, version_of, versioned
from ._workers import (
    FOLDER_KILL_POINTS,
    PRELOAD,
    folder_kill_writer,
    folder_survivor,
    kill_writer,
)
from .conftest import FaultLedger

KILLS = int(os.environ.get("DOCUMEE_KILLS", "60"))
SLOTS = 3
#: Seconds after a writer is ready within which it is killed, by compaction mode.
KILL_WINDOW = {"eager": 0.7, "deferred": 0.35}


def stored_claims(store: LocalStore) -> dict[str, str]:
    """``file_hashes.json`` as stored: absent (claiming nothing) when the first commit's
    folder died after committing ``analysis.json`` and before publishing its hashes."""
    try:
        claims: dict[str, str] = codec.loads(store.get("kill/file_hashes.json").data)
    except NotFoundError:
        return {}
    return claims


@dataclass
class Slot:
    process: Any
    conn: Any
    kill_at: float | None = None


@pytest.mark.slow
@pytest.mark.parametrize("compaction", ["eager", "deferred"])
def test_sigkilled_writers_lose_nothing_acknowledged(
    tmp_path: Path, fault_ledger: FaultLedger, compaction: str
) -> None:
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    root = tmp_path / "store"
    rng = random.Random(20251124)
    acked: dict[str, int] = {}
    counters: Counter[str] = Counter()
    incarnation = 0

    def start(slot: int) -> Slot:
        nonlocal incarnation
        incarnation += 1
        mine, theirs = ctx.Pipe(duplex=False)
        process = ctx.Process(
            target=kill_writer,
            args=(str(root), slot, incarnation, theirs, compaction),
            daemon=True,
        )
        process.start()
        theirs.close()
        return Slot(process, mine)

    def drain(slot: Slot) -> None:
        while True:
            try:
                if not slot.conn.poll():
                    return
                message = slot.conn.recv()
            except (EOFError, OSError):
                return
            if message[0] == "ready":
                # Die anywhere from before the first merge to several merges in (an
                # eager merge makes more requests: the window is wider).
                slot.kill_at = time.monotonic() + rng.uniform(0.0, KILL_WINDOW[compaction])
            else:
                _, path, version = message
                acked[path] = max(acked.get(path, -1), version)
                counters["acks"] += 1

    def kill(slot: Slot) -> None:
        os.kill(slot.process.pid, signal.SIGKILL)
        slot.process.join(30)
        assert slot.process.exitcode == -signal.SIGKILL
        drain(slot)  # acknowledgements written before the death
        slot.conn.close()
        counters["kills"] += 1

    slots = {s: start(s) for s in range(SLOTS)}
    give_up = time.monotonic() + 300
    while counters["kills"] < KILLS - SLOTS:
        assert time.monotonic() < give_up, f"only {counters['kills']} kills in 300 s"
        for number, slot in slots.items():
            drain(slot)
            assert slot.process.is_alive() or slot.kill_at is None, "a writer died on its own"
            if slot.kill_at is not None and time.monotonic() >= slot.kill_at:
                kill(slot)
                slots[number] = start(number)
        time.sleep(0.002)
    for slot in slots.values():  # the last ones die too, mid-merge or not
        while slot.kill_at is None and time.monotonic() < give_up:
            drain(slot)
            time.sleep(0.002)
        time.sleep(rng.uniform(0.0, 0.2))
        kill(slot)

    store = LocalStore(root)
    pm = PersistenceManager(store)
    listed = list(store.list())
    tmp_on_disk = sorted(p.name for p in root.rglob(".tmp-*"))
    assert not [k for k in listed if any(s.startswith(".") for s in k.split("/"))]
    parsed = check_objects_parse(store)  # every object parses
    # analysis.json alone (what upstream reads) is consistent too, and with the deltas
    # still in the journal folded by a compaction, holds everything.
    stored_view, _, _ = read_analysis(pm.engine, "kill")
    if stored_view is not None:
        assert_consistent(stored_view, "kill")
        assert set(stored_claims(store)) <= set(stored_view.file_analyses)
    compacted = pm.compact("kill")
    final = pm.load_analysis("kill")
    assert final is not None
    entries = final.file_analyses
    missing = [p for p in acked if p not in entries]
    older = [p for p, v in acked.items() if p in entries and version_of(entries[p]) < v]
    assert_consistent(final, "kill")
    hashes = pm.get_file_hashes("kill")
    assert set(acked) <= set(hashes)  # an acknowledged merge's hash is recorded ...
    assert set(hashes) <= set(entries)  # ... and no hash without its analysis (invariant 3)
    repaired = pm.verify("kill", repair=True, grace_seconds=0)
    after = pm.verify("kill")
    removed_tmp = store.remove_stale_temp_files(older_than=0)
    figures = {
        "kills": counters["kills"],
        "writer incarnations": incarnation,
        "merges acknowledged": counters["acks"],
        "files": len(entries),
        "objects parsed": dict(parsed),
        "repaired by verify": dict(Counter(str(f.kind) for f in repaired.findings)),
        "stray .tmp files (hidden from listings)": len(tmp_on_disk),
        "lost (missing or older than acknowledged)": len(missing) + len(older),
        "deltas folded by the final compaction": compacted.folded,
    }
    fault_ledger.figure(f"kill -9 ({compaction})", figures)
    fault_ledger.record(
        "durability",
        f"sigkill-during-merges ({compaction})",
        "local",
        injected=counters["kills"],
        survived=counters["kills"] if not (missing or older) else 0,
        lost=len(missing) + len(older),
        note=f"{counters['acks']} acks; verify repaired {len(repaired.findings)}",
    )
    print("\nkill -9:", figures)
    assert counters["kills"] >= 50
    assert counters["acks"] >= 10  # kills must land mid-merge, not only before the first
    assert missing == []
    assert older == []
    assert after.findings == [], after.to_dict()
    assert removed_tmp == len(tmp_on_disk)
    assert list(root.rglob(".tmp-*")) == []
    assert pm.verify("kill").findings == []


#: How long a folder may go without progress before another writer takes over (small, so
#: that the many deaths below cost seconds, not minutes).
GROUP_WAIT = 0.5
FOLDER_KILLS = int(os.environ.get("DOCUMEE_FOLDER_KILLS", "20"))


@pytest.mark.slow
def test_folders_killed_in_their_critical_section_are_taken_over(
    tmp_path: Path, fault_ledger: FaultLedger
) -> None:
    """Group commit's dangerous moments: the folder dies holding ``_folder.json``.

    Victim writers kill themselves (SIGKILL, from a store hook, after the
    request landed) while they hold the folder record: right after taking
    it, after committing ``analysis.json``, after publishing the hashes,
    after the commit marker, always before the record says the cycle is
    done. Survivor writers merge throughout; they must take over the dead
    folder's record (it goes stale after ``group_wait_seconds``) and every
    merge they start must finish. Afterwards ``analysis.json`` alone, read
    as plain JSON the way upstream reads it, holds every acknowledged
    merge, each merge left exactly one delta, and verify finds only what a
    kill may leave (per-file objects written before an unfinished merge).
    """
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    root = tmp_path / "store"
    points = sorted(FOLDER_KILL_POINTS)
    acked: dict[str, int] = {}
    deaths: Counter[str] = Counter()
    latencies: list[float] = []
    incarnation = 0
    stop = ctx.Event()

    def start_victim(slot: int) -> Slot:
        nonlocal incarnation
        incarnation += 1
        mine, theirs = ctx.Pipe(duplex=False)
        point = points[incarnation % len(points)]
        process = ctx.Process(
            target=folder_kill_writer,
            args=(str(root), slot, incarnation, theirs, point, GROUP_WAIT),
            daemon=True,
        )
        process.start()
        theirs.close()
        return Slot(process, mine)

    def start_survivor(slot: int) -> Slot:
        mine, theirs = ctx.Pipe(duplex=False)
        process = ctx.Process(
            target=folder_survivor,
            args=(str(root), slot, theirs, stop, GROUP_WAIT, 5),
            daemon=True,
        )
        process.start()
        theirs.close()
        return Slot(process, mine)

    def drain(slot: Slot) -> list[Any]:
        seen: list[Any] = []
        while True:
            try:
                if not slot.conn.poll():
                    return seen
                message = slot.conn.recv()
            except (EOFError, OSError):
                return seen
            seen.append(message)
            if message[0] == "ack":
                acked[message[1]] = max(acked.get(message[1], -1), message[2])
                if len(message) > 3:
                    latencies.append(message[3])
            elif message[0] == "dying":
                deaths[message[1]] += 1

    victims = {s: start_victim(s) for s in range(3)}
    survivors = [start_survivor(s) for s in range(2)]
    give_up = time.monotonic() + 240
    while sum(deaths.values()) < FOLDER_KILLS:
        assert time.monotonic() < give_up, f"only {dict(deaths)} folder deaths in 240 s"
        for number, slot in victims.items():
            drain(slot)
            if not slot.process.is_alive():
                slot.process.join()
                drain(slot)
                assert slot.process.exitcode == -signal.SIGKILL, "a victim died on its own"
                slot.conn.close()
                victims[number] = start_victim(number)
        for slot in survivors:
            drain(slot)
            assert slot.process.is_alive(), "a survivor died"
        time.sleep(0.005)
    stop.set()
    for slot in victims.values():  # the victims still running die anywhere
        with contextlib.suppress(ProcessLookupError):  # unless it killed itself already
            os.kill(slot.process.pid, signal.SIGKILL)
        slot.process.join(30)
        drain(slot)
    done = []
    for slot in survivors:
        slot.process.join(120)
        done += [m for m in drain(slot) if m[0] == "done"]
        assert slot.process.exitcode == 0, "a survivor did not finish"
    assert len(done) == 2
    recovered: Counter[str] = sum((Counter(m[2]) for m in done), Counter())

    store = LocalStore(root)
    # A merge after all that (the record may still name a dead folder) finishes too.
    pm = PersistenceManager(store, compaction=CompactionPolicy(group_wait_seconds=GROUP_WAIT))
    started = time.monotonic()
    pm.merge_file_analyses("kill", {"/last.py": versioned("/last.py", 1)}, {"/last.py": "h"})
    last_merge = time.monotonic() - started
    acked["/last.py"] = 1

    # analysis.json alone, read as plain JSON (what upstream's code does), holds every
    # acknowledged merge at its acknowledged version or newer.
    plain = json.loads(store.get("kill/analysis.json").data)["file_analyses"]
    behind = {
        p: v
        for p, v in acked.items()
        if p not in plain or version_of(FileAnalysis.model_validate(plain[p])) < v
    }
    stored_view, _, _ = read_analysis(pm.engine, "kill")
    assert stored_view is not None
    assert_consistent(stored_view, "kill")
    assert set(stored_claims(store)) <= set(stored_view.file_analyses)
    # Exactly one delta per merge: count the deltas holding each (path, version).
    copies: Counter[tuple[str, int]] = Counter()
    for key in store.list("kill/_journal/"):
        if key.rsplit("/", 1)[1].startswith("w"):
            delta = decode_delta(store.get(key).data, key=key, codebase_id="kill")
            for path, fa in delta.file_analyses.items():
                copies[path, version_of(fa)] += 1
    twice = {k: n for k, n in copies.items() if n > 1}
    unlogged = [(p, v) for p, v in acked.items() if copies[p, v] != 1 and p != "/last.py"]
    before_repair = pm.verify("kill")
    kinds = Counter(str(f.kind) for f in before_repair.findings)
    check_objects_parse(store)
    repaired = pm.verify("kill", repair=True, grace_seconds=0)
    after = pm.verify("kill")
    figures = {
        "folder deaths by point": dict(deaths),
        "victim incarnations": incarnation,
        "merges acknowledged": len(latencies),
        "slowest survivor merge (s)": round(max(latencies), 2),
        "merge after the last death (s)": round(last_merge, 2),
        "survivors past dead folders": dict(recovered),
        "verify before repair": dict(kinds),
        "repaired": len(repaired.findings),
    }
    fault_ledger.figure("kill -9 of the folder", figures)
    fault_ledger.record(
        "durability",
        "sigkill-of-the-folder",
        "local",
        injected=sum(deaths.values()),
        survived=sum(deaths.values()) if not (behind or twice or unlogged) else 0,
        lost=len(behind),
        note=f"{len(acked)} paths acknowledged; deaths {dict(deaths)}",
    )
    print("\nkill -9 of the folder:", figures)
    assert all(deaths[p] >= 2 for p in points), deaths
    assert behind == {}
    assert twice == {}
    assert unlogged == []
    # Survivors took dead folders' records over (stale after GROUP_WAIT), never waited for
    # ever.
    assert recovered["takeovers"] >= 1
    assert max(latencies) < 30
    assert last_merge < 30
    # A kill may leave per-file objects of a merge whose delta never landed; nothing else.
    assert set(kinds) <= {"per_file_orphan", "per_file_differs"}, before_repair.to_dict()
    assert after.findings == [], after.to_dict()
