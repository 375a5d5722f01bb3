"""The demo behind ``make demo``: concurrent analysers sharing one store.

Run it with ``python -m documee_remote.demo [--store URL]``:

1. Without ``--store`` (and without ``DOCUMEE_STORE_URL``) it starts an
   embedded moto S3 server on a free loopback port, with dummy credentials
   that never leave the process tree, and creates a bucket with versioning,
   default encryption and a public access block, as a real deployment has.
   With ``--store file:///tmp/x`` or ``--store s3://bucket/prefix`` it uses
   that store instead (S3 options from ``DOCUMEE_S3_*`` as usual).
2. It starts four analysers as separate processes, each the real command
   line ``python -m documee_remote analyze <this repository> --shard K/4``,
   all merging into one codebase at the same time, and prints their merges
   and the conflicts they retried as they happen.
3. It runs ``documee-remote ls``, ``show`` and ``verify`` through the same
   entry point, prints a summary, and stops the server.

The exit status is 0 only if every analyser succeeded and ``verify`` found
the merged codebase consistent. The demo's codebase (its id is printed) is
replaced on each run; nothing else in the store is touched.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

__all__ = ["DEMO_BUCKET", "ShardRun", "main", "run_demo"]

#: The bucket the embedded server gets.
DEMO_BUCKET = "documee-demo"
_DEMO_PREFIX = "analyses/"
_REGION = "us-east-1"
_STYLES = ("cyan", "magenta", "green", "yellow", "blue", "red")
#: Where stored paths are rooted, so the demo's ids do not depend on the checkout's location.
_PATH_PREFIX = "/srv/code/documee-remote"


@dataclass
class ShardRun:
    """One analyser process and what it reported."""

    shard: int
    of: int
    process: subprocess.Popen[str]
    started: float
    report: dict[str, Any] = field(default_factory=dict)
    merges: int = 0
    conflicts: int = 0
    returncode: int | None = None
    elapsed: float = 0.0

    @property
    def label(self) -> str:
        """``analyser 2/4``."""
        return f"analyser {self.shard}/{self.of}"


def _repository_root() -> Path:
    """This repository's root when run from a checkout; else the installed package."""
    package = Path(__file__).resolve().parent
    root = package.parent
    return root if (root / "pyproject.toml").is_file() else package


def _demo_codebase_id() -> str:
    # Upstream's ids are sha256 of the codebase path, first 16 hex digits.
    return hashlib.sha256(_PATH_PREFIX.encode("utf-8")).hexdigest()[:16]


@contextlib.contextmanager
def _embedded_s3(console: Console) -> Iterator[str]:
    """Start moto's S3 on a free loopback port; yield the store URL; stop it afterwards."""
    try:
        import boto3

        from .testing.moto_server import MotoServer
    except ImportError as exc:  # pragma: no cover - dev extra missing
        raise SystemExit(
            f"the embedded S3 server needs the dev extra: pip install 'documee-remote[dev]' ({exc})"
        ) from None
    # Dummy credentials for the embedded server only: clear every real AWS and S3
    # setting from this process (and so from the analysers it starts).
    for name in list(os.environ):
        if name.startswith(("AWS_", "DOCUMEE_S3_")):
            del os.environ[name]
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "demo",
            "AWS_SECRET_ACCESS_KEY": "demo-secret",
            "AWS_DEFAULT_REGION": _REGION,
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
        }
    )
    server = MotoServer().start()
    try:
        os.environ["DOCUMEE_S3_ENDPOINT_URL"] = server.endpoint_url
        os.environ["DOCUMEE_S3_REGION"] = _REGION
        client = boto3.client("s3", endpoint_url=server.endpoint_url, region_name=_REGION)
        client.create_bucket(Bucket=DEMO_BUCKET)
        client.put_bucket_versioning(
            Bucket=DEMO_BUCKET, VersioningConfiguration={"Status": "Enabled"}
        )
        client.put_bucket_encryption(
            Bucket=DEMO_BUCKET,
            ServerSideEncryptionConfiguration={
                "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
            },
        )
        client.put_public_access_block(
            Bucket=DEMO_BUCKET,
            PublicAccessBlockConfiguration={
                "BlockPublicAcls": True,
                "IgnorePublicAcls": True,
                "BlockPublicPolicy": True,
                "RestrictPublicBuckets": True,
            },
        )
        client.close()
        console.print(
            Text(f"embedded moto S3 server at {server.endpoint_url}, bucket {DEMO_BUCKET}")
        )
        yield f"s3://{DEMO_BUCKET}/{_DEMO_PREFIX}"
    finally:
        server.stop()
        console.print(Text("embedded S3 server stopped", style="dim"))


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "documee_remote", *args]


