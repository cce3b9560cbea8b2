"""The wifi link of the agent's interface (SSID, signal, bitrate, frequency), read with `iw`.

When the agent runs on the access point, the number of associated stations too.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.probes.base import ProbeContext, ProbeSettings, ProbeSpec
from agent.result import Result


@dataclass(frozen=True)
class Settings(ProbeSettings):
    enabled: bool = True
    interval_s: float = 60.0
    timeout_s: float = 15.0
    interface: str = ""  # "" picks the first wireless interface `iw dev` lists
    iw_path: str = "iw"


@dataclass(frozen=True)
class WifiLink:
    interface: str
    mode: str  # "managed" (a client) or "AP"
    connected: bool
    ssid: str
    bssid: str
    frequency_hz: float | None
    signal_dbm: float | None
    tx_bitrate_bps: float | None  # bits per second, as iw reports it
    rx_bitrate_bps: float | None
    stations: int | None  # associated stations, on an access point


def run(settings: Settings, context: ProbeContext) -> list[Result]:
    raise NotImplementedError


SPEC = ProbeSpec("wifi", Settings, run)
