"""The speedtest server: LibreSpeed endpoints, limits, token, metrics, pacing and its command line."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from collector.speedtest_server import MIB, ServerSettings, SpeedtestServer
from tests.support.speedtest import metric, start

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def server() -> Iterator[SpeedtestServer]:
    s = start(ServerSettings(max_chunks=8, max_upload_bytes=4 * MIB, max_connections_per_ip=3))
    yield s
    s.shutdown()
    s.server_close()


def conn(server: SpeedtestServer) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)


def get(server: SpeedtestServer, path: str, **headers: str) -> tuple[int, bytes]:
    c = conn(server)
    c.request("GET", path, headers=headers)
    resp = c.getresponse()
    body = resp.read()
    c.close()
    return resp.status, body


@pytest.mark.parametrize("path", ["/garbage", "/garbage.php", "/backend/garbage.php", "/backend/garbage"])
def test_garbage_serves_ck_size_mib_under_every_alias(server: SpeedtestServer, path: str) -> None:
    """garbage answers ckSize MiB of random data under each LibreSpeed path."""
    status, body = get(server, f"{path}?ckSize=3&r=0.5")
    assert status == 200 and len(body) == 3 * MIB
    assert len(set(body[:4096])) > 200  # random bytes, not a constant fill


def test_garbage_default_and_bounds(server: SpeedtestServer) -> None:
    """No ckSize gives LibreSpeed's default of 4 MiB; one past the maximum gives 400 with a reason."""
    assert len(get(server, "/garbage.php")[1]) == 4 * MIB
    status, body = get(server, "/garbage.php?ckSize=9")
    assert status == 400 and b"from 1 to 8" in body
    assert get(server, "/garbage.php?ckSize=abc")[0] == 400


def test_empty_and_getip(server: SpeedtestServer) -> None:
    """empty answers an empty 200; getIP reports the client's address as LibreSpeed's JSON."""
    assert get(server, "/empty.php") == (200, b"")
    status, body = get(server, "/backend/getIP.php")
    assert status == 200 and json.loads(body) == {"processedString": "127.0.0.1", "rawIspInfo": ""}
    assert get(server, "/nothing")[0] == 404


def test_upload_is_read_and_counted(server: SpeedtestServer) -> None:
    """A POST to empty is read to the end (keep-alive survives) and counted as received bytes."""
    c = conn(server)
    for _ in range(2):
        c.request("POST", "/empty.php", body=os.urandom(3 * MIB))
        resp = c.getresponse()
        assert resp.status == 200 and resp.read() == b""
    c.close()
    assert metric(server, "hotspot_speedtest_server_received_bytes_total") == 6 * MIB


def test_oversized_upload_is_refused(server: SpeedtestServer) -> None:
    """An upload above the limit is answered 413 without reading it."""
    c = conn(server)
    c.putrequest("POST", "/empty.php")
    c.putheader("Content-Length", str(5 * MIB))
    c.endheaders()
    resp = c.getresponse()
    assert resp.status == 413 and b"Content-Length must be 0 to" in resp.read()


def read_to_close(s: socket.socket) -> bytes:
    answer = b""
    while chunk := s.recv(65536):
        answer += chunk
    return answer