def _pump(run: ShardRun, stream: IO[str], events: queue.Queue[tuple[ShardRun, str]]) -> None:
    for line in stream:
        events.put((run, line.rstrip("\n")))
    events.put((run, ""))  # end of this stream


def _describe(event: dict[str, Any]) -> tuple[str, str] | None:
    """A line (and its style) for one analyser event; None for events not shown."""
    kind = event.get("kind")
    if kind == "discovered":
        return (
            f"{event.get('total', 0)} file(s) to analyse, {event.get('unchanged', 0)} unchanged",
            "",
        )
    if kind == "conflict":
        return (
            f"lost {event.get('conflicts', 0)} compare-and-swap race(s) to other analysers "
            "(analysis.json changed under a commit): read again and retried",
            "bold yellow",
        )
    if kind == "merged":
        conflicts = event.get("conflicts", 0)
        note = f" after {conflicts} retried conflict(s)" if conflicts else ""
        return (
            f"merged {event.get('batch', 0)} file(s) into analysis.json{note}; "
            f"{event.get('merged', 0)} so far",
            "",
        )
    if kind == "error":
        return f"error: {event.get('path')}: {event.get('message')}", "red"
    if kind == "done":
        return (
            f"done: {event.get('merged', 0)} merged, {event.get('conflicts', 0)} conflict(s) "
            "retried",
            "bold",
        )
    return None


def _run_analysers(
    console: Console, *, source: Path, codebase_id: str, shards: int, batch_size: int
) -> list[ShardRun]:
    events: queue.Queue[tuple[ShardRun, str]] = queue.Queue()
    runs: list[ShardRun] = []
    for k in range(1, shards + 1):
        command = _cli(
            "analyze",
            os.fspath(source),
            "--codebase-id",
            codebase_id,
            "--shard",
            f"{k}/{shards}",
            "--path-prefix",
            _PATH_PREFIX,
            "--batch-size",
            str(batch_size),
            "--events",
            "--json",
        )
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            env=os.environ.copy(),
        )
        run = ShardRun(k, shards, process, time.monotonic())
        runs.append(run)
        assert process.stderr is not None
        threading.Thread(target=_pump, args=(run, process.stderr, events), daemon=True).start()
    pids = ", ".join(str(r.process.pid) for r in runs)
    console.print(Text(f"started {shards} analyser processes (pids {pids})"))
    open_streams = len(runs)
    while open_streams:
        run, line = events.get()
        if line == "":
            open_streams -= 1
            continue
        style = _STYLES[(run.shard - 1) % len(_STYLES)]
        prefix = Text(f"[{run.label}] ", style=style)
        try:
            event = json.loads(line)
        except ValueError:
            event = None
        if not isinstance(event, dict):
            console.print(prefix + Text(line, style="dim"))
            continue
        if event.get("kind") == "merged":
            run.merges += 1
        if event.get("kind") == "conflict":
            run.conflicts += int(event.get("conflicts", 0))
        described = _describe(event)
        if described is not None:
            text, text_style = described
            console.print(prefix + Text(text, style=text_style))
    for run in runs:
        stdout, _ = run.process.communicate()
        run.returncode = run.process.returncode
        run.elapsed = time.monotonic() - run.started
        with contextlib.suppress(ValueError):
            loaded = json.loads(stdout or "{}")
            if isinstance(loaded, dict):
                run.report = loaded
    return runs


def _step(console: Console, title: str, *args: str) -> int:
    """Run the real CLI with ``args``, its output going straight to the terminal."""
    console.rule(Text(f"documee-remote {' '.join(args)}"), style="dim")
    del title
    sys.stdout.flush()
    completed = subprocess.run(_cli(*args), check=False, env=os.environ.copy())
    return completed.returncode


