"""The built-in HTTP bandwidth engine against our speedtest server and against misbehaving servers."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from agent.bandwidth import estimator, http_engine, http_response, tcp_info
from agent.bandwidth.engine import BandwidthTest, EngineError, Limits
from collector.speedtest_server import ServerSettings, SpeedtestServer, serve

FAST = Limits(max_duration_s=10.0, max_bytes=400_000_000)


def start_server(settings: ServerSettings) -> SpeedtestServer:
    server = serve("127.0.0.1", 0, settings)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    return server


@pytest.fixture
def paced() -> Iterator[SpeedtestServer]:
    server = start_server(ServerSettings(test_only_pace_bps=40e6))
    yield server
    server.shutdown()
    server.server_close()


class RawServer:
    """A TCP server on 127.0.0.1:0 that answers each connection with `handle(conn, request_head)`.

    Requests are read up to the end of their headers (and a POST body is drained), so the
    handler decides only what goes back; `paths` records every request line.
    """

    def __init__(self, handle: Callable[[socket.socket, str], bool]) -> None:
        self.handle = handle
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/"
        self.paths: list[str] = []
        self.stop = threading.Event()
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        self.listener.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        try:
            conn.settimeout(20)  # inside the try: teardown may close the socket first
            while not self.stop.is_set():
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, _, buf = buf.partition(b"\r\n\r\n")
                text = head.decode("latin-1")
                self.paths.append(text.split("\r\n")[0])
                length = 0
                for line in text.split("\r\n")[1:]:
                    if line.lower().startswith("content-length:"):
                        length = int(line.split(":")[1])
                while len(buf) < length:
                    data = conn.recv(min(1 << 20, length - len(buf)))
                    if not data:
                        return
                    buf += data
                buf = buf[length:]
                if not self.handle(conn, text):
                    return
        except OSError:
            return
        finally:
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self.listener.close()
        for conn in self.conns:
            conn.close()


OK_EMPTY = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"


def garbage_only(answer: Callable[[socket.socket], bool]) -> Callable[[socket.socket, str], bool]:
    """Answer latency pings and uploads properly; `answer` decides what garbage requests get."""

    def handle(conn: socket.socket, head: str) -> bool:
        if "garbage" in head.split("\r\n")[0]:
            return answer(conn)
        conn.sendall(OK_EMPTY)
        return True

    return handle


@pytest.fixture
def raw() -> Iterator[Callable[[Callable[[socket.socket, str], bool]], RawServer]]:
    servers: list[RawServer] = []

    def make(handle: Callable[[socket.socket, str], bool]) -> RawServer:
        servers.append(RawServer(handle))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


def run(url: str, limits: Limits = FAST, **kw: object) -> BandwidthTest:
    return http_engine.measure(url, limits, threading.Event(), **kw)  # type: ignore[arg-type]


def test_measures_paced_server_in_both_directions(paced: SpeedtestServer) -> None:
    """Against a server paced to 40 Mbit/s, both directions read close to 40 Mbit/s."""
    test = run(paced.url)
    assert test.engine == "http"
    assert not test.download_lower_bound and not test.upload_lower_bound, test  # settled: estimates
    assert test.download_bps is not None and test.upload_bps is not None
    assert 36e6 < test.download_bps < 42e6
    assert 36e6 < test.upload_bps < 42e6
    assert test.download_bytes > 1_000_000 and test.upload_bytes > 1_000_000
    assert test.latency_idle_s is not None and test.latency_loaded_s is not None
    assert test.download_streams >= 4 and test.upload_streams >= 4


def test_progress_reports_each_phase(paced: SpeedtestServer) -> None:
    """The progress callback sees latency, download and upload phases with bit rates."""
    seen: list[tuple[str, float]] = []
    http_engine.measure(paced.url, FAST, threading.Event(), lambda phase, bps: seen.append((phase, bps)))
    phases = [p for p, _ in seen]
    assert phases[0] == "latency" and "download" in phases and "upload" in phases
    assert max(bps for p, bps in seen if p == "download") > 10e6


def test_fixed_stream_count_is_used(paced: SpeedtestServer) -> None:
    """limits.streams > 0 fixes the number of streams in both directions."""
    test = run(paced.url, Limits(max_duration_s=10.0, streams=2))
    assert test.download_streams == 2 and test.upload_streams == 2


def test_byte_limit_bounds_an_unpaced_test() -> None:
    """On unpaced loopback the byte limit stops each direction; no more than the limit is moved."""
    server = start_server(ServerSettings())
    try:
        try:
            test = run(server.url, Limits(max_duration_s=6.0, max_bytes=20_000_000))
        except EngineError as exc:  # loopback may not settle within 20 MB: then it is a "limit"
            assert exc.reason == "limit"
            assert exc.partial is not None
            test = exc.partial
        assert 0 < test.download_bytes <= 20_000_000
        assert 0 < test.upload_bytes <= 20_000_000
    finally:
        server.shutdown()
        server.server_close()


def test_chunked_librespeed_style_backend_path(raw: Callable[..., RawServer]) -> None:
    """A PHP-style backend (chunked garbage under /backend/) is measured; paths end in .php."""

    def chunked(conn: socket.socket) -> bool:
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        piece = b"x" * 65536
        end = time.monotonic() + 0.4  # a short body: many requests per stream
        while time.monotonic() < end:
            conn.sendall(b"10000\r\n" + piece + b"\r\n")
            time.sleep(0.002)
        conn.sendall(b"0\r\n\r\n")
        return True

    server = raw(garbage_only(chunked))
    try:
        test = run(server.url + "backend", Limits(max_duration_s=4.0, streams=2))
        assert test.download_bps is not None
    except EngineError as exc:
        assert exc.reason == "limit", exc.detail  # paced by sleeps: may not settle; never another error
        assert exc.partial is not None and exc.partial.download_bytes > 1_000_000
    firsts = {p.split(" ")[1].split("?")[0] for p in server.paths}
    assert firsts == {"/backend/garbage.php", "/backend/empty.php"}


def test_refused_connection() -> None:
    """Nothing listening: reason refused, with partial data and no goodput."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    with pytest.raises(EngineError) as err:
        run(f"http://127.0.0.1:{port}/")
    assert err.value.reason == "refused"
    assert err.value.partial is not None and err.value.partial.download_bps is None


