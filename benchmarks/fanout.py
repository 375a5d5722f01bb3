"""Fan-out: N writers merging one file each into one codebase at once (issue 14).

``python -m benchmarks.fanout`` runs :func:`documee_remote.testing.fanout.run_fanout`
for each number of writers, against this checkout's library **and** a baseline
(``--baseline-ref``, default ``5ad611f``: the dense-seq journal), both on one
moto harness server with added latency (20 ms by default), in one run.

- The server runs in its own process (``python -m benchmarks.fanout serve``):
  the library's :class:`~documee_remote.testing.moto_server.MotoServer` behind
  a counting WSGI layer that classifies every request (GET, PUT, LIST, HEAD,
  DELETE, POST), counts answers by status and body bytes both ways, and serves
  the counters as JSON at ``/_fanout/stats`` (no bucket name starts with ``_``,
  and that path is neither delayed nor counted).
- Every (design, N) runs in a fresh child process and a fresh bucket. The
  baseline's ``documee_remote`` is exported with ``git archive REF documee_remote``
  into a temporary directory, which is the child's working directory and
  ``PYTHONPATH``; the child loads this checkout's runner by path and checks
  that ``documee_remote.__file__`` is under the directory it should be.
- Designs alternate per N (baseline first for the 1st, 3rd... N, current
  first for the others) so that machine load falls on both alike.

Results: a markdown table on stdout and in ``results/fanout.md``, every figure
in ``results/fanout.json`` (``fanout-append.md`` etc. for the other APIs and
policies). Exit status 1 when any design lost an update.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from . import server

REPO = Path(__file__).resolve().parents[1]
RUNNER = REPO / "documee_remote" / "testing" / "fanout.py"
RESULTS = Path(__file__).resolve().parent / "results"
STATS_PATH = "/_fanout/stats"
DEFAULT_BASELINE = "5ad611f"
VERBS = ("GET", "PUT", "LIST", "HEAD", "DELETE", "POST")

#: The child: load this checkout's runner by path (never ``import`` it: the baseline's
#: package has no such module) and hand it the command line.
CHILD = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("_fanout_runner", sys.argv[1])
module = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = module  # dataclasses look their module up while it loads
spec.loader.exec_module(module)
sys.exit(module.main(sys.argv[2:]))
"""


# -- the server process ---------------------------------------------------------------------


class CountingApp(server.CountingApp):
    """The benchmarks' counting layer, LIST told apart from GET, its counts served flat
    (``GET``, ``LIST``, ``status_412``, ``bytes_in``...) as JSON at :data:`STATS_PATH`."""

    def verb(self, environ: dict[str, Any]) -> str:
        verb = super().verb(environ)
        # Path-style requests: /bucket is a bucket-level call; a GET on it is a listing.
        if verb == "GET" and "/" not in str(environ.get("PATH_INFO", "")).strip("/"):
            return "LIST"
        return verb

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ.get("PATH_INFO", "") != STATS_PATH:
            return super().__call__(environ, start_response)
        with self.lock:
            counts = {
                **self.methods,
                **{f"status_{code}": n for code, n in self.statuses.items()},
                "bytes_in": self.bytes_in,
                "bytes_out": self.bytes_out,
            }
        body = json.dumps(counts).encode()
        start_response(
            "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        )
        return [body]


def serve(latency_ms: float) -> None:
    """Run the counting harness until stdin closes; print the endpoint first."""
    from documee_remote.testing.moto_server import MotoServer

    server = MotoServer(latency_ms=latency_ms).start()
    # werkzeug's server calls its .app per request: put the counter in front of the harness.
    server._server.app = CountingApp(server._server.app)
    print(server.endpoint_url, flush=True)
    try:
        for _line in sys.stdin:
            pass
    finally:
        server.stop()


@contextlib.contextmanager
def server_process(latency_ms: float) -> Iterator[str]:
    """The counting server in a subprocess (its CPU and GIL apart from the writers')."""
    with subprocess.Popen(
        [sys.executable, "-m", "benchmarks.fanout", "serve", "--latency-ms", str(latency_ms)],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdin is not None
        assert proc.stdout is not None
        try:
            endpoint = proc.stdout.readline().strip()
            if not endpoint.startswith("http://"):
                raise RuntimeError(f"the server did not start: {endpoint!r}")
            yield endpoint
        finally:
            proc.stdin.close()  # end of stdin: the server stops
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# -- designs -------------------------------------------------------------------------------


def git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(REPO), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def current_label() -> str:
    try:
        head = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--", "documee_remote")
    except (OSError, subprocess.CalledProcessError):
        return "current"
    return f"current {head}{'+dirty' if dirty else ''}"


def export_baseline(ref: str, into: Path) -> tuple[str | None, str]:
    """``git archive REF documee_remote`` into ``into``; (label, note) or (None, why not)."""
    try:
        commit = git("rev-parse", "--short", f"{ref}^{{commit}}")
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", ref, "documee_remote"],
            check=True,
            capture_output=True,
        )
        subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        if isinstance(detail, bytes):
            detail = detail.decode("utf-8", "replace")
        return None, f"baseline {ref!r} skipped: {exc} {detail.strip()}".strip()
    return f"baseline {commit}", f"baseline {ref} = {commit}, exported to a temporary directory"


def aws_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DOCUMEE_"))}
    env.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
    )
    return env


