"""Cross-traffic: how hard the site's users load the line right now, from interface byte counters.

A bandwidth test run while users download would both disturb them and read low, so the probe
waits for a quiet line (SamKnows does the same). The rate is that of the busier direction over
the interfaces counted (all but loopback, or the one configured — on a router, name the uplink so
forwarded traffic is not counted twice).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import psutil


@dataclass(frozen=True)
class Deferral:
    threshold_bytes_per_s: int
    checks: int  # cross-traffic checks made before the test ran or was given up
    last_bytes_per_s: float  # the busier direction's rate at the last check
    deferred: bool  # True: the line stayed busy through every check and the test was given up


def _counters(interface: str) -> tuple[int, int]:
    nics = psutil.net_io_counters(pernic=True)
    if interface:
        if interface not in nics:
            raise LookupError(f"no network interface {interface!r} (have: {', '.join(sorted(nics))})")
        nics = {interface: nics[interface]}
    chosen = [c for name, c in nics.items() if name != "lo" and not name.startswith("lo:")]
    return sum(c.bytes_recv for c in chosen), sum(c.bytes_sent for c in chosen)


def line_rate(sample_s: float, interface: str = "", cancelled: threading.Event | None = None) -> float:
    """Bytes per second of the busier direction over `sample_s` seconds."""
    cancelled = cancelled or threading.Event()
    rx0, tx0 = _counters(interface)
    start = time.monotonic()
    cancelled.wait(sample_s)
    rx1, tx1 = _counters(interface)
    elapsed = max(time.monotonic() - start, 1e-3)
    return max(rx1 - rx0, tx1 - tx0) / elapsed


def wait_for_quiet(
    threshold_bytes_per_s: int,
    sample_s: float,
    wait_s: float,
    tries: int,
    interface: str = "",
    cancelled: threading.Event | None = None,
) -> Deferral:
    """Check up to `tries` times, `wait_s` apart, until the line is under the threshold."""
    cancelled = cancelled or threading.Event()
    rate = 0.0
    for check in range(1, max(1, tries) + 1):
        rate = line_rate(sample_s, interface, cancelled)
        if rate <= threshold_bytes_per_s:
            return Deferral(threshold_bytes_per_s, check, rate, deferred=False)
        if check < tries and cancelled.wait(wait_s):
            break
    return Deferral(threshold_bytes_per_s, check, rate, deferred=True)
