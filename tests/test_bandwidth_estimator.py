"""The bandwidth estimator's decisions on synthetic traces and on traces recorded on the lab links."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agent.bandwidth import estimator as estimator_module
from agent.bandwidth.estimator import BASE_CAP_BYTES, SAMPLE_S, WINDOW_BUDGET_S, Decision, Estimator

TRACES = Path(__file__).parent / "fixtures" / "bandwidth"
MB = 1_000_000


def estimator(streams: int = 0, max_bytes: int = 250 * MB, idle_rtt_s: float = 0.01) -> Estimator:
    return Estimator(max_duration_s=15.0, max_bytes=max_bytes, streams=streams, idle_rtt_s=idle_rtt_s)


def feed(
    est: Estimator, rate_at: Callable[[int], float], n: int = 60, rtt_s: float = 0.0
) -> list[tuple[int, Decision]]:
    """Sample i (at i × SAMPLE_S) counts what `rate_at` (bytes/s in sample interval i) added up to.

    Stops at the first stable decision; returns every (index, decision).
    """
    count = 0.0
    out = []
    for i in range(1, n + 1):
        count += rate_at(i) * SAMPLE_S
        decision = est.sample(i * SAMPLE_S, int(count), int(count), rtt_s)
        out.append((i, decision))
        if decision.stable is not None:
            break
    return out


def test_steady_rate_with_fixed_streams_settles_after_ramp_settle_and_two_seconds() -> None:
    """Ramp judged over at sample 3, 0.5 s settle, then 2 s of window: stable at 3.25 s, on the rate."""
    est = estimator(streams=4)
    decisions = feed(est, lambda i: 1e6)
    last_i, last = decisions[-1]
    assert last.stable == pytest.approx(1e6)
    assert last_i * SAMPLE_S == 3.25
    assert all(d.add_streams == 0 for _, d in decisions)


def test_slow_start_is_discarded() -> None:
    """A rate doubling each sample up to a plateau: the ramp is left out of the measured goodput."""
    est = estimator(streams=4)
    decisions = feed(est, lambda i: min(10e6, 0.5e6 * 2**i))
    assert decisions[-1][1].stable == pytest.approx(10e6)


def test_plateau_without_queue_adds_a_step_then_stops_stepping_when_it_gains_nothing() -> None:
    """Adaptive: 4 more streams at the first plateau; the same rate after them ends the steps."""
    est = estimator()
    decisions = feed(est, lambda i: 1e6)
    steps = [(i, d.add_streams) for i, d in decisions if d.add_streams]
    assert steps == [(3, 4)]
    assert est.streams == 8
    assert decisions[-1][1].stable == pytest.approx(1e6)


def test_steps_continue_while_each_raises_the_rate_by_ten_percent() -> None:
    """Windows limit the rate (each stream 0.25 MB/s, no queue): steps up to 16 streams."""
    est = estimator()
    feed(est, lambda i: 0.25e6 * est.streams)
    assert est.streams == 16


def test_a_standing_queue_means_no_step() -> None:
    """Median RTT 50 ms over 10 ms idle: the link is full, more streams cannot help."""
    est = estimator()
    decisions = feed(est, lambda i: 1e6, rtt_s=0.05)
    assert not any(d.add_streams for _, d in decisions)
    assert est.streams == 4


def test_no_step_the_bytes_left_cannot_pay_for() -> None:
    """100 MB/s with 250 MB: a step's ramp and measurement (~330 MB) does not fit."""
    est = estimator()
    decisions = feed(est, lambda i: 100e6, n=12)
    assert not any(d.add_streams for _, d in decisions)


def test_half_the_bytes_gone_ends_a_still_rising_ramp() -> None:
    """At half the byte limit the ramp ends even while the rate still rises, and no step is taken."""
    est = estimator(max_bytes=10 * MB)
    decisions = feed(est, lambda i: 1e6 * 1.2**i, n=40)
    assert not any(d.add_streams for _, d in decisions)
    assert est.ramp_end is not None
    t, count = est.ramp_end
    assert count >= 5 * MB > est.samples[round(t / SAMPLE_S) - 1][1]


def test_progress_is_the_ramp_rate_then_the_window_goodput() -> None:
    est = estimator(streams=4)
    decisions = feed(est, lambda i: 2e6 if i % 2 else 1e6)  # alternating: a 0.5 s rate of 1.5 MB/s
    assert decisions[2][1].rate == pytest.approx(1.5e6)
    assert decisions[-1][1].rate == decisions[-1][1].stable


