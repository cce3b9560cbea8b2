"""Attacks on our HTTP servers, as a stranger on the same network would try them (loopback only).

Shared by tests/test_server_attacks.py (bounded, asserting) and bench/server_attacks.py (measuring).
Each attack runs in its own thread until `stop` is set; the server is a real process whose RSS and
thread count are read from /proc.
"""

from __future__ import annotations

import contextlib
import http.client
import re
import selectors
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.paths import ROOT

MIB = 1 << 20


def proc_status(pid: int) -> tuple[int, int]:
    """(VmRSS in bytes, thread count) of a process, from /proc/PID/status."""
    text = Path(f"/proc/{pid}/status").read_text()
    rss = re.search(r"^VmRSS:\s+(\d+) kB", text, re.M)
    threads = re.search(r"^Threads:\s+(\d+)", text, re.M)
    assert rss and threads
    return int(rss.group(1)) * 1024, int(threads.group(1))


@dataclass
class Watch:
    """Samples a process's RSS and threads every 50 ms while an attack runs."""

    pid: int
    rss: list[int] = field(default_factory=list)
    threads: list[int] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set():
            rss, threads = proc_status(self.pid)
            self.rss.append(rss)
            self.threads.append(threads)
            self.stop.wait(0.05)


def start_speedtest_server(*args: str, root: Path = ROOT) -> tuple[subprocess.Popen[str], int]:
    """`python -m collector.speedtest_server --listen 127.0.0.1:0 ARGS` in `root`; (process, port)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "collector.speedtest_server", "--listen", "127.0.0.1:0", *args],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"speedtest server did not start: {proc.communicate(timeout=10)[1]}")
    return proc, int(line.rsplit(":", 1)[1].strip("/\n"))


def header_flood(
    port: int,
    stop: threading.Event,
    connections: int = 60,
    lines: int = 98,
    line_bytes: int = 64_000,
    addresses: int = 4,
) -> None:
    """Each connection (from 127.0.0.2..(2+addresses-1)) sends a request line and `lines` header
    lines of `line_bytes`, then drips a byte a second; closed connections are opened again."""
    pad = b"X-Pad: " + b"a" * (line_bytes - 9) + b"\r\n"
    payload = memoryview(b"GET /metrics HTTP/1.1\r\nHost: x\r\n" + pad * lines)
    sel = selectors.DefaultSelector()
    left: dict[socket.socket, memoryview] = {}

    opened = 0

    def open_one() -> None:
        nonlocal opened
        s = socket.socket()
        s.bind((f"127.0.0.{2 + opened % addresses}", 0))
        opened += 1
        s.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            s.connect(("127.0.0.1", port))
        left[s] = payload
        sel.register(s, selectors.EVENT_WRITE)

    for _ in range(connections):
        open_one()
    last_drip = time.monotonic()
    while not stop.is_set():
        for key, _ in sel.select(0.05):
            s = key.fileobj
            assert isinstance(s, socket.socket)
            try:
                n = s.send(left[s][:65536]) if left[s] else 0
                left[s] = left[s][n:]
                if not left[s]:
                    sel.modify(s, selectors.EVENT_READ)  # then drip, and notice the close
                continue
            except BlockingIOError:
                continue
            except OSError:
                pass
            sel.unregister(s)
            s.close()
            del left[s]
            open_one()
        if time.monotonic() - last_drip > 1:
            last_drip = time.monotonic()
            for s in list(left):
                if not left[s]:
                    try:
                        s.send(b"a")
                        if s.recv(4096, socket.MSG_DONTWAIT) == b"":
                            raise ConnectionError
                    except BlockingIOError:
                        pass
                    except OSError:
                        sel.unregister(s)
                        s.close()
                        del left[s]
                        open_one()
    for s in left:
        s.close()
    sel.close()


def slowloris(
    port: int, stop: threading.Event, connections: int = 256, addresses: int = 8, interval_s: float = 2.0
) -> None:
    """`connections` from 127.0.0.2..(2+addresses-1), each sending a header byte every `interval_s`
    (128 B/s in all) and reconnecting when closed. Connects are non-blocking, so a full
    backlog slows no other connection."""
    socks: list[socket.socket | None] = [None] * connections
    started = [False] * connections  # request line sent

    def open_one(i: int) -> socket.socket:
        s = socket.socket()
        s.setblocking(False)
        s.bind((f"127.0.0.{2 + i % addresses}", 0))
        s.connect_ex(("127.0.0.1", port))
        started[i] = False
        return s

    next_drip = time.monotonic()
    while not stop.is_set():
        drip = time.monotonic() >= next_drip
        for i in range(connections):
            s = socks[i]
            if s is None:
                socks[i] = open_one(i)
                continue
            try:
                if not started[i]:
                    s.send(b"GET /empty HTTP/1.1\r\nHost: x\r\n")  # BlockingIOError: still connecting
                    started[i] = True
                elif s.recv(4096) == b"":  # answered (408, 503) and closed: come back
                    raise ConnectionError
            except BlockingIOError:
                if started[i] and drip:
                    with contextlib.suppress(OSError):
                        s.send(b"X")
                continue
            except OSError:
                s.close()
                socks[i] = open_one(i)
        if drip:
            next_drip = time.monotonic() + interval_s
        stop.wait(0.05)
    for s in socks:
        if s is not None:
            s.close()


@dataclass
class Probe:
    """A normal client's requests while an attack runs: (seconds, status or error) each."""

    results: list[tuple[float, str]] = field(default_factory=list)

    def ok(self) -> list[float]:
        return [t for t, status in self.results if status == "200"]

    def failures(self) -> list[tuple[float, str]]:
        return [(t, s) for t, s in self.results if s != "200"]

    def percentiles(self) -> tuple[float, float]:
        """(p50, p99) of successful requests, in seconds."""
        ok = sorted(self.ok())
        if not ok:
            return float("nan"), float("nan")
        return statistics.median(ok), ok[min(len(ok) - 1, int(len(ok) * 0.99))]


