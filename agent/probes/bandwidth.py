"""Bandwidth: download and upload goodput against a test server, politely scheduled.

Engines: the built-in HTTP multi-stream engine (LibreSpeed protocol), speedtest-cli (Ookla's
servers) and iperf3. All return the same BandwidthTest.

A run: skip when the monthly data budget cannot pay the test's worst case (2 x max_bytes); wait
for a quiet line (cross-traffic under the threshold, re-checked a few times, else give up as
deferred); run the engine; pay the bytes it moved into the budget. run() never raises.

One Result per run, target = the server (or the engine name when the server is automatic), data =
BandwidthRun: `outcome` says what happened (measured, failed, deferred, skipped), `test` holds
the engine's figures (partial on failure, None when no test ran), `budget` the data budget after
the run, `deferral` the cross-traffic checks (None when deferral is off). ok only when both
directions were measured; deferred and skipped runs are failures with reason "limit" (a configured
limit stopped the test), told apart by `outcome`.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from agent.bandwidth.budget import Budget, BudgetStatus
from agent.bandwidth.crosstraffic import Deferral, wait_for_quiet
from agent.bandwidth.engine import BandwidthTest, Engine, EngineError, EngineName, Limits
from agent.families import Family, ProbeMetrics, Samples, Tally
from agent.i18n import _
from agent.probes.base import ProbeContext, ProbeSettings, ProbeSpec
from agent.result import Result, failure
from agent.schema import (
    Secret,
    all_of,
    at_most,
    check,
    is_host_port,
    is_url,
    non_negative,
    positive,
)
from agent.site import MBPS, Direction, Site

log = logging.getLogger(__name__)

Outcome = Literal["measured", "failed", "deferred", "skipped"]
SETUP_SLACK_S = 30.0  # latency pings, connects and header waits on top of the two directions


@dataclass(frozen=True)
class Settings(ProbeSettings):
    interval_s: float = check(positive, default=6 * 3600.0)
    # start anywhere in the interval, so a fleet never tests at once
    jitter_s: float = check(non_negative, default=6 * 3600.0)
    timeout_s: float = check(positive, default=180.0)
    engine: EngineName = "http"
    server: str = ""  # http: the test server's URL; iperf3: HOST[:PORT]; speedtest: "" (auto) or ids
    token: Secret | None = None  # http engine: sent as "Authorization: Bearer TOKEN"
    max_duration_s: float = check(positive, default=15.0)  # per direction
    max_bytes: int = check(positive, default=600_000_000)  # per direction, a ceiling (estimator.byte_cap)
    streams: int = check(all_of(non_negative, at_most(64)), default=0)  # 0: the engine chooses
    # 0: unlimited. 30 GB pays ~120 tests a month (every 6 h) at ~250 MB each: a test at 100 Mbit/s
    # moves ~80 MB, one at 900 Mbit/s ~700 MB-1 GB; a test runs while its worst case (2 x max_bytes) fits.
    monthly_budget_bytes: int = check(non_negative, default=30_000_000_000)
    # Defer while the busier direction carries more than this. 250 kB/s = 2 Mbit/s = 2% of a
    # 100 Mbit/s line: users' traffic can then bias a test by about 2%, inside its accuracy, while
    # the background chatter of a dozen idle phones (tens of kB/s) does not block testing forever.
    # SamKnows uses 25 kB/s for a home line. 0: never defer.
    defer_threshold_bytes_per_s: int = check(non_negative, default=250_000)
    defer_interface: str = ""  # "" = every interface but loopback; on a router, name the uplink
    defer_sample_s: float = check(positive, default=3.0)
    defer_wait_s: float = check(non_negative, default=30.0)
    defer_tries: int = check(positive, default=4)

    def validate(self) -> list[str]:
        errs = []
        # No server is not a config error: the minimal config must load. The run reports it instead.
        # Which form the server takes depends on the engine: a rule between two fields.
        if self.server and (msg := self._server_problem()):
            errs.append(f"server: {msg}")
        if self.timeout_s < (worst := self.worst_case_s()):
            errs.append(
                f"timeout_s: {self.timeout_s:g} s is shorter than the worst case of deferral and both "
                f"directions ({worst:g} s); lower defer_tries, defer_wait_s or max_duration_s"
            )
        return errs

    def _server_problem(self) -> str | None:
        return server_problem(self.engine, self.server)

    def worst_case_s(self) -> float:
        deferral = 0.0
        if self.defer_threshold_bytes_per_s > 0:
            deferral = (
                self.defer_tries * self.defer_sample_s + max(0, self.defer_tries - 1) * self.defer_wait_s
            )
        return deferral + 2 * self.max_duration_s + SETUP_SLACK_S


def server_problem(engine: str, server: str) -> str | None:
    """Why `server` cannot be `engine`'s test server (a sentence, translated), or None when it can."""
    if engine == "http":
        if server.lower().startswith("https://"):  # the engine has no TLS (http_engine.py)
            return _(
                "the http engine speaks plain http:// only: give the test server's http:// address "
                "(a TLS front such as nginx on 443 is for other clients)"
            )
        return is_url(server)
    if engine == "iperf3" and ":" in server:
        return is_host_port(server)
    return None


