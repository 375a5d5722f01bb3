"""The contenders: documee-remote, a sequential port of upstream, and raw S3 clients.

Every contender performs the same logical operations on the same bytes:

========================  =====================================================================
contender                 what it does
========================  =====================================================================
documee-remote            ``PersistenceManager`` on ``S3Store`` (boto3, ``concurrency=16``)
documee-remote/fsspec     ``PersistenceManager`` on ``FsspecStore`` over s3fs (asyncio bulk)
documee-remote/obstore    ``PersistenceManager`` on ``ObstoreStore`` (obstore, asyncio bulk, 16)
sequential-port           upstream's ``PersistenceManager`` ported to boto3: ``json.dumps`` with
                          ``indent=2`` of each dict, one ``put_object`` per file in a loop, then
                          analysis.json
boto3-threads             boto3 ``put_object``/``get_object`` from a 16-thread pool
s3fs-bulk                 s3fs ``pipe`` (dict of paths to bytes) and ``cat_file``
obstore                   obstore (Rust, async) ``put_async``/``get``, 16 in flight
========================  =====================================================================

The raw clients PUT the exact bytes documee-remote writes (serialized once,
outside the timing): they measure the transport alone, the practical limit.
The sequential port serializes with the standard library inside the timing,
as upstream does; it gets the analysis as a dict (upstream's ``to_dict()``
output), so upstream's dataclass conversions are not counted against it.

Each operation is built by :meth:`Contender.prepare` (untimed: client
creation, input building) and returned as a callable that the worker times.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import json
import os
import resource
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from . import synth

__all__ = [
    "CONCURRENT_KINDS",
    "CONTENDERS",
    "MemoryProbe",
    "available_contenders",
    "fake_aws_environment",
    "make_contender",
    "writer_loop",
]

REGION = "us-east-1"
THREADS = 16

#: The ops each contender runs per scenario (concurrent: see writer_loop).
CONTENDERS: dict[str, dict[str, list[str]]] = {
    "documee-remote": {
        "save": ["save_analysis"],
        "load": ["load_analysis"],
        # merge_file_analyses compacts eagerly (the default policy); append_file_analyses
        # is the same merge under the deferred policy: a delta, no analysis.json rewrite.
        "incremental": ["save_analysis", "merge_file_analyses", "append_file_analyses"],
    },
    "documee-remote/fsspec": {
        "save": ["save_analysis"],
        "load": ["load_analysis"],
        "incremental": ["merge_file_analyses"],
    },
    "documee-remote/obstore": {
        "save": ["save_analysis"],
        "load": ["load_analysis"],
        "incremental": ["save_analysis", "merge_file_analyses"],
    },
    "sequential-port": {
        "save": ["save_analysis"],
        "load": ["load_analysis"],
        "incremental": ["save_analysis"],
    },
    "boto3-threads": {"save": ["put_all"], "load": ["get+json.loads"], "incremental": ["put_3"]},
    "s3fs-bulk": {"save": ["pipe"], "load": ["cat+json.loads"], "incremental": ["pipe_3"]},
    "obstore": {"save": ["put_all"], "load": ["get+json.loads"], "incremental": ["put_3"]},
}

#: Who takes part in the concurrent scenario, and how.
CONCURRENT_KINDS = {
    # append_file_analyses under the default (eager) policy: analysis.json holds each
    # merge when it returns, and writers appending at once share one compaction.
    "documee-remote": "append_file_analyses x{writers}",
    "documee-remote/fsspec": "append_file_analyses x{writers}",
    "documee-remote/obstore": "append_file_analyses x{writers}",
    "sequential-port": "read-modify-write x{writers} (no CAS)",
}


def fake_aws_environment() -> None:
    """Dummy credentials for the local moto server; nothing else of AWS is consulted."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            del os.environ[name]
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",  # moto's dummy credentials
        AWS_DEFAULT_REGION=REGION,
        AWS_EC2_METADATA_DISABLED="true",
    )


#: Contenders that need the optional obstore package.
NEEDS_OBSTORE = ("obstore", "documee-remote/obstore")


def available_contenders() -> list[str]:
    """Every contender whose packages import here (obstore is optional)."""
    names = []
    for name in CONTENDERS:
        if name in NEEDS_OBSTORE:
            try:
                import obstore  # noqa: F401
            except ImportError:
                continue
        names.append(name)
    return names


