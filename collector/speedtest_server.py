"""`hotspot-collector speedtest-server`: the target the agents' HTTP bandwidth engine measures against.

Speaks the LibreSpeed backend protocol, so LibreSpeed's own web and CLI clients work too:
- `GET /garbage?ckSize=N`: N MiB of random data (default 4, at most --max-chunks),
- `GET|POST /empty`: an empty answer (latency pings); a POST body is read and thrown away,
- `GET /getIP`: `{"processedString": "<client address>", "rawIspInfo": ""}`,
each also as `NAME.php`, `/backend/NAME` and `/backend/NAME.php`, plus `GET /metrics` (Prometheus,
names prefixed `hotspot_speedtest_server_`; never behind the token).

Uploads may come with a Content-Length or `Transfer-Encoding: chunked` (LibreSpeed's command-line
client), bounded by the same upload limit (256 MiB) either way.

With a token (--token-file, or the HOTSPOT_SPEEDTEST_TOKEN environment variable), every test
request must carry `Authorization: Bearer TOKEN` (a header, so the token stays out of access logs
and URLs); otherwise 403. A client address with too many open connections gets 429, a full server
503, each at once, without its request being read, with a plain-text body saying which limit it
hit. Request heads are read without a thread under a total deadline and a size cap, and a full
server closes the connection waiting longest for its head to admit a new one (agent.http_guard):
it faces the internet. See docs/servers.md for TLS and rate limits in front of it.

It must never be the bottleneck: downloads are slices of one pre-generated random buffer sent with
sendall, uploads are read into one reusable buffer per worker thread. See
bench/RESULTS-speedtest-server.md for what one core serves.
"""

from __future__ import annotations

import argparse
import hmac
import json
import logging
import math
import os
import random
import re
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest

from agent.digits import ascii_uint
from agent.http_guard import GuardedHandler, GuardedServer, Limits
from agent.redact import RedactingFormatter
from agent.schema import split_host_port

log = logging.getLogger(__name__)

MIB = 1 << 20
TOKEN_ENV = "HOTSPOT_SPEEDTEST_TOKEN"
ENDPOINTS = ("garbage", "empty", "getIP")
_RANDOM = memoryview(os.urandom(2 * MIB))  # download payload: each MiB chunk is a slice of this
PACED_SLICE = 64 * 1024
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,15})[ \t]*(?:;[^\r\n]*)?\r?\n")
_buffers = threading.local()  # one reused upload buffer per worker thread


@dataclass(frozen=True)
class ServerSettings:
    """How the bandwidth test server limits what clients may ask of it; sizes in bytes or MiB as
    named, times in seconds. Set from `hotspot-collector speedtest-server` options.
    """

    max_chunks: int = 100  # largest ckSize (MiB per download request)
    max_upload_bytes: int = 256 * MIB  # largest upload request body
    max_connections: int = 256
    max_connections_per_ip: int = 32  # the agent's engine opens at most 16 streams + 1 latency connection
    token: str = ""
    idle_timeout_s: float = 30.0  # a kept-alive connection silent this long is closed; per read of a body
    head_timeout_s: float = 10.0  # request line and headers, in total (slowloris)
    # TEST ONLY: pace download and upload (all connections together) to this rate, to make a site
    # look slow in integration tests. 0: off. Never set it on a real server.
    test_only_pace_bps: float = 0.0


