"""Latency, jitter and loss: several packets per run to the default gateway and to internet targets.

ICMP echo over an unprivileged ICMP socket where the system allows it (net.ipv4.ping_group_range),
falling back to timing TCP connects; the Result says which method was used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from agent.probes.base import ProbeContext, ProbeSettings, ProbeSpec
from agent.result import Result
from agent.schema import check, each, is_host


@dataclass(frozen=True)
class Settings(ProbeSettings):
    interval_s: float = 60.0
    timeout_s: float = 30.0
    targets: tuple[str, ...] = check(each(is_host), default=("1.1.1.1", "8.8.8.8"))
    gateway: bool = True  # also ping the default gateway, found from the routing table
    count: int = 10  # packets per target per run
    packet_interval_s: float = 0.2
    packet_timeout_s: float = 1.0
    method: Literal["auto", "icmp", "tcp"] = "auto"  # auto: ICMP if allowed, else TCP connect
    tcp_port: int = 443  # for the TCP method
    latency_limit_s: float = 0.1  # a latency test "meets" when its average RTT is at or under this


@dataclass(frozen=True)
class PingStats:
    address: str  # the address actually pinged
    role: Literal["gateway", "internet"]
    method: Literal["icmp", "tcp"]
    sent: int
    received: int
    loss_ratio: float
    rtt_min_s: float | None  # None when nothing came back
    rtt_avg_s: float | None
    rtt_max_s: float | None
    jitter_s: float | None  # mean absolute difference of consecutive RTTs (RFC 3550 style)


def run(settings: Settings, context: ProbeContext) -> list[Result]:
    raise NotImplementedError


SPEC = ProbeSpec("ping", Settings, run)
