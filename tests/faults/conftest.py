"""The fault suite's ledger: what was injected and survived, printed at the end of the run.

Every test of ``tests/faults`` records its figures in :data:`LEDGER` (through
the ``fault_ledger`` fixture, or directly from helpers): faults injected per
kind and backend, how many of them the library absorbed, how many surfaced as
the documented typed error, and how much acknowledged data was lost. The
table is printed after the run (``pytest_terminal_summary``) and, when
``DOCUMEE_FAULT_REPORT`` names a file, written there as JSON.
"""

from __future__ import annotations

import json
import os
import threading
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import pytest


@dataclass
class LedgerRow:
    area: str
    kind: str
    backend: str
    injected: int
    survived: int
    surfaced: int = 0
    lost: int = 0
    note: str = ""


@dataclass
class FaultLedger:
    rows: list[LedgerRow] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(
        self,
        area: str,
        kind: str,
        backend: str,
        *,
        injected: int,
        survived: int,
        surfaced: int = 0,
        lost: int = 0,
        note: str = "",
    ) -> None:
        with self._lock:
            self.rows.append(
                LedgerRow(area, kind, backend, injected, survived, surfaced, lost, note)
            )

    def figure(self, name: str, value: Any) -> None:
        with self._lock:
            self.figures[name] = value

    def totals(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for row in self.rows:
            total["injected"] += row.injected
            total["survived"] += row.survived
            total["surfaced"] += row.surfaced
            total["lost"] += row.lost
        return total


LEDGER = FaultLedger()


@pytest.fixture(scope="session")
def fault_ledger() -> FaultLedger:
    return LEDGER


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: Any) -> None:
    if not LEDGER.rows and not LEDGER.figures:
        return
    write = terminalreporter.write_line
    terminalreporter.section("documee-remote fault figures")
    if LEDGER.rows:
        write(
            f"{'area':<10} {'kind':<30} {'backend':<8} {'injected':>8} {'survived':>8} "
            f"{'surfaced':>8} {'lost':>5}  note"
        )
        for r in sorted(LEDGER.rows, key=lambda r: (r.area, r.kind, r.backend)):
            write(
                f"{r.area:<10} {r.kind:<30} {r.backend:<8} {r.injected:>8} {r.survived:>8} "
                f"{r.surfaced:>8} {r.lost:>5}  {r.note}"
            )
        t = LEDGER.totals()
        write(
            f"{'total':<10} {'':<30} {'':<8} {t['injected']:>8} {t['survived']:>8} "
            f"{t['surfaced']:>8} {t['lost']:>5}"
        )
    for name, value in sorted(LEDGER.figures.items()):
        write(f"{name}: {value}")
    path = os.environ.get("DOCUMEE_FAULT_REPORT")
    if path:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(
                {"rows": [asdict(r) for r in LEDGER.rows], "figures": LEDGER.figures},
                f,
                indent=2,
                default=str,
            )
