"""Event-loop stalls: how long a heartbeat task waits while an analysis is loaded and saved.

A heartbeat task on the event loop sleeps 2 ms at a time and records the gap
between its wake-ups, while the loop awaits a load or a save of a large
analysis (local disk, so the figure is the CPU side, not the network):

* through the async API (``documee_remote.aio``: the verb in a worker thread,
  the codec decoding and encoding in pieces), and
* through the sync API called inside the loop, as Documee's engine does today.

Each gap is reported twice: as measured, and less the time the loop's thread
spent runnable but not running (Linux ``/proc/thread-self/schedstat``): on a
busy machine the OS can hold any thread back for tens of milliseconds, which
says nothing about this library. What remains is time the loop waited for the
GIL or for a call that blocked it: the stall this code causes.

    python -m benchmarks.stall [--files 2300] [--repeat 3] [--json] [--out DIR]

2,300 synthetic files make a 52 MB analysis.json, Django's size.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Gaps", "heartbeat_gaps", "measure", "runqueue_wait"]

#: The issue's bound on a heartbeat's gap while an analysis is loaded or saved.
TARGET_MS = 50.0
DEFAULT_OUT = Path(__file__).resolve().parent / "results"


def runqueue_wait() -> float:
    """Seconds the calling thread has spent runnable but waiting for a CPU (0 if unknown)."""
    try:
        with open("/proc/thread-self/schedstat") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


@dataclass
class Gaps:
    """The longest heartbeat gap, in seconds: as measured, and less OS run-queue waits."""

    raw: float
    own: float


async def heartbeat_gaps(op: Callable[[], Awaitable[Any]], tick: float = 0.002) -> tuple[Gaps, Any]:
    """Run ``op`` while a heartbeat task ticks on the same loop; its longest gaps and result."""
    stop = asyncio.Event()
    raw: list[float] = [0.0]
    own: list[float] = [0.0]

    async def heartbeat() -> None:
        last, waited = time.perf_counter(), runqueue_wait()
        while not stop.is_set():
            await asyncio.sleep(tick)
            now, now_waited = time.perf_counter(), runqueue_wait()
            raw.append(now - last)
            own.append(max(0.0, now - last - (now_waited - waited)))
            last, waited = now, now_waited

    beat = asyncio.create_task(heartbeat())
    await asyncio.sleep(0.01)
    try:
        result = await op()
    finally:
        stop.set()
        await beat
    return Gaps(max(raw), max(own)), result


async def _sync_in_loop(fn: Callable[..., Any], *args: Any) -> Any:
    return fn(*args)


def measure(files: int, repeat: int = 3) -> dict[str, Any]:
    """Best-of-``repeat`` longest gaps (ms) during save and load, async API vs sync in the loop."""
    from benchmarks.synth import build_dataset
    from documee_remote import codec
    from documee_remote.aio import AsyncPersistenceManager

    dataset = build_dataset(files)
    analysis = codec.load_codebase_analysis(dataset.analysis)
    plain = codec.loads(dataset.analysis)
    gc.collect()
    cid = dataset.codebase_id
    results: dict[str, dict[str, float]] = {}

    def keep(name: str, gaps: Gaps) -> None:
        best = results.setdefault(name, {"raw_ms": float("inf"), "own_ms": float("inf")})
        best["raw_ms"] = round(min(best["raw_ms"], gaps.raw * 1000), 1)
        best["own_ms"] = round(min(best["own_ms"], gaps.own * 1000), 1)

    async def main() -> None:
        with tempfile.TemporaryDirectory() as root:
            async with AsyncPersistenceManager(root) as apm:
                pm = apm.sync
                for _ in range(repeat):
                    await apm.delete_analysis(cid)
                    gaps, _ = await heartbeat_gaps(lambda: apm.save_analysis(cid, analysis))
                    keep("async save (all objects)", gaps)
                    gaps, _ = await heartbeat_gaps(lambda: apm.load_analysis(cid))
                    keep("async load", gaps)
                    gaps, _ = await heartbeat_gaps(lambda: apm.save_analysis(cid, analysis))
                    keep("async save (unchanged)", gaps)
                    # What Documee's engine hands over: its own objects, i.e. to_dict() data.
                    gaps, _ = await heartbeat_gaps(lambda: apm.save_analysis(cid, plain))
                    keep("async save (a dict, as Documee's objects)", gaps)
                    await apm.delete_analysis(cid)
                    gaps, _ = await heartbeat_gaps(
                        lambda: _sync_in_loop(pm.save_analysis, cid, analysis)
                    )
                    keep("sync in loop: save (all objects)", gaps)
                    gaps, _ = await heartbeat_gaps(lambda: _sync_in_loop(pm.load_analysis, cid))
                    keep("sync in loop: load", gaps)

    asyncio.run(main())
    return {
        "files": files,
        "analysis_bytes": len(dataset.analysis),
        "repeat": repeat,
        "target_ms": TARGET_MS,
        "max_gap_ms": results,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=2300, help="2,300: 52 MB")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="where stall.json/.md go")
    args = parser.parse_args(argv)
    result = measure(args.files, args.repeat)
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        print()
        return
    table = render(result)
    print(table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "stall.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "stall.md").write_text(table + "\n")


def render(result: dict[str, Any]) -> str:
    """The measurement as a Markdown table."""
    mb = result["analysis_bytes"] / 1e6
    lines = [
        f"Event-loop stall: longest heartbeat gap, {result['files']} files "
        f"(analysis.json {mb:.1f} MB), best of {result['repeat']}; target "
        f"< {result['target_ms']:.0f} ms with the async API",
        "",
        "| operation | max gap | less OS run-queue waits |",
        "| --- | --- | --- |",
    ]
    for name, gaps in result["max_gap_ms"].items():
        lines.append(f"| {name} | {gaps['raw_ms']:.1f} ms | {gaps['own_ms']:.1f} ms |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