def test_pipelined_requests_with_bodies_are_each_answered(server: SpeedtestServer) -> None:
    """Two uploads and a GET sent back to back before any answer (what a client that does not wait
    does): the bytes read past one request start the next, and each gets its 200."""
    body = os.urandom(200_000)
    post = b"POST /empty HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    with socket.create_connection(server.server_address[:2], timeout=5) as s:
        s.sendall(post + post + b"GET /empty HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = read_to_close(s)
    assert answer.count(b"HTTP/1.1 200 OK") == 3
    assert metric(server, "hotspot_speedtest_server_received_bytes_total") == 2 * len(body)


def test_chunked_upload_is_read_and_counted(server: SpeedtestServer) -> None:
    """LibreSpeed's command-line client uploads with Transfer-Encoding: chunked: read to the end,
    counted, and the kept-alive connection serves the next request."""
    c = conn(server)
    pieces = [os.urandom(MIB), os.urandom(100_000), os.urandom(1)]
    c.request("POST", "/empty.php", body=iter(pieces), encode_chunked=True)
    resp = c.getresponse()
    assert resp.status == 200 and resp.read() == b""
    c.request("GET", "/empty.php")
    assert c.getresponse().status == 200
    c.close()
    assert metric(server, "hotspot_speedtest_server_received_bytes_total") == MIB + 100_001


def test_chunked_upload_is_bounded_like_any_other(server: SpeedtestServer) -> None:
    """Chunks adding up past the upload limit (4 MiB here) get 413, as a Content-Length would.
    (Past the limit the server reads and drops at most 256 KiB more before it closes, so the
    client here sends only 100 kB more and reads the answer; a bigger excess is cut off.)"""
    c = conn(server)
    pieces = [os.urandom(MIB)] * 4 + [os.urandom(100_000)]
    c.request("POST", "/empty.php", body=iter(pieces), encode_chunked=True)
    resp = c.getresponse()
    assert resp.status == 413 and b"chunked upload over 4194304 bytes" in resp.read()


@pytest.mark.parametrize("size_line", [b"\xc2\xb2", b"0x10", b"+10", b"-1", b"zz"])
def test_malformed_chunk_size_gets_400(server: SpeedtestServer, size_line: bytes) -> None:
    """A chunk size that is not plain hex digits is a 400 naming the fault, not a traceback."""
    with socket.create_connection(server.server_address[:2], timeout=5) as s:
        s.sendall(
            b"POST /empty HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + size_line + b"\r\n"
        )
        answer = read_to_close(s)
    assert answer.startswith(b"HTTP/1.1 400 ") and b"bad chunk size" in answer


def test_request_head_has_one_deadline() -> None:
    """A head dripped a byte at a time is answered 408 at the head deadline, however often it drips."""
    s = start(ServerSettings(head_timeout_s=0.5))
    try:
        with socket.create_connection(s.server_address[:2], timeout=5) as c:
            began = time.monotonic()
            c.sendall(b"GET /empty HTTP/1.1\r\n")
            answer = b""
            for _ in range(40):
                try:
                    c.sendall(b"X")
                except OSError:
                    break
                c.settimeout(0.05)
                try:
                    answer += c.recv(4096)
                except TimeoutError:
                    continue
                if answer:
                    break
        assert answer.startswith(b"HTTP/1.1 408 ") and b"not complete in 0.5 s" in answer
        assert time.monotonic() - began < 1.5
    finally:
        s.shutdown()
        s.server_close()


def test_oversized_head_gets_431(server: SpeedtestServer) -> None:
    """A head over 16 KiB, or with over 100 header lines, is answered 431 and closed."""
    for head in (b"X-Pad: " + b"a" * 20_000 + b"\r\n", b"X-A: b\r\n" * 150):
        with socket.create_connection(server.server_address[:2], timeout=5) as s:
            s.sendall(b"GET /empty HTTP/1.1\r\n" + head + b"\r\n")
            answer = read_to_close(s)
        assert answer.startswith(b"HTTP/1.1 431 "), answer[:60]


def test_per_ip_connection_limit_answers_429(server: SpeedtestServer) -> None:
    """A fourth open connection from one address gets 429 with a body naming the limit."""
    held = [conn(server) for _ in range(3)]
    for c in held:
        c.request("GET", "/empty")
        c.getresponse().read()
    status, body = get(server, "/empty")
    assert status == 429 and b"too many connections from 127.0.0.1" in body
    assert metric(server, "hotspot_speedtest_server_rejected_connections_total", {"limit": "per_ip"}) == 1
    for c in held:
        c.close()


def test_total_connection_limit_answers_503() -> None:
    """Past the server-wide limit a connection gets 503 when no connection waits for its head."""
    s = start(ServerSettings(max_connections=1))
    try:
        first = conn(s)  # mid-upload: being served, so not one to close for room
        first.putrequest("POST", "/empty")
        first.putheader("Content-Length", "10")
        first.endheaders(b"x")
        time.sleep(0.2)
        status, body = get(s, "/empty")
        assert status == 503 and b"server full" in body
        first.close()
    finally:
        s.shutdown()
        s.server_close()


def test_token_required_on_test_endpoints_not_on_metrics() -> None:
    """With a token, test requests need the Bearer header (else 403); /metrics stays open."""
    s = start(ServerSettings(token="s3cret"))
    try:
        assert get(s, "/empty.php")[0] == 403
        status, body = get(s, "/garbage.php?ckSize=1", Authorization="Bearer wrong")
        assert status == 403 and b"token" in body
        assert get(s, "/garbage.php?ckSize=1", Authorization="Bearer s3cret")[0] == 200
        assert get(s, "/metrics")[0] == 200
    finally:
        s.shutdown()
        s.server_close()


def test_metrics_count_requests_bytes_and_connections(server: SpeedtestServer) -> None:
    """/metrics exposes bytes sent, requests by endpoint and status, and active connections."""
    get(server, "/garbage?ckSize=2")
    get(server, "/garbage?ckSize=99")
    status, body = get(server, "/metrics")
    text = body.decode()
    assert status == 200
    assert 'hotspot_speedtest_server_requests_total{endpoint="garbage",status="200"} 1.0' in text
    assert 'hotspot_speedtest_server_requests_total{endpoint="garbage",status="400"} 1.0' in text
    assert "hotspot_speedtest_server_sent_bytes_total" in text
    assert metric(server, "hotspot_speedtest_server_sent_bytes_total") == 2 * MIB
    assert "hotspot_speedtest_server_active_connections 1.0" in text  # the scrape's own connection


def test_pacing_slows_downloads() -> None:
    """TEST-ONLY pacing at 16 Mbit/s makes a 2 MiB download take about a second, not milliseconds."""
    s = start(ServerSettings(test_only_pace_bps=16e6))
    try:
        began = time.monotonic()
        assert len(get(s, "/garbage?ckSize=2")[1]) == 2 * MIB
        assert time.monotonic() - began > 0.8  # 2 MiB at 16 Mbit/s = 1.05 s
    finally:
        s.shutdown()
        s.server_close()


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "collector.speedtest_server", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def test_command_serves_until_terminated(tmp_path: Path) -> None:
    """The command prints its URL, serves with the token from --token-file, survives SIGHUP
    (logrotate, `systemctl reload`) saying so, and exits 0 on SIGTERM."""
    token = tmp_path / "token"
    token.write_text("abc\n")
    proc = run_cli("--listen", "127.0.0.1:0", "--token-file", str(token))
    try:
        assert proc.stdout is not None and proc.stderr is not None
        line = proc.stdout.readline()
        assert line.startswith("speedtest server listening on http://127.0.0.1:")
        port = int(line.rsplit(":", 1)[1].strip("/\n"))
        for hang_up in (False, True):
            if hang_up:
                proc.send_signal(signal.SIGHUP)
                assert "SIGHUP: nothing to reload; still serving" in proc.stderr.readline()
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            c.request("GET", "/empty", headers={"Authorization": "Bearer abc"})
            assert c.getresponse().status == 200
            c.close()
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.communicate(timeout=10)  # closes the pipes
        assert proc.returncode == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--listen", "nonsense"], "not HOST:PORT"),
        (["--listen", "127.0.0.1:0", "--token-file", "/nonexistent/token"], "cannot read"),
        (["--listen", "127.0.0.1:0", "--max-chunks", "0"], "--max-chunks: must be at least 1"),
        (["--listen", "127.0.0.1:0", "--test-only-pace-mbps", "nan"], "must be a number, 0 or more"),
        (["--listen", "127.0.0.1:0", "--token-file", "{cp1258}"], "not UTF-8 text"),
    ],
)
def test_command_rejects_bad_arguments(args: list[str], message: str, tmp_path: Path) -> None:
    """Bad arguments exit 2 with one clear line, no traceback (a token saved as cp1258 included)."""
    legacy = tmp_path / "token"
    legacy.write_bytes("mật-khẩu-xã".encode("cp1258", errors="replace") + b"\xfd")
    proc = run_cli(*(str(legacy) if a == "{cp1258}" else a for a in args))
    _out, err = proc.communicate(timeout=20)
    assert proc.returncode == 2
    assert message in err and "Traceback" not in err
