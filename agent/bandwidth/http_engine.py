"""The built-in bandwidth engine: parallel HTTP streams against a LibreSpeed-protocol server.

Server URL: the directory that holds the LibreSpeed backend, e.g. `http://host:8989/` for our
`hotspot-collector speedtest-server` or `http://host/backend/` for a LibreSpeed PHP install. The
engine appends `garbage.php`, `empty.php` to that directory: every LibreSpeed backend (PHP, Go,
Rust, Docker image) answers the `.php` names, and ours answers them with and without `.php`. A URL
without a trailing slash is taken as a directory too. Only plain http:// (no TLS).

A test: idle latency (median of 5 empty GETs on one keep-alive connection after a warm-up),
then download (GET garbage.php?ckSize=25, repeated on each keep-alive stream), with latency under
load sampled on the same latency connection, then upload (POSTs of 8 MiB to empty.php). Each
request is sent behind the last one without waiting for its answer (HTTP/1.1 pipelining), so a
stream never idles a round trip between requests.

Per direction, one selector loop drives every stream (connecting without blocking, so opening a
stream never stalls the others) and samples the byte count every 250 ms:
- Counts come from TCP (getsockopt(TCP_INFO), Linux): download counts bytes TCP received in order
  (`tcpi_bytes_received`), not bytes read, which lag by whatever waits in the receive buffers, plus
  the bytes that arrived past a hole and wait for a retransmission (estimated from data segments ×
  MSS while packets arrive out of order, `estimator.HeldBytes`); upload counts bytes the server
  acknowledged or SACKed (`tcpi_bytes_acked` + `tcpi_sacked` × MSS), not bytes written, which only
  reached our own send buffer. Where TCP_INFO is missing, bytes read or written are counted (see
  `agent/bandwidth/tcp_info.py`).
- Streams, ramp-up, goodput and when to stop: agent/bandwidth/estimator.py decides, fed each
  sample; this module only moves the bytes and reads TCP's counters.
- Bounded by `limits.max_duration_s` and a byte cap per direction: `limits.max_bytes`, lowered
  once the measuring window runs to what `estimator.WINDOW_BUDGET_S` of it cost at the line's rate
  (never below `estimator.BASE_CAP_BYTES`; `Estimator.byte_cap`). Reaching either bound
  before the stability rule above, the result is the goodput measured so far, flagged as a lower
  bound (`download_lower_bound`, `upload_lower_bound`): what crossed the link is what it carries
  at least. EngineError("limit") when less than 256 KiB crossed (a trickle is no measurement),
  with the figures in `partial`.
- Bytes moved (what the data budget pays): download, bytes read (the byte limit bounds them);
  upload, bytes delivered.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import selectors
import socket
import statistics
import struct
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from agent.bandwidth import tcp_info
from agent.bandwidth.engine import BandwidthTest, EngineError, Limits, Progress
from agent.bandwidth.estimator import SAMPLE_S, Estimator, HeldBytes
from agent.bandwidth.http_response import Response, check_status
from agent.redact import Redactor
from agent.result import reason_for

MIB = 1 << 20
IO_TIMEOUT_S = 5.0  # connect, response headers, silence of a whole direction
LATENCY_PINGS = 5
LATENCY_BUDGET_S = 10.0
DOWNLOAD_CHUNKS = 25  # ckSize: MiB per download request
UPLOAD_REQUEST_BYTES = 8 * MIB  # PHP's default post_max_size is 8M
RECV_BYTES = 256 * 1024
SEND_SLICE = 256 * 1024

_RANDOM = os.urandom(4 * MIB)  # upload payload: incompressible, generated once

_Address = tuple[socket.AddressFamily, tuple[str, int] | tuple[str, int, int, int]]


@dataclass(frozen=True)
class Target:
    """Where the test server's endpoints are."""

    host: str
    port: int
    base_path: str  # ends with "/"
    host_header: str
    token: str = ""

    def request(self, method: str, name: str, query: str = "", length: int | None = None) -> bytes:
        lines = [
            f"{method} {self.base_path}{name}.php?{query}r={os.urandom(6).hex()} HTTP/1.1",
            f"Host: {self.host_header}",
            "User-Agent: hotspot-agent",
            "Cache-Control: no-cache",
        ]
        if self.token:
            lines.append(f"Authorization: Bearer {self.token}")
        if length is not None:
            lines += ["Content-Type: application/octet-stream", f"Content-Length: {length}"]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def parse_server(server: str, token: str = "") -> Target:
    """Turn the server URL into a Target; EngineError for a URL the engine cannot use."""
    try:
        parts = urlsplit(server)
        port = parts.port or 80
    except ValueError as exc:
        raise EngineError("error", f"bad server URL {server!r}: {exc}") from None
    if parts.scheme == "https":
        raise EngineError("unsupported", f"{server}: the http engine speaks plain http:// only")
    if parts.scheme != "http" or not parts.hostname:
        raise EngineError("error", f"bad server URL {server!r}: expected http://HOST[:PORT]/[PATH/]")
    path = parts.path or "/"
    if not path.endswith("/"):
        path += "/"
    return Target(parts.hostname, port, path, parts.netloc.rsplit("@", 1)[-1], token)


