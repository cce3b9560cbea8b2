"""HTTP reachability (status, time to first byte, total time) and captive-portal detection.

One GET per URL over a fresh connection (so every check pays for the name lookup, TCP and TLS as a
user's first visit does), redirects not followed, at most MAX_BODY_BYTES of the body read.
Checks run one after another so they do not compete for the line and skew each other's times.
"""

from __future__ import annotations

import http.client
import io
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from agent import __version__
from agent.families import Family, ProbeMetrics, Samples, per_result
from agent.probes.base import ProbeContext, ProbeSettings, ProbeSpec, call_within
from agent.result import Reason, Result, failure, reason_for
from agent.schema import check, each, is_url, positive

MAX_BODY_BYTES = 1 << 20  # a huge page must not eat the device's memory
READ_CHUNK = 64 * 1024
USER_AGENT = f"hotspot-agent/{__version__}"
PORTAL_DETAIL = "a login page or redirect is in the way: captive portal"

Kind = Literal["reachability", "portal_check"]


def is_http_url(value: Any) -> str | None:
    """An http:// or https:// URL whose host and port http.client can use."""
    if (msg := is_url(value)) is not None or not isinstance(value, str):
        return msg
    try:
        parts = urlsplit(value)
        _ = parts.port  # raises for a port that is not a number in 0-65535
    except ValueError as exc:
        return f"not a usable URL: {exc}"
    if not parts.hostname:
        return "not a usable URL: no host"
    return None


def is_http_url_or_empty(value: Any) -> str | None:
    return None if value == "" else is_http_url(value)


@dataclass(frozen=True)
class Settings(ProbeSettings):
    interval_s: float = check(positive, default=60.0)
    timeout_s: float = check(positive, default=60.0)
    urls: tuple[str, ...] = check(each(is_http_url), default=("https://dichvucong.gov.vn/",))
    # Should answer 204 with no body; a redirect or a 200 page means a captive portal. "" disables.
    portal_check_url: str = check(
        is_http_url_or_empty, default="http://connectivitycheck.gstatic.com/generate_204"
    )
    request_timeout_s: float = check(positive, default=10.0)

    within_run = ("request_timeout_s",)


@dataclass(frozen=True)
class HttpCheck:
    url: str
    kind: Literal["reachability", "portal_check"]
    status: int | None  # None when no HTTP answer came
    first_byte_s: float | None  # from the start (name lookup, connect, TLS) to the status line and headers
    total_s: float | None  # from the start to the end of the body (or of the first MAX_BODY_BYTES)
    body_bytes: int
    captive_portal: bool  # only ever true for the portal check
    location: str  # the redirect target, if any
    body_capped: bool = False  # the body was longer than MAX_BODY_BYTES; the rest was not read


class ShortBody(Exception):
    """The connection closed before the body announced by Content-Length was complete."""


def run(settings: Settings, context: ProbeContext) -> list[Result[HttpCheck]]:
    checks: list[tuple[str, Kind]] = [(url, "reachability") for url in settings.urls]
    if settings.portal_check_url:
        checks.append((settings.portal_check_url, "portal_check"))
    tls = ssl.create_default_context()  # verifies certificates and host names against the system CAs
    results = []
    for url, kind in checks:
        if context.cancelled.is_set():
            results.append(
                failure(
                    "http",
                    url,
                    "timeout",
                    f"http: run abandoned before {url} was asked",
                    data=_none(url, kind),
                )
            )
            continue
        results.append(check_url(url, kind, settings.request_timeout_s, tls))
    return results


def _none(url: str, kind: Kind) -> HttpCheck:
    return HttpCheck(url, kind, None, None, None, 0, False, "")


