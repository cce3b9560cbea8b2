"""The built-in bandwidth engine: parallel HTTP streams against a LibreSpeed-protocol server.

Server URL: the directory that holds the LibreSpeed backend, e.g. `http://host:8989/` for our
`hotspot-collector speedtest-server` or `http://host/backend/` for a LibreSpeed PHP install. The
engine appends `garbage.php`, `empty.php` to that directory: every LibreSpeed backend (PHP, Go,
Rust, Docker image) answers the `.php` names, and ours answers them with and without `.php`. A URL
without a trailing slash is taken as a directory too. Only plain http:// (no TLS).

A test: idle latency (median of 5 empty GETs on one keep-alive connection after a warm-up),
then download (GET garbage.php?ckSize=25, repeated on each keep-alive stream), with latency under
load sampled on the same latency connection, then upload (POSTs of 8 MiB to empty.php).

Per direction, one selector loop drives every stream and samples the byte count every 250 ms:
- download counts bytes received; upload counts bytes the server's TCP acknowledged
  (`tcpi_bytes_acked` from getsockopt(TCP_INFO), Linux), because bytes written only reached our
  own socket buffer; where TCP_INFO is missing, bytes written are counted (an overcount of up
  to one send buffer, said in the docstring of `_acked`).
- Streams: `limits.streams` when set; otherwise 4, plus 4 more each time the rate plateaus and the
  last step still raised it by 10% or more, up to 16. More streams only help when one stream's
  window cannot fill the bandwidth-delay product; trying one step shows whether it can.
- Ramp-up (slow start, and each stream step) is discarded: it ends 0.5 s after the 0.5 s rate
  grows less than 5% from one sample to the next, or at half of the allowed duration.
- Goodput = bytes after the ramp-up / the time they took. The test stops as soon as the last 6
  estimates (1.25 s) lie within +-2% of their mean, after at least 3 s and 256 KiB past the ramp.
- Bounded by `limits.max_duration_s` and `limits.max_bytes` per direction. Reaching either bound
  without a stable estimate raises EngineError("limit") with the unstable figures in `partial`.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import selectors
import socket
import statistics
import struct
import sys
import threading
import time
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

from agent.bandwidth.engine import BandwidthTest, EngineError, Limits, Progress
from agent.result import reason_for

MIB = 1 << 20
SAMPLE_S = 0.25
IO_TIMEOUT_S = 5.0  # connect, response headers, silence of a whole direction
LATENCY_PINGS = 5
LATENCY_BUDGET_S = 10.0
START_STREAMS = 4
STREAM_STEP = 4
MAX_STREAMS = 16
STEP_GAIN = 1.10  # a stream step must raise the plateau by this factor to try another
RAMP_GROWTH = 1.05
STABLE_K = 6
STABLE_TOL = 0.02
# The ramp is judged over when the rate stops rising, i.e. at a dip, often a loss whose recovery
# then releases held-back bytes at once: starting the count there would overcount. Wait 0.5 s.
SETTLE_SAMPLES = 2
MIN_MEASURE_S = 3.0
MIN_MEASURE_BYTES = 256 * 1024
DOWNLOAD_CHUNKS = 25  # ckSize: MiB per download request
UPLOAD_REQUEST_BYTES = 8 * MIB  # PHP's default post_max_size is 8M
RECV_BYTES = 256 * 1024
SEND_SLICE = 256 * 1024
MAX_HEAD_BYTES = 64 * 1024

_RANDOM = os.urandom(4 * MIB)  # upload payload: incompressible, generated once


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


class Response:
    """Incremental parser of one HTTP/1.x response fed with raw socket bytes.

    Raises EngineError("protocol") for anything that is not HTTP, bytes past the end of the
    response, and a body cut short at end of stream.
    """

    def __init__(self, what: str) -> None:
        self.what = what
        self.head = bytearray()
        self.status = 0
        self.keep_alive = True
        self.length: int | None = None  # Content-Length; None: chunked or until close
        self.chunked = False
        self.body_bytes = 0
        self.snippet = b""  # the body's first bytes, for error messages
        self.done = False
        self._state = "head"  # head, body, size, data, data_end, trailer
        self._line = bytearray()
        self._left = 0

    @property
    def headers_done(self) -> bool:
        return self._state != "head"

    def feed(self, data: memoryview) -> None:
        while len(data):
            if self.done:
                raise EngineError("protocol", f"{self.what}: bytes after the end of the response")
            if self._state == "head":
                data = self._feed_head(data)
            elif self._state == "body":
                take = len(data) if self.length is None else min(len(data), self.length - self.body_bytes)
                self._body(data[:take])
                data = data[take:]
                if self.length is not None and self.body_bytes == self.length:
                    self.done = True
            elif self._state == "data":
                take = min(len(data), self._left)
                self._body(data[:take])
                self._left -= take
                data = data[take:]
                if self._left == 0:
                    self._state = "data_end"
            else:  # size, data_end, trailer: small lines
                data = self._feed_line(data)

    def eof(self) -> None:
        """The peer closed the connection: fine only when the body runs until close."""
        if self.done:
            return
        if self._state == "body" and self.length is None:
            self.done = True
            self.keep_alive = False
            return
        if self._state == "head":
            got = f"after {len(self.head)} header bytes" if self.head else "without answering"
            raise EngineError("protocol", f"{self.what}: server closed the connection {got}")
        expected = f" of {self.length}" if self.length is not None else ""
        raise EngineError(
            "protocol",
            f"{self.what}: body cut short: connection closed after {self.body_bytes}{expected} bytes",
        )

    def _body(self, data: memoryview) -> None:
        if len(self.snippet) < 200:
            self.snippet += bytes(data[: 200 - len(self.snippet)])
        self.body_bytes += len(data)

    def _feed_head(self, data: memoryview) -> memoryview:
        before = len(self.head)
        self.head += data[:MAX_HEAD_BYTES]
        end = self.head.find(b"\r\n\r\n", max(0, before - 3))
        if end < 0:
            if not re.match(rb"HTTP/1\.[01] ", self.head[:9]) and len(self.head) >= 9:
                raise EngineError("protocol", f"{self.what}: not an HTTP response: {bytes(self.head[:40])!r}")
            if len(self.head) >= MAX_HEAD_BYTES:
                raise EngineError("protocol", f"{self.what}: response headers longer than 64 KiB")
            return data[len(data) :]
        rest = data[end + 4 - before :]
        del self.head[end + 4 :]
        self._parse_head(bytes(self.head[:end]).decode("latin-1"))
        return rest

    def _parse_head(self, head: str) -> None:
        lines = head.split("\r\n")
        m = re.fullmatch(r"HTTP/1\.([01]) (\d{3})(?: .*)?", lines[0])
        if not m:
            raise EngineError("protocol", f"{self.what}: not an HTTP status line: {lines[0][:60]!r}")
        self.status = int(m.group(2))
        fields: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                raise EngineError("protocol", f"{self.what}: malformed header line {line[:60]!r}")
            fields[name.strip().lower()] = value.strip()
        connection = fields.get("connection", "").lower()
        self.keep_alive = "close" not in connection and (m.group(1) == "1" or "keep-alive" in connection)
        if "chunked" in fields.get("transfer-encoding", "").lower():
            self.chunked = True
            self._state = "size"
        elif "content-length" in fields:
            try:
                self.length = int(fields["content-length"])
            except ValueError:
                raise EngineError("protocol", f"{self.what}: bad Content-Length") from None
            self._state = "body"
            self.done = self.length == 0
        else:
            self._state = "body"
            self.keep_alive = False  # the body runs until the server closes

    def _feed_line(self, data: memoryview) -> memoryview:
        piece = bytes(data[: 1024 - len(self._line)])
        nl = piece.find(b"\n")
        if nl < 0:
            self._line += piece
            if len(self._line) >= 1024:
                raise EngineError("protocol", f"{self.what}: malformed chunked encoding")
            return data[len(piece) :]
        line = bytes(self._line + piece[:nl]).rstrip(b"\r")
        self._line.clear()
        if self._state == "size":
            try:
                self._left = int(line.split(b";")[0], 16)
            except ValueError:
                raise EngineError("protocol", f"{self.what}: bad chunk size {line[:20]!r}") from None
            self._state = "data" if self._left else "trailer"
        elif self._state == "data_end":
            if line:
                raise EngineError("protocol", f"{self.what}: chunk longer than its declared size")
            self._state = "size"
        elif not line:  # trailer: ends at an empty line
            self.done = True
        return data[nl + 1 :]


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


def _acked(sock: socket.socket) -> int | None:
    """Bytes of ours the peer acknowledged (tcpi_bytes_acked, offset 120 of struct tcp_info, Linux 4.1+).

    None where TCP_INFO is missing; callers then count bytes written, which overcounts by what
    still sits in the send buffer (up to a few MB with autotuning).
    """
    opt = getattr(socket, "TCP_INFO", None)
    if opt is None:
        return None
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, opt, 192)
    except OSError:
        return None
    if len(info) < 128:
        return None
    return int.from_bytes(info[120:128], sys.byteorder)


def _check_status(resp: Response) -> None:
    """Raise for a non-200 answer once its body (which says why) is in, or enough of it."""
    if resp.headers_done and resp.status != 200 and (resp.done or len(resp.snippet) >= 120):
        body = resp.snippet.decode("utf-8", "replace").strip()[:120]
        raise EngineError("http_status", f"{resp.what}: HTTP {resp.status} {body}".rstrip())


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
            _check_status(resp)
    except OSError as exc:
        reason = reason_for(exc)
        raise EngineError(
            reason, f"{what}: {'no complete answer in time' if reason == 'timeout' else exc}"
        ) from None
    _check_status(resp)
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
    """One TCP connection carrying back-to-back requests of one direction."""

    def __init__(self, target: Target, upload: bool, deadline: float) -> None:
        self.target = target
        self.upload = upload
        self.acked_before = 0  # upload: bytes acknowledged on this stream's earlier connections
        self.sock = _connect(target, deadline)
        self.sock.setblocking(False)
        self._start_request()

    def _start_request(self) -> None:
        if self.upload:
            self.out = memoryview(self.target.request("POST", "empty", length=UPLOAD_REQUEST_BYTES))
            self.body_left = UPLOAD_REQUEST_BYTES
            self.resp = Response("upload (POST empty)")
        else:
            self.out = memoryview(self.target.request("GET", "garbage", f"ckSize={DOWNLOAD_CHUNKS}&"))
            self.body_left = 0
            self.resp = Response("download (GET garbage)")
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
        if not self.sending:
            self.head_deadline = time.monotonic() + IO_TIMEOUT_S

    @property
    def sending(self) -> bool:
        return len(self.out) > 0 or self.body_left > 0

    def events(self) -> int:
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
        else:
            self.resp.feed(view[:n])
        _check_status(self.resp)
        if self.sending and self.resp.done:
            raise EngineError("protocol", f"{self.resp.what}: server answered before the upload was complete")
        if self.resp.done:
            if not self.upload and self.resp.body_bytes == 0:
                raise EngineError("protocol", f"{self.resp.what}: empty body")
            if self.resp.keep_alive and n:
                self._start_request()
            else:
                self._reconnect()
        return n

    def _reconnect(self) -> None:
        self.acked_before += _acked(self.sock) or 0
        self.sock.close()
        self.sock = _connect(self.target, time.monotonic() + IO_TIMEOUT_S)
        self.sock.setblocking(False)
        self._start_request()

    def acked(self) -> int | None:
        now = _acked(self.sock)
        return None if now is None else self.acked_before + now


@dataclass
class _Outcome:
    bps: float | None  # None: no stable estimate (then `detail` says why)
    moved: int
    streams: int
    seconds: float
    detail: str = ""


def _run_direction(
    target: Target,
    upload: bool,
    limits: Limits,
    cancelled: threading.Event,
    progress: Progress | None,
) -> _Outcome:
    phase = "upload" if upload else "download"
    start = time.monotonic()
    deadline = start + limits.max_duration_s
    sel = selectors.DefaultSelector()
    streams: list[_Stream] = []
    buf = bytearray(RECV_BYTES)
    view = memoryview(buf)
    moved = 0  # download: received; upload: written (what the data budget pays)

    def add(count: int) -> None:
        connect_by = min(deadline, time.monotonic() + IO_TIMEOUT_S)
        for _ in range(count):
            stream = _Stream(target, upload, connect_by)
            streams.append(stream)
            sel.register(stream.sock, stream.events(), stream)

    def counted() -> int:
        if not upload:
            return moved
        acked = [s.acked() for s in streams]
        return moved if None in acked else sum(a for a in acked if a is not None)

    adaptive = limits.streams <= 0
    samples: list[tuple[float, int]] = [(0.0, 0)]
    step_start = 0  # sample index where the current stream count began
    plateau: float | None = None
    ramp_end: int | None = None
    measure_from: tuple[float, int] | None = None
    estimates: list[float] = []
    last_change = start
    next_sample = start + SAMPLE_S
    outcome_detail = ""
    stable: float | None = None
    try:
        add(limits.streams if not adaptive else START_STREAMS)
        while True:
            if cancelled.is_set():
                raise EngineError("timeout", f"{phase}: cancelled")
            now = time.monotonic()
            if now >= deadline:
                outcome_detail = f"{phase}: reached the {limits.max_duration_s:g} s limit"
                break
            allowance = limits.max_bytes - moved
            if allowance <= 0:
                outcome_detail = f"{phase}: reached the {limits.max_bytes} byte limit"
                break
            for key, mask in sel.select(timeout=max(0.0, min(next_sample, deadline) - now)):
                stream: _Stream = key.data
                old_sock = stream.sock
                if mask & selectors.EVENT_READ and (upload or allowance > 0):
                    got = stream.on_readable(view[: min(RECV_BYTES, allowance) if not upload else RECV_BYTES])
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
            now = time.monotonic()
            for stream in streams:
                if now > stream.head_deadline and not stream.resp.headers_done:
                    raise EngineError(
                        "timeout", f"{stream.resp.what}: no response headers within {IO_TIMEOUT_S:g} s"
                    )
            if now < next_sample:
                continue
            next_sample += SAMPLE_S
            t, total = now - start, counted()
            if total != samples[-1][1]:
                last_change = now
            elif now - last_change > IO_TIMEOUT_S:
                raise EngineError("timeout", f"{phase}: no data for {IO_TIMEOUT_S:g} s")
            samples.append((t, total))
            i = len(samples) - 1
            if measure_from is None:
                rate = _rate(samples, i)
                if progress is not None:
                    progress(phase, rate * 8)
                if ramp_end is not None:
                    if i >= ramp_end + SETTLE_SAMPLES:
                        measure_from = samples[i]
                    continue
                if i - step_start < 3:  # two full windows past the last stream change
                    continue
                rising = rate > _rate(samples, i - 1) * RAMP_GROWTH
                ramp_cap = t >= limits.max_duration_s / 2
                if rising and not ramp_cap:
                    continue
                if (
                    adaptive
                    and not ramp_cap
                    and len(streams) < MAX_STREAMS
                    and (plateau is None or rate > plateau * STEP_GAIN)
                ):
                    plateau = rate
                    add(min(STREAM_STEP, MAX_STREAMS - len(streams)))
                    step_start = i
                    continue
                ramp_end = i
                continue
            span, got = t - measure_from[0], total - measure_from[1]
            estimate = got / span
            estimates.append(estimate)
            if progress is not None:
                progress(phase, estimate * 8)
            if span >= MIN_MEASURE_S and got >= MIN_MEASURE_BYTES and _stable(estimates[-STABLE_K:]):
                stable = estimate * 8
                break
    finally:
        # What crossed the line: upload data still in our send buffer is dropped by the reset below.
        moved = counted()
        for stream in streams:
            _abort(stream.sock)
        sel.close()
    if stable is not None:
        return _Outcome(stable, moved, len(streams), time.monotonic() - start)
    # Bounded without a stable estimate: no goodput, only words saying how far it got.
    shown = f"last estimate {estimates[-1] * 8 / 1e6:.2f} Mbit/s" if estimates else "still ramping up"
    got = samples[-1][1] - measure_from[1] if measure_from else 0
    detail = f"{outcome_detail} without a stable estimate ({shown}, {got} bytes past the ramp-up)"
    return _Outcome(None, moved, len(streams), time.monotonic() - start, detail)


def _rate(samples: list[tuple[float, int]], i: int) -> float:
    """Bytes per second over the two sample intervals ending at sample i."""
    (t0, b0), (t1, b1) = samples[max(0, i - 2)], samples[i]
    return (b1 - b0) / (t1 - t0) if t1 > t0 else 0.0


def _stable(estimates: list[float]) -> bool:
    if len(estimates) < STABLE_K:
        return False
    mean = statistics.fmean(estimates)
    return mean > 0 and all(abs(e - mean) <= STABLE_TOL * mean for e in estimates)


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
    result = BandwidthTest("http", server, None, None, 0, 0, None, None, 0, 0, 0.0)

    def finish() -> BandwidthTest:
        return replace(result, duration_s=round(time.monotonic() - start, 3))

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
        result = replace(result, latency_idle_s=statistics.median(idle))
        limit_detail = ""
        for upload in (False, True):
            loaded = _LoadedLatency(pinger) if not upload else None
            if loaded is not None:
                loaded.start()
            try:
                outcome = _run_direction(target, upload, limits, cancelled, progress)
            except EngineError as exc:
                raise EngineError(exc.reason, exc.detail, finish()) from None
            finally:
                if loaded is not None:
                    loaded.stop.set()
                    loaded.join(IO_TIMEOUT_S + 1)
                    if loaded.rtts:
                        result = replace(result, latency_loaded_s=statistics.median(loaded.rtts))
            key = "upload" if upload else "download"
            result = replace(
                result,
                **{f"{key}_bytes": outcome.moved, f"{key}_streams": outcome.streams},  # type: ignore[arg-type]
            )
            if outcome.detail:
                limit_detail = limit_detail or outcome.detail
            else:
                result = replace(result, **{f"{key}_bps": outcome.bps})  # type: ignore[arg-type]
        if limit_detail:
            raise EngineError("limit", limit_detail, finish())
        return finish()
    except EngineError as exc:
        if exc.partial is None:
            raise EngineError(exc.reason, exc.detail, finish()) from None
        raise
    finally:
        pinger.close()
