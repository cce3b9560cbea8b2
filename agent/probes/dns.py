"""DNS: resolution time and success per resolver and name, asked over the DNS wire protocol."""

from __future__ import annotations

from dataclasses import dataclass

from agent.probes.base import ProbeContext, ProbeSettings, ProbeSpec
from agent.result import Result


@dataclass(frozen=True)
class Settings(ProbeSettings):
    interval_s: float = 60.0
    timeout_s: float = 30.0
    # "system" is the first nameserver of /etc/resolv.conf; otherwise ADDRESS or ADDRESS:PORT
    resolvers: tuple[str, ...] = ("system",)
    names: tuple[str, ...] = ("dichvucong.gov.vn", "vneid.gov.vn")
    query_timeout_s: float = 2.0


@dataclass(frozen=True)
class DnsLookup:
    resolver: str  # as configured ("system" or the address)
    server: str  # the address that was asked
    name: str
    rcode: str  # NOERROR, NXDOMAIN, SERVFAIL, ... ("" when no answer came)
    addresses: tuple[str, ...]
    lookup_s: float | None  # None when no answer came


def run(settings: Settings, context: ProbeContext) -> list[Result]:
    raise NotImplementedError


SPEC = ProbeSpec("dns", Settings, run)