def get(
    port: int, path: str, headers: dict[str, str] | None, timeout: float, source: str | None = None
) -> tuple[float, str]:
    """One GET on a fresh connection: (seconds to connect, status or the error's name)."""
    began = time.monotonic()
    connected = float("nan")
    try:
        s = socket.create_connection(
            ("127.0.0.1", port), timeout=timeout, source_address=(source, 0) if source else None
        )
        connected = time.monotonic() - began
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        c.sock = s
        c.request("GET", path, headers=headers or {})
        resp = c.getresponse()
        resp.read()
        c.close()
        return connected, str(resp.status)
    except OSError as exc:
        return connected, type(exc).__name__


def normal_client(
    port: int, path: str, stop: threading.Event, probe: Probe, headers: dict[str, str] | None = None
) -> None:
    """A fresh connection per request, one request every 100 ms, each with a 5 s timeout."""
    while not stop.is_set():
        began = time.monotonic()
        _connected, status = get(port, path, headers, 5)
        probe.results.append((time.monotonic() - began, status))
        stop.wait(0.1)


def parallel_scrapes(
    port: int, path: str, count: int, headers: dict[str, str] | None = None, addresses: int = 0
) -> list[tuple[float, float, str]]:
    """`count` clients connecting at once (from 127.0.0.1, or spread over 127.0.0.2..(2+addresses-1)):
    (connect seconds, total seconds, status or error) each."""
    go = threading.Event()
    out: list[tuple[float, float, str]] = []

    def one(i: int) -> None:
        go.wait()
        began = time.monotonic()
        connected, status = get(
            port, path, headers, 10, f"127.0.0.{2 + i % addresses}" if addresses else None
        )
        out.append((connected, time.monotonic() - began, status))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    go.set()
    for t in threads:
        t.join(30)
    return out
