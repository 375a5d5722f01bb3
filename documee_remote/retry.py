"""RetryPolicy: how long optimistic transactions keep trying after losing a race.

Also the one compare-and-swap retry loop (:func:`cas_loop`) that every
conditional read-modify-write in the library runs under.

Backoff is exponential with full jitter (sleep a uniform random time between
0 and ``min(cap, base * 2**attempt)``), which spreads colliding writers apart
better than any fixed schedule; the policy is bounded both by a number of
attempts and by a wall-clock deadline.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from .errors import TransientError, UnsupportedOperationError

__all__ = ["RetryPolicy", "TransactionStats"]

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounds on retrying a compare-and-swap that lost to another writer.

    Parameters
    ----------
    max_attempts:
        Attempts in all, the first included.
    base_delay:
        Seconds; the first retry waits up to this long.
    max_delay:
        Seconds; no single wait is longer.
    deadline:
        Seconds from the first attempt after which no new attempt starts;
        ``None`` for no deadline.
    """

    max_attempts: int = 20
    base_delay: float = 0.02
    max_delay: float = 2.0
    deadline: float | None = 120.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.base_delay < 0 or self.max_delay < 0:
            raise ValueError("delays must not be negative")
        if self.deadline is not None and self.deadline <= 0:
            raise ValueError("deadline must be positive")

    def delay(self, retry: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (1 for the first retry)."""
        ceiling = min(self.max_delay, self.base_delay * (2 ** (retry - 1)))
        return (rng or random).uniform(0.0, ceiling)


@dataclass(slots=True)
class TransactionStats:
    """What a transaction went through, for callers who report or tune contention.

    Attributes
    ----------
    attempts:
        Commits tried, the successful one included.
    conflicts:
        Attempts lost to another writer (412, or S3's 409).
    retries:
        Attempts after the first.
    waited:
        Seconds spent sleeping between attempts.
    """

    attempts: int = 0
    conflicts: int = 0
    retries: int = 0
    waited: float = 0.0

    def add(self, other: TransactionStats) -> None:
        """Accumulate another transaction's counts into this one."""
        self.attempts += other.attempts
        self.conflicts += other.conflicts
        self.retries += other.retries
        self.waited += other.waited


@dataclass(slots=True)
class Backoff:
    """Drives one transaction's attempts under a :class:`RetryPolicy`."""

    policy: RetryPolicy
    stats: TransactionStats = field(default_factory=TransactionStats)
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    _started: float | None = None

    def exhausted(self) -> bool:
        """True when the policy allows no further attempt."""
        if self._started is None:
            return False
        if self.stats.attempts >= self.policy.max_attempts:
            return True
        return (
            self.policy.deadline is not None
            and self.clock() - self._started >= self.policy.deadline
        )

    def next_attempt(self) -> bool:
        """Wait as the policy says and return True when another attempt may start."""
        now = self.clock()
        if self._started is None:
            self._started = now
            self.stats.attempts = 1
            return True
        if self.exhausted():
            return False
        pause = self.policy.delay(self.stats.attempts)
        if self.policy.deadline is not None:
            pause = max(0.0, min(pause, self.policy.deadline - (now - self._started)))
        self.sleep(pause)
        self.stats.waited += pause
        self.stats.attempts += 1
        self.stats.retries += 1
        return True


_UNSET = object()


@dataclass(slots=True)
class RefusalWatch:
    """Tells an endpoint that refuses correct conditions from writers that won races.

    A compare-and-swap that comes back 412 (``PreconditionFailedError``) lost
    to another writer, unless the object still has the very ETag the write
    was conditioned on when it is read again: then nobody wrote, and the
    endpoint refused a condition that held (Ceph RGW 16.2 refuses a quoted
    ``If-Match``). Retrying cannot help there, and blaming other writers
    would mislead; after ``limit`` such refusals in a row, :meth:`reread`
    raises :class:`UnsupportedOperationError` instead.
    """

    url: str
    key: str
    limit: int = 3
    refusals: int = 0
    _sent: object = _UNSET

    def refused(self, etag: str | None) -> None:
        """A write conditioned on ``etag`` (None: create-only) got 412."""
        self._sent = etag

    def reread(self, etag: str | None) -> None:
        """The object was read again and has ``etag`` (None: absent).

        Raises
        ------
        UnsupportedOperationError
            The last ``limit`` writes were refused with their condition true.
        """
        sent, self._sent = self._sent, _UNSET
        if sent is _UNSET:
            return
        self.refusals = self.refusals + 1 if etag == sent else 0
        if self.refusals >= self.limit:
            header = "If-None-Match: *" if sent is None else f"If-Match: {sent}"
            raise UnsupportedOperationError(
                f"{self.url} refused {self.key!r} {self.refusals} times in a row with "
                f"{header} although the object was unchanged (no other writer in sight): "
                "this endpoint does not honour correct conditional writes, so merges "
                "cannot be made safe on it; run `documee-remote doctor` to check it",
                key=self.key,
            )


@dataclass(frozen=True, slots=True)
class Again:
    """An attempt's verdict: try again (within the policy), after ``error``.

    ``lost``: the attempt lost a race to another writer (a 412, or S3's 409),
    which counts as a conflict; otherwise the storage failed transiently.
    """

    error: Exception
    lost: bool = False


class Pacing(Protocol):
    """How a :func:`cas_loop` paces its attempts (:class:`Backoff` is the usual one)."""

    @property
    def stats(self) -> TransactionStats: ...

    def next_attempt(self) -> bool:
        """Wait as needed and return True when another attempt may start."""
        ...


def cas_loop(
    backoff: Pacing,
    attempt: Callable[[], _T | Again],
    *,
    exhausted: Callable[[Exception | None], Exception],
    raise_transient: bool = True,
) -> _T:
    """The one compare-and-swap retry loop: run ``attempt`` until it returns a result.

    ``attempt`` reads, decides and writes conditionally; it returns its result,
    or :class:`Again` to be run again as ``backoff`` allows. The loop knows
    nothing of what is written: callers bring their own reads, conditions and
    refusal checks (a :class:`RefusalWatch`). When the policy runs out, the
    last error is raised as it is if it is a transient storage error and
    ``raise_transient`` (the storage kept failing, which is not contention),
    and otherwise ``exhausted(last_error)``, raised from the last error.
    """
    last_error: Exception | None = None
    while backoff.next_attempt():
        outcome = attempt()
        if not isinstance(outcome, Again):
            return outcome
        if outcome.lost:
            backoff.stats.conflicts += 1
        last_error = outcome.error
    if raise_transient and isinstance(last_error, TransientError):
        raise last_error
    raise exhausted(last_error) from last_error