class Metrics:
    """The server's own metrics, in an explicit registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        p = "hotspot_speedtest_server_"
        self.sent = Counter(p + "sent_bytes", "Body bytes sent (downloads)", registry=self.registry)
        self.received = Counter(p + "received_bytes", "Body bytes received (uploads)", registry=self.registry)
        self.requests = Counter(
            p + "requests", "Requests answered", ["endpoint", "status"], registry=self.registry
        )
        self.active = Gauge(
            p + "active_connections",
            "Requests being served now (not idle kept-alive connections)",
            registry=self.registry,
        )
        self.rejected = Counter(
            p + "rejected_connections", "Connections refused by a limit", ["limit"], registry=self.registry
        )
        for limit in ("per_ip", "total"):
            self.rejected.labels(limit)


class Pacer:
    """TEST ONLY: one shared virtual clock that spaces all paced bytes at `bps`."""

    def __init__(self, bps: float) -> None:
        self.bps = bps
        self._lock = threading.Lock()
        self._next = time.monotonic()

    def wait(self, nbytes: int) -> None:
        """Block until `nbytes` more bytes fit the pace (all connections share one budget)."""
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + nbytes * 8 / self.bps
        if start > now:
            time.sleep(start - now)


class SpeedtestServer(GuardedServer):
    """The LibreSpeed-compatible HTTP test server the agents' bandwidth engine measures against:
    /garbage (download), /empty (upload), /getIP, /metrics. Connection limits per IP and in
    total come from ServerSettings; over them a client gets 429 or 503.
    """

    def __init__(self, address: tuple[str, int], settings: ServerSettings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.pacer = Pacer(settings.test_only_pace_bps) if settings.test_only_pace_bps > 0 else None
        limits = Limits(
            max_connections=settings.max_connections,
            max_connections_per_ip=settings.max_connections_per_ip,
            max_workers=settings.max_connections,  # a transfer each: none waits behind another
            head_timeout_s=settings.head_timeout_s,
            idle_timeout_s=settings.idle_timeout_s,
            io_timeout_s=settings.idle_timeout_s,
        )
        super().__init__(address, Handler, limits)
        self.metrics.active.set_function(lambda: self.busy)

    def prepare_socket(self, sock: socket.socket) -> None:
        """Set up the listening socket before it accepts (a small receive buffer when paced)."""
        if self.pacer is not None:
            # Paced uploads: a small receive buffer (inherited by accepted sockets) keeps the kernel
            # from acknowledging megabytes ahead of the pace, as a slow link would not either.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 128 * 1024)

    def refusal(self, limit: str, ip: str) -> bytes:
        """The raw HTTP answer for a connection over `limit` ("per_ip": 429, else 503), with a body
        saying which limit and to retry later.
        """
        s = self.settings
        if limit == "per_ip":
            status = b"429 Too Many Requests"
            text = f"too many connections from {ip} (at most {s.max_connections_per_ip}); retry later\n"
        else:
            status = b"503 Service Unavailable"
            text = f"server full (at most {s.max_connections} connections); retry later\n"
        body = text.encode()
        return (
            b"HTTP/1.1 %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n"
            b"Retry-After: 1\r\nConnection: close\r\n\r\n%s" % (status, len(body), body)
        )

    def on_refused(self, limit: str) -> None:
        """Count a refused connection under its `limit` label
        (hotspot_speedtest_server_rejected_connections_total)."""
        self.metrics.rejected.labels(limit).inc()

    @property
    def url(self) -> str:
        """The server's base URL, e.g. http://127.0.0.1:8989/ (an IPv6 host in brackets)."""
        host, port = str(self.server_address[0]), int(self.server_address[1])
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}/"