def create_bucket(endpoint: str, bucket: str) -> None:
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    client.create_bucket(Bucket=bucket)
    client.close()


def run_child(
    *,
    root: Path,
    endpoint: str,
    bucket: str,
    writers: int,
    api: str,
    compaction: str,
    timeout: float,
) -> dict[str, Any]:
    """One fan-out in a fresh process whose ``documee_remote`` is the one under ``root``."""
    env = aws_env()
    env["PYTHONPATH"] = str(root)
    cmd = [
        sys.executable,
        "-c",
        CHILD,
        str(RUNNER),
        "--endpoint-url",
        endpoint,
        "--bucket",
        bucket,
        "--writers",
        str(writers),
        "--api",
        api,
        "--compaction",
        compaction,
        "--stats-url",
        endpoint + STATS_PATH,
        "--expect-root",
        str(root / "documee_remote"),
        "--timeout",
        str(timeout),
    ]
    try:
        # cwd=root: ``python -c`` puts the working directory first on sys.path, ahead of
        # the editable install of this checkout.
        proc = subprocess.run(
            cmd,
            check=False,
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout + 300,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"child timed out after {timeout + 300:.0f} s"}
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"child exited {proc.returncode}: {tail}", "stderr": proc.stderr[-4000:]}
    result: dict[str, Any] = json.loads(lines[-1])
    if proc.returncode and "error" not in result:
        result["error"] = f"child exited {proc.returncode}"
    return result


# -- the table -----------------------------------------------------------------------------


def row_of(design: str, result: dict[str, Any]) -> dict[str, Any]:
    if "error" in result:
        return {
            "design": design,
            "writers": result.get("writers"),
            "error": result["error"],
            "stderr": result.get("stderr", ""),
        }
    n = result["writers"]
    counts: dict[str, int] = result["counts"]
    per = {verb: counts.get(verb, 0) / n for verb in VERBS}
    moved = counts.get("bytes_in", 0) + counts.get("bytes_out", 0)
    return {
        "design": design,
        "writers": n,
        "api": result["api"],
        "compaction": result["compaction"],
        "wall_s": result["wall_seconds"],
        "requests_per_merge": result["requests_per_merge"],
        "per_merge": per,
        "status_412": counts.get("status_412", 0),
        "failures": result["failures"],
        "lost": result["lost"],
        "missing_from_analysis_json": len(result["missing_from_analysis_json"]),
        "files_in_analysis_json": result["files_in_analysis_json"],
        "files_in_load": result["files_in_load"],
        "missing_hashes": len(result["missing_hashes"]),
        "bytes_per_merge": moved / n if ("bytes_in" in counts or "bytes_out" in counts) else None,
        "slowest_writer_s": max((o["seconds"] for o in result["outcomes"]), default=0.0),
        "library": result["library"],
        "codebase_id": result["codebase_id"],
    }


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """wall(N) / wall(smallest N) per design."""
    base: dict[str, float] = {}
    for row in sorted(rows, key=lambda r: r.get("writers") or 0):
        if "error" in row:
            continue
        base.setdefault(row["design"], row["wall_s"])
        ref = base[row["design"]]
        row["wall_ratio"] = row["wall_s"] / ref if ref else None


def markdown(rows: list[dict[str, Any]], notes: list[str], smallest: int) -> str:
    head = (
        "| design | writers | wall s | req/merge | GET | PUT | LIST | other | 412s "
        f"| failures | lost | in analysis.json | KB/merge | wall / wall({smallest}) |"
    )
    lines = [head, "|" + "---|" * 2 + "---:|" * 12]
    for row in rows:
        if "error" in row:
            error = str(row["error"]).replace("|", "/")[:200]
            lines.append(f"| {row['design']} | {row['writers']} | {error} |" + " |" * 11)
            continue
        per = row["per_merge"]
        other = per["HEAD"] + per["DELETE"] + per["POST"]
        failures = ", ".join(f"{v} {k}" for k, v in sorted(row["failures"].items())) or "0"
        kb = (
            "not measured"
            if row["bytes_per_merge"] is None
            else f"{row['bytes_per_merge'] / 1024:.1f}"
        )
        ratio = row.get("wall_ratio")
        lines.append(
            f"| {row['design']} | {row['writers']} | {row['wall_s']:.2f} "
            f"| {row['requests_per_merge']:.1f} | {per['GET']:.1f} | {per['PUT']:.1f} "
            f"| {per['LIST']:.1f} | {other:.1f} | {row['status_412']} | {failures} "
            f"| {row['lost']} | {row['files_in_analysis_json']}/{row['writers']} | {kb} "
            f"| {'' if ratio is None else f'{ratio:.1f}x'} |"
        )
    return "\n".join(lines) + "\n\n" + "\n".join(f"- {note}" for note in notes) + "\n"


