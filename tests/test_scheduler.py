"""Scheduler: jitter spreads runs, hung probes are abandoned and counted, bandwidth tests never overlap."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
import time_machine

from agent.metrics import AgentMetrics
from agent.probes.base import ProbeContext, ProbeSettings, ProbeSpec
from agent.result import Result
from agent.scheduler import ProbeScheduler
from agent.site import Site

SITE = Site(id="nd-1", commune="Xã A", province="Ninh Bình")


@dataclass(frozen=True)
class Quick(ProbeSettings):
    interval_s: float = 30.0
    jitter_s: float = 0.0
    timeout_s: float = 5.0


class Recorder:
    """A probe that records when it ran; optionally sleeps, or hangs until cancelled."""

    def __init__(self, name: str, sleep_s: float = 0.0, hang: bool = False) -> None:
        self.name = name
        self.sleep_s = sleep_s
        self.hang = hang
        self.runs: list[tuple[float, float]] = []
        self.cancelled_seen = threading.Event()
        self.lock = threading.Lock()

    def __call__(self, settings: ProbeSettings, context: ProbeContext) -> list[Result]:
        start = time.monotonic()
        if self.hang:
            if context.cancelled.wait(30):
                self.cancelled_seen.set()
        else:
            time.sleep(self.sleep_s)
        with self.lock:
            self.runs.append((start, time.monotonic()))
        return [Result(probe=self.name, target="", ok=True)]


def make(recorders: list[Recorder], bandwidth: bool = False) -> dict[str, ProbeSpec]:
    return {r.name: ProbeSpec(r.name, Quick, r, bandwidth_class=bandwidth) for r in recorders}


def test_jitter_spreads_first_runs(tmp_path: Path) -> None:
    """Probes with jitter do not all start at the same moment."""
    recorders = [Recorder(f"p{i}") for i in range(12)]
    specs = make(recorders)
    scheduler = ProbeScheduler(specs, AgentMetrics(SITE), tmp_path)
    scheduler.apply(SITE, {name: Quick(jitter_s=1.5) for name in specs})
    t0 = time.monotonic()
    scheduler.start()
    try:
        deadline = time.monotonic() + 5
        while any(not r.runs for r in recorders) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        scheduler.stop()
    starts = sorted(r.runs[0][0] - t0 for r in recorders)
    assert len(starts) == 12
    assert starts[-1] <= 2.0  # within the jitter window (plus scheduling slack), not an interval later
    assert starts[-1] - starts[0] > 0.3, starts


def test_hung_probe_is_abandoned_and_counted(tmp_path: Path) -> None:
    """A probe that hangs is abandoned at its timeout, counted as a timeout, and told to stop."""
    hung = Recorder("hung", hang=True)
    metrics = AgentMetrics(SITE)
    metrics.set_probes({"hung": Quick()})
    scheduler = ProbeScheduler(make([hung]), metrics, tmp_path)
    scheduler.apply(SITE, {})
    t0 = time.monotonic()
    (result,) = scheduler.run_once(make([hung])["hung"], Quick(timeout_s=0.5))
    assert time.monotonic() - t0 < 5
    assert not result.ok and result.reason == "timeout"
    assert hung.cancelled_seen.wait(5), "the abandoned run was not told to stop"
    assert metrics.failures_count("hung", "timeout") == 1


def test_hung_probe_does_not_block_others(tmp_path: Path) -> None:
    """While one probe hangs, another keeps running on its schedule."""
    hung = Recorder("hung", hang=True)
    quick = Recorder("quick")
    specs = make([hung, quick])
    scheduler = ProbeScheduler(specs, AgentMetrics(SITE), tmp_path)
    scheduler.apply(SITE, {"hung": Quick(timeout_s=20, interval_s=60), "quick": Quick(interval_s=0.3)})
    scheduler.start()
    try:
        time.sleep(2.0)
    finally:
        scheduler.stop()
    assert len(quick.runs) >= 3
    assert hung.cancelled_seen.wait(5), "stop() must tell running probes to stop"


def test_second_run_skipped_while_abandoned_run_still_hangs(tmp_path: Path) -> None:
    """A probe whose abandoned run still hangs is not started twice."""

    class Stubborn(Recorder):
        def __call__(self, settings: ProbeSettings, context: ProbeContext) -> list[Result]:
            self.runs.append((time.monotonic(), 0))
            time.sleep(1.5)  # ignores cancellation
            return []

    stubborn = Stubborn("stubborn")
    spec = make([stubborn])["stubborn"]
    scheduler = ProbeScheduler({"stubborn": spec}, AgentMetrics(SITE), tmp_path)
    scheduler.apply(SITE, {})
    first = scheduler.run_once(spec, Quick(timeout_s=0.2))
    second = scheduler.run_once(spec, Quick(timeout_s=0.2))
    assert first[0].reason == "timeout" and second[0].reason == "timeout"
    assert "still hung" in second[0].detail
    assert len(stubborn.runs) == 1


def run_two_at_once(tmp_path: Path, bandwidth: bool) -> tuple[tuple[float, float], tuple[float, float]]:
    """Start two probes' runs at the same moment; return each one's (start, end)."""
    a, b = Recorder("a", sleep_s=0.4), Recorder("b", sleep_s=0.4)
    specs = make([a, b], bandwidth=bandwidth)
    scheduler = ProbeScheduler(specs, AgentMetrics(SITE), tmp_path)
    scheduler.apply(SITE, {})
    threads = [threading.Thread(target=scheduler.run_once, args=(specs[n], Quick())) for n in specs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    return a.runs[0], b.runs[0]


def test_bandwidth_class_runs_never_overlap(tmp_path: Path) -> None:
    """Two bandwidth-class probes due at the same time run one after the other."""
    (a_start, a_end), (b_start, b_end) = run_two_at_once(tmp_path, bandwidth=True)
    assert a_end <= b_start or b_end <= a_start


def test_ordinary_probes_may_overlap(tmp_path: Path) -> None:
    """Probes that are not bandwidth-class run concurrently (the serialisation is specific)."""
    (a_start, a_end), (b_start, b_end) = run_two_at_once(tmp_path, bandwidth=False)
    assert a_start < b_end and b_start < a_end


def test_probe_exception_becomes_failed_result(tmp_path: Path) -> None:
    """A probe that raises yields a failed Result with reason error; the agent goes on."""

    def broken(settings: ProbeSettings, context: ProbeContext) -> list[Result]:
        raise RuntimeError("boom")

    spec = ProbeSpec("broken", Quick, broken)
    metrics = AgentMetrics(SITE)
    scheduler = ProbeScheduler({"broken": spec}, metrics, tmp_path)
    scheduler.apply(SITE, {})
    (result,) = scheduler.run_once(spec, Quick())
    assert result.reason == "error" and "boom" in result.detail
    assert metrics.failures_count("broken", "error") == 1


def test_stop_releases_a_waiting_run_at_once(tmp_path: Path) -> None:
    """stop() wakes a run still waiting on its probe, so no scheduler thread holds up the agent's exit."""
    hung = Recorder("hung", hang=True)
    metrics = AgentMetrics(SITE)
    spec = make([hung])["hung"]
    scheduler = ProbeScheduler({"hung": spec}, metrics, tmp_path)
    scheduler.apply(SITE, {})
    returned: list[float] = []
    waiter = threading.Thread(
        target=lambda: (scheduler.run_once(spec, Quick(timeout_s=60)), returned.append(1))
    )
    waiter.start()
    time.sleep(0.3)
    t0 = time.monotonic()
    scheduler.stop()
    waiter.join(5)
    assert returned and time.monotonic() - t0 < 2
    assert hung.cancelled_seen.wait(5)
    assert metrics.failures_count("hung", "timeout") == 0  # a shutdown is not a failed measurement


