"""Latency, jitter and loss: several packets per run to the default gateway and to internet targets.

ICMP echo over an unprivileged ICMP socket where the system allows it (net.ipv4.ping_group_range),
else over a raw ICMP socket (CAP_NET_RAW), else timing TCP connects; the Result says which method
was used. Targets are pinged concurrently, one thread each, so a run lasts as long as one target.
"""

from __future__ import annotations

import dataclasses
import errno
import ipaddress
import itertools
import os
import selectors
import socket
import struct
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from agent.families import Family, ProbeMetrics, Samples, Tally, per_result
from agent.probes.base import ProbeContext, ProbeSettings, ProbeSpec, call_within
from agent.result import Result, failure, reason_for
from agent.schema import at_least, between, check, checks_pass, each, is_host, positive
from agent.site import Site

ROUTE_TABLE = Path("/proc/net/route")
ROUTE_TABLE_V6 = Path("/proc/net/ipv6_route")
_MAX_COUNT = 1000
_MIN_PACKET_INTERVAL_S = 0.01  # faster than this is a flood, not a measurement
_CANCEL_POLL_S = 0.25  # how long a wait may run before the cancel flag is looked at again
_PAYLOAD_PAD = bytes(48)  # with the 8-byte token: 56 bytes of payload, like ping(8)

Role = Literal["gateway", "internet"]
Method = Literal["icmp", "tcp"]


@dataclass(frozen=True)
class Settings(ProbeSettings):
    interval_s: float = check(positive, default=60.0)
    timeout_s: float = check(positive, default=30.0)
    targets: tuple[str, ...] = check(each(is_host), default=("1.1.1.1", "8.8.8.8"))
    gateway: bool = True  # also ping the default gateway, found from the routing table
    count: int = check(between(1, _MAX_COUNT), default=10)  # packets per target per run
    packet_interval_s: float = check(at_least(_MIN_PACKET_INTERVAL_S), default=0.2)
    packet_timeout_s: float = check(positive, default=1.0)
    method: Literal["auto", "icmp", "tcp"] = "auto"  # auto: ICMP if allowed, else TCP connect
    tcp_port: int = check(between(1, 65535), default=443)  # for the TCP method

    def validate(self) -> list[str]:
        # A run that cannot finish before the scheduler abandons it would never produce a result
        # (judged only on values that are each valid, so one mistake is not reported twice).
        in_range = checks_pass(
            self,
            "interval_s",
            "timeout_s",
            "jitter_s",
            "count",
            "packet_interval_s",
            "packet_timeout_s",
            "tcp_port",
        )
        run_s = (self.count - 1) * self.packet_interval_s + self.packet_timeout_s
        errs = []
        if in_range and run_s >= self.timeout_s:
            errs.append(
                f"count: {self.count} packets every {self.packet_interval_s} s plus a "
                f"{self.packet_timeout_s} s wait take {run_s:g} s, not under timeout_s ({self.timeout_s:g} s)"
            )
        return errs


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


@dataclass(frozen=True)
class DefaultRoute:
    """One default route of the kernel's tables."""

    family: Literal[4, 6]
    interface: str  # as the kernel names it (odd bytes shown as U+FFFD)
    gateway: str | None  # None for a route without a gateway (ppp, point-to-point, on-link)
    metric: int


def _read_table(path: Path) -> list[list[str]]:
    # Interface names are bytes the kernel does not check: one odd name must not spoil the table.
    return [line.split() for line in path.read_bytes().decode("utf-8", "replace").splitlines()]