# -- main ----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve"]:  # internal: the counting server process
        serve_parser = argparse.ArgumentParser(prog="benchmarks.fanout serve")
        serve_parser.add_argument("--latency-ms", type=float, default=20.0)
        serve(serve_parser.parse_args(argv[1:]).latency_ms)
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--writers", default="8,32,128,256", help="comma-separated")
    parser.add_argument("--api", choices=("merge", "append"), default="merge")
    parser.add_argument("--compaction", choices=("eager", "deferred"), default="eager")
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument(
        "--baseline-ref", default=DEFAULT_BASELINE, help="git ref to compare with; 'none' to skip"
    )
    parser.add_argument("--timeout", type=float, default=900.0, help="per fan-out, seconds")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    counts = sorted({int(n) for n in args.writers.split(",") if n.strip()})
    notes = [
        f"{args.api} ({'merge_file_analyses' if args.api == 'merge' else 'append_file_analyses'}),"
        f" compaction {args.compaction}; each writer its own PersistenceManager and boto3 client,"
        " one synthetic file each, released together by a barrier; library default retries",
        f"moto harness with {args.latency_ms:g} ms added to every request, per-key serialised",
        "requests and bytes counted by the server over the window (release to last return);"
        " 'other' = HEAD + DELETE + POST; 412s = answers 412 (lost conditional writes)",
        "lost = acknowledged merges missing from load_analysis; 'in analysis.json' = files"
        " analysis.json read alone (plain GET + json.loads) holds, out of N (merges that raised"
        " may be missing; an acknowledged one missing under eager fails the run)",
    ]
    designs: list[tuple[str, Path]] = [(current_label(), REPO)]
    with contextlib.ExitStack() as stack:
        if args.baseline_ref.lower() != "none":
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fanout-base-")))
            label, note = export_baseline(args.baseline_ref, tmp)
            notes.append(note)
            if label is not None:
                designs.append((label, tmp))
        else:
            notes.append("baseline skipped (--baseline-ref none)")
        endpoint = stack.enter_context(server_process(args.latency_ms))
        rows: list[dict[str, Any]] = []
        started = time.perf_counter()
        for i, n in enumerate(counts):
            order = designs[::-1] if i % 2 == 0 else designs
            for design, root in order:
                bucket = f"fanout-{len(rows)}-{n}"
                create_bucket(endpoint, bucket)
                print(f"[fanout] {design}: {n} writers ...", file=sys.stderr, flush=True)
                result = run_child(
                    root=root,
                    endpoint=endpoint,
                    bucket=bucket,
                    writers=n,
                    api=args.api,
                    compaction=args.compaction,
                    timeout=args.timeout,
                )
                result.setdefault("writers", n)
                row = row_of(design, result)
                rows.append(row)
                print(f"[fanout]   {json.dumps(_brief(row))}", file=sys.stderr, flush=True)
        elapsed = time.perf_counter() - started
    rows.sort(key=lambda r: (r["design"] != designs[0][0], r.get("writers") or 0))
    add_ratios(rows)
    notes.append(
        f"{elapsed:.0f} s in all on {os.cpu_count()} cores ({platform.python_version()},"
        f" load average at the end {os.getloadavg()[0]:.1f})"
    )
    table = markdown(rows, notes, counts[0])
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    # One file per API and policy, so that make bench keeps every variant it runs.
    stem = "fanout" + "".join(
        f"-{v}" for v, default in ((args.api, "merge"), (args.compaction, "eager")) if v != default
    )
    title = f"Fan-out (issue 14): {args.api}, {args.compaction}"
    (args.out / f"{stem}.md").write_text(f"# {title}\n\n{table}")
    (args.out / f"{stem}.json").write_text(
        json.dumps(
            {
                "args": {k: str(v) for k, v in vars(args).items()},
                "designs": {label: str(root) for label, root in designs},
                "rows": rows,
                "notes": notes,
            },
            indent=2,
        )
        + "\n"
    )
    # A lost update is a bug in any mode; under eager, so is analysis.json alone lacking an
    # acknowledged merge (the policy's promise to upstream's readers).
    broken = any(
        row.get("lost") or (args.compaction == "eager" and row.get("missing_from_analysis_json"))
        for row in rows
    )
    return 1 if broken else 0


def _brief(row: dict[str, Any]) -> dict[str, Any]:
    keys = ("writers", "wall_s", "requests_per_merge", "failures", "lost", "error")
    return {k: row[k] for k in keys if k in row}


if __name__ == "__main__":
    sys.exit(main())