# ----------------------------------------------------------------------------- memory


class MemoryProbe:
    """Peak resident memory of one operation, from the kernel's high-water mark.

    Before the operation the VmHWM of this process is reset (``5`` into
    ``/proc/self/clear_refs``, Linux 4.0+); after it, VmHWM minus the RSS
    before is what the operation needed on top of what the process already
    held (its inputs). This sees native allocations (pydantic-core, obstore,
    OpenSSL) that tracemalloc misses, and costs nothing while the operation
    runs. Elsewhere ``ru_maxrss`` is used, which cannot be reset: then the
    figure is only an upper bound of the process so far.
    """

    def __init__(self) -> None:
        self.exact = Path("/proc/self/clear_refs").exists() and Path("/proc/self/status").exists()

    @staticmethod
    def _status(field: str) -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1]) * 1024
        raise LookupError(field)

    def start(self) -> int:
        if self.exact:
            try:
                Path("/proc/self/clear_refs").write_text("5")
                return self._status("VmRSS:")
            except OSError:
                self.exact = False
        return 0

    def peak(self, before: int) -> tuple[float, float]:
        """(peak MB above the start, absolute high-water mark MB)."""
        if self.exact:
            hwm = self._status("VmHWM:")
            return (hwm - before) / 1e6, hwm / 1e6
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return maxrss / 1e6, maxrss / 1e6


def timed(fn: Callable[[], Any]) -> tuple[Any, dict[str, Any]]:
    """Run ``fn`` once; wall, CPU (all threads of this process) and peak memory."""
    probe = MemoryProbe()
    gc.collect()
    before = probe.start()
    cpu0, t0 = time.process_time(), time.perf_counter()
    result = fn()
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    peak, hwm = probe.peak(before)
    return result, {
        "wall_s": wall,
        "cpu_s": cpu,
        "peak_mb": peak,
        "hwm_mb": hwm,
        "rss_before_mb": before / 1e6,
        "memory_method": "VmHWM reset" if probe.exact else "ru_maxrss",
        "t0": t0,
        "t1": t0 + wall,
    }


# ----------------------------------------------------------------------------- inputs


class Inputs:
    """Per-dataset inputs a worker derives once and keeps (outside any timing)."""

    def __init__(self, ds: synth.Dataset) -> None:
        self.ds = ds
        self._model: Any = None
        self._dict: Any = None
        self._versions: dict[int, dict[str, Any]] = {}

    @property
    def model(self) -> Any:
        if self._model is None:
            from documee_remote import codec

            self._model = codec.load_codebase_analysis(self.ds.analysis)
        return self._model

    @property
    def as_dict(self) -> Any:
        if self._dict is None:
            self._dict = json.loads(self.ds.analysis)
        return self._dict

    def version(self, k: int) -> dict[str, Any]:
        """The 2 changed files at version ``k``: models, bytes, hashes."""
        if k not in self._versions:
            from documee_remote import codec

            changes = {p: synth.changed_version(p, *self.ds.shapes[p], k) for p in self.ds.changed}
            self._versions = {
                k: {
                    "models": changes,
                    "bytes": {p: codec.dump_file_analysis(fa) for p, fa in changes.items()},
                    "hashes": {
                        p: hashlib.sha256(f"{p} v{k}".encode()).hexdigest() for p in changes
                    },
                }
            }
        return self._versions[k]

    def updated_model(self, k: int) -> Any:
        """The whole analysis with the 2 files at version ``k`` (a shallow copy)."""
        from documee_remote.merge import refresh_derived

        base = self.model
        entries = dict(base.file_analyses)
        entries.update(self.version(k)["models"])
        new = base.model_copy(update={"file_analyses": entries})
        refresh_derived(new)
        return new

    def updated_bytes(self, k: int) -> bytes:
        from documee_remote import codec

        return codec.dump_codebase_analysis(self.updated_model(k))


# ----------------------------------------------------------------------------- contenders