def default_routes(
    route_table: Path = ROUTE_TABLE, route_table_v6: Path = ROUTE_TABLE_V6
) -> list[DefaultRoute]:
    """Every IPv4 and IPv6 default route (from /proc/net/route and /proc/net/ipv6_route), lowest metric
    first within each family, IPv4 first. A link-local IPv6 gateway carries its zone (fe80::1%wlan0).

    Raises OSError when neither table can be read (one missing: an IPv6-only or IPv4-only kernel).
    """
    rtf_up, rtf_gateway = 0x1, 0x2
    routes: list[DefaultRoute] = []
    errors: list[OSError] = []
    try:
        for cols in _read_table(route_table)[1:]:
            if len(cols) < 8:
                continue
            iface, dest, gateway, flags_hex, _refcnt, _use, metric, mask = cols[:8]
            try:
                flags, metric_n, gw = int(flags_hex, 16), int(metric), int(gateway, 16)
                is_default = int(dest, 16) == 0 and int(mask, 16) == 0
            except ValueError:
                continue
            if not is_default or not flags & rtf_up:
                continue
            # The kernel prints the network-order address as a host-order number: pack it back natively.
            address = socket.inet_ntoa(struct.pack("=I", gw)) if flags & rtf_gateway and gw else None
            routes.append(DefaultRoute(4, iface, address, metric_n))
    except OSError as exc:
        errors.append(exc)
    try:
        # dest, dest prefix, source, source prefix, next hop, metric, refcnt, use, flags, interface
        for cols in _read_table(route_table_v6):
            if len(cols) < 10 or cols[0] != "0" * 32 or cols[1] != "00":
                continue
            try:
                flags, metric_n, hop = int(cols[8], 16), int(cols[5], 16), bytes.fromhex(cols[4])
            except ValueError:
                continue
            if not flags & rtf_up or len(hop) != 16:
                continue  # the kernel's "unreachable" default on lo is not up
            address = None
            if flags & rtf_gateway and any(hop):
                ip = ipaddress.IPv6Address(hop)
                address = str(ip) + (f"%{cols[9]}" if ip.is_link_local else "")
            routes.append(DefaultRoute(6, cols[9], address, metric_n))
    except OSError as exc:
        errors.append(exc)
    if len(errors) == 2:
        raise errors[0]
    return sorted(routes, key=lambda r: (r.family, r.metric))


def default_gateway(route_table: Path = ROUTE_TABLE, route_table_v6: Path = ROUTE_TABLE_V6) -> str | None:
    """The gateway to ping: the lowest-metric IPv4 default gateway, else the IPv6 one, else None.

    Raises OSError when neither routing table can be read.
    """
    return next((r.gateway for r in default_routes(route_table, route_table_v6) if r.gateway), None)


def summarize(address: str, role: Role, method: Method, sent: int, rtts: list[float]) -> PingStats:
    """Stats of one run; `rtts` are the received packets' round-trip times in sequence order."""
    received = len(rtts)
    jitter = None
    if received >= 2:
        jitter = sum(abs(b - a) for a, b in itertools.pairwise(rtts)) / (received - 1)
    return PingStats(
        address=address,
        role=role,
        method=method,
        sent=sent,
        received=received,
        loss_ratio=(sent - received) / sent if sent else 1.0,
        rtt_min_s=min(rtts) if rtts else None,
        rtt_avg_s=sum(rtts) / received if rtts else None,
        rtt_max_s=max(rtts) if rtts else None,
        jitter_s=jitter,
    )


def run(settings: Settings, context: ProbeContext) -> list[Result[PingStats]]:
    """One Result per target (the gateway first), all targets pinged at the same time."""
    jobs: list[tuple[str, Role, str]] = []  # (target name, role, host or address)
    early: list[Result[PingStats]] = []
    if settings.gateway:
        try:
            routes = default_routes()
        except OSError as exc:
            early.append(
                failure("ping", "gateway", "unsupported", f"cannot read the routing tables: {exc.strerror}")
            )
        else:
            gateway = next((r.gateway for r in routes if r.gateway), None)
            if gateway is not None:
                jobs.append(("gateway", "gateway", gateway))
            elif routes:
                # ppp or another point-to-point link: there is no router address to ping.
                where = ", ".join(sorted({r.interface for r in routes}))
                detail = f"gateway not measured: the default route ({where}) has no gateway address to ping"
                early.append(failure("ping", "gateway", "unsupported", detail))
            else:
                detail = f"no default route in {ROUTE_TABLE} or {ROUTE_TABLE_V6}: the site has no way out"
                early.append(failure("ping", "gateway", "unreachable", detail))
    jobs += [(host, "internet", host) for host in settings.targets]
    if not jobs:
        return early
    with ThreadPoolExecutor(max_workers=len(jobs), thread_name_prefix="ping") as pool:
        futures = [pool.submit(_ping_target, settings, context, *job) for job in jobs]
        return early + [f.result() for f in futures]


