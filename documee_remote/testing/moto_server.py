"""A moto S3 server for tests: atomic per-key writes, fault injection, latency.

:class:`MotoServer` runs moto's WSGI application on ``127.0.0.1`` (port 0 by
default: a free port) in a background thread of the current process. Any
process can use it over HTTP through :attr:`MotoServer.endpoint_url`.

Between moto and the network sits :class:`HarnessApp`, a thin WSGI wrapper
that does three things:

1. **Per-key serialisation.** moto checks a conditional write's precondition
   and then stores the object in separate steps, without a lock. Under
   concurrency it loses updates (240 successful ``If-Match`` writes were seen
   to leave a counter at 239), and a GET racing a PUT of the same key can get
   a 500. Real S3 is atomic per key, so the wrapper holds a lock per object
   key around every request that names that key (GET, HEAD, PUT, POST,
   DELETE; DeleteObjects locks all the keys it lists), which gives moto S3's
   per-key atomicity. Requests on different keys still run in parallel.
   (Readers could share a read lock; one plain lock per key is simpler and
   fast enough for tests.) Listings also iterate moto's key dict, which a
   concurrent insert breaks, so a listing excludes writes to its bucket.
2. **Fault injection** (:class:`FaultInjector`, at :attr:`MotoServer.faults`):
   rules that match a request by method, key (regex or predicate) and
   occurrence, and answer with an S3 error (503 SlowDown, 500 InternalError,
   409 ConditionalRequestConflict, which moto never produces, 403
   AccessDenied, or any status and code) or drop the connection, either
   *before* the request reaches moto or *after* moto applied it (so a write
   lands but its response is lost, and botocore retries it). The injector can
   also strip ``If-Match``/``If-None-Match`` headers, to imitate a service that
   silently ignores conditional writes, and add latency to every request.
3. **Emulated servers** (:meth:`FaultInjector.emulate`): the ways real
   S3-compatible servers were seen to break S3's rules (see :data:`QUIRKS`),
   so the library's handling of them is tested without those servers.
4. **Counters** of requests by method and of faults by name.

Dropping a connection: the wrapper reads the request body, shuts the socket
down (``shutdown(SHUT_RDWR)`` on werkzeug's ``environ["werkzeug.socket"]``)
and raises :class:`ConnectionAbortedError`, which werkzeug's request handler
treats as a dropped connection and does not answer. The client sees the
connection close without a response (``RemoteDisconnected``, surfaced by
botocore as ``ConnectionClosedError``), which botocore retries like any
connection error.

Werkzeug's server answers ``Connection: close`` to every request, so each
request uses a fresh TCP connection; this is the harness's cost, not the
library's.

Run one by hand (for benchmarks or a second shell)::

    python -m documee_remote.testing.moto_server --port 5000 --latency-ms 20
"""

from __future__ import annotations

import argparse
import contextlib
import html
import io
import re
import socket
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from types import TracebackType
from typing import Any, Literal, Self
from urllib.parse import parse_qs

from ._rules import Rule, RuleBook, check_occurrence, key_matches

__all__ = [
    "ACCESS_DENIED",
    "CONDITIONAL_CONFLICT",
    "DROP",
    "INTERNAL_ERROR",
    "QUIRKS",
    "SLOW_DOWN",
    "Fault",
    "FaultInjector",
    "FaultRule",
    "HarnessApp",
    "MotoServer",
    "RequestInfo",
]

WSGIEnviron = dict[str, Any]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[WSGIEnviron, StartResponse], Iterable[bytes]]

#: Lock stripes: keys hash onto a fixed set of locks, so memory stays bounded and
#: nothing needs cleaning up; two keys sharing a stripe only wait for each other.
_STRIPES = 256


@dataclass(frozen=True, slots=True)
class Fault:
    """What an injected fault does: answer an S3 error, or drop the connection.

    Use the constants (:data:`SLOW_DOWN`, :data:`INTERNAL_ERROR`,
    :data:`CONDITIONAL_CONFLICT`, :data:`ACCESS_DENIED`, :data:`DROP`) or
    :meth:`error` for any other status and code.
    """

    kind: Literal["error", "drop"]
    status: int = 0
    code: str = ""
    message: str = ""

    @classmethod
    def error(cls, status: int, code: str, message: str = "") -> Fault:
        """An S3-style XML error response."""
        return cls("error", status, code, message or code)

    @property
    def name(self) -> str:
        """``"drop"`` or the S3 error code; the key of the fault counters."""
        return "drop" if self.kind == "drop" else self.code


