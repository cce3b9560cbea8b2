"""The engine interface shared by the built-in HTTP engine, speedtest-cli and iperf3."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from agent.result import Reason

EngineName = Literal["http", "speedtest", "iperf3"]


@dataclass(frozen=True)
class BandwidthTest:
    engine: EngineName
    server: str
    download_bps: float | None  # goodput, bits per second; None when that direction failed
    upload_bps: float | None
    download_bytes: int  # bytes the test moved (what the data budget pays)
    upload_bytes: int
    latency_idle_s: float | None
    latency_loaded_s: float | None  # under load: the difference from idle is bufferbloat
    download_streams: int
    upload_streams: int
    duration_s: float
    # True: a bound (bytes or time) stopped that direction before its full measurement, and the
    # figure is what the link carried at least (the goodput over the part measured): "at least X".
    download_lower_bound: bool = False
    upload_lower_bound: bool = False


@dataclass(frozen=True)
class Limits:
    max_duration_s: float = 15.0  # per direction
    # Per direction, a ceiling: the http engine stops a direction at far less unless the line needs it
    # (estimator.Estimator.byte_cap; 900 Mbit/s settles at ~350 MB at 0-30 ms, ~520 MB at 100 ms).
    max_bytes: int = 600_000_000
    streams: int = 0  # 0: the engine chooses or adapts


class EngineError(Exception):
    """A test that produced no valid result.

    `reason` is the failure reason the probe reports (agent/result.py: "timeout", "protocol",
    "limit", ...), `detail` says what went wrong in plain words, and `partial` holds what was
    measured before it failed (a direction that finished, the bytes moved, which the data budget
    still pays), or None when nothing was.
    """

    def __init__(self, reason: Reason, detail: str, partial: BandwidthTest | None = None) -> None:
        super().__init__(detail)
        self.reason: Reason = reason
        self.detail = detail
        self.partial = partial


# Called while a test runs: (phase: "latency" | "download" | "upload", bits per second so far).
Progress = Callable[[str, float], None]


class Engine(Protocol):
    """One way of measuring goodput: the http engine (agent/bandwidth/http_engine.py), speedtest-cli
    or iperf3, each a `measure` function with this signature.

    Called with the server (the engine's own form: an http:// URL, Ookla server ids, or
    HOST[:PORT]), the per-direction limits (seconds, bytes, streams), an event that cancels the
    test when set, and an optional progress callback. Returns the BandwidthTest (goodput in bit/s,
    bytes moved, idle and loaded RTT in seconds). Raises EngineError when the test fails, is
    cancelled ("timeout") or gives no stable figure within the limits ("limit"), carrying a
    `partial` result when part of the test was measured.
    """

    def __call__(
        self, server: str, limits: Limits, cancelled: threading.Event, progress: Progress | None = None
    ) -> BandwidthTest: ...