class Contender:
    """One way of talking to S3. ``prepare`` returns the callable to time."""

    name = ""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint

    def prepare(
        self, scenario: str, op: str, bucket: str, inputs: Inputs, version: int
    ) -> Callable[[], Any]:
        raise NotImplementedError

    def check(self, scenario: str, op: str, result: Any, inputs: Inputs) -> dict[str, Any]:
        """Untimed, request-free sanity check of an operation's result."""
        if scenario == "load":
            files = (
                len(result.file_analyses)
                if hasattr(result, "file_analyses")
                else len(result["file_analyses"])
            )
            return {"files_loaded": files, "ok": files == inputs.ds.n}
        return {"ok": True}

    def finish(self) -> None:
        """Release what ``prepare`` opened for one measurement."""

    def close(self) -> None:
        self.finish()


class DocumeeS3(Contender):
    name = "documee-remote"

    def __init__(self, endpoint: str) -> None:
        super().__init__(endpoint)
        self.pm: Any = None

    def open_store(self, bucket: str) -> Any:
        from documee_remote.stores.s3 import S3Store

        return S3Store(bucket, endpoint_url=self.endpoint, region=REGION, concurrency=THREADS)

    def prepare(
        self, scenario: str, op: str, bucket: str, inputs: Inputs, version: int
    ) -> Callable[[], Any]:
        from documee_remote import PersistenceManager

        self.finish()
        self.pm = pm = PersistenceManager(self.open_store(bucket))
        ds = inputs.ds
        cid = ds.codebase_id
        if scenario == "save":
            model = inputs.model
            return lambda: pm.save_analysis(cid, model)
        if scenario == "load":
            return lambda: pm.load_analysis(cid)
        if scenario == "incremental" and op == "save_analysis":
            model = inputs.updated_model(version)
            return lambda: pm.save_analysis(cid, model)
        if scenario == "incremental" and op == "merge_file_analyses":
            v = inputs.version(version)
            return lambda: pm.merge_file_analyses(cid, v["models"], v["hashes"])
        if scenario == "incremental" and op == "append_file_analyses":
            v = inputs.version(version)
            deferred = PersistenceManager(pm.store, compaction="deferred")
            return lambda: deferred.append_file_analyses(cid, v["models"], v["hashes"])
        raise ValueError(f"{self.name}: no op {scenario}/{op}")

    def finish(self) -> None:
        if self.pm is not None:
            self.pm.store.close()
            self.pm = None


class DocumeeFsspec(DocumeeS3):
    name = "documee-remote/fsspec"

    def open_store(self, bucket: str) -> Any:
        from documee_remote.stores.fsspec import FsspecStore

        return FsspecStore.from_url(
            f"s3://{bucket}", endpoint_url=self.endpoint, region=REGION, concurrency=THREADS
        )


class DocumeeObstore(DocumeeS3):
    name = "documee-remote/obstore"

    def open_store(self, bucket: str) -> Any:
        from documee_remote.stores.obstore import ObstoreStore

        return ObstoreStore(bucket, endpoint_url=self.endpoint, region=REGION, concurrency=THREADS)


def _boto3_client(endpoint: str, pool: int = THREADS) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        config=Config(max_pool_connections=pool),
    )


def upstream_file_key(codebase_id: str, file_path: str) -> str:
    """Upstream's name for a per-file object: ``file_`` + sha256(path)[:16]."""
    return f"{codebase_id}/file_{hashlib.sha256(file_path.encode('utf-8')).hexdigest()[:16]}.json"


def upstream_dumps(obj: Any) -> bytes:
    """What upstream writes: ``json.dump(obj, f, indent=2, ensure_ascii=False)`` in UTF-8."""
    return json.dumps(obj, indent=2, ensure_ascii=False).encode("utf-8")