SLOW_DOWN = Fault.error(503, "SlowDown", "Please reduce your request rate.")
INTERNAL_ERROR = Fault.error(
    500, "InternalError", "We encountered an internal error. Please try again."
)
CONDITIONAL_CONFLICT = Fault.error(
    409,
    "ConditionalRequestConflict",
    "A conflicting conditional operation is currently in progress against this resource.",
)
ACCESS_DENIED = Fault.error(403, "AccessDenied", "Access Denied")
DROP = Fault("drop")

#: The servers :meth:`FaultInjector.emulate` imitates, and how they break S3's rules.
QUIRKS: dict[str, str] = {
    "ceph16": (
        "Ceph RGW 16.2: ignores If-Match on DELETE (the object is deleted whatever the "
        "ETag), and answers 412 to a PUT whose If-Match is a quoted ETag, the current one too"
    ),
    "localstack": "LocalStack: answers 501 NotImplemented to a DELETE with If-Match",
    "ignore-start-after": (
        "ListObjectsV2 ignores StartAfter and lists from the prefix's first key (SeaweedFS "
        "does so for a StartAfter that ends in '/')"
    ),
}

_PRECONDITION_FAILED = Fault.error(
    412, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold"
)
_NOT_IMPLEMENTED = Fault.error(
    501, "NotImplemented", "A header you provided implies functionality that is not implemented"
)


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """What the harness knows about a request when matching rules.

    ``key`` is the full object key in the bucket (store prefix included), or
    None for bucket-level requests (listing, DeleteObjects) and other services.
    """

    method: str
    service: str | None
    bucket: str | None
    key: str | None
    query: dict[str, list[str]]
    headers: dict[str, str]


KeyMatcher = str | re.Pattern[str] | Callable[[RequestInfo], bool] | None


@dataclass(slots=True)
class FaultRule(Rule):
    """One rule of the :class:`FaultInjector`; see :meth:`FaultInjector.add`.

    ``seen`` counts requests that matched the rule's filters, ``fired`` the
    faults it injected (:class:`~._rules.Rule`, the occurrence every
    injector's rules share).
    """

    fault: Fault
    method: str | None = None
    key: KeyMatcher = None
    after: bool = False
    service: str | None = "s3"

    def matches(self, info: RequestInfo) -> bool:
        """Whether the request passes this rule's filters (occurrence not considered)."""
        if self.service is not None and info.service != self.service:
            return False
        if self.method is not None and info.method != self.method.upper():
            return False
        if callable(self.key) and not isinstance(self.key, re.Pattern):
            return bool(self.key(info))
        return key_matches(self.key, info.key)


@dataclass
class _Stats:
    requests: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)


