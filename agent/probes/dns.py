"""DNS: resolution time and success per resolver and name, asked over the DNS wire protocol.

The probe speaks DNS itself (RFC 1035: one A query over UDP, TCP when the reply is truncated) so
that it measures the resolver it names, not the operating system's cache or search list.
"""

from __future__ import annotations

import errno
import ipaddress
import re
import secrets
import socket
import struct
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.families import Family, ProbeMetrics, Samples, Tally, per_result
from agent.probes.base import ProbeContext, ProbeSettings, ProbeSpec
from agent.result import Reason, Result, failure, reason_for
from agent.schema import check, each, is_host, positive, split_host_port
from agent.site import Site

SYSTEM = "system"
DNS_PORT = 53
MAX_PARALLEL = 16  # lookups in flight at once; a run takes about ceil(n / 16) query timeouts at most
WAIT_SLICE_S = 0.2  # how often a waiting lookup looks at the cancel flag
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}
TYPE_A, TYPE_CNAME, CLASS_IN = 1, 5, 1
FLAG_QR, FLAG_TC, FLAG_RD = 0x8000, 0x0200, 0x0100
PORT_RANGE = "port out of range: a resolver's port is 1-65535"


def is_resolver(value: Any) -> str | None:
    """`system`, an IP address, ADDRESS:PORT or [IPv6]:PORT (a resolver is asked by address)."""
    if not isinstance(value, str):
        return None  # the type check reports it
    try:
        parse_resolver(value)
    except ValueError as exc:
        return str(exc)
    return None


def parse_resolver(value: str) -> tuple[str, int] | None:
    """(address, port) for a configured resolver, None for `system`; ValueError when invalid."""
    if value == SYSTEM:
        return None
    try:
        return str(ipaddress.ip_address(value)), DNS_PORT
    except ValueError:
        pass
    try:
        host, port = split_host_port(value)
    except ValueError as exc:
        if str(exc).startswith("port"):
            raise ValueError(PORT_RANGE) from None
        raise ValueError(
            "not an address: use system, ADDRESS, ADDRESS:PORT or [IPv6]:PORT (a resolver is an IP address)"
        ) from None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(
            f"not an address: {host!r} is not an IP address (a resolver is asked by address)"
        ) from None
    if isinstance(address, ipaddress.IPv6Address) and not value.startswith("["):
        raise ValueError("not an address: write an IPv6 address with a port as [ADDRESS]:PORT")
    if port == 0:
        raise ValueError(PORT_RANGE)
    return str(address), port


@dataclass(frozen=True)
class Settings(ProbeSettings):
    interval_s: float = check(positive, default=60.0)
    timeout_s: float = check(positive, default=30.0)
    # "system" is the first nameserver of /etc/resolv.conf; otherwise ADDRESS or ADDRESS:PORT
    resolvers: tuple[str, ...] = check(each(is_resolver), default=("system",))
    names: tuple[str, ...] = check(each(is_host), default=("dichvucong.gov.vn", "vneid.gov.vn"))
    query_timeout_s: float = check(positive, default=2.0)
    # Where "system" is read from. With systemd-resolved, /run/systemd/resolve/resolv.conf names
    # the upstream resolver rather than the local stub at 127.0.0.53.
    resolv_conf: str = "/etc/resolv.conf"

    within_run = ("query_timeout_s",)


@dataclass(frozen=True)
class DnsLookup:
    resolver: str  # as configured ("system" or the address)
    server: str  # the address that was asked
    name: str
    rcode: str  # NOERROR, NXDOMAIN, SERVFAIL, ... ("" when no answer came)
    addresses: tuple[str, ...]
    lookup_s: float | None  # None when no answer came
    transport: str = "udp"  # "tcp" when a truncated UDP reply made the lookup ask again over TCP


class ProtocolError(Exception):
    """A reply that is not a valid answer to our query."""


class Cancelled(Exception):
    """The scheduler abandoned the run while a lookup was waiting."""


def run(settings: Settings, context: ProbeContext) -> list[Result[DnsLookup]]:
    jobs = [(resolver, name) for resolver in settings.resolvers for name in settings.names]
    if not jobs:
        return []
    with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, len(jobs)), thread_name_prefix="dns") as pool:
        futures = [
            pool.submit(lookup, resolver, name, settings, context.cancelled) for resolver, name in jobs
        ]
        return [f.result() for f in futures]