def test_server_closes_without_answering(raw: Callable[..., RawServer]) -> None:
    """A server that closes right after the request gives a protocol error."""
    server = raw(lambda conn, head: False)
    with pytest.raises(EngineError) as err:
        run(server.url)
    assert err.value.reason == "protocol"
    assert "without answering" in err.value.detail


def test_garbage_instead_of_http(raw: Callable[..., RawServer]) -> None:
    """Bytes that are not HTTP give a protocol error naming what came."""

    def junk(conn: socket.socket, head: str) -> bool:
        conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
        return True

    with pytest.raises(EngineError) as err:
        run(raw(junk).url)
    assert err.value.reason == "protocol"
    assert "SSH-2.0" in err.value.detail


def test_short_download_body(raw: Callable[..., RawServer]) -> None:
    """A download body cut short of its Content-Length is a protocol error, not a throughput."""

    def short(conn: socket.socket) -> bool:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 26214400\r\n\r\n" + b"x" * 1000)
        return False

    with pytest.raises(EngineError) as err:
        run(raw(garbage_only(short)).url)
    assert err.value.reason == "protocol"
    assert "cut short" in err.value.detail
    assert err.value.partial is not None and err.value.partial.download_bps is None
    assert err.value.partial.latency_idle_s is not None  # what was measured is kept


def test_bytes_past_the_declared_body(raw: Callable[..., RawServer]) -> None:
    """More bytes than Content-Length said is a protocol error."""

    def overlong(conn: socket.socket) -> bool:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n0123456789")
        return True

    with pytest.raises(EngineError) as err:
        run(raw(garbage_only(overlong)).url)
    assert err.value.reason == "protocol"


