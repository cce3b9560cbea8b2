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
from dataclasses import dataclass
from typing import Literal

from agent.bandwidth.budget import Budget, BudgetStatus
from agent.bandwidth.crosstraffic import Deferral, wait_for_quiet
from agent.bandwidth.engine import BandwidthTest, Engine, EngineError, EngineName, Limits
from agent.probes.base import ProbeContext, ProbeSettings, ProbeSpec
from agent.result import Result, failure
from agent.schema import Secret, is_host_port, is_url, non_negative

log = logging.getLogger(__name__)

Outcome = Literal["measured", "failed", "deferred", "skipped"]
SETUP_SLACK_S = 30.0  # latency pings, connects and header waits on top of the two directions


@dataclass(frozen=True)
class Settings(ProbeSettings):
    interval_s: float = 6 * 3600.0
    jitter_s: float = 6 * 3600.0  # start anywhere in the interval, so a fleet never tests at once
    timeout_s: float = 180.0
    engine: EngineName = "http"
    server: str = ""  # http: the test server's URL; iperf3: HOST[:PORT]; speedtest: "" (auto) or ids
    token: Secret | None = None  # http engine: sent as "Authorization: Bearer TOKEN"
    max_duration_s: float = 15.0  # per direction
    max_bytes: int = 250_000_000  # per direction
    streams: int = 0  # 0: the engine chooses
    # 0: unlimited. 30 GB pays ~120 tests a month (every 6 h) at the worst case of 2 x 125 MB
    # each; a typical adaptive test at 100 Mbit/s moves well under that.
    monthly_budget_bytes: int = 30_000_000_000
    # Defer while the busier direction carries more than this. 250 kB/s = 2 Mbit/s = 2% of a
    # 100 Mbit/s line: users' traffic can then bias a test by about 2%, inside its accuracy, while
    # the background chatter of a dozen idle phones (tens of kB/s) does not block testing forever.
    # SamKnows uses 25 kB/s for a home line. 0: never defer.
    defer_threshold_bytes_per_s: int = 250_000
    defer_interface: str = ""  # "" = every interface but loopback; on a router, name the uplink
    defer_sample_s: float = 3.0
    defer_wait_s: float = 30.0
    defer_tries: int = 4

    def validate(self) -> list[str]:
        errs = super().validate()
        # No server is not a config error: the minimal config must load. The run reports it instead.
        if self.server and (msg := self._server_problem()):
            errs.append(f"server: {msg}")
        for key in ("max_duration_s", "max_bytes", "defer_sample_s", "defer_tries"):
            if getattr(self, key) <= 0:
                errs.append(f"{key}: must be greater than 0")
        for key in ("streams", "monthly_budget_bytes", "defer_threshold_bytes_per_s", "defer_wait_s"):
            if (msg := non_negative(getattr(self, key))) is not None:
                errs.append(f"{key}: {msg}")
        if self.streams > 64:
            errs.append("streams: at most 64")
        if self.timeout_s < (worst := self.worst_case_s()):
            errs.append(
                f"timeout_s: {self.timeout_s:g} s is shorter than the worst case of deferral and both "
                f"directions ({worst:g} s); lower defer_tries, defer_wait_s or max_duration_s"
            )
        return errs

    def _server_problem(self) -> str | None:
        if self.engine == "http":
            return is_url(self.server)
        if self.engine == "iperf3" and ":" in self.server:
            return is_host_port(self.server)
        return None

    def worst_case_s(self) -> float:
        deferral = 0.0
        if self.defer_threshold_bytes_per_s > 0:
            deferral = (
                self.defer_tries * self.defer_sample_s + max(0, self.defer_tries - 1) * self.defer_wait_s
            )
        return deferral + 2 * self.max_duration_s + SETUP_SLACK_S


@dataclass(frozen=True)
class BandwidthRun:
    outcome: Outcome
    test: BandwidthTest | None  # the engine's figures (partial on failure); None when no test ran
    budget: BudgetStatus
    deferral: Deferral | None  # None when deferral is off


def meets(bps: float, contracted_mbps: float, ratio: float = 0.8) -> bool:
    """A goodput meets the requirement at `ratio` of the contracted speed or more."""
    return bps >= ratio * contracted_mbps * 1e6


def load_engine(name: str, token: str = "") -> Engine:
    """The engine's measure function, imported only when used (speedtest-cli is heavy)."""
    module = importlib.import_module(f"agent.bandwidth.{name}_engine")
    if name == "http" and token:
        return functools.partial(module.measure, token=token)  # the token is the http engine's own
    measure: Engine = module.measure
    return measure


def run(settings: Settings, context: ProbeContext) -> list[Result]:
    started, clock = time.time(), time.monotonic()
    target = settings.server or settings.engine
    try:
        result = _run(settings, context, target)
    except Exception as exc:  # a bug here must cost one run, never the agent
        log.exception("bandwidth probe failed unexpectedly")
        result = failure("bandwidth", target, "error", f"unexpected error: {exc!r}")
    return [dataclasses.replace(result, started_at=started, duration_s=round(time.monotonic() - clock, 3))]


def _run(settings: Settings, context: ProbeContext, target: str) -> Result:
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


SPEC = ProbeSpec("bandwidth", Settings, run, bandwidth_class=True)
