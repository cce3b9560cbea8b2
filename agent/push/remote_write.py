"""Prometheus remote-write 1.0: series validation, protobuf encoding by hand, snappy, one HTTP client.

The message is tiny, so it is written directly (no protobuf runtime):
WriteRequest{1: repeated TimeSeries}, TimeSeries{1: repeated Label, 2: repeated Sample},
Label{1: name, 2: value}, Sample{1: double value, 2: int64 timestamp_ms}.
"""

from __future__ import annotations

import contextlib
import ctypes
import email.utils
import http.client
import re
import socket
import ssl
import struct
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import cramjam

import agent
from agent.digits import ascii_uint
from agent.push.settings import PushSettings
from agent.redact import Redactor, basic_credential

# The names Prometheus' data model allows (the 2.42 receiver does not check them: the client must).
METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
STALE_NAN = struct.pack("<Q", 0x7FF0000000000002)  # Prometheus' staleness marker


class InvalidSeries(ValueError):
    """A series the receiver must not get (bad name, reserved label, duplicate...)."""


def varint(n: int) -> bytes:
    """Protobuf base-128 varint; negative int64 values take ten bytes, as the spec says."""
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(tag: int, payload: bytes) -> bytes:
    return bytes([tag]) + varint(len(payload)) + payload


def encode_labels(labels: Mapping[str, str]) -> bytes:
    """The repeated Label fields of one TimeSeries: validated, empty values dropped, sorted by name."""
    name = labels.get("__name__", "")
    if not METRIC_NAME.fullmatch(name):
        raise InvalidSeries(f"invalid metric name {name!r}")
    out = []
    for key in sorted(labels):
        value = labels[key]
        if value == "":
            continue  # Prometheus treats an empty label as an absent one; the receiver wants none
        if key != "__name__" and (not LABEL_NAME.fullmatch(key) or key.startswith("__")):
            raise InvalidSeries(f"invalid label name {key!r} on {name}")
        try:
            pair = _field(0x0A, key.encode()) + _field(0x12, value.encode("utf-8"))
        except UnicodeEncodeError:
            raise InvalidSeries(f"label {key} of {name} is not valid UTF-8") from None
        out.append(_field(0x0A, pair))
    return b"".join(out)


class SampleEncoder:
    """Builds Sample fields; the varint of a timestamp is cached since a batch has few distinct ones."""

    def __init__(self) -> None:
        self._parts: dict[int, tuple[bytes, bytes]] = {}

    def sample(self, ts_ms: int, value: bytes) -> bytes:
        parts = self._parts.get(ts_ms)
        if parts is None:
            ts = varint(ts_ms)
            parts = (b"\x12" + varint(10 + len(ts)) + b"\x09", b"\x10" + ts)
            if len(self._parts) > 10000:
                self._parts.clear()
            self._parts[ts_ms] = parts
        return parts[0] + value + parts[1]


def encode_write_request(series: Iterable[tuple[bytes, Sequence[tuple[int, bytes]]]]) -> bytes:
    """WriteRequest from (encoded labels, [(timestamp ms, 8-byte little-endian double)...]) pairs."""
    enc = SampleEncoder()
    out = []
    for labels, samples in series:
        body = labels + b"".join(enc.sample(ts, value) for ts, value in samples)
        out.append(_field(0x0A, body))
    return b"".join(out)


def compress(body: bytes) -> bytes:
    """Snappy block format (not framed), as remote write requires."""
    return bytes(cramjam.snappy.compress_raw(body))


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7


def _fields(data: bytes) -> Iterable[tuple[int, int | bytes]]:
    pos = 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        wire = key & 7
        if wire == 0:
            value, pos = _read_varint(data, pos)
            yield key >> 3, value
        elif wire == 1:
            yield key >> 3, data[pos : pos + 8]
            pos += 8
        elif wire == 2:
            n, pos = _read_varint(data, pos)
            yield key >> 3, data[pos : pos + n]
            pos += n
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")


def decode_write_request(payload: bytes) -> list[tuple[dict[str, str], list[tuple[int, float]]]]:
    """The inverse of compress(encode_write_request(...)): for receivers in tests and for debugging."""
    out = []
    for _, ts_raw in _fields(bytes(cramjam.snappy.decompress_raw(payload))):
        labels: dict[str, str] = {}
        samples: list[tuple[int, float]] = []
        assert isinstance(ts_raw, bytes)
        for num, part in _fields(ts_raw):
            assert isinstance(part, bytes)
            inner = dict(_fields(part))
            if num == 1:
                labels[bytes(inner.get(1, b"")).decode()] = bytes(inner.get(2, b"")).decode()
            else:
                raw_ts = inner.get(2, 0)
                assert isinstance(raw_ts, int)
                ts = raw_ts - (1 << 64) if raw_ts >= 1 << 63 else raw_ts
                value = struct.unpack("<d", inner.get(1, bytes(8)))[0]  # type: ignore[arg-type]
                samples.append((ts, value))
        out.append((labels, samples))
    return out


