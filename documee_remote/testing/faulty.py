"""Fault injection for tests: a :class:`FaultyStore` around any store, and HTTP faults for moto.

:class:`FaultyStore` is a :class:`~documee_remote.stores.base.Store` that
delegates every operation to another store and, as a :class:`FaultPlan` says,
injects faults per operation and key pattern:

* raise an error *before* the call (the backend never saw it), or *after*
  the inner call succeeded (a write landed, but the caller sees an error, as
  when a response is lost);
* truncate the bodies ``get`` returns (the ETag stays the full object's);
* delay the call.

Every fault is counted (:attr:`FaultPlan.injected`, per rule name), and
probabilistic rules draw from a seeded :class:`random.Random`, so a plan
replays the same faults for the same sequence of calls::

    plan = FaultPlan(seed=7)
    plan.add("503", error=ThrottledError, op="put", key=r"analysis\\.json$", probability=0.3,
             times=None)
    plan.add("lost-response", error=ServiceUnavailableError, op="put", after=True)
    pm = PersistenceManager(FaultyStore(LocalStore(tmp), plan))

:class:`HttpFaults` does what the moto harness's own
:class:`~documee_remote.testing.moto_server.FaultInjector` cannot: it sits in
front of a running :class:`~documee_remote.testing.moto_server.MotoServer`'s
WSGI application and truncates response bodies (the response still announces
the full ``Content-Length``), lies about ``Content-Length``, or delays a
response before or after moto handled the request (a delay past the client's
``read_timeout`` after a PUT is a write that landed while the client timed
out).
"""

from __future__ import annotations

import builtins
import copy
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self, TypeVar, cast

from ..errors import DocumeeRemoteError
from ..stores.base import ObjectMeta, Store, StoredObject
from ._rules import Rule, RuleBook, check_occurrence, key_matches

if TYPE_CHECKING:
    from .moto_server import MotoServer

__all__ = [
    "OPERATIONS",
    "FaultPlan",
    "FaultRule",
    "FaultyStore",
    "HttpFaultRule",
    "HttpFaults",
    "InjectedFault",
]

_T = TypeVar("_T")

#: The operations a :class:`FaultRule` can name (bulk operations fault per key).
OPERATIONS = frozenset({"get", "head", "put", "delete", "list"})

_DOING = {
    "get": "reading",
    "head": "reading the metadata of",
    "put": "writing",
    "delete": "deleting",
    "list": "listing",
}

#: What a rule raises: an exception class (built with a message naming the key),
#: an exception instance (copied for each use), or ``factory(operation, key)``.
ErrorSpec = type[BaseException] | BaseException | Callable[[str, str], BaseException]
KeyPattern = str | re.Pattern[str] | Callable[[str], bool] | None


@dataclass(slots=True)
class FaultRule(Rule):
    """One rule of a :class:`FaultPlan`; see :meth:`FaultPlan.add`.

    ``seen`` counts calls that matched the rule's operation and key, ``fired``
    the faults it injected (:class:`~._rules.Rule`, the occurrence every
    injector's rules share).
    """

    name: str
    ops: frozenset[str]
    key: KeyPattern = None
    error: ErrorSpec | None = None
    after: bool = False
    truncate: float | int | None = None
    delay: float = 0.0

    def matches(self, operation: str, key: str) -> bool:
        """Whether a call passes this rule's filters (occurrence not considered)."""
        if self.ops and operation not in self.ops:
            return False
        if self.key is None or isinstance(self.key, str | re.Pattern):
            return key_matches(self.key, key)
        return bool(self.key(key))

    def make_error(self, operation: str, key: str, url: str) -> BaseException:
        """The exception this rule raises for ``operation`` on ``key``."""
        spec = self.error
        if spec is None:
            raise AssertionError(f"rule {self.name!r} raises nothing")
        if isinstance(spec, BaseException):
            return copy.copy(spec)
        if isinstance(spec, type):
            cls = cast(type[BaseException], spec)
            message = (
                f"injected fault {self.name!r}: {_DOING.get(operation, operation)} "
                f"{key!r} in {url} failed"
            )
            if issubclass(cls, DocumeeRemoteError):
                try:
                    return cls(message, key=key or None)
                except TypeError:  # an error with required extra fields
                    return DocumeeRemoteError(message, key=key or None)
            return cls(message)
        return spec(operation, key)


@dataclass(frozen=True, slots=True)
class InjectedFault:
    """A record of one injected fault."""

    rule: str
    operation: str
    key: str
    after: bool