class FaultInjector:
    """Rules, switches and counters of the harness; safe to change from any thread.

    Parameters
    ----------
    latency_ms:
        Delay added to every request before it is handled (outside the key
        locks, so concurrent requests overlap as they would on a network).
    """

    def __init__(self, *, latency_ms: float = 0.0) -> None:
        self._book: RuleBook[FaultRule] = RuleBook()
        self._lock = self._book.lock
        self._stats = _Stats()
        self._default_latency_ms = latency_ms
        self.latency_ms = latency_ms
        #: Remove ``If-Match``/``If-None-Match`` from every request: an endpoint that
        #: accepts conditional writes and silently ignores them.
        self.strip_conditional_headers = False
        #: The :data:`QUIRKS` in effect (see :meth:`emulate`).
        self.quirks: frozenset[str] = frozenset()

    def add(
        self,
        fault: Fault,
        *,
        method: str | None = None,
        key: KeyMatcher = None,
        after: bool = False,
        nth: int = 1,
        times: int | None = 1,
        probability: float = 1.0,
        service: str | None = "s3",
    ) -> FaultRule:
        """Inject ``fault`` into matching requests.

        Parameters
        ----------
        method:
            ``"GET"``, ``"PUT"``, ... or None for any.
        key:
            A regex searched in the object key, a predicate on
            :class:`RequestInfo`, or None for any request (bucket-level ones
            included). A regex never matches bucket-level requests.
        after:
            Let moto handle the request first, then replace its response by
            the fault: the write lands, the client does not learn it.
        nth:
            The first matching request to fault (1 = the first).
        times:
            How many requests to fault; None for every one from ``nth`` on.
        probability:
            Chance that an eligible request is faulted.
        service:
            Only requests signed for this service (``"s3"``, ``"sts"``); None
            for any.
        """
        check_occurrence(nth, times, probability)
        rule = FaultRule(
            fault=fault,
            method=method.upper() if method else None,
            key=key,
            after=after,
            nth=nth,
            times=times,
            probability=probability,
            service=service,
        )
        return self._book.add(rule)

    def emulate(self, *quirks: str) -> None:
        """Behave like the named servers (keys of :data:`QUIRKS`) until :meth:`clear`.

        ``emulate()`` with no name turns every quirk off.
        """
        unknown = sorted(set(quirks) - set(QUIRKS))
        if unknown:
            raise ValueError(f"unknown quirks {unknown}; known: {sorted(QUIRKS)}")
        self.quirks = frozenset(quirks)

    def remove(self, rule: FaultRule) -> None:
        """Stop applying ``rule``."""
        self._book.remove(rule)

    def clear(self) -> None:
        """Remove every rule, reset counters, latency, header stripping and quirks."""
        self._book.clear()
        with self._lock:
            self._stats = _Stats()
            self.latency_ms = self._default_latency_ms
            self.strip_conditional_headers = False
            self.quirks = frozenset()

    @property
    def requests(self) -> Counter[str]:
        """S3 requests seen, by HTTP method (a snapshot)."""
        with self._lock:
            return Counter(self._stats.requests)

    @property
    def faults(self) -> Counter[str]:
        """Faults injected, by :attr:`Fault.name` (a snapshot)."""
        with self._lock:
            return Counter(self._stats.faults)

    def _choose(self, info: RequestInfo) -> FaultRule | None:
        """Count the request and pick the rule that faults it, if any.

        Every matching rule counts the request (so ``nth`` means the nth
        matching request, whatever other rules did with it); the first
        eligible rule fires, and only one fault is injected per request.
        """
        with self._lock:
            if info.service == "s3":
                self._stats.requests[info.method] += 1
            chosen = self._book.pick(lambda rule: rule.matches(info))
            if chosen is not None:
                self._stats.faults[chosen.fault.name] += 1
            return chosen


