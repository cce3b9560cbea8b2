"""The remote-write client: POSTs WriteRequests (already encoded and compressed by
agent/push/encoding.py) to a Prometheus remote-write receiver and reports what it answered.

Receivers it is tested against: Prometheus 2.42's remote-write receiver, VictoriaMetrics 1.79 and
vmauth 1.79 in front of it (docs/push.md).
"""

from __future__ import annotations

import contextlib
import ctypes
import email.utils
import http.client
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import agent
from agent.digits import ascii_uint
from agent.push.settings import PushSettings
from agent.redact import Redactor, basic_credential


@dataclass(frozen=True)
class Answer:
    """What the receiver said to one request; status 0 means no (complete) answer."""

    status: int
    reason: str  # the body's first line, or the network error; redacted
    retry_after_s: float | None = None

    @property
    def ok(self) -> bool:
        """A 2xx: the receiver took the whole request."""
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
        """Drop the kept-alive connection (the next post() connects afresh); idempotent."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
