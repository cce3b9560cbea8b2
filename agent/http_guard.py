"""A hardened HTTP/1.1 front for the agent's /metrics server and the bandwidth test server.

One selector thread accepts connections and reads each request head (TLS handshake, request line
and headers) without a thread per connection, under one total deadline and a byte cap. Only a
complete head goes to a worker thread, which runs a stdlib `BaseHTTPRequestHandler` for that one
request and hands a kept-alive connection back to the selector. So:

- a slow or oversized head costs at most `max_head_bytes` of buffer and no thread, and ends at its
  deadline (408) or its cap (431);
- a connection past a limit (open connections in total or per client address) is answered at once
  from a prepared response and closed: its head is never read and it never gets a thread;
- when the server is full, the connection that has waited longest for a head is closed to make
  room, so a slowloris holding every slot cannot lock out a normal client, who sends its head at
  once;
- the listen backlog (`backlog`) absorbs a burst of parallel scrapes without SYN retries;
- a head whose body framing is ambiguous (RFC 9112 §6.3: Content-Length twice or not digits, with
  Transfer-Encoding, a coding other than chunked; obsolete line folding, a malformed header line,
  Host missing or twice) is answered 400 (501 for an unknown coding) and closed before any
  handler sees it: behind a proxy that frames the body differently it would smuggle a request;
- a request body the handler did not read (a GET with a body) closes the connection, so the body
  is never read as the next request.

Why our own code rather than a server library: waitress, the well-kept pure-Python WSGI server,
bounds head size but has no TLS (the agent serves TLS with client certificates), times out idle
time rather than a whole head, and at its connection limit stops accepting: under a slowloris a
normal client timed out (bench/RESULTS-server-attacks.md). The test server must also keep sending
1 MiB slices with `sendall` from a thread per transfer for its throughput
(bench/RESULTS-speedtest-server.md). On the internet, nginx in front adds TLS and rate limits
(docs/servers.md).
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import selectors
import socket
import ssl
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

log = logging.getLogger(__name__)

_HEAD_END = re.compile(rb"\r?\n\r?\n")
_LINE_END = re.compile(rb"\r?\n")
_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 §5.6.2: a field name
LINGER_S = 2.0  # how long a closing connection may keep sending what we will not read
LINGER_BYTES = 256 * 1024
_WOULD_BLOCK = (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError)


@dataclass(frozen=True)
class Limits:
    """Bounds on what one client can make the server hold; times in seconds, sizes in bytes."""

    max_connections: int = 256  # open connections: waiting for a head, queued or being served
    max_connections_per_ip: int = 256
    max_workers: int = 64  # requests served at once (threads); more complete heads wait their turn
    head_timeout_s: float = 10.0  # TLS handshake, request line and headers, all together
    idle_timeout_s: float = 30.0  # a kept-alive connection's wait for its next request
    io_timeout_s: float = 30.0  # per read of a request body, per write of an answer
    max_head_bytes: int = 16 * 1024  # request line and headers together
    max_header_lines: int = 100
    backlog: int = 512  # the kernel caps it at net.core.somaxconn (4096 on current kernels)


class _Conn:
    """One client connection while it belongs to the selector or a worker."""

    __slots__ = (
        "addr",
        "body",
        "buf",
        "closed",
        "deadline",
        "handshaken",
        "ip",
        "lingering",
        "scanned",
        "sock",
    )

    def __init__(self, sock: socket.socket, addr: Any, deadline: float, handshaken: bool) -> None:
        self.sock = sock
        self.addr = addr
        self.ip = str(addr[0])
        self.buf = bytearray()
        self.scanned = 0  # bytes of buf already searched for the end of the head
        self.deadline = deadline
        self.handshaken = handshaken
        self.closed = False
        self.lingering = -1  # bytes discarded since the answer that closes it; -1: not closing
        self.body = False  # the request being served declares a body


class FramingError(Exception):
    """A request head the server must refuse (RFC 9112): `status` 400 or 501, `reason` says why."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


