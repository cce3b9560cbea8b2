"""Pushed samples stamped by a wrong clock (a Raspberry Pi without RTC boots in 1970, or reads a time
ahead, then NTP steps it). The machine's clock cannot be stepped in a test, so the pusher is given a
clock function; the receiver is a real Prometheus 2.42, which a future-stamped sample would poison.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from agent.push.pusher import Pusher
from tests.support.receivers import Receiver, have, push_settings, seq_registry, wait_until


class Clock:
    """The wall clock plus a settable offset (seconds), as NTP would step it."""

    def __init__(self, offset: float = 0.0) -> None:
        self.offset = offset

    def __call__(self) -> float:
        return time.time() + self.offset


@pytest.fixture
def prom(tmp_path: Path):
    if not have("prometheus"):
        pytest.skip("prometheus not installed")
    r = Receiver("prometheus", tmp_path)
    r.start()
    try:
        yield r
    finally:
        r.stop()


def test_unset_clock_queues_nothing_then_pushes_once_set(prom: Receiver, tmp_path: Path, caplog) -> None:
    """Reading 1970: snapshots are counted as dropped (reason clock), never sent; once set, pushing works."""
    caplog.set_level(logging.INFO)
    clock = Clock(offset=-time.time() + 5.0)  # 1970-01-01 00:00:05 and counting
    registry, seq = seq_registry()
    pusher = Pusher(push_settings(prom.write_url), registry, tmp_path / "s", {"site": "s1"}, clock=clock)
    pusher.start()
    try:
        wait_until(lambda: seq.n >= 4, 10, "snapshots under the unset clock")
        unset = pusher.metrics.dropped["clock"]
        assert unset >= 4 * 3 and pusher.queue.stats().samples == 0
        clock.offset = 0.0  # NTP sets the clock
        set_at = time.time()
        wait_until(lambda: pusher.metrics.sent >= 9, 10, "pushes once the clock is set")
    finally:
        pusher.stop()
    got = prom.samples('pushtest_seq{k="0"}')
    (points,) = got.values()
    assert all(t >= set_at * 1000 - 1000 for t, _ in points)  # nothing stamped 1970 reached the receiver
    assert pusher.metrics.dropped["too_old"] == 0 and pusher.metrics.dropped["rejected"] == 0
    assert sum("has not been set" in r.getMessage() for r in caplog.records) == 1


def test_clock_ahead_then_stepped_back_does_not_poison_or_block(prom: Receiver, tmp_path: Path) -> None:
    """Snapshots taken while the clock ran a day ahead are never sent (counted as clock); after the step
    back, stamps follow the wall clock again (not the future ones + 1 ms) and reach the receiver."""
    clock = Clock(offset=86400.0)
    registry, _ = seq_registry()
    pusher = Pusher(push_settings(prom.write_url), registry, tmp_path / "s", {"site": "s1"}, clock=clock)
    for _ in range(5):  # queued while the link is not yet used
        pusher.snapshot()
    clock.offset = 0.0  # NTP steps the clock back a day
    stepped_at = time.time()
    pusher.start()
    try:
        wait_until(lambda: pusher.metrics.sent >= 3 * 4, 10, "pushes after the step")
    finally:
        pusher.stop()
    assert pusher.metrics.dropped["clock"] == 5 * 3
    (points,) = prom.samples('pushtest_seq{k="0"}').values()
    assert points[0][1] == 6.0  # the first snapshot after the step; 1-5 were ahead
    assert all(abs(t / 1000 - stepped_at) < 30 for t, _ in points)  # stamped now, not a day ahead
    # Prometheus still takes present samples: its head was not moved into the future.
    assert pusher.metrics.dropped["too_old"] == 0 and pusher.metrics.dropped["rejected"] == 0