class _SharedExclusiveLock:
    """A readers-writer lock: many holders in shared mode, or one in exclusive mode."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._shared = 0
        self._exclusive = False

    @contextlib.contextmanager
    def hold(self, *, exclusive: bool) -> Iterator[None]:
        with self._cond:
            while self._exclusive or (exclusive and self._shared):
                self._cond.wait()
            if exclusive:
                self._exclusive = True
            else:
                self._shared += 1
        try:
            yield
        finally:
            with self._cond:
                if exclusive:
                    self._exclusive = False
                else:
                    self._shared -= 1
                self._cond.notify_all()


class HarnessApp:
    """The WSGI wrapper around moto's app; see the module docstring.

    Locks, always taken in this order (so no two requests can deadlock):

    1. the bucket's readers-writer lock: shared for requests that change
       objects, exclusive for bucket-level reads (listings), because moto
       iterates the bucket's key dict while listing and a concurrent insert
       would break that iteration (a 500);
    2. the stripes of the object keys the request names, in index order.
    """

    def __init__(self, app: WSGIApp, injector: FaultInjector) -> None:
        self.app = app
        self.injector = injector
        self._stripes = [threading.Lock() for _ in range(_STRIPES)]
        self._buckets: dict[str, _SharedExclusiveLock] = {}
        self._buckets_lock = threading.Lock()

    def __call__(self, environ: WSGIEnviron, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "").startswith("/moto-api"):
            return self.app(environ, start_response)
        latency = self.injector.latency_ms
        if latency > 0:
            time.sleep(latency / 1000.0)
        if self.injector.strip_conditional_headers:
            environ.pop("HTTP_IF_MATCH", None)
            environ.pop("HTTP_IF_NONE_MATCH", None)
        info = _describe(environ)
        rule = self.injector._choose(info)
        if rule is not None and not rule.after:
            return _answer_fault(rule.fault, info, environ, start_response, drain=True)
        quirk = _apply_quirks(self.injector.quirks, info, environ)
        if quirk is not None:
            return _answer_fault(quirk, info, environ, start_response, drain=True)
        with self._locked(info, environ):
            status, headers, body = _run(self.app, environ)
        if rule is not None:
            # moto read the body already: reading again would wait for bytes never sent.
            return _answer_fault(rule.fault, info, environ, start_response, drain=False)
        start_response(status, headers)
        return [body]

    @contextlib.contextmanager
    def _locked(self, info: RequestInfo, environ: WSGIEnviron) -> Iterator[None]:
        if info.service != "s3" or info.bucket is None:
            yield
            return
        reading = info.method in ("GET", "HEAD")
        keys: list[str] = []
        if info.key is not None:
            keys = [info.key]
        elif info.method == "POST" and "delete" in info.query:
            # DeleteObjects names its keys in the body: lock them all.
            body = _read_body(environ)
            environ["wsgi.input"] = io.BytesIO(body)
            text = body.decode("utf-8", "replace")
            keys = [html.unescape(k) for k in re.findall(r"<Key>(.*?)</Key>", text, re.S)]
        with contextlib.ExitStack() as stack:
            if not (reading and info.key is not None):  # object reads iterate nothing
                with self._buckets_lock:
                    bucket_lock = self._buckets.setdefault(info.bucket, _SharedExclusiveLock())
                listing = reading and info.key is None
                stack.enter_context(bucket_lock.hold(exclusive=listing))
            for index in sorted({hash(k) % _STRIPES for k in keys}):
                stack.enter_context(self._stripes[index])
            yield


def _apply_quirks(quirks: frozenset[str], info: RequestInfo, environ: WSGIEnviron) -> Fault | None:
    """Bend ``environ`` as the emulated servers would, or return the error they answer."""
    if not quirks or info.service != "s3":
        return None
    if_match = environ.get("HTTP_IF_MATCH")
    if info.key is not None and if_match is not None:
        if info.method == "DELETE" and "localstack" in quirks:
            return _NOT_IMPLEMENTED
        if info.method == "DELETE" and "ceph16" in quirks:
            environ.pop("HTTP_IF_MATCH")
        elif info.method == "PUT" and "ceph16" in quirks and if_match.strip().startswith('"'):
            return _PRECONDITION_FAILED
    if (
        "ignore-start-after" in quirks
        and info.method == "GET"
        and info.key is None
        and "start-after" in info.query
    ):
        environ["QUERY_STRING"] = "&".join(
            part
            for part in environ.get("QUERY_STRING", "").split("&")
            if part.split("=", 1)[0] != "start-after"
        )
    return None


def _run(app: WSGIApp, environ: WSGIEnviron) -> tuple[str, list[tuple[str, str]], bytes]:
    """Call ``app`` and buffer its whole response, so the key lock covers all of it."""
    captured: dict[str, Any] = {}

    def start_response(
        status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], None]:
        captured["status"], captured["headers"] = status, headers
        return lambda data: None

    result = app(environ, start_response)
    try:
        body = b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return captured["status"], captured["headers"], body


def _read_body(environ: WSGIEnviron) -> bytes:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    stream = environ["wsgi.input"]
    return stream.read(length) if length > 0 else b""


def _answer_fault(
    fault: Fault,
    info: RequestInfo,
    environ: WSGIEnviron,
    start_response: StartResponse,
    *,
    drain: bool,
) -> Iterable[bytes]:
    if fault.kind == "drop":
        # Read the body first: closing a socket with unread data sends a reset, which
        # can hit the client mid-send; a clean FIN is the "response lost" we mean.
        if drain and environ.get("wsgi.input") is not None:
            with contextlib.suppress(OSError, ValueError):
                _read_body(environ)
        sock = environ.get("werkzeug.socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        # werkzeug treats ConnectionError from the app as a dropped connection and
        # sends nothing (any other exception would become a 500 response).
        raise ConnectionAbortedError("documee-remote harness: connection dropped")
    request_id = uuid.uuid4().hex[:16].upper()
    code, message = html.escape(fault.code), html.escape(fault.message)
    if info.service in (None, "s3"):
        resource = f"/{info.bucket}/{info.key}" if info.bucket and info.key else "/"
        text = (
            f"<Error><Code>{code}</Code><Message>{message}</Message>"
            f"<Resource>{html.escape(resource)}</Resource><RequestId>{request_id}</RequestId>"
            "</Error>"
        )
    else:
        # STS, IAM and the other query-protocol services wrap the error.
        kind = "Receiver" if fault.status >= 500 else "Sender"
        text = (
            f"<ErrorResponse><Error><Type>{kind}</Type><Code>{code}</Code>"
            f"<Message>{message}</Message></Error><RequestId>{request_id}</RequestId>"
            "</ErrorResponse>"
        )
    body = ('<?xml version="1.0" encoding="UTF-8"?>\n' + text).encode()
    if info.method == "HEAD":
        body = b""  # HEAD answers carry no body; botocore reads the status alone
    try:
        reason = HTTPStatus(fault.status).phrase
    except ValueError:
        reason = "Error"
    start_response(
        f"{fault.status} {reason}",
        [
            ("Content-Type", "application/xml"),
            ("Content-Length", str(len(body))),
            ("x-amz-request-id", request_id),
        ],
    )
    return [body]


def _describe(environ: WSGIEnviron) -> RequestInfo:
    method = environ.get("REQUEST_METHOD", "GET").upper()
    headers = {
        k[5:].replace("_", "-").lower(): str(v) for k, v in environ.items() if k.startswith("HTTP_")
    }
    query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    service = _service(headers.get("authorization", ""), query)
    # WSGI gives the decoded path as latin-1 text; keys are UTF-8.
    raw_path = environ.get("PATH_INFO", "")
    try:
        path = raw_path.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        path = raw_path
    bucket: str | None = None
    key: str | None = None
    if service == "s3":
        host = headers.get("host", "").rsplit(":", 1)[0]
        if host.endswith(".localhost"):  # virtual-host style against a local endpoint
            bucket = host[: -len(".localhost")]
            key = path.lstrip("/") or None
        else:
            parts = path.lstrip("/").split("/", 1)
            bucket = parts[0] or None
            key = parts[1] if len(parts) == 2 and parts[1] else None
    return RequestInfo(method, service, bucket, key, query, headers)


def _service(authorization: str, query: dict[str, list[str]]) -> str | None:
    # SigV4: "AWS4-HMAC-SHA256 Credential=AKID/20250101/us-east-1/s3/aws4_request, ..."
    match = re.search(r"Credential=[^/]+/[^/]+/[^/]+/([^/]+)/", authorization)
    if match:
        return match.group(1).lower()
    credential = query.get("X-Amz-Credential", [""])[0]
    parts = credential.split("/")
    return parts[3].lower() if len(parts) >= 5 else None


class MotoServer:
    """moto's server in a background thread, behind :class:`HarnessApp`.

    Parameters
    ----------
    host:
        Interface to bind; loopback by default.
    port:
        0 (default) picks a free port; see :attr:`endpoint_url`.
    latency_ms:
        Delay added to every request (see :class:`FaultInjector`).

    Examples
    --------
    >>> with MotoServer() as server:  # doctest: +SKIP
    ...     server.faults.add(SLOW_DOWN, method="PUT", times=2)
    ...     store = S3Store.from_url("s3://bucket/", endpoint_url=server.endpoint_url)
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, latency_ms: float = 0.0) -> None:
        self.host = host
        self.port = port
        self.faults = FaultInjector(latency_ms=latency_ms)
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> Self:
        """Bind and start serving; returns self. Idempotent."""
        if self._server is not None:
            return self
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        class _QuietHandler(MotoRequestHandler):
            # One line per request on stderr would drown test output; errors still log.
            def log_request(self, *args: Any, **kwargs: Any) -> None:
                pass

        app = HarnessApp(DomainDispatcherApplication(create_backend_app), self.faults)
        self._server = make_server(
            self.host, self.port, app, threaded=True, request_handler=_QuietHandler
        )
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, name=f"moto-server-{self.port}", daemon=True
        )
        self._thread.start()
        return self

    @property
    def endpoint_url(self) -> str:
        """``http://127.0.0.1:<port>``: give it to boto3 as ``endpoint_url``."""
        if self._server is None:
            raise RuntimeError("the server is not running; call start() first")
        return f"http://{self.host}:{self.port}"

    def reset(self) -> None:
        """Forget every bucket, object and role (moto's ``POST /moto-api/reset``).

        Fault rules are kept; see :meth:`FaultInjector.clear`.
        """
        request = urllib.request.Request(  # noqa: S310 - our own http:// endpoint
            self.endpoint_url + "/moto-api/reset", method="POST", data=b""
        )
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            response.read()

    def stop(self) -> None:
        """Stop serving and release the port. Idempotent."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = self.endpoint_url if self._server is not None else "stopped"
        return f"MotoServer({state})"


def main(argv: list[str] | None = None) -> None:
    """Run a harness server in the foreground until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    args = parser.parse_args(argv)
    with MotoServer(args.host, args.port, latency_ms=args.latency_ms) as server:
        print(server.endpoint_url, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":  # pragma: no cover
    main()