def test_empty_download_body(raw: Callable[..., RawServer]) -> None:
    """A 200 with an empty download body is a protocol error (else it would loop on requests)."""

    def empty(conn: socket.socket) -> bool:
        conn.sendall(OK_EMPTY)
        return True

    with pytest.raises(EngineError) as err:
        run(raw(garbage_only(empty)).url)
    assert err.value.reason == "protocol"
    assert "empty body" in err.value.detail


def test_trickled_headers_time_out(raw: Callable[..., RawServer]) -> None:
    """A slow-loris answer (one byte a second) ends in a timeout instead of hanging."""

    def trickle(conn: socket.socket) -> bool:
        for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n":
            conn.sendall(bytes([byte]))
            time.sleep(1.0)
        return False

    started = time.monotonic()
    with pytest.raises(EngineError) as err:
        run(raw(garbage_only(trickle)).url)
    assert err.value.reason == "timeout"
    assert "headers" in err.value.detail
    assert time.monotonic() - started < 30  # bounded (the bound is ~5 s; this only catches a hang)


def test_trickled_body_hits_the_duration_limit(raw: Callable[..., RawServer]) -> None:
    """Proper headers then one byte a second: no stable estimate, reason limit, no goodput."""

    def trickle(conn: socket.socket) -> bool:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        for _ in range(60):
            conn.sendall(b"x")
            time.sleep(1.0)
        return False

    with pytest.raises(EngineError) as err:
        run(raw(garbage_only(trickle)).url, Limits(max_duration_s=3.0))
    assert err.value.reason == "limit"
    assert "without a stable estimate" in err.value.detail
    assert err.value.partial is not None and err.value.partial.download_bps is None


def test_never_ending_body_is_bounded_by_bytes(raw: Callable[..., RawServer]) -> None:
    """A body that never ends (no length, never closes) stops at the byte limit."""

    def endless(conn: socket.socket) -> bool:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n")
        piece = b"y" * 65536
        while True:
            conn.sendall(piece)

    limits = Limits(max_duration_s=5.0, max_bytes=30_000_000, streams=2)
    try:
        test = run(raw(garbage_only(endless)).url, limits)
    except EngineError as exc:
        assert exc.reason == "limit", exc.detail
        assert exc.partial is not None
        test = exc.partial
    assert 0 < test.download_bytes <= 30_000_000


def test_wrong_token_is_http_status() -> None:
    """Against a server requiring a token, a wrong token is reported as http_status 403."""
    server = start_server(ServerSettings(token="right"))
    try:
        with pytest.raises(EngineError) as err:
            run(server.url, token="wrong")
        assert err.value.reason == "http_status"
        assert "403" in err.value.detail and "token" in err.value.detail
    finally:
        server.shutdown()
        server.server_close()


def test_too_many_streams_for_the_server_is_http_status() -> None:
    """A server allowing 2 connections per client answers 429, which the engine reports."""
    server = start_server(ServerSettings(max_connections_per_ip=2))
    try:
        with pytest.raises(EngineError) as err:
            run(server.url)
        assert err.value.reason == "http_status"
        assert "429" in err.value.detail
    finally:
        server.shutdown()
        server.server_close()


def test_cancelled_stops_the_test(paced: SpeedtestServer) -> None:
    """A set `cancelled` event ends the test as a timeout."""
    cancelled = threading.Event()
    threading.Timer(1.0, cancelled.set).start()
    with pytest.raises(EngineError) as err:
        http_engine.measure(paced.url, Limits(max_duration_s=30), cancelled)
    assert err.value.reason == "timeout" and "cancelled" in err.value.detail


@pytest.mark.parametrize(
    ("url", "reason"),
    [("https://example.invalid/", "unsupported"), ("ftp://host/", "error"), ("http://:80/", "error")],
)
def test_bad_server_urls(url: str, reason: str) -> None:
    """URLs the engine cannot use are rejected before any traffic."""
    with pytest.raises(EngineError) as err:
        run(url)
    assert err.value.reason == reason


def test_server_url_joins_as_a_directory() -> None:
    """A server URL with or without a trailing slash names the backend directory."""
    assert http_engine.parse_server("http://h:81/backend").base_path == "/backend/"
    assert http_engine.parse_server("http://h/").base_path == "/"
    assert http_engine.parse_server("http://[::1]:8989").host == "::1"
    assert http_engine.parse_server("http://h").port == 80