def check_url(url: str, kind: Kind, timeout_s: float, tls: ssl.SSLContext) -> Result[HttpCheck]:
    """GET `url` once and judge the answer for its kind; never raises for network trouble."""
    started_at = time.time()
    t0 = time.monotonic()
    deadline = t0 + timeout_s
    if (problem := is_http_url(url)) is not None:  # settings built in code skip the config check
        return failure("http", url, "error", f"http: {url!r} is {problem}", data=_none(url, kind))
    parts = urlsplit(url)
    host = parts.hostname or ""
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        conn = http.client.HTTPSConnection(host, parts.port, timeout=timeout_s, context=tls)
    else:
        conn = http.client.HTTPConnection(host, parts.port, timeout=timeout_s)
    reader = _Deadline(deadline)
    conn.response_class = reader.response_class()
    status: int | None = None
    first_byte_s: float | None = None
    body_bytes, capped, location = 0, False, ""

    def result_data(total_s: float | None = None, captive: bool = False) -> HttpCheck:
        return HttpCheck(url, kind, status, first_byte_s, total_s, body_bytes, captive, location, capped)

    try:
        # Name lookup, TCP and TLS, all inside the timed span and the one deadline: no socket
        # timeout bounds a lookup, several addresses tried in turn, or a handshake that drips.
        call_within(deadline, conn.connect, late=lambda _: conn.close())
        if conn.sock is not None:
            conn.sock.settimeout(max(0.001, deadline - time.monotonic()))
        conn.request("GET", path, headers={"User-Agent": USER_AGENT, "Accept": "*/*", "Connection": "close"})
        response = conn.getresponse()  # every read of the headers and the body ends by the deadline
        first_byte_s = time.monotonic() - t0
        status, reason_phrase = response.status, response.reason
        location = response.getheader("Location") or ""
        while body_bytes < MAX_BODY_BYTES:
            chunk = response.read(min(READ_CHUNK, MAX_BODY_BYTES - body_bytes))
            if not chunk:
                # read(amt) returns b"" at an early close instead of raising; the length left says so.
                if response.length:
                    raise ShortBody(f"{body_bytes} of {body_bytes + response.length} bytes came")
                break
            body_bytes += len(chunk)
        else:
            capped = bool(response.read(1))  # peek: was there more than the cap?
        total_s = time.monotonic() - t0
    except Exception as exc:  # every network or protocol trouble becomes a failed Result
        reason: Reason
        if isinstance(exc, TimeoutError | socket.timeout):
            reason, detail = "timeout", _late(url, host, timeout_s, status, first_byte_s, reader)
        else:
            reason, detail = _explain(exc, url, host)
        return failure(
            "http",
            url,
            reason,
            detail,
            data=result_data(),
            started_at=started_at,
            duration_s=time.monotonic() - t0,
        )
    finally:
        conn.close()

    def done(ok: bool, reason: Reason | None, detail: str, captive: bool = False) -> Result[HttpCheck]:
        return Result(
            probe="http",
            target=url,
            ok=ok,
            reason=reason,
            detail=detail,
            data=result_data(total_s, captive),
            started_at=started_at,
            duration_s=time.monotonic() - t0,
        )

    answer = f"{status} {reason_phrase}".strip()
    timing = f"first byte {first_byte_s * 1000:.0f} ms, {body_bytes} bytes in {total_s * 1000:.0f} ms"
    if kind == "reachability":
        if status >= 400:
            return done(False, "http_status", f"http: {answer} from {url}")
        moved = f" to {location}" if location else ""
        return done(True, None, f"http: {answer}{moved} from {url}, {timing}")
    # The portal check: only an empty 204 means the way to the internet is open.
    if status == 204 and body_bytes == 0:
        return done(True, None, f"http: {answer} from {url} as expected, no captive portal, {timing}")
    if 300 <= status < 400:
        return done(False, "captive_portal", f"http: {PORTAL_DETAIL} ({answer} to {location or '?'})", True)
    if status == 511 or (200 <= status < 300 and body_bytes > 0):  # 511: RFC 6585's portal status
        return done(
            False, "captive_portal", f"http: {PORTAL_DETAIL} ({answer} with a {body_bytes}-byte page)", True
        )
    return done(
        False, "http_status", f"http: expected 204 with no body from {url}, got {answer} ({body_bytes} bytes)"
    )


class _Deadline:
    """Every read of the answer (status line, headers, body) gets only what is left of the deadline.

    A socket timeout alone bounds each read, so a server that sends one byte a second would hold
    the check for as long as it likes; `raw_bytes` counts what came, for the words of a timeout.
    """

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.raw_bytes = 0

    def response_class(self) -> type[http.client.HTTPResponse]:
        outer = self

        class Response(http.client.HTTPResponse):
            def __init__(self, sock: socket.socket, *args: Any, **kwargs: Any) -> None:
                super().__init__(sock, *args, **kwargs)
                self.fp = io.BufferedReader(_DeadlineReader(self.fp, sock, outer))

        return Response


class _DeadlineReader(io.RawIOBase):
    def __init__(self, inner: Any, sock: socket.socket, deadline: _Deadline) -> None:
        self._inner, self._sock, self._deadline = inner, sock, deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        remaining = self._deadline.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("out of time")
        self._sock.settimeout(remaining)
        got = int(self._inner.readinto1(buffer))
        self._deadline.raw_bytes += got
        return got

    def close(self) -> None:
        self._inner.close()  # the socket's own reader: its reference keeps the socket open till now
        super().close()