def body_framing(head: bytes) -> bool:
    """Whether the request `head` (request line to blank line) declares a body; raises FramingError
    for what RFC 9112 says a server must refuse (§6.3 message body length, §5.2 obsolete line
    folding, §5.1 whitespace before the colon, §3.2 Host missing or twice), so that no two readers
    of the same bytes (a proxy in front, this server) can frame the body or pick the host
    differently. Content-Length given twice is refused even with equal values (§6.3 allows
    either; nginx refuses it too).
    """
    lines = _LINE_END.split(head)
    http10 = lines[0].rstrip().endswith(b"HTTP/1.0")
    lengths: list[bytes] = []
    codings: list[bytes] = []
    chunked_header = False
    hosts = 0
    for line in lines[1:]:
        if not line:
            break
        if line[:1] in (b" ", b"\t"):
            raise FramingError(400, "obsolete line folding (a header line starting with a space or tab)")
        name, colon, value = line.partition(b":")
        if not colon or not _TOKEN.fullmatch(name):
            raise FramingError(400, "malformed header line: a field name, then directly a colon")
        if b"\r" in value or b"\0" in value:
            raise FramingError(400, "a CR or NUL inside a header value")
        key = name.lower()
        if key == b"content-length":
            lengths += [v.strip(b" \t") for v in value.split(b",")]
        elif key == b"transfer-encoding":
            chunked_header = True
            codings += [c for c in (v.strip(b" \t").lower() for v in value.split(b",")) if c]
        elif key == b"host":
            hosts += 1
    if hosts > 1 or (hosts == 0 and not http10):
        raise FramingError(400, "an HTTP/1.1 request needs exactly one Host header")
    if chunked_header:
        if http10:
            raise FramingError(400, "Transfer-Encoding in an HTTP/1.0 request")
        if lengths:
            raise FramingError(400, "both Content-Length and Transfer-Encoding: send one")
        if codings != [b"chunked"]:
            if not codings or codings[-1] != b"chunked" or codings.count(b"chunked") > 1:
                raise FramingError(400, "Transfer-Encoding must end in chunked, given once")
            raise FramingError(501, "Transfer-Encoding: only chunked is implemented")
        return True
    if len(lengths) > 1:
        raise FramingError(400, "Content-Length given more than once")
    if lengths and not lengths[0].isdigit():  # bytes.isdigit: ASCII 0-9 only
        raise FramingError(400, "Content-Length must be a whole number of bytes in digits 0-9")
    return bool(lengths) and int(lengths[0]) > 0


class _Prefixed(io.RawIOBase):
    """Reads the bytes the selector already read, then the socket."""

    def __init__(self, prefix: bytes, sock: socket.socket) -> None:
        self._prefix = memoryview(prefix)
        self._sock = sock

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int | None:
        if self._prefix:
            n = min(len(b), len(self._prefix))
            b[:n] = self._prefix[:n]
            self._prefix = self._prefix[n:]
            return n
        try:
            return self._sock.recv_into(b)
        except _WOULD_BLOCK:
            return None

    def rest(self) -> bytes:
        return bytes(self._prefix)


