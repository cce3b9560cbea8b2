"""What the agent takes from the wall clock of a device without a real-time clock.

A Raspberry Pi boots at 1970 (or at the time it last saved) and is set by NTP later, sometimes
much later. One boundary says which readings come from a clock never set: data stamped or filed
under an earlier time is held back or carried forward, never taken as real (the push queue, the
monthly data budget). Steps of a set clock are the scheduler's business (agent/scheduler.py).
"""

from __future__ import annotations

import time

# 2025-01-01T00:00:00Z: the agent did not exist before it, so no set clock reads earlier.
CLOCK_SET_AFTER_S = 1735689600.0
FIRST_REAL_MONTH = time.strftime("%Y-%m", time.gmtime(CLOCK_SET_AFTER_S))  # "2025-01", as budgets file months


def is_set(now: float) -> bool:
    """Whether a wall-clock reading (seconds since the epoch) can come from a clock that was set."""
    return now >= CLOCK_SET_AFTER_S