@pytest.mark.parametrize("split", [1, 3, 7, 64])
def test_chunked_parser_at_any_split(split: int) -> None:
    """The chunked decoder gives the same body however the bytes are split."""
    wire = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6;x=y\r\n world\r\n0\r\nA: b\r\n\r\n"
    )
    resp = http_response.Response("t")
    for i in range(0, len(wire), split):
        resp.feed(memoryview(wire[i : i + split]))
    assert resp.done and resp.body_bytes == 11 and resp.snippet == b"hello world"


def test_tcp_info_counts_delivered_and_received_bytes() -> None:
    """tcp_info's bytes_acked (offset 120) and bytes_received (128) match a known loopback transfer."""
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    peer, _ = listener.accept()
    client.sendall(b"z" * 1_000_000)
    got = 0
    while got < 1_000_000:
        got += len(peer.recv(1 << 20))
    peer.sendall(b"y" * 300_000)
    got = 0
    while got < 300_000:
        got += len(client.recv(1 << 20))
    deadline = time.monotonic() + 5
    while (tcp_info.read(client) or tcp_info.TcpInfo(0, 0, 0, 0)).delivered < 1_000_000:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    sent, received = tcp_info.read(client), tcp_info.read(peer)
    assert sent is not None and received is not None
    assert sent.delivered in (1_000_000, 1_000_001)  # + the SYN on some kernels
    assert received.received == 1_000_000
    assert sent.received == 300_000
    assert received.arrived >= 1_000_000 and received.ooo_packets == 0  # nothing reordered on loopback
    for s in (client, peer, listener):
        s.close()


def test_download_count_includes_bytes_held_past_a_hole() -> None:
    """While packets arrive out of order, the bytes past the hole count; after, the in-order count."""
    tracker = estimator.HeldBytes()

    def held(i: tcp_info.TcpInfo) -> int:
        return tracker.update(i.arrived, i.received, i.ooo_packets)

    info = tcp_info.TcpInfo
    assert held(info(0, 100_000, 0, 0, arrived=101_000, ooo_packets=0)) == 0  # baseline gap 1000
    assert held(info(0, 150_000, 0, 0, arrived=251_000, ooo_packets=70)) == 100_000
    assert held(info(0, 260_000, 0, 0, arrived=301_000, ooo_packets=90)) == 40_000
    assert held(info(0, 301_000, 0, 0, arrived=303_000, ooo_packets=90)) == 0  # hole filled
    assert held(info(0, 310_000, 0, 0, arrived=322_000, ooo_packets=95)) == 10_000


def test_goodput_skips_an_edge_where_tcp_held_bytes_back() -> None:
    """A window whose first count lags (bytes held behind a hole) still reads the true rate."""
    rate = 1_000_000.0
    samples = [(0.25 * i, int(rate * 0.25 * i)) for i in range(13)]
    samples[0] = (0.0, -200_000)  # the held bytes, released by the next sample
    samples[-1] = (3.0, int(rate * 3.0) - 150_000)  # and a lag at the end
    naive = (samples[-1][1] - samples[0][1]) / 3.0
    assert naive > rate * 1.01
    assert abs(estimator.goodput(samples) / rate - 1) < 0.001


def test_goodput_keeps_a_real_slowdown() -> None:
    """A genuine change of rate inside the window is averaged, not edited away."""
    samples = [(0.25 * i, 250_000 * i if i <= 6 else 1_500_000 + 125_000 * (i - 6)) for i in range(13)]
    got = estimator.goodput(samples)
    assert 0.7e6 < got < 0.8e6  # 2.25 MB in 3 s


def test_lower_bound_is_the_window_goodput_or_the_ramps_last_second() -> None:
    """Past the ramp: the goodput over the window; still ramping: the rate over the last second."""
    ramp = [(0.25 * i, 100_000 * i * i) for i in range(7)]  # rising: 0.5 → 1.1 MB/s per sample
    assert estimator.lower_bound(ramp, []) == pytest.approx((3_600_000 - 400_000) / 1.0)
    assert estimator.lower_bound(ramp, [7e6, 8e6]) == 8e6
    assert estimator.lower_bound([(0.0, 0)], []) == 0.0


