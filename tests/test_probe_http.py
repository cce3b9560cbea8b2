"""The HTTP probe against real servers on loopback: http.server, raw sockets and an HTTPS server."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import socketserver
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.config import ConfigError, loads
from agent.probes import http
from agent.probes.base import ProbeContext
from agent.site import Site
from tests.support.web import serve

ROOT = Path(__file__).resolve().parent.parent
SITE_YAML = "site: {id: nd-13636-ubnd, commune: Xã Giao Minh, province: Nam Định}\n"


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    with serve() as (url, _requests):
        yield url


@pytest.fixture
def context(tmp_path: Path) -> ProbeContext:
    return ProbeContext(site=Site(id="t", commune="c", province="p"), state_dir=tmp_path)


def settings(urls: tuple[str, ...] = (), portal: str = "", **kw: object) -> http.Settings:
    kw.setdefault("request_timeout_s", 2.0)
    return http.Settings(urls=urls, portal_check_url=portal, **kw)  # type: ignore[arg-type]


def one(results: list) -> Any:
    assert len(results) == 1
    return results[0]


def test_reachability_measures_status_and_times(base: str, context: ProbeContext) -> None:
    """A 200 is reachable, with status, first-byte and total times and the body size."""
    r = one(http.run(settings((f"{base}/",)), context))
    assert r.ok and r.target == f"{base}/"
    d = r.data
    assert (d.kind, d.status, d.body_bytes, d.captive_portal, d.body_capped) == (
        "reachability",
        200,
        len(b"<html>home</html>"),
        False,
        False,
    )
    assert 0 < d.first_byte_s <= d.total_s < 2.0


def test_one_result_per_url_plus_portal_check(base: str, context: ProbeContext) -> None:
    """Each URL gets a reachability Result, and the portal check URL one more, in that order."""
    results = http.run(settings((f"{base}/", f"{base}/missing"), portal=f"{base}/generate_204"), context)
    assert [(r.target, r.data.kind) for r in results] == [
        (f"{base}/", "reachability"),
        (f"{base}/missing", "reachability"),
        (f"{base}/generate_204", "portal_check"),
    ]


def test_request_is_a_plain_get_with_our_user_agent(context: ProbeContext) -> None:
    """The probe sends one GET with its User-Agent and asks the server to close the connection."""
    with serve() as (url, requests):
        http.run(settings((f"{url}/a?b=1",)), context)
    assert len(requests) == 1
    path, headers = requests[0]
    assert path == "/a?b=1"
    assert headers["User-Agent"].startswith("hotspot-agent/")
    assert headers["Connection"] == "close"


@pytest.mark.parametrize(("path", "status"), [("/error", 500), ("/missing", 404)])
def test_error_status_is_http_status(base: str, path: str, status: int, context: ProbeContext) -> None:
    """A status of 400 or more is a failure with reason http_status, the status still recorded."""
    r = one(http.run(settings((base + path,)), context))
    assert (r.ok, r.reason, r.data.status) == (False, "http_status", status)
    assert str(status) in r.detail


def test_redirect_is_reachable_and_not_followed(base: str, context: ProbeContext) -> None:
    """A redirect on a reachability check is fine; it is recorded, not followed."""
    r = one(http.run(settings((f"{base}/hijacked",)), context))
    assert r.ok and r.data.status == 302
    assert r.data.location == "http://portal.example/login?orig=generate_204"
    assert not r.data.captive_portal


def test_portal_check_204_means_no_portal(base: str, context: ProbeContext) -> None:
    """An empty 204 on the portal check is success and no captive portal."""
    r = one(http.run(settings(portal=f"{base}/generate_204"), context))
    assert r.ok and r.data.kind == "portal_check"
    assert (r.data.status, r.data.body_bytes, r.data.captive_portal) == (204, 0, False)


def test_portal_check_redirect_is_captive_portal(base: str, context: ProbeContext) -> None:
    """A redirect instead of 204 is a captive portal, with the redirect target recorded."""
    r = one(http.run(settings(portal=f"{base}/hijacked"), context))
    assert (r.ok, r.reason, r.data.captive_portal, r.data.status) == (False, "captive_portal", True, 302)
    assert r.data.location == "http://portal.example/login?orig=generate_204"
    assert "a login page or redirect is in the way: captive portal" in r.detail


@pytest.mark.parametrize(("path", "status"), [("/portal-page", 200), ("/auth-required", 511)])
def test_portal_check_page_is_captive_portal(
    base: str, path: str, status: int, context: ProbeContext
) -> None:
    """A login page (200 with a body, or 511) instead of 204 is a captive portal."""
    r = one(http.run(settings(portal=base + path), context))
    assert (r.ok, r.reason, r.data.captive_portal, r.data.status) == (False, "captive_portal", True, status)
    assert r.data.body_bytes > 0
    assert "captive portal" in r.detail


@pytest.mark.parametrize(("path", "status"), [("/empty-200", 200), ("/error", 500)])
def test_portal_check_other_status_is_not_a_portal(
    base: str, path: str, status: int, context: ProbeContext
) -> None:
    """An empty 200 or a server error on the portal check fails as http_status, not captive_portal."""
    r = one(http.run(settings(portal=base + path), context))
    assert (r.ok, r.reason, r.data.captive_portal, r.data.status) == (False, "http_status", False, status)


def test_huge_body_is_read_only_up_to_the_cap(base: str, context: ProbeContext) -> None:
    """A body longer than the cap is read up to the cap and marked so; the check still succeeds."""
    r = one(http.run(settings((f"{base}/huge",)), context))
    assert r.ok
    assert (r.data.body_bytes, r.data.body_capped) == (http.MAX_BODY_BYTES, True)


def test_short_body_is_protocol(base: str, context: ProbeContext) -> None:
    """A body shorter than its Content-Length is a protocol failure with the status kept."""
    r = one(http.run(settings((f"{base}/short",)), context))
    assert (r.ok, r.reason, r.data.status) == (False, "protocol", 200)
    assert "cut short" in r.detail


def test_slow_handler_times_out(context: ProbeContext) -> None:
    """A server that answers later than request_timeout_s is a timeout with no status."""
    with serve() as (url, _requests):
        r = one(http.run(settings((f"{url}/slow",), request_timeout_s=0.3), context))
    assert (r.ok, r.reason, r.data.status, r.data.first_byte_s) == (False, "timeout", None, None)
    assert "within 0.3 s" in r.detail


def test_accepting_but_silent_socket_times_out(context: ProbeContext) -> None:
    """A socket that accepts the connection and never answers is a timeout."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)  # the kernel completes the handshake; nobody ever reads or writes
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/"
        r = one(http.run(settings((url,), request_timeout_s=0.3), context))
    assert (r.ok, r.reason, r.data.status) == (False, "timeout", None)