def _runs_after_step(tmp_path: Path, step_s: float, probes: int, jitter_s: float) -> list[Recorder]:
    """Run `probes` probes every second, step the wall clock by `step_s` (not the monotonic one, as
    NTP does on a Pi without a real-time clock), and record 3 s of runs after the step."""
    recorders = [Recorder(f"p{i}") for i in range(probes)]
    specs = make(recorders)
    scheduler = ProbeScheduler(specs, AgentMetrics(SITE), tmp_path)
    scheduler.apply(SITE, {name: Quick(interval_s=1.0, jitter_s=jitter_s) for name in specs})
    scheduler.start()
    try:
        time.sleep(2.2)
        for r in recorders:
            r.runs.clear()
        with time_machine.travel(time.time() + step_s, tick=True):
            # /healthz right after the step, before the scheduler's next wakeup has moved the jobs
            now = datetime.now().astimezone()
            soon = [(t - now).total_seconds() for t in scheduler.next_run_times().values()]
            assert all(-0.5 <= s <= 2.5 for s in soon), soon
            time.sleep(3.0)
            healthz_next = scheduler.next_run_times()
            now = datetime.now().astimezone()
        assert all(0 <= (t - now).total_seconds() <= 2.5 for t in healthz_next.values()), healthz_next
    finally:
        scheduler.stop()
    return recorders


@pytest.mark.slow
def test_wall_clock_stepped_back_an_hour_does_not_stop_probes(tmp_path: Path) -> None:
    """An hour back: every probe keeps its one-second cadence instead of waiting for the hour."""
    recorders = _runs_after_step(tmp_path, -3600, probes=2, jitter_s=0.0)
    assert all(2 <= len(r.runs) <= 4 for r in recorders), [len(r.runs) for r in recorders]


@pytest.mark.slow
def test_wall_clock_stepped_forward_does_not_bunch_runs(tmp_path: Path) -> None:
    """An hour forward: runs stay spread by their jitter, one per interval, not all at one moment."""
    recorders = _runs_after_step(tmp_path, 3600, probes=6, jitter_s=0.8)
    assert all(1 <= len(r.runs) <= 4 for r in recorders), [len(r.runs) for r in recorders]
    firsts = sorted(r.runs[0][0] for r in recorders)
    assert firsts[-1] - firsts[0] > 0.25, firsts