class Handler(GuardedHandler):
    """One connection's requests (HTTP/1.1 keep-alive); every answer is counted in the server's metrics."""

    server: SpeedtestServer
    protocol_version = "HTTP/1.1"  # keep-alive: the engine sends many requests per stream
    server_version = "hotspot-speedtest"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        """Request lines go to the debug log, not stderr."""
        log.debug("%s %s", self.client_address[0], format % args)

    def do_GET(self) -> None:
        """GET: /garbage (download), /empty, /getIP, /metrics; 404 for anything else, 403 without the
        token when one is set."""
        self._dispatch("GET")

    def do_POST(self) -> None:
        """POST: /empty (upload; the body is read and discarded); 404 for anything else, 403 without
        the token when one is set."""
        self._dispatch("POST")

    def do_OPTIONS(self) -> None:
        """CORS preflight from LibreSpeed's web client: 204 with the CORS headers."""
        self._answer("options", 204, b"")

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        endpoint = _endpoint(url.path)
        if url.path == "/metrics" and method == "GET":
            body = generate_latest(self.server.metrics.registry)
            self._answer("metrics", 200, body, CONTENT_TYPE_LATEST)
            return
        if endpoint is None:
            self._answer("other", 404, b"not found: try /garbage, /empty, /getIP or /metrics\n")
            return
        token = self.server.settings.token
        if token and not hmac.compare_digest(
            self.headers.get("Authorization", "").encode(), f"Bearer {token}".encode()
        ):
            self.close_connection = True
            self._answer(endpoint, 403, b"missing or wrong token: send 'Authorization: Bearer TOKEN'\n")
            return
        if endpoint == "garbage":
            self._garbage(parse_qs(url.query).get("ckSize", ["4"])[0])
        elif endpoint == "getIP":
            body = json.dumps({"processedString": self.client_address[0], "rawIspInfo": ""}).encode()
            self._answer(endpoint, 200, body, "application/json")
        elif method == "POST":
            self._upload()
        else:
            self._answer(endpoint, 200, b"")

    def _answer(
        self, endpoint: str, status: int, body: bytes, ctype: str = "text/plain; charset=utf-8"
    ) -> None:
        self.send_response(status)
        self._common_headers(ctype, len(body))
        self.end_headers()
        self.wfile.write(body)
        self.server.metrics.requests.labels(endpoint, str(status)).inc()

    def _common_headers(self, ctype: str, length: int) -> None:
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(length))
        self.send_header("Cache-Control", "no-store, no-cache, must-revalidate, max-age=0")
        self.send_header("Access-Control-Allow-Origin", "*")
        self.send_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
        self.send_header("Access-Control-Allow-Headers", "Authorization, Content-Type")
        if self.close_connection:
            self.send_header("Connection", "close")

    def _garbage(self, ck_size: str) -> None:
        limit = self.server.settings.max_chunks
        chunks = ascii_uint(ck_size)
        if chunks is None or not 1 <= chunks <= limit:
            self._answer("garbage", 400, f"ckSize must be a whole number from 1 to {limit}\n".encode())
            return
        self.send_response(200)
        self._common_headers("application/octet-stream", chunks * MIB)
        self.end_headers()
        pacer, sock, sent = self.server.pacer, self.connection, self.server.metrics.sent
        try:
            for _ in range(chunks):
                offset = random.randrange(MIB)
                chunk = _RANDOM[offset : offset + MIB]
                if pacer is None:
                    sock.sendall(chunk)
                else:
                    for i in range(0, MIB, PACED_SLICE):
                        pacer.wait(PACED_SLICE)
                        sock.sendall(chunk[i : i + PACED_SLICE])
                sent.inc(MIB)
        except OSError:
            self.close_connection = True  # the client went away mid-body: the usual end of a test
            self.server.metrics.requests.labels("garbage", "aborted").inc()
            return
        self.server.metrics.requests.labels("garbage", "200").inc()

    def _upload(self) -> None:
        """Read a POST body (Content-Length or chunked) to the end, counting it; then 200."""
        limit = self.server.settings.max_upload_bytes
        try:
            if "Transfer-Encoding" in self.headers:  # the front let only "chunked" through
                self._read_chunked(limit)
            else:
                length = ascii_uint(self.headers.get("Content-Length", "0").strip())
                if length is None:
                    raise _BadBody(400, "Content-Length must be a whole number of bytes in digits 0-9")
                if length > limit:
                    raise _BadBody(413, f"Content-Length must be 0 to {limit}")
                self._read_exactly(length)
        except _BadBody as exc:
            self.close_connection = True  # the rest of the body must not be read as a request
            self._answer("empty", exc.status, exc.text.encode() + b"\n")
            return
        except OSError:
            self.close_connection = True
            self.server.metrics.requests.labels("empty", "aborted").inc()
            return
        self.body_read = True  # the connection may serve the next request
        self._answer("empty", 200, b"")

    def _read_chunked(self, limit: int) -> None:
        total = 0
        while True:
            m = _CHUNK_SIZE.fullmatch(self.rfile.readline(1024))
            if not m:
                raise _BadBody(400, "malformed chunked body: bad chunk size line")
            size = int(m.group(1), 16)
            if not size:
                break
            total += size
            if total > limit:
                raise _BadBody(413, f"chunked upload over {limit} bytes")
            self._read_exactly(size)
            if self.rfile.readline(3) not in (b"\r\n", b"\n"):
                raise _BadBody(400, "malformed chunked body: chunk longer than its size")
        for _ in range(100):  # trailer fields, up to the blank line
            line = self.rfile.readline(1024)
            if not line:
                raise ConnectionError("client closed mid-body")
            if line in (b"\r\n", b"\n"):
                return
        raise _BadBody(400, "malformed chunked body: trailer too long")

    def _read_exactly(self, length: int) -> None:
        buffer = getattr(_buffers, "upload", None)
        if buffer is None:
            buffer = _buffers.upload = bytearray(MIB)
        view = memoryview(buffer)
        pacer, received = self.server.pacer, self.server.metrics.received
        left = length
        while left:
            size = min(left, PACED_SLICE if pacer else MIB)
            if pacer is not None:
                pacer.wait(size)
            n = self.rfile.readinto(view[:size])
            if not n:
                raise ConnectionError("client closed mid-body")
            left -= n
            received.inc(n)


