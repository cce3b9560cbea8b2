"""Test support: a small DNS server on loopback (UDP and TCP) and a dnsmasq runner.

The small server speaks the real wire protocol and can misbehave on purpose (SERVFAIL, garbage,
truncation, a reply for another question), which a real resolver cannot be made to do. dnsmasq is
the real thing for the ordinary answers.
"""

from __future__ import annotations

import contextlib
import errno
import selectors
import shutil
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from tests.support.ports import free_port

RCODES = {"NOERROR": 0, "FORMERR": 1, "SERVFAIL": 2, "NXDOMAIN": 3, "NOTIMP": 4, "REFUSED": 5}
DNSMASQ = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"


@dataclass(frozen=True)
class Zone:
    """How the server answers one name (lower case, no trailing dot).

    addresses: A records; rcode: the reply code; cname: answer with a CNAME to this name first
    (its addresses come from its own Zone); behaviour: "" normal, "garbage" (bytes that are not
    DNS), "garbage_same_id" (our id, then nonsense), "other_question" (a reply for another name),
    "truncate" (UDP says TC with no answers; TCP has the full answer), "silent" (no reply).
    """

    addresses: tuple[str, ...] = ()
    rcode: str = "NOERROR"
    cname: str = ""
    behaviour: str = ""


@dataclass
class DnsServer:
    """A DNS server on 127.0.0.1 or `host` (UDP and TCP on the same port) answering from `zones`."""

    zones: dict[str, Zone]
    host: str = "127.0.0.1"
    port: int = 0
    queries: list[tuple[str, str, int]] = field(default_factory=list)  # (transport, name, flags)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> DnsServer:
        # getaddrinfo keeps an IPv6 zone (fe80::53%lo) as the scope id; a plain tuple would drop it.
        family, _, _, _, address = socket.getaddrinfo(self.host, self.port, flags=socket.AI_NUMERICHOST)[0]
        wanted = self.port
        for attempt in range(20):
            self.udp = socket.socket(family, socket.SOCK_DGRAM)
            self.udp.bind(address)
            self.port = self.udp.getsockname()[1]
            self.tcp = socket.socket(family, socket.SOCK_STREAM)
            self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                self.tcp.bind((address[0], self.port, *address[2:]))
                break
            except OSError as exc:
                # The port the kernel gave for UDP may be taken for TCP (by a connection of another
                # process): with port 0 asked, try another.
                self.udp.close()
                self.tcp.close()
                if wanted != 0 or exc.errno != errno.EADDRINUSE or attempt == 19:
                    raise
        self.tcp.listen(8)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.thread.join(5)
        self.udp.close()
        self.tcp.close()

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def _serve(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self.udp, selectors.EVENT_READ)
        sel.register(self.tcp, selectors.EVENT_READ)
        while not self._stop.is_set():
            for key, _ in sel.select(0.1):
                if key.fileobj is self.udp:
                    query, peer = self.udp.recvfrom(65535)
                    reply = self.reply(query, "udp")
                    if reply is not None:
                        self.udp.sendto(reply, peer)
                else:
                    conn, _ = self.tcp.accept()
                    with conn:
                        conn.settimeout(2)
                        self._serve_tcp(conn)
        sel.close()

    def _serve_tcp(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            (length,) = struct.unpack("!H", _recv_exact(conn, 2))
            reply = self.reply(_recv_exact(conn, length), "tcp")
            if reply is not None:
                conn.sendall(struct.pack("!H", len(reply)) + reply)

    def reply(self, query: bytes, transport: str) -> bytes | None:
        qid, flags = struct.unpack_from("!HH", query)
        name, end = _read_plain_name(query, 12)
        question = query[12 : end + 4]
        (qtype,) = struct.unpack_from("!H", query, end)
        self.queries.append((transport, name, flags))
        zone = self.zones.get(name, Zone(rcode="NXDOMAIN"))
        if zone.behaviour == "silent":
            return None
        if zone.behaviour == "garbage":
            return b"\xde\xad" + b"this is not a DNS message"
        if zone.behaviour == "garbage_same_id":
            return struct.pack("!H", qid) + b"\x81"
        if zone.behaviour == "other_question":
            question = _encode_name("other.example") + b"\x00\x01\x00\x01"
        records: list[bytes] = []
        flags_out = 0x8000 | 0x0080 | (flags & 0x0100) | RCODES[zone.rcode]  # QR, RA, echo RD
        if zone.behaviour == "truncate" and transport == "udp":
            flags_out |= 0x0200
        elif qtype == 1:  # only A records exist here; other types get an empty NOERROR
            owner = b"\xc0\x0c"  # a compression pointer to the name in the question
            if zone.cname:
                target = _encode_name(zone.cname)
                records.append(owner + struct.pack("!HHIH", 5, 1, 60, len(target)) + target)
                owner = target
                zone = self.zones.get(zone.cname, Zone())
            for address in zone.addresses:
                records.append(owner + struct.pack("!HHIH", 1, 1, 60, 4) + socket.inet_aton(address))
        header = struct.pack("!HHHHHH", qid, flags_out, 1, len(records), 0, 0)
        return header + question + b"".join(records)


def _encode_name(name: str) -> bytes:
    return b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\x00"


def _read_plain_name(message: bytes, offset: int) -> tuple[str, int]:
    labels = []
    while message[offset]:
        length = message[offset]
        labels.append(message[offset + 1 : offset + 1 + length].decode())
        offset += length + 1
    return ".".join(labels).lower(), offset + 1


def _recv_exact(conn: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = conn.recv(count - len(data))
        if not chunk:
            raise OSError("closed")
        data += chunk
    return data


@contextlib.contextmanager
def dnsmasq(options: list[str], host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Run dnsmasq in the foreground on host:port (a free port when 0) with `options`
    (e.g. --address=/ok.test/192.0.2.7); yields "HOST:PORT" once it answers."""
    for _attempt in range(3):  # a free port may be taken between the check and dnsmasq's bind
        use_port = port or free_port(host, socket.SOCK_DGRAM)
        proc = subprocess.Popen(
            [
                DNSMASQ,
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
                f"--listen-address={host}",
                f"--port={use_port}",
                "--pid-file=",
                "--user=",  # stay as the test's user; no privilege change
                "--log-facility=-",
                *options,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            if _wait_answering(host, use_port, proc):
                yield f"{host}:{use_port}"
                return
        finally:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
            assert proc.stderr is not None
            with proc.stderr:  # dnsmasq has exited: read what it said, then let go of the pipe
                errors = proc.stderr.read().decode(errors="replace")
        if port:
            break
    raise RuntimeError(f"dnsmasq did not start: {errors}")


def _wait_answering(host: str, port: int, proc: subprocess.Popen[bytes]) -> bool:
    """True once dnsmasq answers a query on host:port (bounded: 5 s)."""
    probe = (
        struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
        + _encode_name("ready.invalid")
        + b"\x00\x01\x00\x01"
    )
    deadline = time.monotonic() + 5
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.1)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return False
            try:
                s.sendto(probe, (host, port))
                if s.recvfrom(512)[0][:2] == b"\x12\x34":
                    return True
            except OSError:
                time.sleep(0.05)
    return False