class SequentialPort(Contender):
    """Upstream's PersistenceManager, ported line for line to boto3.

    ``save_analysis`` writes every file analysis with one ``put_object`` each,
    in a plain loop, then the whole analysis.json; ``load_analysis`` reads
    analysis.json and ``json.loads`` it (upstream would then build its
    dataclasses, which is not modelled here and would only add time).
    """

    name = "sequential-port"

    def __init__(self, endpoint: str) -> None:
        super().__init__(endpoint)
        self.s3 = _boto3_client(endpoint, pool=1)

    def save_analysis(self, bucket: str, codebase_id: str, analysis: dict[str, Any]) -> None:
        for path, fa in analysis["file_analyses"].items():
            self.s3.put_object(
                Bucket=bucket, Key=upstream_file_key(codebase_id, path), Body=upstream_dumps(fa)
            )
        self.s3.put_object(
            Bucket=bucket, Key=f"{codebase_id}/analysis.json", Body=upstream_dumps(analysis)
        )

    def load_analysis(self, bucket: str, codebase_id: str) -> Any:
        body = self.s3.get_object(Bucket=bucket, Key=f"{codebase_id}/analysis.json")["Body"]
        return json.loads(body.read())

    def prepare(
        self, scenario: str, op: str, bucket: str, inputs: Inputs, version: int
    ) -> Callable[[], Any]:
        cid = inputs.ds.codebase_id
        if scenario == "save":
            analysis = inputs.as_dict
            return lambda: self.save_analysis(bucket, cid, analysis)
        if scenario == "load":
            return lambda: self.load_analysis(bucket, cid)
        if scenario == "incremental":
            # The engine hands over the whole merged analysis; upstream rewrites it all.
            updated = json.loads(inputs.updated_bytes(version))
            return lambda: self.save_analysis(bucket, cid, updated)
        raise ValueError(f"{self.name}: no op {scenario}/{op}")


class Boto3Threads(Contender):
    name = "boto3-threads"

    def __init__(self, endpoint: str) -> None:
        super().__init__(endpoint)
        self.s3 = _boto3_client(endpoint)

    def put_all(self, bucket: str, items: dict[str, bytes], last: tuple[str, bytes]) -> None:
        def put(item: tuple[str, bytes]) -> None:
            self.s3.put_object(Bucket=bucket, Key=item[0], Body=item[1])

        with ThreadPoolExecutor(THREADS) as pool:
            list(pool.map(put, items.items()))
        put(last)  # the commit point goes last, as everyone does

    def get_json(self, bucket: str, key: str) -> Any:
        return json.loads(self.s3.get_object(Bucket=bucket, Key=key)["Body"].read())

    def prepare(
        self, scenario: str, op: str, bucket: str, inputs: Inputs, version: int
    ) -> Callable[[], Any]:
        ds = inputs.ds
        if scenario == "save":
            items = {ds.file_key(p): b for p, b in ds.files.items()}
            last = (ds.analysis_key, ds.analysis)
            return lambda: self.put_all(bucket, items, last)
        if scenario == "load":
            return lambda: self.get_json(bucket, ds.analysis_key)
        if scenario == "incremental":
            v = inputs.version(version)
            items = {ds.file_key(p): b for p, b in v["bytes"].items()}
            last = (ds.analysis_key, inputs.updated_bytes(version))
            return lambda: self.put_all(bucket, items, last)
        raise ValueError(f"{self.name}: no op {scenario}/{op}")


class S3fsBulk(Contender):
    name = "s3fs-bulk"

    def __init__(self, endpoint: str) -> None:
        super().__init__(endpoint)
        import s3fs

        self.fs = s3fs.S3FileSystem(
            endpoint_url=endpoint,
            client_kwargs={"region_name": REGION},
            config_kwargs={"max_pool_connections": THREADS},
            skip_instance_cache=True,
            use_listings_cache=False,
        )

    def put_all(self, bucket: str, items: dict[str, bytes], last: tuple[str, bytes]) -> None:
        self.fs.pipe({f"{bucket}/{k}": v for k, v in items.items()})
        self.fs.pipe_file(f"{bucket}/{last[0]}", last[1])

    def prepare(
        self, scenario: str, op: str, bucket: str, inputs: Inputs, version: int
    ) -> Callable[[], Any]:
        ds = inputs.ds
        if scenario == "save":
            items = {ds.file_key(p): b for p, b in ds.files.items()}
            last = (ds.analysis_key, ds.analysis)
            return lambda: self.put_all(bucket, items, last)
        if scenario == "load":
            path = f"{bucket}/{ds.analysis_key}"
            return lambda: json.loads(self.fs.cat_file(path))
        if scenario == "incremental":
            v = inputs.version(version)
            items = {ds.file_key(p): b for p, b in v["bytes"].items()}
            last = (ds.analysis_key, inputs.updated_bytes(version))
            return lambda: self.put_all(bucket, items, last)
        raise ValueError(f"{self.name}: no op {scenario}/{op}")