def _ping_target(
    settings: Settings, context: ProbeContext, target: str, role: Role, host: str
) -> Result[PingStats]:
    started_at, t0 = time.time(), time.perf_counter()

    def done(result: Result[PingStats]) -> Result[PingStats]:
        return dataclasses.replace(result, started_at=started_at, duration_s=time.perf_counter() - t0)

    # The lookup gets what the exchange leaves of the run's time: no socket timeout bounds it.
    exchange_s = (settings.count - 1) * settings.packet_interval_s + settings.packet_timeout_s
    lookup_s = settings.timeout_s - exchange_s
    try:
        infos = call_within(
            time.monotonic() + lookup_s,
            lambda: socket.getaddrinfo(host, None, type=socket.SOCK_DGRAM, proto=socket.IPPROTO_UDP),
        )
    except TimeoutError:
        return done(failure("ping", target, "dns", f"{host} did not resolve within {lookup_s:g} s"))
    except socket.gaierror as exc:
        return done(failure("ping", target, "dns", f"{host} did not resolve: {exc.strerror}"))
    except (OSError, UnicodeError) as exc:
        return done(failure("ping", target, "dns", f"{host} did not resolve: {exc}"))
    family, sockaddr = infos[0][0], infos[0][4]
    address = str(sockaddr[0])
    try:
        pinger = _open_pinger(settings, family, sockaddr)
    except _Unsupported as exc:
        return done(failure("ping", target, "unsupported", str(exc)))
    except OSError as exc:
        return done(failure("ping", target, reason_for(exc), f"cannot open a socket for {address}: {exc}"))
    try:
        exchange = _exchange(pinger, settings, context.cancelled)
    except OSError as exc:
        return done(failure("ping", target, reason_for(exc), f"pinging {address} failed: {exc}"))
    finally:
        pinger.close()
    if exchange.sent == 0:
        return done(failure("ping", target, "timeout", "the run was cancelled before a packet was sent"))
    stats = summarize(address, role, pinger.method, exchange.sent, exchange.rtts)
    note = " (run cancelled early)" if exchange.cancelled else ""
    if stats.rtt_avg_s is None:
        if (other := _only_other_family(family, exchange.error)) is not None:
            return done(failure("ping", target, "unsupported", other, data=stats))
        why = f"; last error: {exchange.error.strerror or exchange.error}" if exchange.error else ""
        detail = f"no reply to {stats.sent} packets to {address} over {pinger.how}{why}{note}"
        return done(failure("ping", target, "unreachable", detail, data=stats))
    detail = (
        f"{stats.received}/{stats.sent} replies from {address} over {pinger.how}, "
        f"average {stats.rtt_avg_s * 1000:.2f} ms{note}"
    )
    return done(Result(probe="ping", target=target, ok=True, detail=detail, data=stats))


def _only_other_family(family: int, error: OSError | None) -> str | None:
    """Why a target cannot be measured when the site's way out is the other IP version only.

    An IPv4 target on an IPv6-only site (or the reverse) gets "network unreachable" from the
    kernel: that is no finding about the line, which may be working. None when that is not so.
    """
    if error is None or error.errno != errno.ENETUNREACH:
        return None
    try:
        routes = default_routes()
    except OSError:
        return None
    mine, other = (4, "IPv6") if family == socket.AF_INET else (6, "IPv4")
    if not routes or any(r.family == mine for r in routes):
        return None
    return (
        f"not measured: the site has an {other} way out only, and this is an IPv{mine} target; "
        f"add an {other} target"
    )


class _Unsupported(Exception):
    """The configured method cannot run with this process's privileges."""


# What a pinger's wait reports: (sequence number or None for a socket-level error, time, error or None).
_Event = tuple[int | None, float, OSError | None]


