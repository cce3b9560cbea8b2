"""The disk under the push queue fills up (a small tmpfs mounted by the test; needs root).

Right: the real error logged once, the loss counted with reason disk_full, the oldest blocks dropped
so new snapshots keep being queued, and recovery (one line, no more drops) when space returns.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import CollectorRegistry

from agent.push.pusher import QUEUE_FILE, Pusher
from agent.push.settings import PushSettings

SERIES = 300


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount a tmpfs")
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)]).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def noisy_registry() -> CollectorRegistry:
    """SERIES gauges with random values: about 2.4 KB per snapshot even compressed."""
    rng = random.Random(7)

    class Noise:
        def collect(self):
            g = GaugeMetricFamily("pushtest_noise", "random", labels=["i"])
            for i in range(SERIES):
                g.add_metric([str(i)], rng.random())
            yield g

    registry = CollectorRegistry()
    registry.register(Noise())
    return registry


def queue_state(state: Path) -> tuple[int, int]:
    db = sqlite3.connect(state / QUEUE_FILE)
    try:
        n, last = db.execute("SELECT COALESCE(SUM(samples - sent), 0), MAX(last_ms) FROM blocks").fetchone()
        return int(n), int(last)
    finally:
        db.close()


@pytest.mark.slow
def test_full_disk_drops_oldest_counts_once_logs_once_and_recovers(small_disk: Path, caplog) -> None:
    caplog.set_level(logging.INFO)
    filler = small_disk / "filler"
    filler.write_bytes(os.urandom(2 * 1024 * 1024))  # leaves the queue about 2 MiB
    settings = PushSettings(enabled=True, url="http://127.0.0.1:9/api/v1/write")  # never started
    pusher = Pusher(settings, noisy_registry(), small_disk / "state", {})
    try:
        stamps = []
        for _ in range(800):  # about 1.9 MB of snapshots: does not fit
            pusher.snapshot()
            stamps.append(pusher._last_ts)
        lost = pusher.metrics.dropped["disk_full"]
        queued, newest = queue_state(small_disk / "state")
        assert lost > 0
        assert newest == stamps[-1]  # the newest snapshot is queued: new data keep flowing
        assert queued + lost == 800 * SERIES  # every sample is either queued or counted as lost
        assert pusher.metrics.dropped["queue_full"] == 0
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1 and "KiB left for the queue" in errors[0], errors
        assert "cannot rollback" not in caplog.text

        filler.unlink()  # space returns
        for _ in range(20):
            pusher.snapshot()
        assert pusher.metrics.dropped["disk_full"] == lost
        queued = queue_state(small_disk / "state")[0]
        assert queued == 800 * SERIES - lost + 20 * SERIES
        assert sum("has room again" in r.getMessage() for r in caplog.records) == 1

        # Something else fills the disk to the last byte: SQLite itself meets the full disk.
        with (small_disk / "hog").open("wb") as hog, contextlib.suppress(OSError):
            while True:
                hog.write(b"\0" * 65536)
                hog.flush()
        caplog.clear()
        for _ in range(30):
            pusher.snapshot()
        lost_now = pusher.metrics.dropped["disk_full"] - lost
        assert lost_now > 0
        assert queue_state(small_disk / "state")[0] + lost_now == queued + 30 * SERIES
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1 and "full" in errors[0], errors
        assert "cannot rollback" not in caplog.text
        (small_disk / "hog").unlink()
        pusher.snapshot()
        assert pusher.metrics.dropped["disk_full"] == lost + lost_now
        assert queue_state(small_disk / "state")[1] == pusher._last_ts
    finally:
        pusher.stop()