def lookup(resolver: str, name: str, settings: Settings, cancelled: threading.Event) -> Result[DnsLookup]:
    """Ask one resolver for one name's A records; never raises for network trouble."""
    target = f"{resolver}/{name}"
    started_at = time.time()
    t0 = time.monotonic()

    def fail(reason: Reason, detail: str, lookup: DnsLookup | None = None) -> Result[DnsLookup]:
        return failure(
            "dns",
            target,
            reason,
            detail,
            data=lookup,
            started_at=started_at,
            duration_s=time.monotonic() - t0,
        )

    try:
        server = resolve_server(resolver, Path(settings.resolv_conf))
    except ValueError as exc:
        return fail("dns", f"dns: {exc}", DnsLookup(resolver, "", name, "", (), None))
    shown = show_server(server)
    no_answer = DnsLookup(resolver, shown, name, "", (), None)
    if cancelled.is_set():
        return fail("timeout", f"dns: run abandoned before asking {shown} for {name}", no_answer)
    try:
        rcode, addresses, lookup_s, transport = query(server, name, settings.query_timeout_s, cancelled)
    except TimeoutError:
        return fail(
            "timeout",
            f"dns: no answer from {shown} for {name} within {settings.query_timeout_s:g} s",
            no_answer,
        )
    except Cancelled:
        return fail(
            "timeout", f"dns: run abandoned while waiting for {shown} to answer for {name}", no_answer
        )
    except ProtocolError as exc:
        return fail(
            "protocol", f"dns: {shown} sent a reply that is not valid DNS for {name}: {exc}", no_answer
        )
    except ConnectionRefusedError:
        return fail(
            "refused",
            f"dns: nothing answers DNS at {shown} (port unreachable or connection refused)",
            no_answer,
        )
    except ValueError as exc:  # a name the config check let through but DNS cannot carry
        return fail("error", f"dns: cannot ask for {name!r}: {exc}", no_answer)
    except OSError as exc:
        return fail(reason_for(exc), f"dns: cannot ask {shown} for {name}: {exc.strerror or exc}", no_answer)
    result = DnsLookup(resolver, shown, name, rcode, addresses, lookup_s, transport)
    if rcode != "NOERROR":
        return fail("dns", f"dns: {rcode} for {name} from {shown}", result)
    if not addresses:
        return fail("dns", f"dns: no address (NOERROR without an A record) for {name} from {shown}", result)
    return Result(
        probe="dns",
        target=target,
        ok=True,
        detail=f"dns: {name} is {', '.join(addresses)} from {shown} in {lookup_s * 1000:.1f} ms",
        data=result,
        started_at=started_at,
        duration_s=time.monotonic() - t0,
    )


def resolve_server(resolver: str, resolv_conf: Path) -> tuple[str, int]:
    """The (address, port) to ask; for `system` the first nameserver of resolv.conf."""
    server = parse_resolver(resolver)
    if server is not None:
        return server
    try:
        text = resolv_conf.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ValueError(f"cannot read {resolv_conf} to find the system resolver: {exc.strerror}") from None
    for line in text.splitlines():
        m = re.match(r"\s*nameserver\s+(\S+)", line)
        if m:
            try:
                # A link-local IPv6 nameserver may carry a zone (fe80::1%eth0); ipaddress keeps it.
                return str(ipaddress.ip_address(m.group(1))), DNS_PORT
            except ValueError:
                raise ValueError(f"{resolv_conf}: nameserver {m.group(1)!r} is not an IP address") from None
    raise ValueError(f"no nameserver line in {resolv_conf}, so there is no system resolver to ask")


def show_server(server: tuple[str, int]) -> str:
    address, port = server
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def query(
    server: tuple[str, int], name: str, timeout_s: float, cancelled: threading.Event
) -> tuple[str, tuple[str, ...], float, str]:
    """Ask `server` for `name`'s A records: (rcode, addresses, seconds from send to reply, transport).

    Raises TimeoutError, Cancelled, ProtocolError or OSError.
    """
    qid = secrets.randbits(16)  # unpredictable, so an off-path spoofer cannot guess it
    message = build_query(qid, name)
    family, address = socket_address(server)
    deadline = time.monotonic() + timeout_s
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        # Connected UDP: the kernel drops datagrams from any other address, and an ICMP port
        # unreachable comes back as ConnectionRefusedError.
        sock.connect(address)
        sent = time.monotonic()
        sock.send(message)
        reply, mismatched = _receive_udp(sock, qid, name, deadline, cancelled)
    if reply is None:
        if mismatched:
            raise ProtocolError(mismatched)
        raise TimeoutError
    received = time.monotonic()
    flags, rcode, addresses = parse_reply(reply, qid, name)
    if flags & FLAG_TC:
        reply = _ask_tcp(address, family, message, deadline)
        received = time.monotonic()
        flags, rcode, addresses = parse_reply(reply, qid, name)
        return rcode, addresses, received - sent, "tcp"
    return rcode, addresses, received - sent, "udp"