class _Pinger(Protocol):
    method: Method
    how: str  # plain words for the detail, e.g. "ICMP (unprivileged socket)"

    def send(self, seq: int) -> None: ...

    def wait(self, timeout_s: float) -> list[_Event]: ...

    def forget(self, seq: int) -> None: ...

    def close(self) -> None: ...


def _open_pinger(settings: Settings, family: int, sockaddr: Any) -> _Pinger:
    if settings.method == "tcp":
        return _TcpPinger(family, sockaddr, settings.tcp_port)
    try:
        return _IcmpPinger(family, sockaddr, raw=False)
    except OSError:
        pass  # EACCES when our gid is outside net.ipv4.ping_group_range
    try:
        return _IcmpPinger(family, sockaddr, raw=True)
    except OSError as exc:
        if settings.method == "icmp":
            raise _Unsupported(
                f"ICMP is not permitted for this process ({exc.strerror}): allow it with "
                f'sysctl net.ipv4.ping_group_range="0 2147483647" (or a range holding gid {os.getgid()}), '
                "or give the agent CAP_NET_RAW; or set method: tcp"
            ) from None
    return _TcpPinger(family, sockaddr, settings.tcp_port)


class _IcmpPinger:
    """ICMP echo over one socket; replies are matched on sequence number and payload token."""

    method: Method = "icmp"

    def __init__(self, family: int, sockaddr: Any, raw: bool) -> None:
        self.v6 = family == socket.AF_INET6
        proto = socket.IPPROTO_ICMPV6 if self.v6 else socket.IPPROTO_ICMP
        self.sock = socket.socket(family, socket.SOCK_RAW if raw else socket.SOCK_DGRAM, proto)
        self.sock.setblocking(False)
        self.raw = raw
        self.sockaddr = sockaddr
        self.peer = ipaddress.ip_address(str(sockaddr[0]).split("%")[0])
        # With a DGRAM socket the kernel replaces the identifier with the socket's own; with a raw
        # socket every ICMP packet on the host arrives here, so the identifier and token matter.
        self.ident = int.from_bytes(os.urandom(2), "big")
        self.payload = os.urandom(8) + _PAYLOAD_PAD
        self.how = "ICMP (raw socket)" if raw else "ICMP (unprivileged socket)"
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.sock, selectors.EVENT_READ)

    def send(self, seq: int) -> None:
        kind = 128 if self.v6 else 8
        header = struct.pack("!BBHHH", kind, 0, 0, self.ident, seq)
        csum = 0 if self.v6 else _checksum(header + self.payload)  # the kernel sums ICMPv6 itself
        packet = struct.pack("!BBHHH", kind, 0, csum, self.ident, seq) + self.payload
        self.sock.sendto(packet, self.sockaddr)

    def wait(self, timeout_s: float) -> list[_Event]:
        events: list[_Event] = []
        if not self.selector.select(timeout_s):
            return events
        while True:
            try:
                packet, addr = self.sock.recvfrom(65535)
            except BlockingIOError:
                return events
            except OSError as exc:  # an ICMP error for an earlier packet (e.g. host unreachable)
                events.append((None, time.perf_counter(), exc))
                continue
            now = time.perf_counter()
            seq = self._match(packet, addr)
            if seq is not None:
                events.append((seq, now, None))

    def _match(self, packet: bytes, addr: Any) -> int | None:
        if not self.v6 and self.raw:
            packet = packet[(packet[0] & 0x0F) * 4 :] if packet else packet  # skip the IPv4 header
        if len(packet) < 8:
            return None
        kind, code, _csum, ident, seq = struct.unpack("!BBHHH", packet[:8])
        if kind != (129 if self.v6 else 0) or code != 0 or packet[8:] != self.payload:
            return None
        if self.raw and ident != self.ident:
            return None
        if ipaddress.ip_address(str(addr[0]).split("%")[0]) != self.peer:
            return None
        return int(seq)

    def forget(self, seq: int) -> None:
        pass

    def close(self) -> None:
        self.selector.close()
        self.sock.close()


