"""The HTTP engine's decisions, without sockets: fed samples, it says when to add streams and when to stop.

Every `SAMPLE_S` the engine's socket loop (agent/bandwidth/http_engine.py) hands `Estimator.sample`
the time since the direction started, the bytes TCP counted crossing the link (all streams), the
bytes moved (what the data budget pays) and the streams' median RTT; the answer is a `Decision`:
the rate to show, how many streams to open now, or the stable goodput that ends the direction.
When a bound (bytes, time) stops the direction first, `Estimator.stopped` gives what the link
carried at least. Download counts include bytes held past a hole (`HeldBytes`, fed out-of-order
counters). All rates are bytes per second; times are seconds.

The rules (figures from the lab grid in bench/RESULTS-bandwidth.md):
- Streams: a fixed count when given; otherwise 4, plus 4 more each time the rate plateaus, the
  last step still raised it by 10% or more, and the streams' RTT shows no standing queue (median
  below idle latency × 1.2 + 2 ms), up to 16, while the bytes left pay for the step's ramp-up and a
  measurement. More streams only help when the windows, not the link, limit the rate; a queue at
  the bottleneck says the link is full already.
- Ramp-up (slow start, and each stream step) is discarded: it ends 0.5 s or 20 idle RTTs
  (whichever is longer: recovery from slow start's losses takes RTTs; rounded to the nearest
  sample) after the 0.5 s rate grows less than 5% from one sample to the next, or at half of the
  allowed duration or bytes (a fast line must still have room to be measured).
- Goodput = bytes between two samples / the time between them, the samples taken from the first
  and the last second of the window past the ramp-up: those lying highest above the trend line,
  since a TCP count lags while a stream waits for a retransmission and never leads (`goodput`).
  The direction is over as soon as the last 6 estimates (1.25 s) lie within +-2% of their mean,
  after at least 2 s (8 samples) and 256 KiB past the ramp, and the window's later half reads no
  more than 2% above the whole window. A later half above that means the rate was still rising
  (cubic's slow climb back after slow start's losses: 900 Mbit/s at 30 ms read 0.87 of the limit
  "stable" while its last second ran at 0.96, because a long window's average moves too little
  per sample to fail the +-2% test); the window then restarts at its midpoint.
- Byte cap (`byte_cap`): a direction may move `max_bytes`, but the engine stops it earlier, at the
  bytes moved when its window (re)started plus `WINDOW_BUDGET_S` at the window's goodput, never
  below `BASE_CAP_BYTES`: the cap grows with the line (a gigabit line gets room to settle) without
  letting a fast line that never settles spend its whole `max_bytes`.
- Stopped by a bound first: the goodput measured so far, a lower bound (`lower_bound`), or
  nothing when less than 256 KiB crossed.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

SAMPLE_S = 0.25
START_STREAMS = 4
STREAM_STEP = 4
MAX_STREAMS = 16
STEP_GAIN = 1.10  # a stream step must raise the plateau by this factor to try another
RAMP_GROWTH = 1.05
STABLE_K = 6
STABLE_TOL = 0.02
# The ramp is judged over when the rate stops rising, i.e. at a dip: often the losses that end
# slow start, whose recovery takes many RTTs (with the link part idle). Wait 0.5 s or 20 RTTs.
SETTLE_S = 0.5
SETTLE_RTTS = 20
MIN_MEASURE_S = 2.0
MIN_MEASURE_BYTES = 256 * 1024
EDGE_SAMPLES = 4  # how far into the window's edges `goodput` looks for unlagged counts (1 s)
# The link is judged full when the streams' median RTT reaches idle RTT × 1.2 + 2 ms.
QUEUE_FACTOR = 1.2
QUEUE_MIN_S = 0.002
RISE_TOL = 0.02  # a later half this much above the whole window: still rising, restart the window
# The byte cap: never below this (lines up to ~130 Mbit/s stop on time or stability long before
# it, as they did with the old fixed 250 MB limit) ...
BASE_CAP_BYTES = 250_000_000
# ... and otherwise what this many seconds of window at the window's goodput cost, on top of the
# bytes moved when it started: 2 s of measurement, 1.25 s of agreeing estimates and one restart.
WINDOW_BUDGET_S = 4.0

Samples = list[tuple[float, int]]  # (seconds since the start, bytes counted)


@dataclass(frozen=True)
class Decision:
    """What the socket loop does after a sample."""

    rate: float  # bytes/s to show as progress: the ramp's rate, then the window's goodput
    add_streams: int = 0  # open this many streams now (a stream step)
    stable: float | None = None  # bytes/s: the goodput settled, the direction is over


@dataclass(frozen=True)
class Stopped:
    """Where a direction stopped by a bound (bytes, time, no stable estimate) got to."""

    lower_bound: float  # bytes/s the link carried at least; 0: too little crossed to say
    last_estimate: float | None  # the window's last goodput (None: still ramping up)
    measured_bytes: int  # bytes counted past the ramp-up


class Estimator:
    """One direction's decisions; `sample` is called every `SAMPLE_S` with TCP's counts."""

    def __init__(self, *, max_duration_s: float, max_bytes: int, streams: int, idle_rtt_s: float) -> None:
        """`streams` > 0: that many, no steps; 0: adaptive. `idle_rtt_s`: idle latency (0: unknown)."""
        self.max_duration_s = max_duration_s
        self.max_bytes = max_bytes
        self.adaptive = streams <= 0
        self.streams = START_STREAMS if self.adaptive else streams  # open streams, steps included
        self.idle_rtt_s = idle_rtt_s
        self.settle_s = max(SETTLE_S, SETTLE_RTTS * idle_rtt_s)
        self.samples: Samples = [(0.0, 0)]
        self.estimates: list[float] = []
        self._step_start = 0  # sample index where the current stream count began
        self._plateau: float | None = None
        self._ramp_end: int | None = None
        self._measure_i: int | None = None  # sample index where the measuring window starts
        self._moved = [0]  # bytes moved at each sample
        self.restarts = 0  # windows restarted because the rate was still rising

    @property
    def ramp_end(self) -> tuple[float, int] | None:
        """The sample (seconds, bytes counted) where the ramp-up was judged over (None: not yet)."""
        return None if self._ramp_end is None else self.samples[self._ramp_end]

    def sample(self, t: float, count: int, moved: int, rtt_s: float) -> Decision:
        """A sample: `t` s since the start, `count` bytes crossed the link, `moved` bytes paid for.

        `rtt_s`: the streams' median RTT now, queueing included (0: not known).
        """
        self.samples.append((t, count))
        self._moved.append(moved)
        if self._measure_i is None:
            return self._ramp(t, moved, rtt_s)
        span = t - self.samples[self._measure_i][0]
        got = count - self.samples[self._measure_i][1]
        estimate = goodput(self.samples[self._measure_i :])
        self.estimates.append(estimate)
        if (
            span < MIN_MEASURE_S - SAMPLE_S / 2
            or got < MIN_MEASURE_BYTES
            or not stable(self.estimates[-STABLE_K:])
        ):
            return Decision(estimate)
        # Judged only when the window would end: noise then costs at most one restart, not many.
        middle = (self._measure_i + len(self.samples) - 1) // 2
        later = goodput(self.samples[middle:])
        if later > estimate * (1 + RISE_TOL):
            # Still rising: what came before the middle was ramp-up. Measure from there.
            self._measure_i = middle
            self.estimates = [later]
            self.restarts += 1
            return Decision(later)
        return Decision(estimate, stable=estimate)

    @property
    def byte_cap(self) -> int:
        """Bytes this direction may move now: `max_bytes`, lowered once a window runs (module doc)."""
        if self._measure_i is None or not self.estimates:
            return self.max_bytes
        grown = self._moved[self._measure_i] + int(self.estimates[-1] * WINDOW_BUDGET_S)
        return min(self.max_bytes, max(BASE_CAP_BYTES, grown))

    def _ramp(self, t: float, moved: int, rtt_s: float) -> Decision:
        """Still ramping up: the ramp's end, a stream step, or the settle that starts the window."""
        i = len(self.samples) - 1
        now_rate = rate(self.samples, i)
        if self._ramp_end is not None:
            if t >= self.samples[self._ramp_end][0] + self.settle_s - SAMPLE_S / 2:
                self._measure_i = i
            return Decision(now_rate)
        if i - self._step_start < 3:  # two full windows past the last stream change
            return Decision(now_rate)
        rising = now_rate > rate(self.samples, i - 1) * RAMP_GROWTH
        # Half the time or the bytes gone: measure what there is. On a gigabit line the byte
        # limit (600 MB is ~5.6 s at 900 Mbit/s) comes long before the time limit.
        ramp_cap = t >= self.max_duration_s / 2 or moved >= self.max_bytes / 2
        if rising and not ramp_cap:
            return Decision(now_rate)
        if (
            self.adaptive
            and not ramp_cap
            and self.streams < MAX_STREAMS
            and (self._plateau is None or now_rate > self._plateau * STEP_GAIN)
            and not queueing(rtt_s, self.idle_rtt_s)
            and can_pay_a_step(now_rate, self.max_bytes - moved, self.settle_s)
        ):
            self._plateau = now_rate
            step = min(STREAM_STEP, MAX_STREAMS - self.streams)
            self.streams += step
            self._step_start = i
            return Decision(now_rate, add_streams=step)
        self._ramp_end = i
        return Decision(now_rate)

    def stopped(self, t: float, count: int) -> Stopped:
        """A bound stopped the direction at `t` with `count` bytes crossed: what it carried at least.

        A shorter stability rule here read 0.85 of the limit at 900 Mbit/s 30 ms, unflagged, while
        the streams were still recovering from slow start's losses.
        """
        if t > self.samples[-1][0]:
            self.samples.append((t, count))  # up to the stop: a short test still has a rate
        last = self.samples[-1][1]
        floor = lower_bound(self.samples, self.estimates) if last >= MIN_MEASURE_BYTES else 0.0
        measured = last - self.samples[self._measure_i][1] if self._measure_i is not None else 0
        return Stopped(floor, self.estimates[-1] if self.estimates else None, measured)