def _receive_udp(
    sock: socket.socket, qid: int, name: str, deadline: float, cancelled: threading.Event
) -> tuple[bytes | None, str]:
    """Wait for the reply to `qid`. Datagrams that are not it (a late reply to an earlier query,
    noise) are skipped but remembered, so a server that only ever sends garbage reads as such."""
    mismatched = ""
    while True:
        if cancelled.is_set():
            raise Cancelled
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None, mismatched
        sock.settimeout(min(remaining, WAIT_SLICE_S))
        try:
            datagram = sock.recv(65535)
        except TimeoutError:
            continue
        if len(datagram) >= 2 and struct.unpack_from("!H", datagram)[0] == qid:
            return datagram, ""
        mismatched = f"{len(datagram)} bytes without our query id"


def socket_address(server: tuple[str, int]) -> tuple[int, tuple[Any, ...]]:
    """(family, address for connect) of a numeric server address; a link-local IPv6 address keeps
    its zone (fe80::1%eth0) as the scope id, without which every connect fails "Invalid argument"."""
    host, port = server
    try:
        family, _, _, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_DGRAM, flags=socket.AI_NUMERICHOST
        )[0]
    except socket.gaierror:
        zone = host.partition("%")[2]
        raise OSError(errno.ENODEV, f"no interface {zone!r} here for the zone of {host}") from None
    return family, address


def _ask_tcp(server: tuple[Any, ...], family: int, message: bytes, deadline: float) -> bytes:
    """The same query over TCP (RFC 7766): two-byte length prefix each way, within the same deadline."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(remaining)
        sock.connect(server)
        sock.sendall(struct.pack("!H", len(message)) + message)
        (length,) = struct.unpack("!H", _recv_exact(sock, 2, deadline))
        return _recv_exact(sock, length, deadline)


def _recv_exact(sock: socket.socket, count: int, deadline: float) -> bytes:
    chunks = bytearray()
    while len(chunks) < count:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        sock.settimeout(remaining)
        chunk = sock.recv(count - len(chunks))
        if not chunk:
            raise ProtocolError(f"TCP connection closed after {len(chunks)} of {count} bytes")
        chunks += chunk
    return bytes(chunks)


def encode_name(name: str) -> bytes:
    out = bytearray()
    for label in name.rstrip(".").split("."):
        raw = label.encode("idna")
        if not 0 < len(raw) <= 63:
            raise ValueError(f"bad label in {name!r}")
        out += bytes([len(raw)]) + raw
    return bytes(out + b"\x00")


def build_query(qid: int, name: str) -> bytes:
    """A standard query for `name`'s A records with recursion desired."""
    header = struct.pack("!HHHHHH", qid, FLAG_RD, 1, 0, 0, 0)
    return header + encode_name(name) + struct.pack("!HH", TYPE_A, CLASS_IN)


def read_name(message: bytes, offset: int) -> tuple[str, int]:
    """A possibly compressed name at `offset`: (dotted lower-case name, offset after it)."""
    labels: list[str] = []
    end = -1  # where the name ends in the message, fixed at the first compression pointer
    for _ in range(128):  # a name has at most 127 labels; more jumps mean a pointer loop
        if offset >= len(message):
            raise ProtocolError("name runs past the end of the reply")
        length = message[offset]
        if length & 0xC0 == 0xC0:
            if offset + 1 >= len(message):
                raise ProtocolError("compression pointer cut short")
            if end < 0:
                end = offset + 2
            offset = ((length & 0x3F) << 8) | message[offset + 1]
            continue
        if length & 0xC0:
            raise ProtocolError("unknown label type")
        offset += 1
        if length == 0:
            return ".".join(labels).lower(), end if end >= 0 else offset
        if offset + length > len(message):
            raise ProtocolError("label runs past the end of the reply")
        labels.append(message[offset : offset + length].decode("ascii", errors="replace"))
        offset += length
    raise ProtocolError("compression pointers loop")