def test_a_bound_before_stability_gives_the_window_goodput_as_lower_bound() -> None:
    est = estimator(streams=4)
    feed(est, lambda i: 1e6, n=8)  # measuring since 1.25 s, not yet 2 s
    stop = est.stopped(2.1, 2_100_000)
    assert stop.lower_bound == pytest.approx(est.estimates[-1])
    assert stop.measured_bytes == 2_100_000 - 1_250_000


def test_a_bound_in_the_ramp_gives_its_last_second_and_a_trickle_nothing() -> None:
    est = estimator(streams=4)
    feed(est, lambda i: 1e6 * i, n=6)  # rising all the way
    stop = est.stopped(1.5, est.samples[-1][1])
    assert stop.last_estimate is None and stop.measured_bytes == 0
    assert stop.lower_bound == pytest.approx((est.samples[-1][1] - est.samples[2][1]) / 1.0)
    trickle = estimator(streams=4)
    feed(trickle, lambda i: 10_000, n=6)
    assert trickle.stopped(1.6, 16_000).lower_bound == 0.0


def climbing(i: int) -> float:
    """900 Mbit/s at 30 ms as recorded: slow start to half the line, a 1.5 s plateau while the ramp
    is judged over, then cubic's slow climb (3.5 s) to the line's 107.6 MB/s, which it keeps."""
    if i <= 4:
        return 107.6e6 * 0.125 * i
    return 107.6e6 * min(1.0, 0.5 + max(0, i - 10) * 0.5 / 14)


def test_a_rate_still_rising_after_the_settle_restarts_the_window() -> None:
    """A long window's average moves too little per sample to fail the ±2% rule while the rate still
    climbs; its later half reads higher, so the window restarts there and settles on the line."""
    est = estimator(streams=4, max_bytes=600 * MB, idle_rtt_s=0.03)
    decisions = feed(est, climbing)
    assert est.restarts >= 1
    assert decisions[-1][1].stable == pytest.approx(107.6e6, rel=0.02)


def test_without_the_restart_the_climb_would_settle_low(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same trace with the restart rule off settles well under the line: what the rule fixes."""
    monkeypatch.setattr(estimator_module, "RISE_TOL", 10.0)
    est = estimator(streams=4, max_bytes=600 * MB, idle_rtt_s=0.03)
    stable = feed(est, climbing)[-1][1].stable
    assert stable is not None and stable < 107.6e6 * 0.95


def test_the_byte_cap_grows_with_the_line_up_to_max_bytes() -> None:
    """max_bytes until the window runs; then 250 MB, or the window's start plus 4 s at its goodput."""
    fast = estimator(streams=4, max_bytes=600 * MB)
    assert fast.byte_cap == 600 * MB
    feed(fast, lambda i: 100e6, n=8)  # window from 1.25 s (125 MB)
    assert fast.byte_cap == pytest.approx(125 * MB + 100e6 * WINDOW_BUDGET_S, rel=0.001)
    slow = estimator(streams=4, max_bytes=600 * MB)
    feed(slow, lambda i: 10e6, n=8)
    assert slow.byte_cap == BASE_CAP_BYTES
    ceiling = estimator(streams=4, max_bytes=300 * MB)
    feed(ceiling, lambda i: 100e6, n=8)
    assert ceiling.byte_cap == 300 * MB


def traces() -> list[Path]:
    return sorted(TRACES.glob("*.json"))


@pytest.mark.parametrize("path", traces(), ids=lambda p: p.stem)
def test_recorded_lab_trace_replays_to_the_same_decisions(path: Path) -> None:
    """A trace recorded on a shaped lab link (python -m bench.bandwidth_trace): same steps, same figure.

    And that figure lies within 5% of the link's goodput limit, as the lab test requires.
    """
    trace: dict[str, Any] = json.loads(path.read_text())
    est = Estimator(**trace["settings"])
    for t, count, moved, rtt_s, add_streams, stable in trace["samples"]:
        decision = est.sample(t, count, moved, rtt_s)
        assert (decision.add_streams, decision.stable) == (add_streams, stable), (path.name, t)
    result = trace["result_bps"]
    if trace["lower_bound"]:  # a bound came first: the same floor, below the limit
        assert est.stopped(*trace["stop"]).lower_bound * 8 == pytest.approx(result)
        assert 0.3 < result / trace["goodput_limit_bps"] < 1.03
        return
    assert result == pytest.approx(trace["samples"][-1][5] * 8)
    assert abs(result / trace["goodput_limit_bps"] - 1) <= 0.05
