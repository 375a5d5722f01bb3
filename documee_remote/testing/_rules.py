"""The one rule engine of the fault injectors: when a rule fires, and which rule.

:class:`~documee_remote.testing.faulty.FaultPlan` (faults of a
:class:`~documee_remote.testing.faulty.FaultyStore`), the moto harness's
:class:`~documee_remote.testing.moto_server.FaultInjector` (S3 answers and
dropped connections) and :class:`~documee_remote.testing.faulty.HttpFaults`
(truncated and delayed HTTP responses) differ in what a rule matches and what
it does, not in when it fires. Their rules extend :class:`Rule` with their own
filters and outcome, and each keeps its rules in a :class:`RuleBook`:

- every call a rule matches counts (``seen``), so ``nth`` means the nth
  matching call whatever other rules did with it;
- the first eligible rule fires (``fired``): from its ``nth`` match on, at most
  ``times`` times (None: no limit), each with chance ``probability`` drawn
  from the book's own seeded :class:`random.Random`;
- at most one fault is injected per call.
"""

from __future__ import annotations

import random
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["Rule", "RuleBook", "check_occurrence", "key_matches"]


def check_occurrence(nth: int, times: int | None, probability: float) -> None:
    """Refuse an occurrence a rule could never meet; raises ValueError."""
    if nth < 1:
        raise ValueError("nth counts from 1")
    if times is not None and times < 1:
        raise ValueError("times must be at least 1, or None for unlimited")
    if not 0.0 <= probability <= 1.0:
        raise ValueError("probability must be between 0 and 1")


def key_matches(pattern: str | re.Pattern[str] | None, key: str | None) -> bool:
    """Whether a rule's key regex (None: any key) is found in ``key`` (None: no key)."""
    if pattern is None:
        return True
    return key is not None and re.search(pattern, key) is not None


@dataclass(slots=True, kw_only=True)
class Rule:
    """When a rule fires: the occurrence every injector's rules share, and its counters.

    ``seen`` counts calls that matched the rule's filters, ``fired`` the
    faults it injected.
    """

    nth: int = 1
    times: int | None = 1
    probability: float = 1.0
    seen: int = 0
    fired: int = 0


_R = TypeVar("_R", bound=Rule)


class RuleBook(Generic[_R]):
    """Rules in order, the lock that guards them (and the owner's counters), and the draws.

    The owner holds :attr:`lock` around :meth:`pick` and its own counting, so
    that a call is counted and its rule chosen at one instant.
    """

    def __init__(self, seed: int | None = None) -> None:
        self.lock = threading.Lock()
        self._rules: list[_R] = []
        self._random = random.Random(seed)

    @property
    def rules(self) -> list[_R]:
        """The active rules (a copy of the list)."""
        with self.lock:
            return list(self._rules)

    def add(self, rule: _R) -> _R:
        """Apply ``rule`` after the others; returns it (for its counters)."""
        with self.lock:
            self._rules.append(rule)
        return rule

    def remove(self, rule: _R) -> None:
        """Stop applying ``rule``."""
        with self.lock:
            self._rules = [r for r in self._rules if r is not rule]

    def clear(self) -> None:
        """Remove every rule."""
        with self.lock:
            self._rules = []

    def pick(self, matches: Callable[[_R], bool]) -> _R | None:
        """Count the call against every rule it ``matches``; the rule that fires, if any.

        The caller holds :attr:`lock`.
        """
        chosen: _R | None = None
        for rule in self._rules:
            if not matches(rule):
                continue
            rule.seen += 1
            if chosen is not None or rule.seen < rule.nth:
                continue
            if rule.times is not None and rule.fired >= rule.times:
                continue
            if rule.probability < 1.0 and self._random.random() >= rule.probability:
                continue
            chosen = rule
        if chosen is not None:
            chosen.fired += 1
        return chosen