@dataclass(frozen=True)
class BandwidthRun:
    outcome: Outcome
    test: BandwidthTest | None  # the engine's figures (partial on failure); None when no test ran
    budget: BudgetStatus
    deferral: Deferral | None  # None when deferral is off


def load_engine(name: str, token: str = "") -> Engine:
    """The engine's measure function, imported only when used (speedtest-cli is heavy)."""
    module = importlib.import_module(f"agent.bandwidth.{name}_engine")
    if name == "http" and token:
        return functools.partial(module.measure, token=token)  # the token is the http engine's own
    measure: Engine = module.measure
    return measure


def run(settings: Settings, context: ProbeContext) -> list[Result[BandwidthRun]]:
    started, clock = time.time(), time.monotonic()
    target = settings.server or settings.engine
    try:
        result = _run(settings, context, target)
    except Exception as exc:  # a bug here must cost one run, never the agent
        log.exception("bandwidth probe failed unexpectedly")
        result = failure("bandwidth", target, "error", f"unexpected error: {exc!r}")
    return [dataclasses.replace(result, started_at=started, duration_s=round(time.monotonic() - clock, 3))]


def _run(settings: Settings, context: ProbeContext, target: str) -> Result[BandwidthRun]:
    if settings.engine in ("http", "iperf3") and not settings.server:
        return failure(
            "bandwidth",
            target,
            "unsupported",
            f"no test server configured for the {settings.engine} engine (set probes.bandwidth.server)",
        )
    budget = Budget(context.state_dir, settings.monthly_budget_bytes)
    status = budget.status()
    worst = 2 * settings.max_bytes
    if not budget.allows(status, worst):
        detail = (
            f"skipped: the monthly data budget has {status.remaining_bytes} of {status.budget_bytes} bytes "
            f"left, less than a test's worst case of {worst}"
        )
        return failure("bandwidth", target, "limit", detail, data=BandwidthRun("skipped", None, status, None))

    deferral = None
    if settings.defer_threshold_bytes_per_s > 0:
        try:
            deferral = wait_for_quiet(
                settings.defer_threshold_bytes_per_s,
                settings.defer_sample_s,
                settings.defer_wait_s,
                settings.defer_tries,
                settings.defer_interface,
                context.cancelled,
            )
        except LookupError as exc:
            return failure("bandwidth", target, "error", f"defer_interface: {exc}")
        if context.cancelled.is_set():
            return failure("bandwidth", target, "timeout", "cancelled while waiting for a quiet line")
        if deferral.deferred:
            detail = (
                f"deferred: the line carried {deferral.last_bytes_per_s:,.0f} B/s of other traffic "
                f"at each of {deferral.checks} checks (threshold {deferral.threshold_bytes_per_s:,} B/s)"
            )
            return failure(
                "bandwidth", target, "limit", detail, data=BandwidthRun("deferred", None, status, deferral)
            )

    try:
        measure = load_engine(settings.engine, settings.token.reveal() if settings.token else "")
    except ImportError as exc:
        return failure(
            "bandwidth", target, "unsupported", f"engine {settings.engine} is not available: {exc}"
        )
    limits = Limits(settings.max_duration_s, settings.max_bytes, settings.streams)
    try:
        test = measure(settings.server, limits, context.cancelled, context.progress)
    except EngineError as exc:
        partial = exc.partial
        if partial is not None:
            status = budget.spend(partial.download_bytes + partial.upload_bytes)
        data = BandwidthRun("failed", partial, status, deferral)
        return failure("bandwidth", target, exc.reason, exc.detail, data=data)
    status = budget.spend(test.download_bytes + test.upload_bytes)
    if test.download_bps is None or test.upload_bps is None:
        missing = "download" if test.download_bps is None else "upload"
        data = BandwidthRun("failed", test, status, deferral)
        return failure("bandwidth", target, "error", f"the engine measured no {missing}", data=data)
    detail = f"download {test.download_bps / 1e6:.1f} Mbit/s, upload {test.upload_bps / 1e6:.1f} Mbit/s"
    return Result("bandwidth", target, True, None, detail, BandwidthRun("measured", test, status, deferral))