def _connect(target: Target, deadline: float) -> socket.socket:
    timeout = max(0.1, deadline - time.monotonic())
    try:
        sock = socket.create_connection((target.host, target.port), timeout=timeout)
    except OSError as exc:
        raise EngineError(reason_for(exc), f"cannot connect to {target.host}:{target.port}: {exc}") from None
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _abort(sock: socket.socket) -> None:
    """Close at once with a reset: what is still in flight is of no use and would cost data budget."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _exchange(sock: socket.socket, request: bytes, what: str, deadline: float) -> Response:
    """Send one request on a blocking socket and read the whole response by `deadline`."""
    resp = Response(what)
    buf = bytearray(65536)
    view = memoryview(buf)
    try:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        sock.sendall(request)
        while not resp.done:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError()
            sock.settimeout(left)
            n = sock.recv_into(view)
            if n == 0:
                resp.eof()
            else:
                resp.feed(view[:n])
            check_status(resp)
    except OSError as exc:
        reason = reason_for(exc)
        raise EngineError(
            reason, f"{what}: {'no complete answer in time' if reason == 'timeout' else exc}"
        ) from None
    check_status(resp)
    return resp


class _Pinger:
    """Latency pings (empty GETs) on one keep-alive connection."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.sock: socket.socket | None = None

    def ping(self, deadline: float) -> float:
        if self.sock is None:
            self.sock = _connect(self.target, deadline)
        start = time.monotonic()
        resp = _exchange(self.sock, self.target.request("GET", "empty"), "latency ping (empty)", deadline)
        rtt = time.monotonic() - start
        if not resp.keep_alive:
            self.close()
        return rtt

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class _LoadedLatency(threading.Thread):
    """Pings every 250 ms while a direction runs; errors end the sampling, not the test."""

    def __init__(self, pinger: _Pinger) -> None:
        super().__init__(daemon=True)
        self.pinger = pinger
        self.stop = threading.Event()
        self.rtts: list[float] = []

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.rtts.append(self.pinger.ping(time.monotonic() + IO_TIMEOUT_S))
            except EngineError:
                return
            self.stop.wait(SAMPLE_S)