def test_a_stream_step_needs_bytes_for_its_ramp_and_a_measurement() -> None:
    """At 900 Mbit/s a step (~350 MB) does not fit 250 MB; at 100 Mbit/s (~40 MB) it does."""
    assert not estimator.can_pay_a_step(107.6e6, 250_000_000, 0.5)
    assert estimator.can_pay_a_step(11.95e6, 250_000_000, 0.6)


@pytest.fixture(scope="module")
def shaped() -> Iterator[Callable[[Limits], tuple[BandwidthTest, float]]]:
    """A tbf-shaped 50 Mbit/s lab link with our speedtest server behind it, built once.

    Yields measure(limits) -> (the test, the link's goodput limit in bit/s).
    """
    import subprocess
    import sys

    from tests.support.netlab import Lab, unavailable_reason

    if (why := unavailable_reason()) is not None:
        pytest.skip(why)
    with Lab(rate_mbit=50) as lab:
        srv = lab.popen(
            lab.server_ns,
            [sys.executable, "-m", "collector.speedtest_server", "--listen", f"{lab.server_ip}:8989"],
            cwd=str(http_engine.__file__).rsplit("/agent/", 1)[0],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert srv.stdout is not None and "listening" in srv.stdout.readline()

        def measure(limits: Limits) -> tuple[BandwidthTest, float]:
            with lab.inside(lab.client_ns):
                test = http_engine.measure(f"http://{lab.server_ip}:8989/", limits, threading.Event())
            return test, lab.goodput_limit_bps

        yield measure


@pytest.mark.netns
@pytest.mark.slow
def test_shaped_link_reads_within_5_percent_of_the_goodput_limit(shaped: Callable[..., Any]) -> None:
    """On a tbf-shaped 50 Mbit/s lab link both directions lie within ±5% of 0.956 × 50 Mbit/s."""
    test, limit = shaped(Limits())
    assert test.download_bps is not None and test.upload_bps is not None
    assert abs(test.download_bps / limit - 1) <= 0.05, test
    assert abs(test.upload_bps / limit - 1) <= 0.05, test
    assert not test.download_lower_bound and not test.upload_lower_bound, test


@pytest.mark.netns
def test_a_byte_limit_before_the_rate_settles_gives_a_flagged_lower_bound(shaped: Callable[..., Any]) -> None:
    """4 MB per direction is ~0.7 s at 50 Mbit/s, inside the ramp-up: each figure is "at least X"."""
    test, limit = shaped(Limits(max_bytes=4_000_000))
    assert test.download_lower_bound and test.upload_lower_bound, test
    for bps in (test.download_bps, test.upload_bps):
        # What crossed the link: no more than it carries, and well above a trickle.
        assert bps is not None and 0.3 * limit < bps < 1.03 * limit, test
    assert test.download_bytes <= 4_000_000 and test.upload_bytes <= 4_000_000


@pytest.mark.netns
def test_the_byte_cap_follows_the_lines_rate_and_a_capped_direction_is_a_lower_bound(
    shaped: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scaled down to the 50 Mbit/s link (6 MB/s): a 2 MB floor and 0.75 s of window. The cap grows
    past the floor with the rate (window start ~1.25 s, ~7 MB, plus ~4.5 MB), far below max_bytes,
    and stops each direction before the full rule (2 s of window): a flagged lower bound."""
    monkeypatch.setattr(estimator, "BASE_CAP_BYTES", 2_000_000)
    monkeypatch.setattr(estimator, "WINDOW_BUDGET_S", 0.75)
    test, limit = shaped(Limits(max_bytes=200_000_000))
    assert test.download_lower_bound and test.upload_lower_bound, test
    for bps, moved in ((test.download_bps, test.download_bytes), (test.upload_bps, test.upload_bytes)):
        assert bps is not None and 0.5 * limit < bps < 1.03 * limit, test
        assert 4_000_000 < moved < 16_000_000, test
