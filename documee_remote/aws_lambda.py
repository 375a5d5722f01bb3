"""An AWS Lambda handler that analyses files and merges results into a shared store.

Deploy the zip built by ``scripts/build_lambda.py`` with the handler
``documee_remote.aws_lambda.handler`` and set ``DOCUMEE_STORE_URL`` (for
example ``s3://bucket/team-a/``; ``DOCUMEE_S3_*`` and the standard ``AWS_*``
variables apply as everywhere in documee-remote, see
:class:`documee_remote.config.Settings`). Invoke it directly with one of these
events (JSON; ``action`` selects the shape)::

    {"action": "analyse", "codebase_id": "myrepo",
     "files": [{"path": "/srv/code/myrepo/a.py", "content": "def f(): ..."},
               {"path": "/srv/code/myrepo/b.py", "content_base64": "ZGVm..."}],
     "removed": ["/srv/code/myrepo/old.py"],
     "analyser": "mypkg.analysers:analyse"}          # optional, must be allowed

    {"action": "analyse", "codebase_id": "myrepo",
     "source": {"bucket": "bundles", "keys": ["src-bundle/a.py"],
                "prefix_map": {"strip": "src-bundle/", "prepend": "/srv/code/myrepo/"}}}

    {"action": "merge", "codebase_id": "myrepo",
     "file_analyses": {"/srv/code/myrepo/a.py": {...FileAnalysis...}},
     "file_hashes": {"/srv/code/myrepo/a.py": "<sha256>"}, "removed": []}

    {"action": "verify", "codebase_id": "myrepo", "repair": false}
    {"action": "compact", "codebase_id": "myrepo"}
    {"action": "compact"}                           # every codebase (the schedule's event)

``"analyze"`` is accepted for ``"analyse"``. An ``analyse`` event may combine
``files``, ``source`` and ``removed``; the stored hash of each analysed file is
the sha256 of its bytes (the text's UTF-8 for ``content``), as the CLI records
it, so a later ``documee-remote analyze`` skips what a Lambda analysed.

Responses
---------
Success: ``{"ok": true, "status": 200, "action", "codebase_id", "files",
"removed", "attempts", "conflicts", "retries", "elapsed_ms", "errors"}``
(``errors``: files that could not be fetched or analysed, ``[{"path",
"error"}]``; they were skipped and their hashes not recorded).
``verify``/``compact`` add ``"result"``, the report's ``to_dict()``; a
``compact`` of every codebase adds ``"results"`` (one report each),
``"failed"`` (``[{"codebase_id", "error_type", "error"}]``: a corrupt codebase
does not stop the others) and ``"not_reached"`` (codebases left for the next
run when the function's time ran short).

Failure: ``{"ok": false, "status": N, "error": "...", "error_type": "...",
"details": [...]}``. Library errors take their status from
:data:`documee_remote.error_codes.ERROR_CODES`, the table the CLI's exit codes
come from too:

=====  =====================================================================
400    invalid event (``details`` lists each problem, never file contents),
       bad file path or codebase id (``InvalidKeyError``), analyser not allowed
403    ``PermissionDeniedError`` / ``ReadOnlyError``
404    ``NotFoundError``; ``verify``/``compact`` of a codebase that does not
       exist
409    ``ConflictError`` (``TooManyConflictsError``: other writers kept
       winning within the time left; lease and fencing errors),
       ``PreconditionFailedError``
413    ``ObjectTooLargeError``
422    ``CorruptObjectError`` (a stored object does not parse); every file of
       the event failed to analyse
500    ``ConfigurationError`` (the function's environment: DOCUMEE_STORE_URL
       unset, bucket missing, ...), other library errors
501    ``UnsupportedOperationError``; ``compact``/``verify`` on a build
       without them
503    ``TransientError``, including S3's 409 ``ConditionalRequestConflictError``
       -- only with ``DOCUMEE_LAMBDA_RAISE_TRANSIENT=false``
507    ``StorageFullError``
=====  =====================================================================

Transient errors (throttling, 5xx, timeouts that outlasted botocore's retries)
are **re-raised** by default, after the summary is logged: the invocation then
fails, and Lambda's own retries (asynchronous invocations, SQS and Kinesis
event sources, Step Functions retry policies) run it again later. That is safe
because every action is idempotent: a merge replays the same analyses and
hashes. Synchronous callers that prefer a 503 response set
``DOCUMEE_LAMBDA_RAISE_TRANSIENT=false``. Unexpected exceptions (bugs) are
re-raised too.

Other environment variables: ``DOCUMEE_LAMBDA_ANALYSERS`` (comma-separated
``module:function`` specs an event may name; the reference analyser is always
allowed, anything else must be listed, because an event must not be able to
call arbitrary importable functions), ``DOCUMEE_LAMBDA_MAX_FILE_BYTES``
(per-file size limit, 1 MiB by default).

Warm containers reuse the store (and its connection pool) and the S3 client
that reads source bundles: both are created on first use and cached per
configuration. Importing this module imports neither boto3 nor any of s3fs,
aiobotocore, aiohttp, moto, click or rich. Each invocation logs one JSON line
at INFO (action, codebase, counts, status, time; never file contents,
paths or credentials).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from pydantic import (
    ValidationError,
)

from . import layout
from ._lambda_events import (
    MAX_DETAILS,
    AnalyseEvent,
    CompactEvent,
    Event,
    MergeEvent,
    SourceBundle,
    VerifyEvent,
    _describe,
    parse_event,
)
from .analysis import (
    DEFAULT_MAX_FILE_SIZE,
    Analyser,
    content_sha256,
    load_analyser,
    reference_analyser,
)
from .config import S3Options, Settings
from .error_codes import http_status_for
from .errors import (
    ConfigurationError,
    ConflictError,
    CorruptObjectError,
    DocumeeRemoteError,
    InvalidKeyError,
    NotFoundError,
    PermissionDeniedError,
    TransientError,
)
from .manager import PersistenceManager
from .models import FileAnalysis
from .retry import RetryPolicy, TransactionStats

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = [
    "REFERENCE_ANALYSER",
    "AnalyseEvent",
    "CompactEvent",
    "Event",
    "MergeEvent",
    "VerifyEvent",
    "clear_caches",
    "get_manager",
    "handler",
    "parse_event",
    "status_for",
]

logger = logging.getLogger("documee_remote.aws_lambda")
if logger.level == logging.NOTSET:
    # Lambda's root logger sits at WARNING; the per-invocation summary is INFO.
    logger.setLevel(logging.INFO)

#: The spec of the built-in analyser, always allowed.
REFERENCE_ANALYSER = "documee_remote.analyser:reference_analyser"

#: The actions, as answered (``analyze`` is answered as ``analyse``).
ACTIONS = ("analyse", "merge", "compact", "verify")
#: Parallel GetObject calls when fetching a source bundle.
FETCH_CONCURRENCY = 16
#: Seconds kept back from the invocation's remaining time when bounding merge retries.
_DEADLINE_MARGIN = 5.0


# =========================================================================================
# Per-container state
# =========================================================================================

_lock = threading.Lock()
_managers: dict[Settings, PersistenceManager] = {}
_source_clients: dict[tuple[tuple[str, Any], ...], S3Client] = {}
_analysers: dict[str, Analyser] = {}


def get_manager(settings: Settings | None = None) -> PersistenceManager:
    """The container's PersistenceManager for the environment's settings.

    Created on first use and reused by every later (warm) invocation with the
    same settings, so the store's clients and connection pools survive
    between invocations. A change of settings (tests) closes the old one.

    Raises
    ------
    ConfigurationError
        ``DOCUMEE_STORE_URL`` is unset, or a ``DOCUMEE_*`` variable is invalid.
    """
    settings = settings or Settings.load()
    if not settings.store_url:
        raise ConfigurationError(
            "DOCUMEE_STORE_URL is not set; set it on the function, e.g. s3://bucket/prefix/"
        )
    with _lock:
        pm = _managers.get(settings)
        if pm is None:
            for old in _managers.values():
                old.close()
            _managers.clear()
            pm = PersistenceManager(settings.store_url, settings=settings)
            _managers[settings] = pm
            logger.info(json.dumps({"event": "store_opened", "store": pm.store.url}))
        return pm


def _source_client(settings: Settings) -> S3Client:
    """The container's S3 client for source bundles, with the same ``DOCUMEE_S3_*`` options."""
    options = settings.s3_options()
    cache_key = tuple(sorted(options.items()))
    with _lock:
        client = _source_clients.get(cache_key)
        if client is None:
            from .config import build_s3_client

            client = build_s3_client(S3Options.from_options(options))
            _source_clients[cache_key] = client
        return client