class _Stream:
    """One TCP connection carrying back-to-back requests of one direction.

    Connects without blocking, so opening streams (a stream step, a reconnect) never stalls the
    selector loop that drives the others.
    """

    def __init__(self, target: Target, address: _Address, upload: bool) -> None:
        self.target = target
        self.address = address
        self.upload = upload
        self.before = 0  # bytes counted (acked or received) on this stream's earlier connections
        self._open()

    def _open(self) -> None:
        family, addr = self.address
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setblocking(False)
        self.connecting = True
        self.connect_by = time.monotonic() + IO_TIMEOUT_S
        self.out = memoryview(b"")
        self.body_left = 0
        self.resp = Response("connect")  # the oldest answer awaited
        self.next_resp: Response | None = None  # upload: the answer to the request sent behind it
        self.head_deadline = math.inf
        self.held = HeldBytes()  # per connection
        err = self.sock.connect_ex(addr)
        if err not in (0, errno.EINPROGRESS):
            self.sock.close()
            self._connect_failed(err)

    def _connect_failed(self, err: int) -> None:
        exc = OSError(err, os.strerror(err))  # the matching subclass, e.g. ConnectionRefusedError
        raise EngineError(reason_for(exc), f"cannot connect to {self.target.host}:{self.target.port}: {exc}")

    def on_connected(self) -> None:
        """The socket reported writable (or an error) while connecting: start the first request."""
        err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self._connect_failed(err)
        self.connecting = False
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._start_request()

    def _queue_request(self) -> Response:
        """Put this direction's next request in `out`; returns the answer to expect."""
        if self.upload:
            self.out = memoryview(self.target.request("POST", "empty", length=UPLOAD_REQUEST_BYTES))
            self.body_left = UPLOAD_REQUEST_BYTES
            return Response("upload (POST empty)")
        self.out = memoryview(self.target.request("GET", "garbage", f"ckSize={DOWNLOAD_CHUNKS}&"))
        self.body_left = 0
        return Response("download (GET garbage)")

    def _start_request(self) -> None:
        self.resp = self._queue_request()
        self.head_deadline = math.inf  # set once the request is sent: the answer must start by then
        self._send_small()

    def _send_small(self) -> None:
        """Send request headers; they fit an empty send buffer, so non-blocking send takes them whole."""
        try:
            n = self.sock.send(self.out)
        except BlockingIOError:
            n = 0
        except OSError as exc:
            raise EngineError(reason_for(exc), f"{self.resp.what}: {exc}") from None
        self.out = self.out[n:]
        self._sent_check()

    def _sent_check(self) -> None:
        if not self.sending and self.next_resp is None:
            self.head_deadline = time.monotonic() + IO_TIMEOUT_S
            self._pipeline()

    def _pipeline(self) -> None:
        """Send the next request now, behind the one whose answer is awaited (HTTP/1.1 pipelining).

        Waiting for each answer leaves the stream idle for a round trip per request: at 900 Mbit/s
        and 30 ms that is ~10% of an 8 MiB upload request's time, and the upload read 0.87-0.93 of
        the limit (0.94-0.97 with 32 MiB requests, which PHP backends refuse). Downloads too: the
        streams' 25 MiB answers end together (same rate, same size), so at 900 Mbit/s and 100 ms
        the whole link idled one RTT every ~1.1 s and the download read 0.86-0.89 of the limit,
        unflagged (iperf3 1.000). The selector sends it when the socket takes it.
        """
        self.next_resp = self._queue_request()

    @property
    def sending(self) -> bool:
        return len(self.out) > 0 or self.body_left > 0

    def events(self) -> int:
        if self.connecting:
            return selectors.EVENT_WRITE
        return selectors.EVENT_READ | (selectors.EVENT_WRITE if self.sending else 0)

    def on_writable(self, allowance: int) -> int:
        """Upload: write more of the request; returns body bytes written."""
        if len(self.out):
            self._send_small()
            return 0
        size = min(self.body_left, SEND_SLICE, allowance)
        if size <= 0:
            return 0
        offset = (UPLOAD_REQUEST_BYTES - self.body_left) % (len(_RANDOM) - SEND_SLICE)
        try:
            n = self.sock.send(memoryview(_RANDOM)[offset : offset + size])
        except BlockingIOError:
            return 0
        except OSError as exc:
            raise EngineError(reason_for(exc), f"{self.resp.what}: {exc}") from None
        self.body_left -= n
        self._sent_check()
        return n

    def on_readable(self, view: memoryview) -> int:
        """Read what arrived; returns bytes received. Starts the next request when one completes."""
        try:
            n = self.sock.recv_into(view)
        except BlockingIOError:
            return 0
        except OSError as exc:
            raise EngineError(reason_for(exc), f"{self.resp.what}: {exc}") from None
        if n == 0:
            if self.sending:
                raise EngineError("protocol", f"{self.resp.what}: server closed the connection mid-request")
            self.resp.eof()
        data = view[:n]
        while True:
            data = self.resp.feed(data, rest_ok=self.next_resp is not None)
            check_status(self.resp)
            if not self.resp.done:
                return n
            if self.sending and self.next_resp is None:
                raise EngineError(
                    "protocol", f"{self.resp.what}: server answered before the upload was complete"
                )
            if not self.upload and self.resp.body_bytes == 0:
                raise EngineError("protocol", f"{self.resp.what}: empty body")
            if not (self.resp.keep_alive and n):
                self._reconnect()
                return n
            if self.next_resp is None:
                self._start_request()
                return n
            # The pipelined request's answer is next; once its body is out, pipeline another.
            self.resp, self.next_resp = self.next_resp, None
            self.head_deadline = math.inf  # until its request is out (_sent_check)
            self._sent_check()
            if not len(data):
                return n

    def _reconnect(self) -> None:
        counted = self.count()
        if counted is not None:
            self.before = counted
        self.sock.close()
        self._open()

    def count(self) -> int | None:
        """Bytes this stream moved at the TCP level: delivered (upload) or received (download)."""
        if self.connecting:
            return self.before
        info = tcp_info.read(self.sock)
        if info is None:
            return None
        if self.upload:
            return self.before + info.delivered
        return self.before + info.received + self.held.update(info.arrived, info.received, info.ooo_packets)

    def rtt(self) -> float:
        """The RTT TCP sees on this connection now, queueing included (0: not known)."""
        info = None if self.connecting else tcp_info.read(self.sock)
        if info is None:
            return 0.0
        return info.rtt_s if self.upload else info.rcv_rtt_s