class _Writer(io.BufferedIOBase):
    """wfile: every write is a sendall (a raw socket write may be partial)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        self._sock.sendall(b)
        return memoryview(b).nbytes


class GuardedHandler(BaseHTTPRequestHandler):
    """A BaseHTTPRequestHandler that serves the one request whose head the selector read."""

    request: _Conn
    server: GuardedServer  # type: ignore[assignment]

    def setup(self) -> None:
        self.connection = self.request.sock
        self._raw = _Prefixed(bytes(self.request.buf), self.connection)
        self._buffered = io.BufferedReader(self._raw, 64 * 1024)
        self.rfile = self._buffered
        self.wfile = _Writer(self.connection)

    body_read = False  # a handler that reads the request body sets it; else the connection closes

    def handle(self) -> None:
        self.close_connection = True
        self.handle_one_request()
        if self.request.body and not self.body_read:
            self.close_connection = True  # the unread body must not be read as the next request

    def finish(self) -> None:
        pass  # the server decides whether the connection lives on

    def leftover(self) -> bytes:
        """Bytes read past this request (a pipelined next request), without waiting for more."""
        self.connection.setblocking(False)
        return bytes(self._buffered.peek(1)) + self._raw.rest()


class GuardedServer:
    """Serves `handler` instances (subclasses of GuardedHandler) on `address` within `limits`.

    `tls`: a server SSLContext, or None for plain HTTP. `refusal(limit, ip)` gives the raw answer
    to a connection refused by "total" or "per_ip"; `on_refused(limit)` counts it. The interface
    follows socketserver's: serve_forever(), shutdown(), server_close(), server_address.
    """

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[GuardedHandler],
        limits: Limits,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.limits = limits
        self.handler = handler
        self.tls = tls
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.socket = socket.socket(family, socket.SOCK_STREAM)
        try:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.prepare_socket(self.socket)
            self.socket.bind(address)
            self.socket.listen(limits.backlog)
        except OSError:
            self.socket.close()
            raise
        self.socket.setblocking(False)
        self.server_address: tuple[Any, ...] = self.socket.getsockname()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)  # notified when a worker lets go of a connection
        self._serving: set[_Conn] = set()  # connections a worker holds now
        self._closed = False  # server_close() ran: workers close their connections, hand none back
        self._open = 0
        self._open_per_ip: dict[str, int] = {}
        self._busy = 0  # requests being served
        self._workers = 0
        self._ready: deque[_Conn] = deque()  # complete heads waiting for a worker
        self._returned: deque[_Conn] = deque()  # kept-alive connections from workers
        self._pending: dict[socket.socket, _Conn] = {}  # waiting for a head, oldest first
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._scratch = bytearray(65536)  # where closing connections' bytes go
        self._stop = threading.Event()
        self._stopped = threading.Event()
        self._stopped.set()

    # Hooks for subclasses.
    def prepare_socket(self, sock: socket.socket) -> None:
        """Called on the listening socket before bind (socket options accepted sockets inherit)."""

    def refusal(self, limit: str, ip: str) -> bytes:
        text = b"server busy; retry later\n"
        return (
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
            b"Content-Length: %d\r\nRetry-After: 1\r\nConnection: close\r\n\r\n%s" % (len(text), text)
        )

    def on_refused(self, limit: str) -> None:
        log.debug("connection refused by the %s limit", limit)

    @property
    def busy(self) -> int:
        """Requests being served now."""
        return self._busy

    @property
    def open_connections(self) -> int:
        return self._open

    # socketserver-like interface.
    def serve_forever(self, poll_interval: float = 0.5) -> None:
        self._stopped.clear()
        self._selector.register(self.socket, selectors.EVENT_READ, None)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        try:
            while not self._stop.is_set():
                for key, _events in self._selector.select(min(poll_interval, 0.2)):
                    conn: _Conn | None = key.data
                    try:
                        if key.fileobj is self.socket:
                            self._accept()
                        elif key.fileobj is self._wake_r:
                            self._take_back()
                        elif conn is not None and self._pending.get(conn.sock) is conn:  # not closed yet
                            self._read_head(conn)
                    except Exception:  # one connection's bug must not stop the server
                        log.exception("error in the connection loop")
                        if conn is not None and self._pending.get(conn.sock) is conn:
                            self._drop(conn)
                self._expire()
        finally:
            self._selector.unregister(self.socket)
            self._selector.unregister(self._wake_r)
            self._stopped.set()

    def shutdown(self) -> None:
        self._stop.set()
        self._wake()
        self._stopped.wait()

    def server_close(self, wait_s: float = 5.0) -> None:
        """Close the listening socket and every connection, now: those waiting for a head or a
        worker at once, those being served by shutting them down (their worker closes them; this
        waits up to `wait_s` for that). Call after shutdown() or once serve_forever() returned."""
        self.socket.close()
        for conn in list(self._pending.values()):
            self._drop(conn)
        with self._lock:
            self._closed = True
            waiting = [*self._ready, *self._returned]
            self._ready.clear()
            self._returned.clear()
            serving = list(self._serving)
        for conn in waiting:
            self._close(conn)
        for conn in serving:  # a worker blocked in a read or a send returns at once
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)
        with self._idle:
            self._idle.wait_for(lambda: not self._serving, wait_s)
        self._wake_r.close()
        self._wake_w.close()
        self._selector.close()

    # The selector thread.
    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # already awake (buffer full) or closed
            self._wake_w.send(b"\0")

    def _accept(self) -> None:
        for _ in range(64):  # then let heads and deadlines have their turn
            try:
                sock, addr = self.socket.accept()
            except _WOULD_BLOCK:
                return
            except OSError as exc:  # out of file descriptors, mostly: the backlog waits
                log.warning("cannot accept connections: %s", exc)
                return
            ip = str(addr[0])
            limit = self._admit(ip)
            if limit == "total" and self._pending:
                self._drop(next(iter(self._pending.values())))  # the longest wait for a head
                limit = self._admit(ip)
            if limit:
                self._refuse(sock, limit, ip)
                continue
            sock.setblocking(False)
            if self.tls is not None:
                sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
            conn = _Conn(sock, addr, time.monotonic() + self.limits.head_timeout_s, self.tls is None)
            self._wait_for_head(conn)

    def _admit(self, ip: str) -> str:
        with self._lock:
            if self._open >= self.limits.max_connections:
                return "total"
            if self._open_per_ip.get(ip, 0) >= self.limits.max_connections_per_ip:
                return "per_ip"
            self._open += 1
            self._open_per_ip[ip] = self._open_per_ip.get(ip, 0) + 1
        return ""

    def _refuse(self, sock: socket.socket, limit: str, ip: str) -> None:
        self.on_refused(limit)
        if self.tls is None:  # a TLS client would not understand a plain answer
            try:
                sock.setblocking(False)
                sock.recv(65536)  # what the client already sent, so close() does not reset the answer
            except OSError:
                pass
            try:
                sock.send(self.refusal(limit, ip))
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        sock.close()

    def _wait_for_head(self, conn: _Conn) -> None:
        self._pending[conn.sock] = conn
        self._selector.register(conn.sock, selectors.EVENT_READ, conn)
        if conn.buf or (conn.handshaken and self.tls is not None and conn.sock.pending()):  # type: ignore[attr-defined]
            self._read_head(conn)  # already has bytes the selector will not signal

    def _take_back(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except OSError:
            pass
        while True:
            with self._lock:
                if not self._returned:
                    return
                conn = self._returned.popleft()
            try:
                self._wait_for_head(conn)
            except Exception:  # one connection's bug must not stop the server
                log.exception("error in the connection loop")
                if self._pending.get(conn.sock) is conn:
                    self._drop(conn)

    def _read_head(self, conn: _Conn) -> None:
        sock = conn.sock
        if not conn.handshaken:
            try:
                sock.do_handshake()  # type: ignore[attr-defined]
            except _WOULD_BLOCK:
                return
            except OSError as exc:  # a failed handshake is the client's problem, not ours
                log.info("connection from %s failed: %s", conn.ip, exc)
                self._drop(conn)
                return
            conn.handshaken = True
        if conn.lingering >= 0:
            self._discard(conn)
            return
        limits = self.limits
        while True:  # what is buffered first: a kept-alive connection may bring a whole request
            found = _HEAD_END.search(conn.buf, max(0, conn.scanned - 3))
            conn.scanned = len(conn.buf)
            if found and found.end() <= limits.max_head_bytes:
                if conn.buf.count(b"\n", 0, found.end()) > limits.max_header_lines + 2:
                    self._answer_and_drop(conn, 431, "too many header lines")
                    return
                try:
                    conn.body = body_framing(bytes(conn.buf[: found.end()]))
                except FramingError as exc:
                    self._answer_and_drop(conn, exc.status, exc.reason)
                    return
                self._dispatch(conn)
                return
            if len(conn.buf) > limits.max_head_bytes:
                self._answer_and_drop(conn, 431, f"request head over {limits.max_head_bytes} bytes")
                return
            try:
                data = sock.recv(limits.max_head_bytes + 1 - len(conn.buf))
            except _WOULD_BLOCK:
                return
            except OSError:
                data = b""
            if not data:
                self._drop(conn)
                return
            if not conn.buf:  # a kept-alive connection's next request starts its head deadline
                conn.deadline = min(conn.deadline, time.monotonic() + limits.head_timeout_s)
            conn.buf += data

    def _discard(self, conn: _Conn) -> None:
        """Read and forget what a closing connection still sends, until it closes its side."""
        while True:
            try:
                n = conn.sock.recv_into(self._scratch)
            except _WOULD_BLOCK:
                return
            except OSError:
                n = 0
            conn.lingering += n
            if not n or conn.lingering > LINGER_BYTES:
                self._drop(conn)
                return

    def _linger(self, conn: _Conn) -> None:
        """Close our side now, theirs when they close it or LINGER_S pass: closing with unread
        bytes would reset the connection and lose the answer we just sent."""
        with contextlib.suppress(OSError):
            conn.sock.shutdown(socket.SHUT_WR)
        conn.lingering = 0
        conn.buf = bytearray()
        conn.deadline = time.monotonic() + LINGER_S

    def _expire(self) -> None:
        now = time.monotonic()
        for conn in [c for c in self._pending.values() if c.deadline <= now]:
            if conn.lingering >= 0:
                self._drop(conn)
            elif conn.buf or not conn.handshaken:
                self._answer_and_drop(
                    conn, 408, f"request head not complete in {self.limits.head_timeout_s:g} s"
                )
            else:
                self._drop(conn)  # an idle kept-alive connection: just closed

    def _answer_and_drop(self, conn: _Conn, status: int, reason: str) -> None:
        log.debug("%s: %d %s", conn.ip, status, reason)
        if conn.handshaken:
            phrase = {
                400: "Bad Request",
                408: "Request Timeout",
                431: "Request Header Fields Too Large",
                501: "Not Implemented",
            }[status]
            body = reason.encode() + b"\n"
            with contextlib.suppress(OSError, ValueError):
                conn.sock.send(
                    b"HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n"
                    b"Connection: close\r\n\r\n%s" % (status, phrase.encode(), len(body), body)
                )
            self._linger(conn)
            self._discard(conn)
        else:
            self._drop(conn)

    def _drop(self, conn: _Conn) -> None:
        """Close a connection the selector holds."""
        if self._pending.pop(conn.sock, None) is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(conn.sock)
        self._close(conn)

    def _close(self, conn: _Conn) -> None:
        if conn.closed:
            return
        conn.closed = True
        try:
            conn.sock.close()
        finally:
            with self._lock:
                self._open -= 1
                left = self._open_per_ip[conn.ip] - 1
                if left:
                    self._open_per_ip[conn.ip] = left
                else:
                    del self._open_per_ip[conn.ip]

    def _dispatch(self, conn: _Conn) -> None:
        del self._pending[conn.sock]
        self._selector.unregister(conn.sock)
        with self._lock:
            if self._workers >= self.limits.max_workers:
                self._ready.append(conn)
                return
            self._workers += 1
        threading.Thread(target=self._work, args=(conn,), name="http-worker", daemon=True).start()

    # Worker threads.
    def _work(self, conn: _Conn | None) -> None:
        while conn is not None:
            self._serve_one(conn)
            with self._lock:
                conn = self._ready.popleft() if self._ready else None
                if conn is None:
                    self._workers -= 1

    def _serve_one(self, conn: _Conn) -> None:
        keep = False
        with self._lock:
            closed = self._closed
            if not closed:
                self._busy += 1
                self._serving.add(conn)
        if closed:  # dispatched as the server closed
            self._close(conn)
            return
        try:
            conn.sock.settimeout(self.limits.io_timeout_s)
            handler = self.handler(conn, conn.addr, self)  # type: ignore[arg-type]
            keep = not handler.close_connection and not self._stop.is_set()
            if keep:
                conn.buf = bytearray(handler.leftover())
                conn.scanned = 0
        except OSError as exc:  # clients reset connections at the end of every bandwidth test
            log.debug("%s: %s", conn.ip, exc)
        except Exception:
            log.exception("error serving %s", conn.ip)
        finally:
            with self._lock:
                self._busy -= 1
        try:
            conn.sock.setblocking(False)
        except OSError:
            self._let_go(conn, close=True)
            return
        if not keep:
            self._linger(conn)
        else:
            wait = self.limits.head_timeout_s if conn.buf else self.limits.idle_timeout_s
            conn.deadline = time.monotonic() + wait
        self._let_go(conn)
        self._wake()

    def _let_go(self, conn: _Conn, close: bool = False) -> None:
        """A worker is done with `conn`: back to the selector, or closed (asked, or the server is)."""
        with self._lock:
            close = close or self._closed
            if not close:
                self._returned.append(conn)
        if close:
            self._close(conn)
        with self._idle:
            self._serving.discard(conn)
            self._idle.notify_all()


def server_tls_context(cert_file: str, key_file: str, client_ca_file: str = "") -> ssl.SSLContext:
    """A TLS 1.2+ server context; with `client_ca_file`, clients must present a certificate it signed."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    if client_ca_file:
        context.load_verify_locations(client_ca_file)
        context.verify_mode = ssl.CERT_REQUIRED
    return context