class FaultPlan:
    """Rules saying which calls of a :class:`FaultyStore` to fault, and counters.

    Safe to use from several threads. With the same ``seed`` and the same
    sequence of calls, the same faults fire (concurrent callers make the
    sequence itself nondeterministic, not the draws).
    """

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self._book: RuleBook[FaultRule] = RuleBook(seed)
        self._lock = self._book.lock
        self._injected: Counter[str] = Counter()
        self._calls: Counter[str] = Counter()
        self._events: list[InjectedFault] = []

    def add(
        self,
        name: str,
        *,
        op: str | Iterable[str] | None = None,
        key: KeyPattern = None,
        error: ErrorSpec | None = None,
        after: bool = False,
        truncate: float | int | None = None,
        delay: float = 0.0,
        nth: int = 1,
        times: int | None = 1,
        probability: float = 1.0,
    ) -> FaultRule:
        """Inject a fault into matching calls; returns the rule (for its counters).

        Parameters
        ----------
        name:
            The counter this rule's faults are counted under.
        op:
            ``"get"``, ``"head"``, ``"put"``, ``"delete"``, ``"list"``, several of
            them, or None for any. Bulk operations fault per key.
        key:
            A regex searched in the key (the prefix, for ``list``), a predicate,
            or None for any.
        error:
            What to raise: an exception class, instance or factory.
        after:
            Raise ``error`` only after the inner call succeeded (the write landed).
        truncate:
            For ``get``: return only this many bytes (an ``int``) or this
            fraction of the body (a ``float`` below 1), with the full object's ETag.
        delay:
            Seconds to sleep before the call.
        nth, times, probability:
            The first matching call to fault (1 = the first), how many to fault
            (None: every one from ``nth`` on), and the chance an eligible call
            is faulted.
        """
        ops = frozenset([op] if isinstance(op, str) else (op or ()))
        unknown = ops - OPERATIONS
        if unknown:
            raise ValueError(f"unknown operations {sorted(unknown)}; use {sorted(OPERATIONS)}")
        if error is None and truncate is None and delay <= 0:
            raise ValueError("a rule needs an error, a truncation or a delay")
        if after and error is None:
            raise ValueError("after=True needs an error to raise after the call")
        if truncate is not None and (ops - {"get"} or not ops):
            raise ValueError('truncate applies to op="get" only')
        if isinstance(truncate, float) and not 0.0 <= truncate < 1.0:
            raise ValueError("a fractional truncation must be in [0, 1)")
        if isinstance(truncate, int) and truncate < 0:
            raise ValueError("a truncation must not be negative")
        check_occurrence(nth, times, probability)
        if delay < 0:
            raise ValueError("delay must not be negative")
        rule = FaultRule(
            name=name,
            ops=ops,
            key=key,
            error=error,
            after=after,
            truncate=truncate,
            delay=delay,
            nth=nth,
            times=times,
            probability=probability,
        )
        return self._book.add(rule)

    def remove(self, rule: FaultRule) -> None:
        """Stop applying ``rule`` (its faults stay counted)."""
        self._book.remove(rule)

    def clear(self) -> None:
        """Remove every rule (the counters are kept; see :meth:`reset_counters`)."""
        self._book.clear()

    def reset_counters(self) -> None:
        """Zero the counters and forget the recorded events."""
        with self._lock:
            self._injected = Counter()
            self._calls = Counter()
            self._events = []

    @property
    def rules(self) -> builtins.list[FaultRule]:
        """The active rules (a copy of the list)."""
        return self._book.rules

    @property
    def injected(self) -> Counter[str]:
        """Faults injected so far, by rule name (a snapshot)."""
        with self._lock:
            return Counter(self._injected)

    @property
    def total_injected(self) -> int:
        """All faults injected so far."""
        with self._lock:
            return sum(self._injected.values())

    @property
    def calls(self) -> Counter[str]:
        """Calls seen by the faulty store, by operation (a snapshot)."""
        with self._lock:
            return Counter(self._calls)

    @property
    def events(self) -> builtins.list[InjectedFault]:
        """Every injected fault, in order (a copy)."""
        with self._lock:
            return builtins.list(self._events)

    def choose(self, operation: str, key: str) -> FaultRule | None:
        """Count the call and pick the rule that faults it, if any.

        Every matching rule counts the call (so ``nth`` means the nth matching
        call, whatever other rules did); the first eligible rule fires, and at
        most one fault is injected per call.
        """
        with self._lock:
            self._calls[operation] += 1
            chosen = self._book.pick(lambda rule: rule.matches(operation, key))
            if chosen is not None:
                self._injected[chosen.name] += 1
                self._events.append(InjectedFault(chosen.name, operation, key, chosen.after))
            return chosen