@dataclass
class _Outcome:
    bps: float | None  # None: no stable estimate (then `detail` says why)
    moved: int
    streams: int
    seconds: float
    detail: str = ""
    lower_bound: bool = False  # bps is what the link carried at least: a bound came first


def _run_direction(
    target: Target,
    address: _Address,
    upload: bool,
    limits: Limits,
    cancelled: threading.Event,
    progress: Progress | None,
    idle_rtt_s: float,
) -> _Outcome:
    """Drive one direction's streams; the estimator decides when to add streams and when to stop."""
    phase = "upload" if upload else "download"
    start = time.monotonic()
    deadline = start + limits.max_duration_s
    est = Estimator(
        max_duration_s=limits.max_duration_s,
        max_bytes=limits.max_bytes,
        streams=limits.streams,
        idle_rtt_s=idle_rtt_s,
    )
    io = _DirectionIO(target, address, upload)
    last_change = start
    next_sample = start + SAMPLE_S
    stable: float | None = None
    try:
        io.add(est.streams)
        while True:
            if cancelled.is_set():
                raise EngineError("timeout", f"{phase}: cancelled")
            now = time.monotonic()
            if now >= deadline:
                bound = f"{phase}: reached the {limits.max_duration_s:g} s limit"
                break
            cap = est.byte_cap  # grows with the line once a window runs, at most max_bytes
            if io.moved >= cap:
                bound = f"{phase}: reached the {cap} byte limit"
                break
            now = io.step(min(next_sample, deadline) - now, cap)
            if now < next_sample:
                continue
            next_sample += SAMPLE_S
            total = io.counted()
            if total != est.samples[-1][1]:
                last_change = now
            elif now - last_change > IO_TIMEOUT_S:
                raise EngineError("timeout", f"{phase}: no data for {IO_TIMEOUT_S:g} s")
            decision = est.sample(now - start, total, io.moved, io.median_rtt())
            if progress is not None:
                progress(phase, decision.rate * 8)
            io.add(decision.add_streams)
            if decision.stable is not None:
                stable = decision.stable * 8
                break
        stop = est.stopped(time.monotonic() - start, io.counted()) if stable is None else None
    finally:
        io.close()
    seconds = time.monotonic() - start
    if stop is None:
        assert stable is not None
        return _Outcome(stable, io.moved, len(io.streams), seconds)
    # A bound came first: what the link carried so far is what it can carry at least.
    if stop.lower_bound > 0:
        return _Outcome(stop.lower_bound * 8, io.moved, len(io.streams), seconds, lower_bound=True)
    # Nothing crossed the link: no figure, only words saying how far it got.
    shown = (
        "still ramping up"
        if stop.last_estimate is None
        else f"last estimate {stop.last_estimate * 8 / 1e6:.2f} Mbit/s"
    )
    detail = f"{bound} without a stable estimate ({shown}, {stop.measured_bytes} bytes past the ramp-up)"
    return _Outcome(None, io.moved, len(io.streams), seconds, detail)