# -- metrics (names and meanings: docs/metrics.md) ------------------------------------------------
# A sample (site labels shortened to "..."; by hand: `curl -s HOST:9591/metrics | grep _bandwidth_`):
#   hotspot_bandwidth_goodput_bytes_per_second{...,direction="download",engine="http",server="s"} 1.1375e+07
#   hotspot_bandwidth_tests_meeting_threshold_total{...,direction="download",engine="http"} 27.0
#   hotspot_bandwidth_test_goodput_bytes_per_second_bucket{...,direction="download",...,le="1e+07"} 3.0

# Each test's goodput goes into a histogram, so that the collector judges it against whatever
# threshold the province's rule sets, not the agent (docs/metrics.md). The boundaries are the usual
# requirement levels and 80% of each (the usual pass ratio), so any of them, at 100% or 80%, is
# judged exactly: a test "reaches X" when it is above the X boundary. Changing a boundary is a
# change of the metric's contract: collector/requirement.yaml may only name boundaries listed here.
GOODPUT_BOUNDS_MBPS = (
    1,
    2,
    5,
    8,
    10,
    16,
    20,
    24,
    30,
    40,
    50,
    64,
    80,
    100,
    120,
    150,
    160,
    200,
    240,
    300,
    400,
    500,
    800,
    1000,
)
GOODPUT_BOUNDS = tuple(m * MBPS for m in GOODPUT_BOUNDS_MBPS)  # bytes per second (base unit)

BUDGET = Family("hotspot_bandwidth_budget_bytes", "gauge", "The monthly data budget for tests.")
BUDGET_REMAINING = Family(
    "hotspot_bandwidth_budget_remaining_bytes", "gauge", "What is left of the monthly data budget."
)
_SERVER = ("engine", "server")
GOODPUT = Family(
    "hotspot_bandwidth_goodput_bytes_per_second", "gauge", "The last test's goodput.", ("direction", *_SERVER)
)
STREAMS = Family("hotspot_bandwidth_streams", "gauge", "TCP streams used.", ("direction", *_SERVER))
LATENCY = Family(
    "hotspot_bandwidth_latency_seconds", "gauge", "RTT before and during the test.", ("state", *_SERVER)
)
DURATION = Family("hotspot_bandwidth_test_duration_seconds", "gauge", "The last test's length.", _SERVER)
_COUNTED = ("direction", "engine")
TESTS = Family(
    "hotspot_bandwidth_tests_total",
    "counter",
    "Bandwidth tests that produced a result for the direction.",
    _COUNTED,
)
MEETING = Family(
    "hotspot_bandwidth_tests_meeting_threshold_total",
    "counter",
    "Bandwidth tests at or above the threshold.",
    _COUNTED,
)
MOVED = Family("hotspot_bandwidth_test_bytes_total", "counter", "Bytes moved by bandwidth tests.", _COUNTED)
# A test its byte or time limit stopped before the rate settled reads "at least X" (a fast line).
LOWER_BOUND = Family(
    "hotspot_bandwidth_goodput_lower_bound",
    "gauge",
    "1 when the last test's goodput is a lower bound (a limit stopped it before the rate settled).",
    ("direction", *_SERVER),
)
INCONCLUSIVE = Family(
    "hotspot_bandwidth_tests_inconclusive_total",
    "counter",
    "Bandwidth tests whose lower-bound figure stayed under the threshold: counted in neither tests_total "
    "nor tests_meeting_threshold_total.",
    _COUNTED,
)
DEFERRED = Family(
    "hotspot_bandwidth_tests_deferred_total",
    "counter",
    "Bandwidth tests given up because users were loading the line.",
)
SKIPPED = Family(
    "hotspot_bandwidth_tests_skipped_total", "counter", "Bandwidth tests not run, by reason.", ("reason",)
)
TEST_GOODPUT = Family(
    "hotspot_bandwidth_test_goodput_bytes_per_second",
    "histogram",
    "Each bandwidth test's goodput, per direction.",
    _COUNTED,
    GOODPUT_BOUNDS,
)
DIRECTIONS = ("download", "upload")