class Obstore(Contender):
    name = "obstore"

    def store(self, bucket: str) -> Any:
        from obstore.store import S3Store

        return S3Store(
            bucket,
            endpoint=self.endpoint,
            access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
            secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
            region=REGION,
            virtual_hosted_style_request=False,
            client_options={"allow_http": True},
        )

    @staticmethod
    def put_all(store: Any, items: dict[str, bytes], last: tuple[str, bytes]) -> None:
        import obstore

        async def run() -> None:
            gate = asyncio.Semaphore(THREADS)

            async def one(key: str, data: bytes) -> None:
                async with gate:
                    # One PUT per object, like everyone else (obstore would split
                    # anything over 5 MB into a multipart upload).
                    await obstore.put_async(store, key, data, use_multipart=False)

            await asyncio.gather(*(one(k, v) for k, v in items.items()))
            await obstore.put_async(store, last[0], last[1], use_multipart=False)

        asyncio.run(run())

    def prepare(
        self, scenario: str, op: str, bucket: str, inputs: Inputs, version: int
    ) -> Callable[[], Any]:
        import obstore

        ds = inputs.ds
        store = self.store(bucket)
        if scenario == "save":
            items = {ds.file_key(p): b for p, b in ds.files.items()}
            last = (ds.analysis_key, ds.analysis)
            return lambda: self.put_all(store, items, last)
        if scenario == "load":
            key = ds.analysis_key
            return lambda: json.loads(bytes(obstore.get(store, key).bytes()))
        if scenario == "incremental":
            v = inputs.version(version)
            items = {ds.file_key(p): b for p, b in v["bytes"].items()}
            last = (ds.analysis_key, inputs.updated_bytes(version))
            return lambda: self.put_all(store, items, last)
        raise ValueError(f"{self.name}: no op {scenario}/{op}")


_CLASSES: dict[str, type[Contender]] = {
    c.name: c
    for c in (
        DocumeeS3,
        DocumeeFsspec,
        DocumeeObstore,
        SequentialPort,
        Boto3Threads,
        S3fsBulk,
        Obstore,
    )
}


def make_contender(name: str, endpoint: str) -> Contender:
    return _CLASSES[name](endpoint)


# ----------------------------------------------------------------------------- concurrent


def _documee_writer(kind: str, endpoint: str, bucket: str, ds: synth.Dataset, k: int) -> Any:
    """Build writer ``k``'s merge (untimed); return the callable to time."""
    from documee_remote import GraphUpdate, PersistenceManager, codec
    from documee_remote.models import CircularDependency, DependencyEdge, DetectedPattern, FileNode
    from documee_remote.retry import TransactionStats

    part = ds.slices[k]
    analyses = {p: codec.load_file_analysis(ds.files[p]) for p in part["paths"]}
    hashes = {p: ds.hashes[p] for p in part["paths"]}
    nodes = {p: FileNode.model_validate(n) for p, n in part["nodes"].items()}
    edges = [DependencyEdge.model_validate(e) for e in part["edges"]]
    cycles = [CircularDependency.model_validate(c) for c in part["cycles"]]
    patterns = [DetectedPattern.model_validate(p) for p in part["patterns"]]
    external = dict(part["external"])
    # This writer's part of the graph as data (nodes and outgoing edges of its files,
    # externals; cycles and patterns when it has them), so the merge fits in a delta.
    graph = GraphUpdate(
        nodes=nodes,
        edges=edges,
        external_dependencies=external,
        circular_dependencies=cycles or None,
        global_patterns=patterns or None,
    )

    if kind == "documee-remote/fsspec":
        from documee_remote.stores.fsspec import FsspecStore

        store: Any = FsspecStore.from_url(
            f"s3://{bucket}", endpoint_url=endpoint, region=REGION, concurrency=THREADS
        )
    elif kind == "documee-remote/obstore":
        from documee_remote.stores.obstore import ObstoreStore

        store = ObstoreStore(bucket, endpoint_url=endpoint, region=REGION, concurrency=THREADS)
    else:
        from documee_remote.stores.s3 import S3Store

        store = S3Store(bucket, endpoint_url=endpoint, region=REGION, concurrency=THREADS)
    pm = PersistenceManager(store)
    stats = TransactionStats()

    def run() -> dict[str, Any]:
        report = pm.append_file_analyses(ds.codebase_id, analyses, hashes, graph=graph)
        stats.add(report.stats)
        return {
            "attempts": stats.attempts,
            "conflicts": stats.conflicts,
            "waited_s": stats.waited,
            "compacted": report.compaction is not None,
        }

    return run