class _TcpPinger:
    """One TCP connect per packet: a SYN-ACK or an RST is a reply, silence is a lost packet."""

    method: Method = "tcp"

    def __init__(self, family: int, sockaddr: Any, port: int) -> None:
        self.family = family
        self.sockaddr = (sockaddr[0], port, *sockaddr[2:])
        self.how = f"TCP connect to port {port}"
        self.selector = selectors.DefaultSelector()
        self.pending: dict[int, socket.socket] = {}

    def send(self, seq: int) -> None:
        sock = socket.socket(self.family, socket.SOCK_STREAM)
        sock.setblocking(False)
        code = sock.connect_ex(self.sockaddr)
        if code not in (errno.EINPROGRESS, 0, errno.ECONNREFUSED):
            sock.close()
            raise OSError(code, os.strerror(code))
        self.pending[seq] = sock
        self.selector.register(sock, selectors.EVENT_WRITE, seq)

    def wait(self, timeout_s: float) -> list[_Event]:
        if not self.pending:
            time.sleep(timeout_s)  # nothing in flight: just let the schedule advance
            return []
        events: list[_Event] = []
        for key, _mask in self.selector.select(timeout_s):
            now = time.perf_counter()
            seq = int(key.data)
            code = self.pending[seq].getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            # Connected or refused both mean the host answered; anything else is a lost packet.
            err = None if code in (0, errno.ECONNREFUSED) else OSError(code, os.strerror(code))
            events.append((seq, now, err))
        return events

    def forget(self, seq: int) -> None:
        sock = self.pending.pop(seq, None)
        if sock is not None:
            self.selector.unregister(sock)
            sock.close()

    def close(self) -> None:
        for seq in list(self.pending):
            self.forget(seq)
        self.selector.close()


@dataclass
class _Exchange:
    sent: int = 0
    rtts: list[float] = field(default_factory=list)  # received packets' RTTs, in sequence order
    error: OSError | None = None  # the last send or receive error, for the detail
    cancelled: bool = False


def _exchange(pinger: _Pinger, settings: Settings, cancelled: threading.Event) -> _Exchange:
    """Send `count` packets `packet_interval_s` apart; each counts as lost after `packet_timeout_s`."""
    timeout = settings.packet_timeout_s
    out = _Exchange()
    sent_at: dict[int, float] = {}
    rtt: dict[int, float] = {}
    settled: set[int] = set()  # answered, failed or timed out
    next_send, seq = time.perf_counter(), 0
    while True:
        now = time.perf_counter()
        if cancelled.is_set():
            # Packets still in flight have no outcome: they count neither as sent nor as lost.
            out.cancelled = True
            sent_at = {s: t for s, t in sent_at.items() if s in settled}
            break
        if seq < settings.count and now >= next_send:
            sent_at[seq] = now
            try:
                pinger.send(seq)
            except OSError as exc:  # e.g. no route: the packet is lost
                out.error = exc
                settled.add(seq)
            seq += 1
            next_send = max(next_send + settings.packet_interval_s, now)
            continue
        for s, t in sent_at.items():
            if s not in settled and now - t >= timeout:
                settled.add(s)
                pinger.forget(s)
        if seq >= settings.count and len(settled) == len(sent_at):
            break
        deadlines = [t + timeout for s, t in sent_at.items() if s not in settled]
        if seq < settings.count:
            deadlines.append(next_send)
        wake = min(min(deadlines), now + _CANCEL_POLL_S)
        for answered, at, err in pinger.wait(max(0.0, wake - now)):
            if answered is None:
                out.error = err
            elif answered in sent_at and answered not in settled:
                settled.add(answered)
                pinger.forget(answered)
                if err is not None:
                    out.error = err
                elif at - sent_at[answered] <= timeout:  # a late reply is a lost packet, as in ping(8)
                    rtt[answered] = at - sent_at[answered]
    out.sent = len(sent_at)
    out.rtts = [rtt[s] for s in sorted(rtt) if s in sent_at]
    return out