class HeldBytes:
    """Bytes that arrived past a hole and wait for a retransmission, from one connection's counters.

    While no packet arrived out of order since the last count nothing is held, and the gap
    between bytes arrived (data segments × MSS) and bytes received in order is the baseline;
    while packets do arrive out of order, the gap's growth beyond it is what is held.
    """

    def __init__(self) -> None:
        self._ooo_packets = -1  # out-of-order packets at the last count (-1: none yet)
        self._sync_gap = 0  # arrived - received when nothing was last held

    def update(self, arrived: int, received: int, ooo_packets: int) -> int:
        """Counters now (`arrived` 0: not known); returns the bytes held."""
        gap = arrived - received
        if ooo_packets == self._ooo_packets or self._ooo_packets < 0 or not arrived:
            self._ooo_packets = ooo_packets
            self._sync_gap = gap
            return 0
        self._ooo_packets = ooo_packets
        return max(0, gap - self._sync_gap)


def can_pay_a_step(rate: float, allowance: int, settle_s: float) -> bool:
    """Whether the bytes left pay for a stream step: its ramp-up, the settle and a full measurement.

    A step restarts the ramp; at a high rate the byte limit would then come before any stable
    estimate (at 900 Mbit/s a step costs ~350 MB, more than a 250 MB limit leaves).
    """
    return rate * (3 * SAMPLE_S + settle_s + MIN_MEASURE_S) <= allowance


