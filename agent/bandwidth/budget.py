"""The bandwidth tests' monthly data budget: bytes used this month, kept in a small JSON file.

The file (`bandwidth-budget.json` in the agent's state dir) is replaced atomically (temp file +
fsync + rename), so a crash leaves the old or the new count, never half of one. A file that cannot
be read as a budget is moved aside and the count restarts at 0 for the month, marked `used_known:
false` (the true use may be higher): tests keep running rather than stopping for the rest of the
month over a broken file, and the problem is logged and carried in the status. A state dir that
cannot be written (full disk, read-only) never stops the agent: the count lives on in memory for as
long as the process runs, and the status says the file could not be saved. The month only moves
forward: a clock that reads an earlier month (1970 before NTP, or stepped back) keeps counting against
the stored one, so a test run then cannot wipe the month's use; bytes counted while the clock was not
yet set (before FIRST_REAL_MONTH) carry into the first real month.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.clock import FIRST_REAL_MONTH

log = logging.getLogger(__name__)

FILE_NAME = "bandwidth-budget.json"

# Counts that could not be saved, by file path: a failing disk must not reset the month's count.
_unsaved: dict[str, dict[str, Any]] = {}
_lock = threading.Lock()


@dataclass(frozen=True)
class BudgetStatus:
    budget_bytes: int  # the monthly budget; 0: unlimited
    used_bytes: int  # bytes tests moved this month (since a restart of the count, see used_known)
    remaining_bytes: int | None  # None when unlimited; never below 0
    month: str  # "YYYY-MM" in the device's local time: the line's billing month; never moves back
    used_known: bool  # False when the count restarted mid-month (corrupt file): true use may be higher
    problem: str = ""  # "" or what went wrong reading or saving the file


class Budget:
    """The month's data budget stored in `state_dir`."""

    def __init__(self, state_dir: Path, budget_bytes: int, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(state_dir) / FILE_NAME
        self.budget_bytes = budget_bytes
        self.clock = clock
        self.problem = ""

    def status(self) -> BudgetStatus:
        with _lock:
            state, problem = self._load()
        return self._status(state, problem)

    def allows(self, status: BudgetStatus, worst_case_bytes: int) -> bool:
        """A test may run when its worst case fits what is left (always, when unlimited)."""
        return status.remaining_bytes is None or status.remaining_bytes >= worst_case_bytes

    def spend(self, nbytes: int) -> BudgetStatus:
        """Add bytes a test moved and save; returns the new status."""
        with _lock:
            state, problem = self._load()
            state["used_bytes"] += max(0, nbytes)
            saved = self._save(state)
        return self._status(state, saved or problem)

    def _month(self) -> str:
        return time.strftime("%Y-%m", time.localtime(self.clock()))

    def _status(self, state: dict[str, Any], problem: str) -> BudgetStatus:
        used = int(state["used_bytes"])
        remaining = max(0, self.budget_bytes - used) if self.budget_bytes > 0 else None
        known = bool(state["used_known"])
        return BudgetStatus(
            self.budget_bytes, used, remaining, state["month"], known, problem or self.problem
        )

    def _load(self) -> tuple[dict[str, Any], str]:
        month = self._month()
        fresh: dict[str, Any] = {"month": month, "used_bytes": 0, "used_known": True}
        problem = ""
        try:
            state = _parse(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            state = fresh
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            problem = f"budget file {self.path} unreadable ({exc}): this month's count restarts at 0"
            log.warning("%s", problem)
            aside = self.path.with_name(f"{FILE_NAME}.corrupt")
            with contextlib.suppress(OSError):
                self.path.replace(aside)
            state = dict(fresh, used_known=False)
            self.problem = problem  # kept for the rest of this run's statuses
            self._save(state)  # so the "unknown" mark outlives this run
        if state["month"] < month:
            # A new month starts the budget again; but bytes counted while the clock was not yet set
            # (a Pi boots in 1970) were spent in this month, the first one the clock names truly.
            unset = state["month"] < FIRST_REAL_MONTH <= month
            state = dict(state, month=month) if unset else fresh
        elif state["month"] > month:
            # The clock reads an earlier month than the count (a Pi without a real-time clock reads
            # 1970 until NTP answers, or NTP stepped it back): a budget month never moves backwards,
            # so bytes keep counting against the stored month.
            log.warning(
                "the clock reads %s, before the data budget's month %s: counting against %s",
                month,
                state["month"],
                state["month"],
            )
            month = state["month"]
        unsaved = _unsaved.get(str(self.path))
        if unsaved is not None and unsaved["month"] == month and unsaved["used_bytes"] > state["used_bytes"]:
            state = dict(unsaved)
        return state, problem

    def _save(self, state: dict[str, Any]) -> str:
        """Write atomically; returns "" or the problem (the count is then kept in memory)."""
        tmp = self.path.with_name(f".{FILE_NAME}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(dict(state, version=1), f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            _unsaved[str(self.path)] = dict(state)
            problem = f"cannot save budget file {self.path}: {exc.strerror or exc}; counting in memory"
            log.warning("%s", problem)
            return problem
        _unsaved.pop(str(self.path), None)
        return ""


def _parse(text: str) -> dict[str, Any]:
    raw = json.loads(text)
    if not isinstance(raw, dict):
        raise ValueError("not a JSON object")
    month, used, known = raw.get("month"), raw.get("used_bytes"), raw.get("used_known", True)
    if not isinstance(month, str) or not re.fullmatch(r"\d{4}-\d{2}", month):
        raise ValueError("month is not YYYY-MM")
    if not isinstance(used, int) or isinstance(used, bool) or used < 0:
        raise ValueError("used_bytes is not a whole number >= 0")
    if not isinstance(known, bool):
        raise ValueError("used_known is not true or false")
    return {"month": month, "used_bytes": used, "used_known": known}
