"""Time and memory of documee_remote.codec against the standard library.

Builds a synthetic analysis of about 50 MB by replicating real file analyses
(the shared Documee fixtures if present, else the hand-made quirk fixtures)
under new paths, then prints the best CPU time of N runs for writing and
reading it the stdlib way (``json.dumps(indent=2, ensure_ascii=False)``,
``json.loads``) and the codec's way, and the peak memory of a load, measured
in a fresh process each (tracemalloc sees only Python's allocator; the RSS
high-water mark also sees pydantic-core's Rust allocations).

Run: ``.venv/bin/python benchmarks/codec_bench.py [--mb 50] [--repeat 3]``
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from documee_remote import codec  # noqa: E402
from documee_remote.models import CodebaseAnalysis  # noqa: E402

SOURCES = [
    ROOT.parent / "shared" / "fixtures" / "documee",
    ROOT / "tests" / "fixtures" / "quirks",
]


def stdlib_dumps(obj: Any) -> bytes:
    return json.dumps(obj, indent=2, ensure_ascii=False).encode("utf-8")


def build(target_bytes: int) -> dict[str, Any]:
    """An analysis dict of about ``target_bytes`` serialized, from real file analyses."""
    analyses = []
    for root in SOURCES:
        for path in sorted(root.glob("*/*/analysis.json")):
            raw = path.read_bytes()
            if raw:
                analyses.append(json.loads(raw))
        if analyses:
            break
    if not analyses:
        raise SystemExit("no fixture analyses found")
    base = max(analyses, key=lambda a: len(a["file_analyses"]))
    templates = [fa for a in analyses for fa in a["file_analyses"].values()]
    per_file = sum(len(stdlib_dumps(fa)) for fa in templates) / len(templates)
    out = dict(base)
    files: dict[str, Any] = {}
    i = 0
    while i * per_file < target_bytes:
        fa = templates[i % len(templates)]
        path = f"/srv/synthetic/copy{i // len(templates)}/{i}-" + fa["file_path"].rsplit("/", 1)[-1]
        files[path] = {**fa, "file_path": path}
        i += 1
    out["file_analyses"] = files
    return out


def best_of(repeat: int, fn: Callable[[], Any]) -> float:
    """Best CPU time of ``repeat`` runs.

    Everything timed here is single-threaded, so CPU time is the work done; on
    a shared machine wall time would mostly measure the neighbours.
    """
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        start = time.process_time()
        result = fn()
        best = min(best, time.process_time() - start)
        del result
    return best


def memory_child(kind: str, path: str, mode: str) -> None:
    """Run in a fresh process: load ``path`` one way, print peak memory as JSON.

    ``mode`` is ``tracemalloc`` (Python allocations only) or ``rss`` (the
    process's resident high-water mark, Linux only). They need separate runs:
    tracemalloc's own bookkeeping would inflate the RSS.
    """
    data = Path(path).read_bytes()
    loaders: dict[str, Callable[[], Any]] = {
        "stdlib json.loads": lambda: json.loads(data),
        "codec.loads": lambda: codec.loads(data),
        "stdlib json.loads + model_validate": lambda: CodebaseAnalysis.model_validate(
            json.loads(data)
        ),
        "codec.load_codebase_analysis": lambda: codec.load_codebase_analysis(data),
    }
    if mode == "tracemalloc":
        tracemalloc.start()
        result = loaders[kind]()
        current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(json.dumps({"peak": peak, "current": current}))
        return
    status = Path("/proc/self/status")
    clear_refs = Path("/proc/self/clear_refs")
    if not (status.exists() and clear_refs.exists()):
        print(json.dumps({"peak": -1, "current": -1}))
        return

    def proc_bytes(field: str) -> int:
        for line in status.read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1]) * 1024
        raise LookupError(field)

    clear_refs.write_text("5")  # reset the RSS high-water mark
    before = proc_bytes("VmRSS:")
    result = loaders[kind]()
    print(
        json.dumps(
            {"peak": proc_bytes("VmHWM:") - before, "current": proc_bytes("VmRSS:") - before}
        )
    )
    del result


def _measure(kind: str, path: Path, mode: str) -> dict[str, int]:
    done = subprocess.run(
        [sys.executable, __file__, "--memory-child", kind, str(path), mode],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, int] = json.loads(done.stdout)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=50.0, help="target size in MB")
    parser.add_argument("--repeat", type=int, default=3, help="runs per timing; best is kept")
    parser.add_argument("--memory-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(*args.memory_child)
        return

    reference = stdlib_dumps(build(int(args.mb * 1e6)))
    time_all(reference, args.repeat)
    memory_all(reference)


def time_all(reference: bytes, repeat: int) -> None:
    """Print best-of-``repeat`` times, stdlib against codec, after checking both agree."""
    size = len(reference)
    obj = json.loads(reference)
    model = codec.load_codebase_analysis(reference)
    assert codec.dumps(obj) == reference
    assert codec.dump_codebase_analysis(model) == reference
    print(
        f"synthetic analysis: {size / 1e6:.1f} MB, {len(obj['file_analyses'])} files, "
        f"Python {sys.version.split()[0]}"
    )
    rows = [
        ("dumps", "json.dumps(indent=2)", lambda: stdlib_dumps(obj), "codec.dumps(dict)",
         lambda: codec.dumps(obj)),
        ("dumps", "json.dumps(model.to_dict())", lambda: stdlib_dumps(model.to_dict()),
         "codec.dump_codebase_analysis", lambda: codec.dump_codebase_analysis(model)),
        ("loads", "json.loads", lambda: json.loads(reference), "codec.loads",
         lambda: codec.loads(reference)),
        ("loads", "json.loads + model_validate",
         lambda: CodebaseAnalysis.model_validate(json.loads(reference)),
         "codec.load_codebase_analysis", lambda: codec.load_codebase_analysis(reference)),
    ]  # fmt: skip
    print(f"\nbest CPU seconds of {repeat} runs")
    print(f"{'':6} {'stdlib':34} {'s':>7}   {'documee_remote.codec':30} {'s':>7}  speedup")
    for op, std_name, std_fn, our_name, our_fn in rows:
        t_std = best_of(repeat, std_fn)
        t_our = best_of(repeat, our_fn)
        print(
            f"{op:6} {std_name:34} {t_std:7.3f}   {our_name:30} {t_our:7.3f}  {t_std / t_our:6.1f}x"
        )


def memory_all(reference: bytes) -> None:
    """Print the peak memory of each way of loading ``reference``, in fresh processes."""
    size = len(reference)
    print(f"\npeak memory of one load, fresh process each ({size / 1e6:.1f} MB of JSON):")
    print(f"{'':36} {'tracemalloc peak':>17} {'retained':>9} {'RSS peak':>16}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "analysis.json"
        path.write_bytes(reference)
        for kind in (
            "stdlib json.loads",
            "codec.loads",
            "stdlib json.loads + model_validate",
            "codec.load_codebase_analysis",
        ):
            tm = _measure(kind, path, "tracemalloc")
            rss = _measure(kind, path, "rss")
            rss_text = (
                f"{rss['peak'] / 1e6:6.0f} MB {rss['peak'] / size:4.1f}x"
                if rss["peak"] >= 0
                else "n/a"
            )
            print(
                f"{kind:36} {tm['peak'] / 1e6:6.0f} MB {tm['peak'] / size:4.1f}x "
                f"{tm['current'] / 1e6:6.0f} MB {rss_text:>16}"
            )


if __name__ == "__main__":
    main()
