"""Bandwidth: download and upload goodput against a test server, politely scheduled.

Engines: the built-in HTTP multi-stream engine (LibreSpeed protocol), speedtest-cli (Ookla's
servers) and iperf3. All return the same BandwidthTest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from agent.probes.base import ProbeContext, ProbeSettings, ProbeSpec
from agent.result import Result

Engine = Literal["http", "speedtest", "iperf3"]


@dataclass(frozen=True)
class Settings(ProbeSettings):
    interval_s: float = 6 * 3600.0
    jitter_s: float = 6 * 3600.0  # start anywhere in the interval, so a fleet never tests at once
    timeout_s: float = 180.0
    engine: Engine = "http"
    server: str = ""  # http: the test server's URL; iperf3: HOST[:PORT]; speedtest: "" (auto) or ids


@dataclass(frozen=True)
class BandwidthTest:
    engine: Engine
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


def run(settings: Settings, context: ProbeContext) -> list[Result]:
    raise NotImplementedError


SPEC = ProbeSpec("bandwidth", Settings, run, bandwidth_class=True)