def queueing(rtt_s: float, idle_rtt_s: float) -> bool:
    """Whether the streams' median RTT shows a standing queue at the bottleneck: the link is full.

    Then more streams cannot raise the rate (they only help while windows, not the link, limit it),
    so the stream step, which costs a ramp-up of its own, is skipped. 0: not known (no queue).
    """
    return rtt_s > 0 and idle_rtt_s > 0 and rtt_s >= idle_rtt_s * QUEUE_FACTOR + QUEUE_MIN_S


def goodput(samples: Samples) -> float:
    """Bytes per second over the samples (time, count), from edge samples TCP's holding back spared.

    A TCP count lags what crossed the link while a stream waits for a retransmission (bytes
    received past the hole count only once it is filled), never leads it. So among the first and
    the last few samples take the ones lying highest above the trend line, not simply the first
    and the last: a window starting on such a lag would count the held bytes as if they had
    crossed inside it.
    """
    last = len(samples) - 1
    edge = min(EDGE_SAMPLES, last // 4)
    lo, hi = 0, last
    for _ in range(3):
        (t0, b0), (t1, b1) = samples[lo], samples[hi]
        trend = (b1 - b0) / (t1 - t0) if t1 > t0 else 0.0
        above = [b - trend * t for t, b in samples]
        lo = max(range(edge + 1), key=above.__getitem__)
        hi = max(range(last - edge, last + 1), key=above.__getitem__)
    (t0, b0), (t1, b1) = samples[lo], samples[hi]
    return (b1 - b0) / (t1 - t0) if t1 > t0 else 0.0


def lower_bound(samples: Samples, estimates: list[float]) -> float:
    """Bytes per second the link carried at least, for a direction a bound stopped early.

    The goodput over the whole window past the ramp-up when there is one (bytes that crossed in a
    window never exceed what the link can carry in it), else the rate over the last second of the
    ramp (still rising: the link carries more). 0 when nothing was counted.
    """
    if estimates:
        return estimates[-1]
    (t0, b0), (t1, b1) = samples[max(0, len(samples) - 1 - EDGE_SAMPLES)], samples[-1]
    return (b1 - b0) / (t1 - t0) if t1 > t0 else 0.0


def rate(samples: Samples, i: int) -> float:
    """Bytes per second over the two sample intervals ending at sample i."""
    (t0, b0), (t1, b1) = samples[max(0, i - 2)], samples[i]
    return (b1 - b0) / (t1 - t0) if t1 > t0 else 0.0


def stable(estimates: list[float], k: int = STABLE_K) -> bool:
    """Whether the last `k` estimates are all within ±STABLE_TOL of their mean (fewer: not yet)."""
    if len(estimates) < k:
        return False
    mean = statistics.fmean(estimates)
    return mean > 0 and all(abs(e - mean) <= STABLE_TOL * mean for e in estimates)