def _directions(test: BandwidthTest) -> tuple[tuple[Direction, float | None, int, int, bool], ...]:
    """(direction, bits/s or None, bytes moved, streams, figure is a lower bound) for each direction."""
    return (
        (
            "download",
            test.download_bps,
            test.download_bytes,
            test.download_streams,
            test.download_lower_bound,
        ),
        ("upload", test.upload_bps, test.upload_bytes, test.upload_streams, test.upload_lower_bound),
    )


def _start(settings: Settings, tally: Tally) -> None:
    tally.declare(DEFERRED)
    tally.declare(SKIPPED, reason="budget")
    for direction in DIRECTIONS:
        for family in (TESTS, MEETING, MOVED, INCONCLUSIVE, TEST_GOODPUT):
            tally.declare(family, direction=direction, engine=settings.engine)


def _count(r: Result[BandwidthRun], site: Site, tally: Tally) -> None:
    if (run := r.data) is None:
        return
    if run.outcome == "deferred":
        tally.add(DEFERRED, 1)
    elif run.outcome == "skipped":
        tally.add(SKIPPED, 1, reason="budget")
    if run.test is None:
        return
    for direction, bps, moved, _streams, lower_bound in _directions(run.test):
        labels = {"direction": direction, "engine": run.test.engine}
        tally.add(MOVED, moved, **labels)
        if bps is None:
            continue
        # The histogram takes "at least X" as X: the collector's verdict can only err towards "below".
        tally.observe(TEST_GOODPUT, bps / 8, **labels)
        if lower_bound and not site.meets(direction, bps):
            tally.add(INCONCLUSIVE, 1, **labels)  # says nothing about the contract either way
            continue
        tally.add(TESTS, 1, **labels)
        tally.add(MEETING, 1 if site.meets(direction, bps) else 0, **labels)


def _tested(results: Sequence[Result[BandwidthRun]]) -> list[Result[BandwidthRun]]:
    return [r for r in results if r.data is not None and r.data.test is not None]


def _standing(
    before: Sequence[Result[BandwidthRun]], new: Sequence[Result[BandwidthRun]]
) -> Sequence[Result[BandwidthRun]]:
    """The new run, and the last run that tested when the new one did not (a deferred or skipped run
    leaves the last measurement standing)."""
    return list(new) if _tested(new) else [*_tested(before)[-1:], *new]


def _show(results: Sequence[Result[BandwidthRun]], out: Samples) -> None:
    """The budget from the latest run; the figures of the latest run that tested."""
    latest = results[-1].data if results else None
    if latest is not None and latest.budget.budget_bytes:  # 0 = unlimited: no budget series at all
        out.add(BUDGET, latest.budget.budget_bytes)
        out.add(BUDGET_REMAINING, latest.budget.remaining_bytes)
    tested = _tested(results)
    if not tested or (run := tested[-1].data) is None or (test := run.test) is None:
        return
    server = {"engine": test.engine, "server": test.server}
    for direction, bps, _moved, streams, lower_bound in _directions(test):
        out.add(GOODPUT, None if bps is None else bps / 8, direction=direction, **server)
        if bps is not None:
            out.add(STREAMS, streams, direction=direction, **server)
            out.add(LOWER_BOUND, 1 if lower_bound else 0, direction=direction, **server)
    out.add(LATENCY, test.latency_idle_s, state="idle", **server)
    out.add(LATENCY, test.latency_loaded_s, state="loaded", **server)
    out.add(DURATION, test.duration_s, **server)


METRICS = ProbeMetrics[Settings, BandwidthRun](
    families=(
        BUDGET,
        BUDGET_REMAINING,
        GOODPUT,
        STREAMS,
        LATENCY,
        DURATION,
        TESTS,
        MEETING,
        MOVED,
        LOWER_BOUND,
        INCONCLUSIVE,
        DEFERRED,
        SKIPPED,
        TEST_GOODPUT,
    ),
    start=_start,
    count=_count,
    show=_show,
    standing=_standing,
)
SPEC = ProbeSpec("bandwidth", Settings, run, bandwidth_class=True, metrics=METRICS)