def _port_writer(endpoint: str, bucket: str, ds: synth.Dataset, k: int) -> Any:
    """Upstream style: write the files, then read-modify-write analysis.json, no CAS."""
    from botocore.exceptions import ClientError

    part = ds.slices[k]
    s3 = _boto3_client(endpoint, pool=1)
    cid = ds.codebase_id
    files = {p: json.loads(ds.files[p]) for p in part["paths"]}

    def read(key: str, empty: Any) -> Any:
        try:
            return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return empty
            raise

    def run() -> dict[str, Any]:
        for path, fa in files.items():
            s3.put_object(Bucket=bucket, Key=upstream_file_key(cid, path), Body=upstream_dumps(fa))
        empty = {
            "codebase_id": cid,
            "file_analyses": {},
            "dependency_graph": {
                "nodes": {},
                "edges": [],
                "circular_dependencies": [],
                "external_dependencies": {},
            },
            "global_patterns": [],
            "top_teaching_files": [],
            "metrics": {},
            "analyzed_at": "",
        }
        analysis = read(f"{cid}/analysis.json", empty)
        analysis["file_analyses"].update(files)
        graph = analysis["dependency_graph"]
        graph["nodes"].update(part["nodes"])
        graph["edges"] = [e for e in graph["edges"] if e["from_file"] not in files]
        graph["edges"] += part["edges"]
        graph["external_dependencies"].update(part["external"])
        if part["cycles"]:
            graph["circular_dependencies"] = part["cycles"]
        if part["patterns"]:
            analysis["global_patterns"] = part["patterns"]
        s3.put_object(Bucket=bucket, Key=f"{cid}/analysis.json", Body=upstream_dumps(analysis))
        hashes = read(f"{cid}/file_hashes.json", {})
        hashes.update({p: ds.hashes[p] for p in files})
        s3.put_object(Bucket=bucket, Key=f"{cid}/file_hashes.json", Body=upstream_dumps(hashes))
        return {}

    return run


def writer_loop(k: int, tasks: Any, ready: Any, go: Any, results: Any) -> None:
    """Concurrent writer ``k``: a spawned process that serves merges until told to stop.

    The orchestrator starts the 8 writers once for the whole run (starting 8
    interpreters costs seconds on 2 cores). For each task it gets
    ``(kind, endpoint, bucket, dataset path)``, builds writer ``k``'s inputs
    (untimed), releases ``ready``, waits for ``go`` and reports its timing on
    ``results``. Errors are reported, not raised.
    """
    fake_aws_environment()
    # Import now, while nothing is measured, and say so: the first task must not
    # pay for 8 interpreters importing boto3 at once.
    import boto3  # noqa: F401

    import documee_remote.manager
    import documee_remote.stores.fsspec
    import documee_remote.stores.s3

    with contextlib.suppress(ImportError):  # the optional obstore backend
        import documee_remote.stores.obstore  # noqa: F401

    ready.release()
    cached: tuple[str, synth.Dataset] | None = None
    while True:
        task = tasks.get()
        if task is None:
            return
        kind, endpoint, bucket, dataset_path = task
        try:
            if cached is None or cached[0] != dataset_path:
                cached = None
                cached = (dataset_path, synth.load_dataset(dataset_path))
            ds = cached[1]
            if kind == "sequential-port":
                run = _port_writer(endpoint, bucket, ds, k)
            else:
                run = _documee_writer(kind, endpoint, bucket, ds, k)
        except Exception:
            results.put({"writer": k, "error": traceback.format_exc(limit=5)[-1500:]})
            ready.release()
            continue
        ready.release()
        go.wait()
        try:
            info, timing = timed(run)
            results.put({"writer": k, **timing, "info": info})
        except Exception as exc:
            results.put({"writer": k, "error": f"{type(exc).__name__}: {exc}"[:500]})
        del run