def run_demo(
    store_url: str | None,
    *,
    shards: int = 4,
    batch_size: int = 2,
    source: Path | None = None,
    console: Console | None = None,
) -> int:
    """Run the demo against ``store_url`` (None: an embedded moto S3 server); the exit status."""
    console = console or Console(highlight=False, soft_wrap=True)
    source = source or _repository_root()
    codebase_id = _demo_codebase_id()
    started = time.monotonic()
    context: contextlib.AbstractContextManager[str] = (
        contextlib.nullcontext(store_url) if store_url else _embedded_s3(console)
    )
    with context as url:
        os.environ["DOCUMEE_STORE_URL"] = url
        console.rule(Text("documee-remote demo", style="bold"))
        console.print(Text(f"store:     {url}"))
        console.print(Text(f"source:    {source} (stored as {_PATH_PREFIX}/...)"))
        console.print(Text(f"codebase:  {codebase_id}"))
        _reset_codebase(url, codebase_id)
        runs = _run_analysers(
            console, source=source, codebase_id=codebase_id, shards=shards, batch_size=batch_size
        )
        ls_rc = _step(console, "ls", "ls")
        show_rc = _step(console, "show", "show", codebase_id, "--top", "5")
        verify_rc = _step(console, "verify", "verify", codebase_id, "--grace-seconds", "0")
        ok = all(r.returncode == 0 for r in runs) and verify_rc == 0 and ls_rc == 0 and show_rc == 0
        _summary(console, runs, verify_rc=verify_rc, elapsed=time.monotonic() - started, ok=ok)
    return 0 if ok else 1


def _reset_codebase(url: str, codebase_id: str) -> None:
    """Start from an empty demo codebase (only that codebase is removed)."""
    from .config import Settings
    from .manager import PersistenceManager

    settings = Settings.load(store_url=url)
    with PersistenceManager(url, **settings.store_options()) as pm:
        pm.delete_analysis(codebase_id)


def _summary(
    console: Console, runs: Sequence[ShardRun], *, verify_rc: int, elapsed: float, ok: bool
) -> None:
    console.rule(Text("summary", style="bold"))
    table = Table()
    for column in ("analyser", "exit", "files", "analysed", "merges", "conflicts retried", "time"):
        table.add_column(column, justify="left" if column == "analyser" else "right")
    for run in runs:
        report = run.report
        table.add_row(
            Text(run.label, style=_STYLES[(run.shard - 1) % len(_STYLES)]),
            str(run.returncode),
            str(report.get("files_seen", "-")),
            str(report.get("analysed", "-")),
            str(report.get("merges", run.merges)),
            str(report.get("conflicts", run.conflicts)),
            f"{run.elapsed:.1f} s",
        )
    console.print(table)
    total_conflicts = sum(int(r.report.get("conflicts", r.conflicts)) for r in runs)
    total_files = sum(int(r.report.get("analysed", 0)) for r in runs)
    console.print(
        Text(
            f"{len(runs)} analysers merged {total_files} file(s) into one analysis.json, "
            f"retrying {total_conflicts} lost compare-and-swap race(s); verify exit "
            f"{verify_rc}; {elapsed:.1f} s in all"
        )
    )
    console.print(
        Text("demo passed" if ok else "demo FAILED", style="bold green" if ok else "bold red")
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m documee_remote.demo [--store URL]``."""
    parser = argparse.ArgumentParser(
        prog="python -m documee_remote.demo",
        description=(__doc__ or "").split("\n", 1)[0],
    )
    parser.add_argument(
        "--store",
        default=None,
        help="Store URL (file:///tmp/x, s3://bucket/prefix). Default: DOCUMEE_STORE_URL, "
        "else an embedded moto S3 server.",
    )
    parser.add_argument("--shards", type=int, default=4, help="Analyser processes (4).")
    parser.add_argument("--batch-size", type=int, default=2, help="Files per merge (2).")
    parser.add_argument(
        "--source", type=Path, default=None, help="Tree to analyse (this repository)."
    )
    args = parser.parse_args(argv)
    store = args.store or os.environ.get("DOCUMEE_STORE_URL") or None
    if args.shards < 1 or args.batch_size < 1:
        parser.error("--shards and --batch-size must be at least 1")
    return run_demo(store, shards=args.shards, batch_size=args.batch_size, source=args.source)


if __name__ == "__main__":
    sys.exit(main())