@dataclass(frozen=True)
class Answer:
    """What the receiver said to one request; status 0 means no (complete) answer."""

    status: int
    reason: str  # the body's first line, or the network error; redacted
    retry_after_s: float | None = None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def auth_failed(self) -> bool:
        """The receiver refused the credentials (vmauth 1.79 answers a wrong password with 400)."""
        if self.status in (401, 403, 407):
            return True
        return self.status == 400 and "auth token" in self.reason.lower()

    @property
    def redirect(self) -> bool:
        """A 3xx: not followed (the credentials would go wherever it points); a configuration problem."""
        return 300 <= self.status < 400

    @property
    def retryable(self) -> bool:
        """Kept and sent again after backoff: the receiver may take it later, nothing is wrong with it."""
        return (
            self.status == 0 or self.status == 429 or self.status >= 500 or self.auth_failed or self.redirect
        )

    @property
    def too_old(self) -> bool:
        """The receiver refused a sample for its time (Prometheus: 'too old sample', 'out of bounds')."""
        text = self.reason.lower()
        return self.status != 0 and any(s in text for s in ("too old", "out of bounds", "out of order"))


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Retry-After as seconds or as an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    seconds = ascii_uint(value)
    if seconds is not None:
        return float(seconds)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


def name_os_thread(name: str) -> None:
    """Name the calling thread for the OS (ps -L, /proc/PID/task/*/comm): Python 3.11 does not."""
    with contextlib.suppress(OSError, AttributeError):  # not Linux: the name is cosmetic
        ctypes.CDLL(None, use_errno=True).prctl(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME


def _where(url: str) -> str:
    """scheme://host:port/path of a URL, without user info or query (they may carry secrets)."""
    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "an unreadable address"
    if not parts.hostname:
        return parts.path
    return f"{parts.scheme}://{parts.hostname}{port}{parts.path}"


class RemoteWriteClient:
    """POSTs compressed WriteRequests over one kept-alive connection; reconnects after any error."""

    def __init__(self, settings: PushSettings) -> None:
        parts = urlsplit(settings.url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port or (443 if self._https else 80)
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._timeout = settings.timeout_s
        self._context: ssl.SSLContext | None = None
        if self._https:
            self._context = ssl.create_default_context(cafile=settings.tls_ca_file or None)
        self._headers = {
            "Content-Encoding": "snappy",
            "Content-Type": "application/x-protobuf",
            "X-Prometheus-Remote-Write-Version": "0.1.0",
            "User-Agent": f"hotspot-agent/{agent.__version__}",
        }
        secrets: list[str] = []
        if settings.basic_auth is not None:
            password = settings.basic_auth.password.reveal()
            credential = basic_credential(settings.basic_auth.username, password)
            self._headers["Authorization"] = "Basic " + credential
            secrets += [password, credential]
        elif settings.bearer_token is not None:
            secrets.append(settings.bearer_token.reveal())
            self._headers["Authorization"] = "Bearer " + secrets[-1]
        self._conn: http.client.HTTPConnection | None = None
        # Receivers may echo credentials (vmauth does) and send control characters: every text
        # from the receiver goes through this before it reaches an Answer, and so a log.
        self._redact = Redactor(secrets)

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            if self._https:
                self._conn = http.client.HTTPSConnection(
                    self._host, self._port, timeout=self._timeout, context=self._context
                )
            else:
                self._conn = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
        return self._conn

    def post(self, body: bytes) -> Answer:
        """Send one compressed WriteRequest; never raises for network trouble.

        One deadline (timeout_s) covers connecting, sending and the whole answer: the socket
        timeout alone is per read, so a receiver dripping a byte at a time could hold a request
        for ever. At the deadline a timer shuts the socket down, which ends any blocked read.
        """
        conn = self._connection()
        expired = threading.Event()

        def cut() -> None:
            expired.set()
            sock = conn.sock
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

        done = threading.Event()

        def watch() -> None:
            name_os_thread("push-deadline")  # not the sender's name, which it would inherit
            if not done.wait(self._timeout):
                cut()

        threading.Thread(target=watch, name="push-deadline", daemon=True).start()
        try:
            conn.request("POST", self._path, body=body, headers=self._headers)
            resp = conn.getresponse()
            text = resp.read(64 * 1024).decode("utf-8", "replace")
            if expired.is_set() and not 200 <= resp.status < 300:
                raise TimeoutError  # an answer cut short at the deadline says nothing reliable
            retry_after = parse_retry_after(resp.getheader("Retry-After"), time.time())
            if resp.will_close or not resp.isclosed():
                self.close()  # unread body or server closing: start afresh next time
            first = text.strip().splitlines()[0] if text.strip() else resp.reason
            if 300 <= resp.status < 400:
                first = f"redirects to {_where(resp.getheader('Location') or '')}"
            return Answer(resp.status, self._redact(first)[:500], retry_after)
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            if expired.is_set():
                return Answer(0, f"no complete answer within timeout_s ({self._timeout:g} s)")
            return Answer(0, self._redact(f"{type(exc).__name__}: {exc}")[:500])
        finally:
            done.set()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