class _DirectionIO:
    """One direction's streams on one selector: the socket side of `_run_direction`."""

    def __init__(self, target: Target, address: _Address, upload: bool) -> None:
        self.target = target
        self.address = address
        self.upload = upload
        self.sel = selectors.DefaultSelector()
        self.streams: list[_Stream] = []
        self.view = memoryview(bytearray(RECV_BYTES))
        self.moved = 0  # download: received; upload: written (what the data budget pays)

    def add(self, count: int) -> None:
        for _ in range(count):
            stream = _Stream(self.target, self.address, self.upload)
            self.streams.append(stream)
            self.sel.register(stream.sock, stream.events(), stream)

    def counted(self) -> int:
        """Bytes that crossed the link: TCP's counts, else what we read or wrote."""
        counts = [s.count() for s in self.streams]
        return self.moved if None in counts else sum(c for c in counts if c is not None)

    def median_rtt(self) -> float:
        """The streams' median RTT now, queueing included (0: not known)."""
        rtts = [r for r in (s.rtt() for s in self.streams) if r > 0]
        return statistics.median(rtts) if rtts else 0.0

    def step(self, timeout: float, max_bytes: int) -> float:
        """Serve the sockets ready within `timeout` s, moving at most the bytes `max_bytes` leaves.

        Returns time.monotonic() after. Runs thousands of times a second: locals, not attributes.
        """
        sel, upload, moved = self.sel, self.upload, self.moved
        allowance = max_bytes - moved
        for key, mask in sel.select(timeout=max(0.0, timeout)):
            stream: _Stream = key.data
            old_sock = stream.sock
            if stream.connecting:
                stream.on_connected()
                sel.modify(stream.sock, stream.events(), stream)
                continue
            if mask & selectors.EVENT_READ and (upload or allowance > 0):
                got = stream.on_readable(
                    self.view[: min(RECV_BYTES, allowance) if not upload else RECV_BYTES]
                )
                if not upload:
                    moved += got
                    allowance -= got
            if mask & selectors.EVENT_WRITE and stream.sock is old_sock:
                sent = stream.on_writable(allowance)
                moved += sent
                allowance -= sent
            if stream.sock is not old_sock:
                sel.unregister(old_sock)
                sel.register(stream.sock, stream.events(), stream)
            else:
                sel.modify(stream.sock, stream.events(), stream)
            self.moved = moved  # kept current: an error raised above leaves the bytes counted
        now = time.monotonic()
        for stream in self.streams:
            if stream.connecting and now > stream.connect_by:
                raise EngineError(
                    "timeout",
                    f"cannot connect to {self.target.host}:{self.target.port} within {IO_TIMEOUT_S:g} s",
                )
            if now > stream.head_deadline and not stream.resp.headers_done:
                raise EngineError(
                    "timeout", f"{stream.resp.what}: no response headers within {IO_TIMEOUT_S:g} s"
                )
        return now

    def close(self) -> None:
        """Reset every stream. Upload: `moved` becomes what crossed the line.

        Data still in our send buffer is dropped by the reset, so upload counts at most the body
        bytes written: acknowledged bytes also cover our request headers, which the byte limit does
        not bound. Download: what we read, which the byte limit bounds.
        """
        if self.upload:
            self.moved = min(self.counted(), self.moved)
        for stream in self.streams:
            _abort(stream.sock)
        self.sel.close()