def _late(
    url: str,
    host: str,
    timeout_s: float,
    status: int | None,
    first_byte_s: float | None,
    reader: _Deadline,
) -> str:
    """What had happened when the check's one deadline ran out, in plain words."""
    limit = f"the {timeout_s:g} s limit"
    if status is not None and first_byte_s is not None:
        return (
            f"http: status {status} came from {url} after {first_byte_s * 1000:.0f} ms, but the body was "
            f"still arriving when {limit} ran out ({reader.raw_bytes} bytes of the answer came in all)"
        )
    if reader.raw_bytes:
        return (
            f"http: {host} answered {url} too slowly: the status line and headers were still arriving "
            f"when {limit} ran out ({reader.raw_bytes} bytes came)"
        )
    return f"http: no answer from {url} within {timeout_s:g} s (name lookup, connect and TLS included)"


def _explain(exc: Exception, url: str, host: str) -> tuple[Reason, str]:
    """A failure reason and plain words for an exception raised while checking `url`."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            "error",
            f"https: the certificate of {host} failed verification ({exc.verify_message}) for {url}",
        )
    if isinstance(exc, ssl.SSLError):
        return "protocol", f"https: TLS with {host} failed ({exc.reason or exc}) for {url}"
    if isinstance(exc, http.client.RemoteDisconnected):
        return "protocol", f"http: {host} closed the connection without an answer for {url}"
    if isinstance(exc, ShortBody | http.client.IncompleteRead):
        return "protocol", f"http: the body from {url} was cut short ({exc})"
    if isinstance(exc, http.client.BadStatusLine):
        return "protocol", f"http: not an HTTP answer from {url} (first line {str(exc)[:60]})"
    if isinstance(exc, http.client.HTTPException):
        return "protocol", f"http: a malformed HTTP answer from {url} ({type(exc).__name__}: {str(exc)[:60]})"
    if isinstance(exc, socket.gaierror):
        return "dns", f"http: the name {host} does not resolve ({exc.strerror}) for {url}"
    if isinstance(exc, UnicodeError):  # the idna codec rejects the host name before any lookup
        return "dns", f"http: {host!r} is not a valid host name for {url}"
    if isinstance(exc, ConnectionRefusedError):
        return "refused", f"http: connection refused by {host} for {url}"
    if isinstance(exc, ConnectionResetError):
        return "refused", f"http: connection reset by {host} for {url}"
    if isinstance(exc, OSError):
        return reason_for(exc), f"http: {url}: {exc.strerror or exc}"
    return "error", f"http: {url}: {type(exc).__name__}: {exc}"


# -- metrics (names and meanings: docs/metrics.md) ------------------------------------------------
# A sample (site labels shortened to "..."; check by hand with `curl -s HOST:9591/metrics | grep _http_`):
#   hotspot_http_status_code{...,url="https://dichvucong.gov.vn/",kind="reachability"} 200.0
#   hotspot_http_first_byte_seconds{...,url="https://dichvucong.gov.vn/",kind="reachability"} 0.412
#   hotspot_http_captive_portal{...,url="http://p.example/generate_204",kind="portal_check"} 0.0

_CHECK = ("url", "kind")
SUCCESS = Family("hotspot_http_success", "gauge", "1 when the last request got the expected answer.", _CHECK)
STATUS = Family("hotspot_http_status_code", "gauge", "HTTP status of the last answer.", _CHECK)
FIRST_BYTE = Family(
    "hotspot_http_first_byte_seconds", "gauge", "Time to the first byte of the answer.", _CHECK
)
DURATION = Family("hotspot_http_duration_seconds", "gauge", "Time to the whole answer.", _CHECK)
CAPTIVE_PORTAL = Family(
    "hotspot_http_captive_portal",
    "gauge",
    "1 when the portal check met a page or redirect instead of 204.",
    _CHECK,
)


def _show(r: Result[HttpCheck], out: Samples) -> None:
    if (d := r.data) is None:
        return
    out.add(SUCCESS, 1 if r.ok else 0, url=d.url, kind=d.kind)
    out.add(STATUS, d.status, url=d.url, kind=d.kind)
    out.add(FIRST_BYTE, d.first_byte_s, url=d.url, kind=d.kind)
    out.add(DURATION, d.total_s, url=d.url, kind=d.kind)
    if d.kind == "portal_check" and d.status is not None:
        out.add(CAPTIVE_PORTAL, 1 if d.captive_portal else 0, url=d.url, kind=d.kind)


METRICS = ProbeMetrics[Settings, HttpCheck](
    families=(SUCCESS, STATUS, FIRST_BYTE, DURATION, CAPTIVE_PORTAL), show=per_result(_show)
)
SPEC = ProbeSpec("http", Settings, run, metrics=METRICS)