def parse_reply(message: bytes, qid: int, name: str) -> tuple[int, str, tuple[str, ...]]:
    """(flags, rcode name, A addresses of `name` or its CNAME chain) from a reply to our query."""
    if len(message) < 12:
        raise ProtocolError(f"only {len(message)} bytes, shorter than a DNS header")
    rid, flags, qdcount, ancount, _ns, _ar = struct.unpack_from("!HHHHHH", message)
    if rid != qid:
        raise ProtocolError("reply id does not match the query")
    if not flags & FLAG_QR:
        raise ProtocolError("a query, not a reply")
    rcode = RCODES.get(flags & 0x000F, f"RCODE{flags & 0x000F}")
    if qdcount != 1:
        # Some servers leave the question out of a FORMERR/REFUSED; only insist when it matters.
        if rcode == "NOERROR":
            raise ProtocolError(f"{qdcount} questions in the reply instead of 1")
        return flags, rcode, ()
    qname, offset = read_name(message, 12)
    if offset + 4 > len(message):
        raise ProtocolError("question cut short")
    qtype, qclass = struct.unpack_from("!HH", message, offset)
    offset += 4
    wanted = name.rstrip(".").lower()
    if qname != wanted or qtype != TYPE_A or qclass != CLASS_IN:
        raise ProtocolError(f"reply is for {qname!r} type {qtype}, not {wanted!r} type A")
    if flags & FLAG_TC:
        return flags, rcode, ()  # a truncated answer section is incomplete; TCP will be asked
    owners = {wanted}  # the name and every alias it points to through CNAMEs
    found: list[str] = []
    for _ in range(ancount):
        owner, offset = read_name(message, offset)
        if offset + 10 > len(message):
            raise ProtocolError("answer record cut short")
        rtype, rclass, _ttl, rdlength = struct.unpack_from("!HHIH", message, offset)
        offset += 10
        if offset + rdlength > len(message):
            raise ProtocolError("answer data runs past the end of the reply")
        if owner in owners and rclass == CLASS_IN:
            if rtype == TYPE_CNAME:
                owners.add(read_name(message, offset)[0])
            elif rtype == TYPE_A:
                if rdlength != 4:
                    raise ProtocolError(f"an A record of {rdlength} bytes")
                found.append(socket.inet_ntoa(message[offset : offset + 4]))
        offset += rdlength
    return flags, rcode, tuple(found)


# -- metrics (names and meanings: docs/metrics.md) ------------------------------------------------
# A sample (site labels shortened to "..."; check by hand with `curl -s HOST:9591/metrics | grep _dns_`):
#   hotspot_dns_success{...,resolver="system",name="dichvucong.gov.vn"} 1.0
#   hotspot_dns_lookup_seconds{...,resolver="system",name="dichvucong.gov.vn"} 0.0154
#   hotspot_dns_lookup_failures_total{...,resolver="system",name="vneid.gov.vn"} 0.0

_LOOKUP = ("resolver", "name")
SUCCESS = Family("hotspot_dns_success", "gauge", "1 when the last lookup returned addresses.", _LOOKUP)
LOOKUP_SECONDS = Family("hotspot_dns_lookup_seconds", "gauge", "Time to the DNS answer.", _LOOKUP)
LOOKUPS = Family("hotspot_dns_lookups_total", "counter", "DNS lookups.", _LOOKUP)
LOOKUP_FAILURES = Family(
    "hotspot_dns_lookup_failures_total", "counter", "DNS lookups that returned no address.", _LOOKUP
)


def _start(settings: Settings, tally: Tally) -> None:
    for resolver in settings.resolvers:
        for name in settings.names:
            tally.declare(LOOKUPS, resolver=resolver, name=name)
            tally.declare(LOOKUP_FAILURES, resolver=resolver, name=name)


def _count(r: Result[DnsLookup], site: Site, tally: Tally) -> None:
    if (d := r.data) is None:
        return
    tally.add(LOOKUPS, 1, resolver=d.resolver, name=d.name)
    tally.add(LOOKUP_FAILURES, 0 if r.ok else 1, resolver=d.resolver, name=d.name)


def _show(r: Result[DnsLookup], out: Samples) -> None:
    if (d := r.data) is None:
        return
    out.add(SUCCESS, 1 if r.ok else 0, resolver=d.resolver, name=d.name)
    out.add(LOOKUP_SECONDS, d.lookup_s, resolver=d.resolver, name=d.name)


METRICS = ProbeMetrics[Settings, DnsLookup](
    families=(SUCCESS, LOOKUP_SECONDS, LOOKUPS, LOOKUP_FAILURES),
    start=_start,
    count=_count,
    show=per_result(_show),
)
SPEC = ProbeSpec("dns", Settings, run, metrics=METRICS)