def _address(target: Target, sock: socket.socket | None) -> _Address:
    """Where the streams connect: the address the latency connection reached, else the first resolved."""
    if sock is not None:
        return sock.family, sock.getpeername()
    try:
        family, _, _, _, addr = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)[0]
    except OSError as exc:
        raise EngineError(reason_for(exc), f"cannot resolve {target.host}: {exc}") from None
    return family, (str(addr[0]), int(addr[1]))


def _result(
    server: str,
    idle_s: float | None,
    loaded_s: float | None,
    outcomes: dict[bool, _Outcome],
    duration_s: float,
) -> BandwidthTest:
    """The test so far: a direction not run (or failed) has no figure, 0 bytes and 0 streams."""
    none = _Outcome(None, 0, 0, 0.0)
    down, up = outcomes.get(False, none), outcomes.get(True, none)
    return BandwidthTest(
        engine="http",
        server=server,
        download_bps=None if down.detail else down.bps,
        upload_bps=None if up.detail else up.bps,
        download_bytes=down.moved,
        upload_bytes=up.moved,
        latency_idle_s=idle_s,
        latency_loaded_s=loaded_s,
        download_streams=down.streams,
        upload_streams=up.streams,
        duration_s=duration_s,
        download_lower_bound=down.lower_bound and not down.detail,
        upload_lower_bound=up.lower_bound and not up.detail,
    )


def measure(
    server: str,
    limits: Limits,
    cancelled: threading.Event,
    progress: Progress | None = None,
    *,
    token: str = "",
) -> BandwidthTest:
    """Measure idle latency, download and upload against a LibreSpeed-protocol server.

    `token` is sent as `Authorization: Bearer TOKEN` (our speedtest-server's --token-file).
    """
    target = parse_server(server, token)
    start = time.monotonic()
    idle_s: float | None = None
    loaded_s: float | None = None
    outcomes: dict[bool, _Outcome] = {}  # by upload

    def finish() -> BandwidthTest:
        return _result(server, idle_s, loaded_s, outcomes, round(time.monotonic() - start, 3))

    pinger = _Pinger(target)
    try:
        if progress is not None:
            progress("latency", 0.0)
        latency_by = start + LATENCY_BUDGET_S
        pinger.ping(latency_by)  # warm-up: opens the connection
        idle = []
        for _ in range(LATENCY_PINGS):
            if cancelled.is_set():
                raise EngineError("timeout", "latency: cancelled")
            idle.append(pinger.ping(latency_by))
        idle_s = statistics.median(idle)
        address = _address(target, pinger.sock)
        for upload in (False, True):
            loaded = _LoadedLatency(pinger) if not upload else None
            if loaded is not None:
                loaded.start()
            try:
                outcome = _run_direction(target, address, upload, limits, cancelled, progress, idle_s)
            except EngineError as exc:
                raise EngineError(exc.reason, exc.detail, finish()) from None
            finally:
                if loaded is not None:
                    loaded.stop.set()
                    loaded.join(IO_TIMEOUT_S + 1)
                    if loaded.rtts:
                        loaded_s = statistics.median(loaded.rtts)
            outcomes[upload] = outcome
        limit_detail = next((o.detail for o in outcomes.values() if o.detail), "")
        if limit_detail:
            raise EngineError("limit", limit_detail, finish())
        return finish()
    except EngineError as exc:
        # Details quote the server's answers: no token (in any encoding), no control characters.
        detail = Redactor([token])(exc.detail)
        raise EngineError(exc.reason, detail, finish() if exc.partial is None else exc.partial) from None
    finally:
        pinger.close()
