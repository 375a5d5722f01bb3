"""Leases: exclusive work on a codebase (a full re-analysis), with a TTL and fencing tokens.

A lease is one small object, ``<codebase_id>/_lease.json``, and every change
to it is a conditional write:

- **acquire**: create it with ``If-None-Match: *``; or, when it exists but
  was released or has expired, replace it with ``If-Match`` on the version
  that was read, so two contenders cannot both win.
- **renew**: rewrite it with ``If-Match`` on our own last version; failing
  means somebody took it over, and the holder learns it has lost the lease.
- **release**: mark it released (again with ``If-Match``); the object stays,
  so the fencing token keeps counting up.

Expiry does not trust clocks alone. A lease has expired when its holder's
own deadline (``expires_at``, in UTC, plus ``clock_skew``) has passed, or
when a contender has watched the same version of the object, unrenewed, for
a whole TTL on its own monotonic clock (the approach of DynamoDB's lock
client, which needs no synchronised clocks at all).

Fencing: each acquisition takes a token one higher than the last one (and
than any recorded in ``analysis.json``). A merge that carries its lease's
token is refused once a higher token has been recorded, so a holder that
stalled past its TTL (a long GC pause, a frozen Lambda) and was taken over
cannot write stale results. On acquiring, the new holder records its token
in ``analysis.json`` straight away (creating one without files when the
codebase has none yet), closing the window in which the old holder could
still commit.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Protocol, Self

from . import layout
from .bookkeeping import recorded_fence
from .errors import (
    ConflictError,
    CorruptObjectError,
    DocumeeRemoteError,
    NotFoundError,
    PreconditionFailedError,
)
from .retry import Again, TransactionStats, cas_loop

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType

    from .models import CodebaseAnalysis
    from .stores import Store

__all__ = ["FenceKeeper", "FencedError", "Lease", "LeaseHeldError", "LeaseLostError"]


class FenceKeeper(Protocol):
    """What a lease needs: the store its object lives in, and the fence in ``analysis.json``.

    :class:`~documee_remote.PersistenceManager` is one: a lease reads the
    recorded fence with ``load_analysis`` and records its token with an
    ``update_analysis`` that changes nothing but the fence.
    """

    @property
    def store(self) -> Store: ...

    def load_analysis(self, codebase_id: str) -> CodebaseAnalysis | None: ...

    def update_analysis(
        self,
        codebase_id: str,
        fn: Callable[[CodebaseAnalysis], None],
        *,
        fencing_token: int | None = None,
    ) -> CodebaseAnalysis: ...


class LeaseHeldError(ConflictError):
    """Somebody else holds the lease and it has not expired."""

    def __init__(self, message: str, *, holder: str, expires_at: datetime, key: str) -> None:
        super().__init__(message, key=key)
        self.holder = holder
        self.expires_at = expires_at


class LeaseLostError(ConflictError):
    """Our lease was taken over (it expired before we renewed it)."""


class FencedError(ConflictError):
    """A write carried a fencing token older than one already recorded: refused."""


@dataclass(frozen=True, slots=True)
class _Record:
    owner: str
    token: int
    ttl: float
    acquired_at: str
    expires_at: datetime
    released: bool

    def encode(self) -> bytes:
        return json.dumps(
            {
                "owner": self.owner,
                "token": self.token,
                "ttl": self.ttl,
                "acquired_at": self.acquired_at,
                "expires_at": self.expires_at.isoformat(),
                "released": self.released,
            },
            indent=2,
        ).encode()

    @classmethod
    def decode(cls, data: bytes, key: str) -> _Record:
        try:
            raw = json.loads(data)
            record = cls(
                owner=str(raw["owner"]),
                token=int(raw["token"]),
                ttl=float(raw["ttl"]),
                acquired_at=str(raw["acquired_at"]),
                expires_at=datetime.fromisoformat(raw["expires_at"]),
                released=bool(raw["released"]),
            )
        except (ValueError, KeyError, TypeError, RecursionError, OverflowError) as exc:
            # The parser's message may quote the body: name the problem, not the bytes.
            raise CorruptObjectError(
                f"lease object {key!r} is unreadable ({type(exc).__name__})", key=key
            ) from exc
        if record.expires_at.tzinfo is None or record.expires_at.year >= 9999:
            raise CorruptObjectError(
                f"lease object {key!r} is unreadable (expires_at must be a UTC time)", key=key
            )
        return record


@dataclass(slots=True)
class _LostRaces:
    """Paces a lease's acquisition after lost write races (see :func:`cas_loop`).

    Gives up once three races in a row are lost and ``wait`` has run out; in
    between, sleeps a random time growing with the losses, at most ``poll``.
    """

    deadline: float
    poll: float
    stats: TransactionStats = field(default_factory=TransactionStats)

    def next_attempt(self) -> bool:
        if self.stats.attempts == 0:
            self.stats.attempts = 1
            return True
        lost = self.stats.conflicts
        if lost >= 3 and time.monotonic() >= self.deadline:
            return False
        time.sleep(random.uniform(0.0, min(self.poll, 0.005 * 2 ** min(lost, 10))))
        self.stats.attempts += 1
        return True


def default_owner() -> str:
    """``host:pid:random``: unique per holder, readable in error messages."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Lease:
    """A held lease. Use it as a context manager; it renews itself in the background.

    Attributes
    ----------
    token:
        The fencing token: pass ``fencing_token=lease.token`` to merges.
    owner:
        Who holds it (``host:pid:random`` unless given).
    """

    def __init__(
        self,
        pm: FenceKeeper,
        codebase_id: str,
        *,
        ttl: float,
        owner: str | None = None,
        wait: float = 0.0,
        clock_skew: float = 5.0,
        auto_renew: bool = True,
        poll: float | None = None,
    ) -> None:
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        self._pm = pm
        self.codebase_id = codebase_id
        self.key = layout.lease_key(codebase_id)
        self.ttl = ttl
        self.owner = owner or default_owner()
        self.wait = wait
        self.clock_skew = clock_skew
        self.auto_renew = auto_renew
        self.poll = poll if poll is not None else min(1.0, ttl / 4)
        self.token = 0
        self._etag: str | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None
        self._lost: DocumeeRemoteError | None = None

    def __repr__(self) -> str:
        return f"Lease({self.codebase_id!r}, owner={self.owner!r}, token={self.token})"

    # -- acquiring ---------------------------------------------------------------------

    def acquire(self) -> Self:
        """Take the lease, waiting up to ``wait`` seconds for the holder to release or expire.

        Raises
        ------
        LeaseHeldError
            Still held by someone else when ``wait`` ran out.
        """
        store = self._pm.store
        deadline = time.monotonic() + self.wait
        watched: tuple[str, float] | None = None  # (etag, when we first saw it)

        def attempt() -> Again | None:
            """Wait until the lease is free or expired, then try to write our record."""
            nonlocal watched
            while True:
                try:
                    current = store.get(self.key)
                except NotFoundError:
                    return self._try_acquire(None, 0)
                record = _Record.decode(current.data, self.key)
                now = time.monotonic()
                if watched is None or watched[0] != current.etag:
                    watched = (current.etag, now)
                expired = (
                    record.released
                    or datetime.now(UTC) > record.expires_at + timedelta(seconds=self.clock_skew)
                    or now - watched[1] >= record.ttl
                )
                if expired:
                    return self._try_acquire(current.etag, record.token)
                if now >= deadline:
                    raise LeaseHeldError(
                        f"lease on {self.codebase_id!r} is held by {record.owner} "
                        f"(token {record.token}) until {record.expires_at.isoformat()}",
                        holder=record.owner,
                        expires_at=record.expires_at,
                        key=self.key,
                    )
                time.sleep(min(self.poll, max(0.0, deadline - now)))

        races = _LostRaces(deadline, self.poll)

        def exhausted(last_error: Exception | None) -> Exception:
            return ConflictError(
                f"lease on {self.codebase_id!r}: {races.stats.conflicts} writes in a row "
                "lost to other writers (or S3 409s)",
                key=self.key,
            )

        # Every lost race counts, however long the holder was waited for in between;
        # a lost race that is also a transient error is still a lost race here.
        cas_loop(races, attempt, exhausted=exhausted, raise_transient=False)
        return self._acquired()

    def _try_acquire(self, etag: str | None, lease_token: int) -> Again | None:
        """Write our record over the version ``etag`` (None: create); Again when beaten."""
        token = self._next_token(lease_token)
        record = self._record(token, released=False)
        try:
            if etag is None:
                self._etag = self._pm.store.put(self.key, record.encode(), if_none_match="*")
            else:
                self._etag = self._pm.store.put(self.key, record.encode(), if_match=etag)
        except (PreconditionFailedError, ConflictError) as exc:
            return Again(exc, lost=True)  # another contender won this round; look again
        self.token = token
        return None

    def _next_token(self, lease_token: int) -> int:
        analysis_fence = 0
        try:
            analysis = self._pm.load_analysis(self.codebase_id)
        except CorruptObjectError:
            analysis = None
        if analysis is not None:
            analysis_fence = recorded_fence(analysis.__pydantic_extra__)
        return max(lease_token, analysis_fence) + 1

    def _record(self, token: int, *, released: bool) -> _Record:
        now = datetime.now(UTC)
        return _Record(
            owner=self.owner,
            token=token,
            ttl=self.ttl,
            acquired_at=now.isoformat(),
            expires_at=now + timedelta(seconds=self.ttl),
            released=released,
        )

    def _acquired(self) -> Self:
        # Record the new token in analysis.json at once, so a taken-over
        # holder's next commit is refused even before we merge anything. When
        # the codebase has no analysis.json yet, this creates one (no files,
        # just the fence): a fence kept anywhere else (in the lease object, say)
        # could only be checked before the stale holder's write, not atomically
        # with it, and a holder that stalls between the two is the very case
        # fencing exists for. Its create-only write then fails and its retry
        # finds this fence.
        try:
            self._pm.update_analysis(self.codebase_id, lambda a: None, fencing_token=self.token)
        except BaseException:
            # Do not leave a lease that nobody renews blocking others for its TTL.
            with contextlib.suppress(DocumeeRemoteError):
                self._pm.store.put(
                    self.key, self._record(self.token, released=True).encode(), if_match=self._etag
                )
            self._etag = None
            raise
        if self.auto_renew:
            self._renewer = threading.Thread(
                target=self._renew_loop, name=f"lease-{self.codebase_id}", daemon=True
            )
            self._renewer.start()
        return self

    # -- holding -----------------------------------------------------------------------

    def renew(self) -> None:
        """Extend the lease by its TTL.

        Raises
        ------
        LeaseLostError
            Somebody took it over; stop the exclusive work.
        """
        with self._lock:
            if self._lost is not None:
                raise self._lost
            try:
                self._etag = self._pm.store.put(
                    self.key, self._record(self.token, released=False).encode(), if_match=self._etag
                )
            except PreconditionFailedError as exc:
                self._lost = LeaseLostError(
                    f"lease on {self.codebase_id!r} (token {self.token}) was taken over",
                    key=self.key,
                )
                raise self._lost from exc

    def check(self) -> None:
        """Raise :class:`LeaseLostError` if the background renewal found the lease lost."""
        if self._lost is not None:
            raise self._lost

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                self.renew()
            except LeaseLostError:
                return
            except DocumeeRemoteError:
                continue  # transient trouble: try again before the TTL runs out

    def release(self) -> None:
        """Give the lease up (keeps the object, so tokens keep counting up)."""
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
        with self._lock:
            if self._lost is not None or self._etag is None:
                return
            # A failed release means it was already taken over: nothing of ours to release.
            with contextlib.suppress(PreconditionFailedError):
                self._pm.store.put(
                    self.key, self._record(self.token, released=True).encode(), if_match=self._etag
                )
            self._etag = None

    def __enter__(self) -> Self:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