class _BadBody(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status, self.text = status, text


def _endpoint(path: str) -> str | None:
    """`/garbage`, `/garbage.php`, `/backend/garbage[.php]` -> "garbage"; None for anything else."""
    name = path.removeprefix("/backend").removeprefix("/").removesuffix(".php")
    return name if name in ENDPOINTS else None


def serve(host: str, port: int, settings: ServerSettings) -> SpeedtestServer:
    """A bound server (port 0: any free port); call serve_forever() on it."""
    return SpeedtestServer((host, port), settings)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `hotspot-collector speedtest-server`."""
    parser.add_argument(
        "--listen", default="0.0.0.0:8989", help="HOST:PORT to serve on (default %(default)s)"
    )
    parser.add_argument(
        "--token-file", help=f"file holding the token agents must send (or set {TOKEN_ENV}); default: none"
    )
    parser.add_argument(
        "--max-chunks", type=int, default=100, help="largest ckSize in MiB (default %(default)s)"
    )
    parser.add_argument("--max-connections", type=int, default=256, help="default %(default)s")
    parser.add_argument("--max-connections-per-ip", type=int, default=32, help="default %(default)s")
    parser.add_argument(
        "--test-only-pace-mbps",
        type=float,
        default=0.0,
        help="TEST ONLY: pace downloads and uploads to this many Mbit/s in total, to make a site look slow",
    )


def command(args: argparse.Namespace) -> int:
    """Run `hotspot-collector speedtest-server` until SIGTERM or Ctrl-C (SIGHUP is logged and
    ignored); 2 for bad options."""
    handler = logging.StreamHandler(sys.stderr)  # request lines come from strangers: the one redaction path
    handler.setFormatter(RedactingFormatter("%(levelname)s %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    try:
        host, port = split_host_port(args.listen)
    except ValueError as exc:
        print(f"--listen {args.listen}: {exc}", file=sys.stderr)
        return 2
    token = os.environ.get(TOKEN_ENV, "")
    if args.token_file:
        try:
            token = Path(args.token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            print(f"--token-file {args.token_file}: cannot read: {exc.strerror}", file=sys.stderr)
            return 2
        except UnicodeDecodeError as exc:
            print(f"--token-file {args.token_file}: not UTF-8 text (byte {exc.start})", file=sys.stderr)
            return 2
        if not token:
            print(f"--token-file {args.token_file}: empty", file=sys.stderr)
            return 2
    RedactingFormatter.install([token] if token else [])
    for name in ("max_chunks", "max_connections", "max_connections_per_ip"):
        if getattr(args, name) < 1:
            print(f"--{name.replace('_', '-')}: must be at least 1", file=sys.stderr)
            return 2
    if not math.isfinite(args.test_only_pace_mbps) or args.test_only_pace_mbps < 0:  # nan paced nothing
        print("--test-only-pace-mbps: must be a number, 0 or more", file=sys.stderr)
        return 2
    settings = ServerSettings(
        max_chunks=args.max_chunks,
        max_connections=args.max_connections,
        max_connections_per_ip=args.max_connections_per_ip,
        token=token,
        test_only_pace_bps=args.test_only_pace_mbps * 1e6,
    )
    try:
        server = serve(host or "0.0.0.0", port, settings)
    except OSError as exc:
        print(f"cannot listen on {args.listen}: {exc.strerror}", file=sys.stderr)
        return 1

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    def hang_up(signum: int, frame: FrameType | None) -> None:
        # logrotate and `systemctl reload` send SIGHUP, whose default action would end the server;
        # it logs to stderr (the journal) and reads its token once, so there is nothing to reopen.
        log.info("SIGHUP: nothing to reload; still serving (restart to read a new --token-file)")

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, hang_up)
    if settings.test_only_pace_bps:
        log.warning(
            "TEST ONLY pacing at %.1f Mbit/s: do not use this server for real measurements",
            args.test_only_pace_mbps,
        )
    print(f"speedtest server listening on {server.url}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the server without the rest of the collector's CLI (tests, benchmarks)."""
    parser = argparse.ArgumentParser(prog="speedtest-server")
    add_arguments(parser)
    return command(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