@contextlib.contextmanager
def dripping(head: bytes, body: bytes, every_s: float = 1.0) -> Iterator[str]:
    """A raw server on port 0 that sends `head` at once, then `body` one byte every `every_s`."""
    stop = threading.Event()
    listener = socket.create_server(("127.0.0.1", 0))

    def serve_one() -> None:
        conn, _ = listener.accept()
        with conn, contextlib.suppress(OSError):
            conn.recv(65536)
            conn.sendall(head)
            for byte in body:
                if stop.wait(every_s):
                    return
                conn.sendall(bytes([byte]))

    thread = threading.Thread(target=serve_one, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/"
    finally:
        stop.set()
        listener.close()
        thread.join(5)


@pytest.mark.parametrize(
    ("head", "body", "said"),
    [
        # the status line and headers one byte a second: used to take 12.8 s with a 2 s limit
        (
            b"",
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Padding: " + b"x" * 60,
            "headers were still arriving",
        ),
        # the headers at once, then the body one byte a second: used to take 9.6 s
        (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", b"y" * 100, "the body was still arriving"),
    ],
    ids=["headers", "body"],
)
def test_one_deadline_for_the_whole_request(
    head: bytes, body: bytes, said: str, context: ProbeContext
) -> None:
    """A server that drips its answer is cut off at request_timeout_s, with words for what was late."""
    with dripping(head, body) as url:
        r = one(http.run(settings((url,), request_timeout_s=2), context))
    assert (r.ok, r.reason) == (False, "timeout"), r.detail
    assert 2 <= r.duration_s < 3, r.duration_s
    assert said in r.detail and "2 s limit" in r.detail
    if head:
        assert r.data.status == 200 and re.search(r"\(4[0-2] bytes of the answer came", r.detail), r.detail
    else:
        assert r.data.status is None and re.search(r"\((1|2|3) bytes came\)", r.detail), r.detail


def test_tls_handshake_dripped_a_byte_a_second_ends_at_the_deadline(context: ProbeContext) -> None:
    """Each byte of a dripped ServerHello would restart a socket timeout; the deadline still holds."""
    hello = bytes.fromhex("160303004a020000460303") + bytes(66)  # a TLS record header, then a slow hello
    with dripping(b"", hello) as url:
        r = one(http.run(settings((url.replace("http://", "https://"),), request_timeout_s=2), context))
    assert (r.ok, r.reason) == (False, "timeout"), r.detail
    assert 2 <= r.duration_s < 3, r.duration_s
    assert "within 2 s (name lookup, connect and TLS included)" in r.detail


def test_closed_port_is_refused(context: ProbeContext) -> None:
    """Connecting to a port nobody listens on is reported as refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/"
    r = one(http.run(settings((url,)), context))
    assert (r.ok, r.reason) == (False, "refused")
    assert r.data.status is None and r.data.total_s is None


class GarbageHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.recv(4096)
        self.request.sendall(b"SSH-2.0-OpenSSH_9.2\r\nthis is not http\r\n\r\n")


class SilentCloseHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.recv(4096)


@pytest.mark.parametrize("handler", [GarbageHandler, SilentCloseHandler])
def test_non_http_answer_is_protocol(handler: type, context: ProbeContext) -> None:
    """Garbage bytes instead of HTTP, or a close without an answer, is a protocol failure."""
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler) as server:
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        try:
            r = one(http.run(settings((f"http://127.0.0.1:{server.server_address[1]}/",)), context))
        finally:
            server.shutdown()
            thread.join(5)
    assert (r.ok, r.reason, r.data.status) == (False, "protocol", None)


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    """A server TLS context with a self-signed certificate made by openssl now."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", d / "key.pem", "-out", d / "cert.pem"],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(d / "cert.pem", d / "key.pem")
    return tls


def test_bad_certificate_is_reported_as_such(self_signed: ssl.SSLContext, context: ProbeContext) -> None:
    """A certificate that does not verify fails with reason error and a detail naming the certificate."""
    with serve(self_signed) as (url, _requests):
        r = one(http.run(settings((f"{url}/",)), context))
    assert (r.ok, r.reason, r.data.status) == (False, "error", None)
    assert "certificate of 127.0.0.1 failed verification" in r.detail
    assert "self-signed" in r.detail


def test_https_to_a_plain_http_server_is_protocol(base: str, context: ProbeContext) -> None:
    """TLS spoken to a server that answers plain HTTP is a protocol failure."""
    r = one(http.run(settings((base.replace("http://", "https://") + "/",)), context))
    assert (r.ok, r.reason) == (False, "protocol")


def test_cancelled_run_asks_nothing(context: ProbeContext) -> None:
    """When the run has been abandoned, no request is sent and each check reads as a timeout."""
    context.cancelled.set()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(0.2)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/"
        results = http.run(settings((url,), portal=url + "generate_204"), context)
        with pytest.raises(TimeoutError):
            listener.accept()
    assert [(r.ok, r.reason) for r in results] == [(False, "timeout")] * 2


def test_config_checks_urls_and_timeouts() -> None:
    """Bad URLs and timeouts are config errors with key paths; an empty portal URL is allowed."""
    text = SITE_YAML + (
        "probes:\n  http:\n    urls: ['https://ok.vn/', 'ftp://x.vn/', 'http://x.vn:99999/']\n"
        "    portal_check_url: 'not a url'\n    timeout_s: 5\n    request_timeout_s: 5\n"
    )
    with pytest.raises(ConfigError) as err:
        loads(text)
    assert [p.split(": ")[0] for p in err.value.problems] == [
        "probes.http.urls[1]",
        "probes.http.urls[2]",
        "probes.http.portal_check_url",
        "probes.http.request_timeout_s",
    ]
    config = loads(SITE_YAML + "probes:\n  http:\n    portal_check_url: ''\n")
    assert config.probes.http.portal_check_url == ""


SCRIPT = """
import json, sys, threading
from http.server import ThreadingHTTPServer
from pathlib import Path
from tests.support.dnsserver import DnsServer, Zone
from tests.support.web import Handler
from agent.probes import http
from agent.probes.base import ProbeContext
from agent.site import Site

with DnsServer({"web.test": Zone(addresses=("127.0.0.1",))}, port=53):
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.requests = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    settings = http.Settings(
        urls=(f"http://web.test:{port}/", "http://nosuch.test/"), portal_check_url="", request_timeout_s=3
    )
    context = ProbeContext(site=Site(id="t", commune="c", province="p"), state_dir=Path("."))
    results = http.run(settings, context)
    server.shutdown()
print(json.dumps([[r.ok, r.reason, r.detail] for r in results]))
"""


@pytest.mark.netns
def test_name_that_does_not_resolve_is_dns() -> None:
    """A host name the resolver says does not exist fails with reason dns (in a namespace of our own)."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 for a network namespace")
    ns = f"hmd{os.getpid()}http"
    etc = Path("/etc/netns") / ns
    try:
        if subprocess.run(["ip", "netns", "add", ns], capture_output=True, timeout=10).returncode != 0:
            pytest.skip("ip netns add failed")
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True, timeout=10)
        etc.mkdir(parents=True)
        # ip netns exec mounts these over /etc: the system resolver inside is our own server.
        (etc / "resolv.conf").write_text("nameserver 127.0.0.1\n")
        (etc / "hosts").write_text("127.0.0.1 localhost\n")
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        out = subprocess.run(
            ["ip", "netns", "exec", ns, sys.executable, "-c", SCRIPT],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
            env=env,
        )
        assert out.returncode == 0, out.stderr
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)
        shutil.rmtree(etc, ignore_errors=True)
    (name_ok, _, _), (ok, reason, detail) = json.loads(out.stdout)
    assert name_ok  # the same resolver does answer for a name it knows
    assert (ok, reason) == (False, "dns")
    assert "nosuch.test does not resolve" in detail
