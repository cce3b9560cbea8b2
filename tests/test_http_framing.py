"""Request framing (RFC 9112 §6.3, §5.1, §5.2): both servers on the shared front refuse a head two
readers could frame differently, and never read an unread body as the next request.

Each case goes as raw bytes to a real agent /metrics server and a real bandwidth test server, both
on loopback port 0: one 400 (or 501) answer, then the connection closes, and nothing after the
head is ever answered as a second request (request smuggling behind a proxy such as nginx).
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry

from agent.config import Exposition
from agent.server import MetricsServer
from collector.speedtest_server import ServerSettings
from tests.support.speedtest import start

SMUGGLED = b"GET /getIP HTTP/1.1\r\nHost: x\r\n\r\n"  # a second request hidden in the body


@pytest.fixture(scope="module")
def agent_port() -> Iterator[int]:
    server = MetricsServer(Exposition(), CollectorRegistry(), lambda: (True, {}), listen="127.0.0.1:0")
    server.start()
    yield server.address[1]
    server.stop()


@pytest.fixture(scope="module")
def speedtest_port() -> Iterator[int]:
    server = start(ServerSettings())
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


@pytest.fixture(params=["agent", "speedtest"])
def port(request: pytest.FixtureRequest) -> int:
    return int(request.getfixturevalue(f"{request.param}_port"))


def exchange(port: int, data: bytes) -> list[tuple[int, bytes]]:
    """Send `data` on one connection; every answer (status, body) until the server closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        raw = b""
        while chunk := s.recv(65536):  # a timeout here: the server kept the connection open
            raw += chunk
    answers = []
    for m in re.finditer(rb"HTTP/1\.[01] (\d{3}) [^\r\n]*\r\n(.*?)\r\n\r\n", raw, re.S):
        length = re.search(rb"(?im)^content-length: *(\d+)", m.group(2))
        size = int(length.group(1)) if length else 0
        answers.append((int(m.group(1)), raw[m.end() : m.end() + size]))
    return answers


REFUSED = {
    "Content-Length twice, disagreeing": (b"Content-Length: 0\r\nContent-Length: 33\r\n", 400),
    "Content-Length twice, equal": (b"Content-Length: 33\r\nContent-Length: 33\r\n", 400),
    "Content-Length as a list": (b"Content-Length: 33, 0\r\n", 400),
    "Content-Length negative": (b"Content-Length: -1\r\n", 400),
    "Content-Length with a sign": (b"Content-Length: +33\r\n", 400),
    "Content-Length in hex": (b"Content-Length: 0x21\r\n", 400),
    "Content-Length empty": (b"Content-Length:\r\n", 400),
    "Content-Length in Arabic digits": ("Content-Length: ٣٣\r\n".encode(), 400),
    "Content-Length and Transfer-Encoding": (b"Content-Length: 0\r\nTransfer-Encoding: chunked\r\n", 400),
    "Transfer-Encoding not ending in chunked": (b"Transfer-Encoding: chunked, gzip\r\n", 400),
    "Transfer-Encoding gzip alone": (b"Transfer-Encoding: gzip\r\n", 400),
    "Transfer-Encoding chunked twice": (b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", 400),
    "Transfer-Encoding empty": (b"Transfer-Encoding: \r\n", 400),
    "Transfer-Encoding gzip then chunked": (b"Transfer-Encoding: gzip, chunked\r\n", 501),
    "obsolete line folding": (b"X-Note: a\r\n Content-Length: 33\r\n", 400),
    "whitespace before the colon": (b"Content-Length : 33\r\n", 400),
    "a header line without a colon": (b"Content-Length 33\r\n", 400),
    "a bare CR in a value": (b"X-Note: a\rContent-Length: 33\r\n", 400),
    "Host twice": (b"Host: other\r\n", 400),
}


@pytest.mark.parametrize("case", REFUSED)
def test_ambiguous_framing_is_refused_and_closed(port: int, case: str) -> None:
    """One 400/501 naming the problem, then close: the body (a request) is never answered."""
    headers, status = REFUSED[case]
    answers = exchange(port, b"GET /empty HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n" + SMUGGLED)
    assert [a[0] for a in answers] == [status], answers
    assert answers[0][1].strip(), "the answer says what was wrong"


def test_transfer_encoding_in_http_1_0_is_refused(port: int) -> None:
    """HTTP/1.0 has no chunked coding: its framing is faulty (RFC 9112 §6.1)."""
    answers = exchange(port, b"GET /empty HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    assert [a[0] for a in answers] == [400]


def test_http_1_1_without_host_is_refused(port: int) -> None:
    """RFC 9112 §3.2: an HTTP/1.1 request without Host is a 400; HTTP/1.0 needs none."""
    assert [a[0] for a in exchange(port, b"GET / HTTP/1.1\r\n\r\n")] == [400]
    assert exchange(port, b"GET / HTTP/1.0\r\n\r\n")[0][0] in (200, 404)


def test_one_valid_content_length_is_served(port: int) -> None:
    """The control: the same request with one valid Content-Length is answered, not refused."""
    answers = exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    assert len(answers) == 1 and answers[0][0] in (200, 404)


def test_unread_body_closes_the_connection(speedtest_port: int) -> None:
    """A GET with a body the server does not read: answered, then closed, so the body is not read
    as a second request. (The test server keeps connections alive; the agent closes every one.)"""
    head = b"GET /empty HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(SMUGGLED)
    answers = exchange(speedtest_port, head + SMUGGLED)
    assert [a[0] for a in answers] == [200]


def test_read_body_keeps_the_connection(speedtest_port: int) -> None:
    """An upload the server reads to its end leaves the connection for the next request: Content-
    Length and chunked alike (the agents' engine sends many uploads per connection)."""
    upload = b"POST /empty HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nabcde"
    chunked = b"POST /empty HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n0\r\n\r\n"
    last = b"GET /getIP HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    answers = exchange(speedtest_port, upload + chunked + last)
    assert [a[0] for a in answers] == [200, 200, 200]
    assert b"127.0.0.1" in answers[2][1]