class FaultyStore(Store):
    """A store that delegates to ``inner`` and injects the faults ``plan`` says.

    It has ``inner``'s URL, capabilities, read-only mode, concurrency and
    object size limit. Bulk operations go through the per-key operations, so
    rules fault them per key. ``close()`` closes ``inner`` too unless
    ``close_inner=False``.
    """

    def __init__(
        self, inner: Store, plan: FaultPlan | None = None, *, close_inner: bool = True
    ) -> None:
        super().__init__(
            read_only=inner.read_only,
            concurrency=inner.concurrency,
            max_object_size=inner.max_object_size,
        )
        self.inner = inner
        self.plan = plan if plan is not None else FaultPlan()
        self.capabilities = inner.capabilities
        self._close_inner = close_inner

    @property
    def url(self) -> str:
        return self.inner.url

    def __repr__(self) -> str:
        return f"FaultyStore({self.inner!r})"

    def _call(self, operation: str, key: str, fn: Callable[[], _T]) -> tuple[_T, FaultRule | None]:
        rule = self.plan.choose(operation, key)
        if rule is None:
            return fn(), None
        if rule.delay > 0:
            time.sleep(rule.delay)
        if rule.error is not None and not rule.after:
            raise rule.make_error(operation, key, self.url)
        result = fn()
        if rule.error is not None and rule.after:
            raise rule.make_error(operation, key, self.url)
        return result, rule

    def _get(self, key: str) -> StoredObject:
        obj, rule = self._call("get", key, lambda: self.inner.get(key))
        if rule is not None and rule.truncate is not None:
            size = len(obj.data)
            keep = int(size * rule.truncate) if isinstance(rule.truncate, float) else rule.truncate
            obj = StoredObject(data=obj.data[: min(keep, max(size - 1, 0))], etag=obj.etag)
        return obj

    def _head(self, key: str) -> ObjectMeta:
        meta, _ = self._call("head", key, lambda: self.inner.head(key))
        return meta

    def _put(self, key: str, data: bytes, *, if_match: str | None, create_only: bool) -> str:
        etag, _ = self._call(
            "put",
            key,
            lambda: self.inner.put(
                key, data, if_match=if_match, if_none_match="*" if create_only else None
            ),
        )
        return etag

    def _delete(self, key: str, *, if_match: str | None) -> None:
        self._call("delete", key, lambda: self.inner.delete(key, if_match=if_match))

    def _list(self, prefix: str) -> Iterator[str]:
        keys, _ = self._call("list", prefix, lambda: builtins.list(self.inner.list(prefix)))
        return iter(keys)

    def _list_meta(self, prefix: str) -> Iterator[ObjectMeta]:
        metas, _ = self._call("list", prefix, lambda: builtins.list(self.inner.list_meta(prefix)))
        return iter(metas)

    def close(self) -> None:
        """Close this store, and ``inner`` unless told not to."""
        if not self._closed and self._close_inner:
            self.inner.close()
        super().close()


# -- HTTP faults in front of the moto harness -------------------------------------------------

HttpAction = Literal["truncate", "claim_length", "delay_before", "delay_after"]
_Environ = dict[str, Any]
_StartResponse = Callable[..., Any]
_WSGIApp = Callable[[_Environ, _StartResponse], Iterable[bytes]]


@dataclass(slots=True)
class HttpFaultRule(Rule):
    """One rule of :class:`HttpFaults`; see :meth:`HttpFaults.add`."""

    action: HttpAction
    method: str | None = None
    key: re.Pattern[str] | str | None = None
    value: float = 0.0

    def matches(self, method: str, key: str | None) -> bool:
        """Whether a request passes this rule's filters."""
        if self.method is not None and method != self.method:
            return False
        return key_matches(self.key, key)