def clear_caches() -> None:
    """Close and forget the cached store, S3 client and analysers (for tests)."""
    with _lock:
        for pm in _managers.values():
            pm.close()
        _managers.clear()
        for client in _source_clients.values():
            client.close()
        _source_clients.clear()
        _analysers.clear()


def _allowed_analysers() -> set[str]:
    listed = os.environ.get("DOCUMEE_LAMBDA_ANALYSERS", "")
    return {REFERENCE_ANALYSER} | {s.strip() for s in listed.split(",") if s.strip()}


def _max_file_bytes() -> int:
    raw = os.environ.get("DOCUMEE_LAMBDA_MAX_FILE_BYTES")
    if raw is None:
        return DEFAULT_MAX_FILE_SIZE
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError("DOCUMEE_LAMBDA_MAX_FILE_BYTES must be an integer") from None
    if value < 1:
        raise ConfigurationError("DOCUMEE_LAMBDA_MAX_FILE_BYTES must be positive")
    return value


def _raise_transient() -> bool:
    value = os.environ.get("DOCUMEE_LAMBDA_RAISE_TRANSIENT", "true").strip().lower()
    return value not in ("0", "false", "no", "off")


class _RequestError(Exception):
    """An event that validated but cannot be served; answered with ``status``."""

    def __init__(self, message: str, status: int = 400, details: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.details = list(details)


def _analyser_for(spec: str | None) -> Analyser:
    if spec is None or spec == REFERENCE_ANALYSER:
        return reference_analyser
    if spec not in _allowed_analysers():
        raise _RequestError(
            f"analyser {spec!r} is not allowed here; list it in DOCUMEE_LAMBDA_ANALYSERS"
        )
    with _lock:
        found = _analysers.get(spec)
    if found is None:
        try:
            found = load_analyser(spec)
        except ConfigurationError as exc:
            raise _RequestError(str(exc)) from exc
        with _lock:
            _analysers[spec] = found
    return found


# =========================================================================================
# The actions
# =========================================================================================


def _retry_policy(context: Any) -> RetryPolicy:
    """The default policy, with a deadline that ends before the invocation's time runs out."""
    remaining = _remaining_ms(context)
    if remaining == float("inf"):
        return RetryPolicy()
    seconds = remaining / 1000.0 - _DEADLINE_MARGIN
    return RetryPolicy(deadline=max(1.0, min(seconds, RetryPolicy().deadline or seconds)))


def _fetch(
    source: SourceBundle, limit: int, settings: Settings
) -> tuple[list[tuple[str, bytes]], list[dict[str, str]]]:
    """Download a source bundle's keys in parallel: ``(path, bytes)`` and per-file errors.

    A missing key or one over the size limit is a per-file error; any other
    failure (access denied, no such bucket, throttling) fails the invocation.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    from .stores.s3 import translate_error

    client = _source_client(settings)
    where = f"s3://{source.bucket}/"

    def one(key: str) -> tuple[str, bytes | None, str | None]:
        path = source.path_of(key)
        try:
            response = client.get_object(Bucket=source.bucket, Key=key)
        except ClientError as exc:
            error = translate_error(exc, store_url=where, operation="get", key=key)
            if isinstance(error, NotFoundError):
                return path, None, f"source key {key!r} not found"
            raise error from exc
        except BotoCoreError as exc:
            raise translate_error(exc, store_url=where, operation="get", key=key) from exc
        body = response["Body"]
        try:
            size = response.get("ContentLength", 0)
            if size > limit:
                return path, None, f"{size} bytes, over the limit of {limit}"
            return path, body.read(), None
        finally:
            body.close()

    files: list[tuple[str, bytes]] = []
    errors: list[dict[str, str]] = []
    workers = max(1, min(FETCH_CONCURRENCY, len(source.keys)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="documee-fetch") as pool:
        for path, data, error in pool.map(one, source.keys):
            if data is None:
                errors.append({"path": path, "error": error or "not fetched"})
            else:
                files.append((path, data))
    return files, errors


def _analyse(
    event: AnalyseEvent, pm: PersistenceManager, settings: Settings, context: Any
) -> dict[str, Any]:
    analyser = _analyser_for(event.analyser)
    limit = _max_file_bytes()
    inputs: list[tuple[str, bytes]] = []
    errors: list[dict[str, str]] = []
    for item in event.files:
        data = item.data
        if len(data) > limit:
            errors.append({"path": item.path, "error": f"{len(data)} bytes, over {limit}"})
        else:
            inputs.append((item.path, data))
    if event.source is not None:
        fetched, fetch_errors = _fetch(event.source, limit, settings)
        inputs += fetched
        errors += fetch_errors

    analyses: dict[str, FileAnalysis] = {}
    hashes: dict[str, str] = {}
    started = time.perf_counter()
    for path, data in inputs:
        try:
            result = analyser(path, data)
        except Exception as exc:  # noqa: BLE001 - one file's failure must not fail the others
            errors.append({"path": path, "error": f"analyser failed: {type(exc).__name__}"})
            continue
        if not isinstance(result, FileAnalysis) or result.file_path != path:
            errors.append({"path": path, "error": "analyser returned no analysis of this file"})
            continue
        analyses[path] = result
        hashes[path] = content_sha256(data)
    analysis_ms = (time.perf_counter() - started) * 1000.0

    if not analyses and not event.removed:
        raise _RequestError(
            "no file could be fetched or analysed",
            status=422,
            details=[f"{e['path']}: {e['error']}" for e in errors[:MAX_DETAILS]],
        )
    stats = TransactionStats()
    pm.merge_file_analyses(
        event.codebase_id,
        analyses,
        hashes,
        removed=event.removed,
        analysis_time_ms=analysis_ms,
        retry=_retry_policy(context),
        stats=stats,
    )
    return _merged(event.codebase_id, len(analyses), len(event.removed), stats, errors)


def _merge(event: MergeEvent, pm: PersistenceManager, context: Any) -> dict[str, Any]:
    stats = TransactionStats()
    pm.merge_file_analyses(
        event.codebase_id,
        event.file_analyses,
        event.file_hashes,
        removed=event.removed,
        retry=_retry_policy(context),
        stats=stats,
    )
    return _merged(event.codebase_id, len(event.file_analyses), len(event.removed), stats, [])


def _merged(
    codebase_id: str,
    files: int,
    removed: int,
    stats: TransactionStats,
    errors: list[dict[str, str]],
) -> dict[str, Any]:
    return {
        "ok": True,
        "status": 200,
        "codebase_id": codebase_id,
        "files": files,
        "removed": removed,
        "attempts": stats.attempts,
        "conflicts": stats.conflicts,
        "retries": stats.retries,
        "errors": errors,
    }


def _jsonable(result: Any) -> Any:
    to_dict = getattr(result, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    model_dump = getattr(result, "model_dump", None)
    if callable(model_dump):
        return model_dump(mode="json")
    if result is None or isinstance(result, str | int | float | bool | list | dict):
        return result
    return str(result)


def _maintenance(
    event: CompactEvent | VerifyEvent, pm: PersistenceManager, context: Any
) -> dict[str, Any]:
    method: Callable[..., Any] | None = getattr(pm, event.action, None)
    if not callable(method):
        raise _RequestError(
            f"this build of documee-remote has no PersistenceManager.{event.action}",
            status=501,
        )
    if event.codebase_id is None:
        return _compact_all(pm, method, context)
    if next(iter(pm.store.list(layout.codebase_prefix(event.codebase_id))), None) is None:
        # Verifying or compacting nothing is not a success: the id is wrong, or the
        # codebase was deleted (the CLI exits 3 on the same).
        raise NotFoundError(
            f"codebase {event.codebase_id!r} not found in {pm.store.url}",
            codebase_id=event.codebase_id,
        )
    options: dict[str, Any] = {}
    if isinstance(event, VerifyEvent) and event.repair:
        options["repair"] = True
    result = method(event.codebase_id, **options)
    return {
        "ok": True,
        "status": 200,
        "codebase_id": event.codebase_id,
        "result": _jsonable(result),
    }


#: Stop starting compactions with less time than this left: one must not be cut short.
_COMPACT_RESERVE_MS = 30_000


def _compact_all(
    pm: PersistenceManager, compact: Callable[..., Any], context: Any
) -> dict[str, Any]:
    results: list[Any] = []
    failed: list[dict[str, str]] = []
    codebases = pm.list_codebases()
    not_reached: list[str] = []
    for n, codebase_id in enumerate(codebases):
        if _remaining_ms(context) < _COMPACT_RESERVE_MS:
            not_reached = codebases[n:]
            break
        try:
            results.append(_jsonable(compact(codebase_id)))
        except (CorruptObjectError, ConflictError, PermissionDeniedError) as exc:
            failed.append(
                {"codebase_id": codebase_id, "error_type": type(exc).__name__, "error": str(exc)}
            )
    return {
        "ok": not failed,
        "status": 200 if not failed else 207,
        "results": results,
        "failed": failed,
        "not_reached": not_reached,
    }


def _remaining_ms(context: Any) -> float:
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    return float(remaining()) if callable(remaining) else float("inf")


# =========================================================================================
# The handler
# =========================================================================================


def status_for(exc: BaseException) -> int:
    """The status a library error is answered with: :data:`documee_remote.error_codes.ERROR_CODES`.

    The same table gives the CLI's exit codes, so both report an error alike.
    """
    return http_status_for(exc)


def _log(response: dict[str, Any], context: Any) -> None:
    summary = {
        "event": "invocation",
        "request_id": getattr(context, "aws_request_id", None),
        "action": response.get("action"),
        "codebase_id": response.get("codebase_id"),
        "ok": response.get("ok"),
        "status": response.get("status"),
        "files": response.get("files"),
        "removed": response.get("removed"),
        "attempts": response.get("attempts"),
        "conflicts": response.get("conflicts"),
        "file_errors": len(response.get("errors") or ()),
        "error_type": response.get("error_type"),
        "elapsed_ms": response.get("elapsed_ms"),
    }
    logger.info(json.dumps({k: v for k, v in summary.items() if v is not None}))


def _known_action(event: Any) -> str | None:
    """The event's action if it is one we serve (raw values are caller input: not echoed)."""
    action = event.get("action") if isinstance(event, dict) else None
    if action == "analyze":
        return "analyse"
    return action if action in ACTIONS else None


def _known_codebase(event: Any) -> str | None:
    codebase_id = event.get("codebase_id") if isinstance(event, dict) else None
    try:
        return layout.validate_codebase_id(codebase_id)
    except InvalidKeyError:
        return None


def handler(event: Any, context: Any) -> dict[str, Any]:
    """The Lambda entry point: validate ``event``, run its action, answer with a summary.

    See the module documentation for the events, the responses and the
    status codes. Returns a JSON-serialisable dict; raises only transient
    errors (unless ``DOCUMEE_LAMBDA_RAISE_TRANSIENT=false``) and bugs.
    """
    started = time.perf_counter()
    head: dict[str, Any] = {
        "action": _known_action(event),
        "codebase_id": _known_codebase(event),
    }
    response: dict[str, Any]
    try:
        parsed = parse_event(event)
        settings = Settings.load()
        pm = get_manager(settings)
        if isinstance(parsed, AnalyseEvent):
            response = _analyse(parsed, pm, settings, context)
        elif isinstance(parsed, MergeEvent):
            response = _merge(parsed, pm, context)
        else:
            response = _maintenance(parsed, pm, context)
    except ValidationError as exc:
        response = _failure(
            400, f"invalid event: {len(exc.errors())} problem(s)", "ValidationError", _describe(exc)
        )
    except _RequestError as exc:
        response = _failure(exc.status, str(exc), "BadRequest", exc.details)
    except DocumeeRemoteError as exc:
        response = _failure(status_for(exc), str(exc), type(exc).__name__)
        if isinstance(exc, TransientError) and _raise_transient():
            _log({**head, **response, "elapsed_ms": _elapsed_ms(started)}, context)
            raise
    except Exception as exc:
        # A bug: log the summary (not the message: it could hold anything), let Lambda
        # record the failure and its traceback.
        failure = _failure(500, "internal error", type(exc).__name__)
        _log({**head, **failure, "elapsed_ms": _elapsed_ms(started)}, context)
        raise
    response = {"ok": response.pop("ok"), **head, **response}
    response["elapsed_ms"] = _elapsed_ms(started)
    _log(response, context)
    return response


def _failure(
    status: int, error: str, error_type: str, details: Sequence[str] = ()
) -> dict[str, Any]:
    return {
        "ok": False,
        "status": status,
        "error": error,
        "error_type": error_type,
        "details": list(details),
    }


def _elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000.0, 1)