def _checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071)."""
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


# -- metrics (names and meanings: docs/metrics.md) ------------------------------------------------
# A sample (site labels shortened to "..."; check by hand with `curl -s HOST:9591/metrics | grep _ping_`):
#   hotspot_ping_up{...,target="1.1.1.1",role="internet",method="icmp"} 1.0
#   hotspot_ping_rtt_seconds{...,target="1.1.1.1",role="internet",method="icmp",stat="avg"} 0.0213
#   hotspot_ping_tests_total{...,target="gateway",role="gateway"} 42.0
#   hotspot_ping_test_rtt_seconds_bucket{...,target="1.1.1.1",role="internet",le="0.025"} 40.0

_TARGET = ("target", "role", "method")
UP = Family("hotspot_ping_up", "gauge", "1 when at least one packet of the last run came back.", _TARGET)
RTT = Family("hotspot_ping_rtt_seconds", "gauge", "Round-trip time in the last run.", (*_TARGET, "stat"))
JITTER = Family(
    "hotspot_ping_jitter_seconds", "gauge", "Mean difference of consecutive round-trip times.", _TARGET
)
LOSS = Family("hotspot_ping_loss_ratio", "gauge", "Share of the last run's packets that were lost.", _TARGET)
_COUNTED = ("target", "role")
SENT = Family("hotspot_ping_packets_sent_total", "counter", "Ping packets sent.", _COUNTED)
RECEIVED = Family("hotspot_ping_packets_received_total", "counter", "Ping replies received.", _COUNTED)
TESTS = Family("hotspot_ping_tests_total", "counter", "Latency tests (runs per target).", _COUNTED)
WITHIN = Family(
    "hotspot_ping_tests_within_limit_total",
    "counter",
    "Latency tests whose average RTT was within the latency limit.",
    _COUNTED,
)
# Each answered test's mean RTT goes into a histogram, so that the collector judges it against
# whatever limit the province's rule sets (docs/metrics.md); changing a bound changes the contract.
RTT_BOUNDS_S = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.0)
TEST_RTT = Family(
    "hotspot_ping_test_rtt_seconds",
    "histogram",
    "Each answered latency test's mean RTT (unanswered: not observed).",
    _COUNTED,
    RTT_BOUNDS_S,
)


def _start(settings: Settings, tally: Tally) -> None:
    targets = [(t, "internet") for t in settings.targets] + (
        [("gateway", "gateway")] if settings.gateway else []
    )
    for target, role in targets:
        for family in (SENT, RECEIVED, TESTS, WITHIN, TEST_RTT):
            tally.declare(family, target=target, role=role)


def _count(r: Result[PingStats], site: Site, tally: Tally) -> None:
    if (d := r.data) is None:
        return
    tally.add(SENT, d.sent, target=r.target, role=d.role)
    tally.add(RECEIVED, d.received, target=r.target, role=d.role)
    tally.add(TESTS, 1, target=r.target, role=d.role)
    tally.add(WITHIN, 1 if site.latency_within_limit(d.rtt_avg_s) else 0, target=r.target, role=d.role)
    if d.rtt_avg_s is not None:
        tally.observe(TEST_RTT, d.rtt_avg_s, target=r.target, role=d.role)


def _show(r: Result[PingStats], out: Samples) -> None:
    if (d := r.data) is None:
        return
    labels = {"target": r.target, "role": d.role, "method": d.method}
    out.add(UP, 1 if d.received else 0, **labels)
    for stat, value in (("min", d.rtt_min_s), ("avg", d.rtt_avg_s), ("max", d.rtt_max_s)):
        out.add(RTT, value, stat=stat, **labels)
    out.add(JITTER, d.jitter_s, **labels)
    out.add(LOSS, d.loss_ratio, **labels)


METRICS = ProbeMetrics[Settings, PingStats](
    families=(UP, RTT, JITTER, LOSS, SENT, RECEIVED, TESTS, WITHIN, TEST_RTT),
    start=_start,
    count=_count,
    show=per_result(_show),
)
SPEC = ProbeSpec("ping", Settings, run, metrics=METRICS)
