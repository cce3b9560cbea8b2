"""Interfaces and system health from psutil: counters and link state per interface, CPU, memory,
disk, temperature, uptime and the agent's own footprint."""

from __future__ import annotations

from dataclasses import dataclass

from agent.probes.base import ProbeContext, ProbeSettings, ProbeSpec
from agent.result import Result


@dataclass(frozen=True)
class Settings(ProbeSettings):
    interval_s: float = 15.0
    jitter_s: float = 1.0
    timeout_s: float = 10.0
    disk_paths: tuple[str, ...] = ("/",)
    # Interfaces whose names start with these are left out (loopback, containers).
    ignore_interfaces: tuple[str, ...] = ("lo", "docker", "veth", "br-")


@dataclass(frozen=True)
class InterfaceStats:
    interface: str
    up: bool
    speed_bps: float | None  # link speed in bits per second, when the driver says
    rx_bytes: int
    tx_bytes: int
    rx_packets: int
    tx_packets: int
    rx_errors: int
    tx_errors: int
    rx_drops: int
    tx_drops: int


@dataclass(frozen=True)
class SystemStats:
    cpu_ratio: float  # all cores, 0..1, since the previous run
    load1: float
    memory_total_bytes: int
    memory_available_bytes: int
    disks: tuple[tuple[str, int, int], ...]  # (path, total bytes, free bytes)
    temperatures_c: tuple[tuple[str, float], ...]  # (sensor, degrees Celsius)
    boot_time_s: float
    agent_rss_bytes: int
    agent_cpu_s: float
    interfaces: tuple[InterfaceStats, ...]


def run(settings: Settings, context: ProbeContext) -> list[Result]:
    raise NotImplementedError


SPEC = ProbeSpec("system", Settings, run)
