"""Bandwidth: download and upload goodput against a test server, politely scheduled.

Engines: the built-in HTTP multi-stream engine (LibreSpeed protocol), speedtest-cli (Ookla's
servers) and iperf3. All return the same BandwidthTest.

"""

from __future__ import annotations

from dataclasses import dataclass

from agent.bandwidth.engine import EngineName
from agent.probes.base import ProbeContext, ProbeSettings, ProbeSpec
from agent.result import Result


@dataclass(frozen=True)
class Settings(ProbeSettings):
    interval_s: float = 6 * 3600.0
    jitter_s: float = 6 * 3600.0  # start anywhere in the interval, so a fleet never tests at once
    timeout_s: float = 180.0
    engine: EngineName = "http"
    server: str = ""  # http: the test server's URL; iperf3: HOST[:PORT]; speedtest: "" (auto) or ids


def run(settings: Settings, context: ProbeContext) -> list[Result]:
    raise NotImplementedError


SPEC = ProbeSpec("bandwidth", Settings, run, bandwidth_class=True)