class HttpFaults:
    """WSGI faults in front of a running :class:`MotoServer`; a context manager.

    ``install()`` (or entering the ``with`` block) wraps the server's WSGI
    application; ``uninstall()`` restores it. Keys are matched against the
    request path after the bucket (store prefix included), as the harness's
    own rules are.
    """

    def __init__(self, server: MotoServer, *, seed: int = 0) -> None:
        self.server = server
        self._book: RuleBook[HttpFaultRule] = RuleBook(seed)
        self._lock = self._book.lock
        self._injected: Counter[str] = Counter()
        self._original: _WSGIApp | None = None

    # -- rules --------------------------------------------------------------------------

    def add(
        self,
        action: HttpAction,
        *,
        method: str | None = None,
        key: re.Pattern[str] | str | None = None,
        value: float = 0.0,
        nth: int = 1,
        times: int | None = 1,
        probability: float = 1.0,
    ) -> HttpFaultRule:
        """Fault matching requests.

        ``action`` and ``value``:

        * ``"truncate"``: send only ``value`` (a fraction in [0, 1)) of the
          response body while announcing its full ``Content-Length``, then
          close the connection;
        * ``"claim_length"``: announce ``value`` bytes of ``Content-Length``
          but send the real (shorter) body;
        * ``"delay_before"`` / ``"delay_after"``: sleep ``value`` seconds before
          moto sees the request, or after it handled it (the write landed)
          and before the response is sent.
        """
        if action not in ("truncate", "claim_length", "delay_before", "delay_after"):
            raise ValueError(f"unknown action {action!r}")
        if action == "truncate" and not 0.0 <= value < 1.0:
            raise ValueError("truncate takes a fraction in [0, 1)")
        check_occurrence(nth, times, probability)
        rule = HttpFaultRule(
            action=action,
            method=method.upper() if method else None,
            key=key,
            value=value,
            nth=nth,
            times=times,
            probability=probability,
        )
        return self._book.add(rule)

    def clear(self) -> None:
        """Remove every rule (counters are kept)."""
        self._book.clear()

    @property
    def injected(self) -> Counter[str]:
        """Faults injected so far, by action (a snapshot)."""
        with self._lock:
            return Counter(self._injected)

    def _choose(self, method: str, key: str | None) -> HttpFaultRule | None:
        with self._lock:
            chosen = self._book.pick(lambda rule: rule.matches(method, key))
            if chosen is not None:
                self._injected[chosen.action] += 1
            return chosen

    # -- installing -----------------------------------------------------------------------

    def install(self) -> Self:
        """Wrap the server's WSGI application. Idempotent."""
        wsgi_server = self.server._server
        if wsgi_server is None:
            raise RuntimeError("the moto server is not running")
        if self._original is None:
            self._original = wsgi_server.app
            wsgi_server.app = self._app
        return self

    def uninstall(self) -> None:
        """Restore the server's own WSGI application. Idempotent."""
        wsgi_server = self.server._server
        if self._original is not None and wsgi_server is not None:
            wsgi_server.app = self._original
        self._original = None

    def __enter__(self) -> Self:
        return self.install()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.uninstall()

    # -- the middleware -----------------------------------------------------------------------

    def _app(self, environ: _Environ, start_response: _StartResponse) -> Iterable[bytes]:
        inner = self._original
        if inner is None:  # uninstalled while a request was in flight
            raise RuntimeError("HttpFaults is not installed")
        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        rule = None
        if not str(environ.get("PATH_INFO", "")).startswith("/moto-api"):
            rule = self._choose(method, _object_key(environ))
        if rule is None:
            return inner(environ, start_response)
        if rule.action == "delay_before":
            time.sleep(rule.value)
            return inner(environ, start_response)
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured["status"], captured["headers"] = status, headers
            return lambda data: None

        result = inner(environ, capture)
        try:
            body = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        status: str = captured["status"]
        headers: list[tuple[str, str]] = list(captured["headers"])
        if rule.action == "delay_after":
            time.sleep(rule.value)
        elif rule.action == "truncate":
            headers = _with_length(headers, len(body))
            body = body[: int(len(body) * rule.value)]
        else:  # claim_length
            headers = _with_length(headers, int(rule.value))
        start_response(status, headers)
        return [body]


def _with_length(headers: list[tuple[str, str]], length: int) -> list[tuple[str, str]]:
    kept = [(k, v) for k, v in headers if k.lower() != "content-length"]
    return [*kept, ("Content-Length", str(length))]


def _object_key(environ: _Environ) -> str | None:
    raw = str(environ.get("PATH_INFO", ""))
    try:
        path = raw.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        path = raw
    parts = path.lstrip("/").split("/", 1)
    return parts[1] if len(parts) == 2 and parts[1] else None
