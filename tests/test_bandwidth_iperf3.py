"""The iperf3 engine against a real `iperf3 -s`: on loopback and across the shaped lab link."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from agent.bandwidth.engine import EngineError, Limits
from agent.bandwidth.iperf3_engine import measure, parse_report, parse_server
from tests.support.netlab import Lab
from tests.support.ports import free_port

needs_iperf3 = pytest.mark.skipif(shutil.which("iperf3") is None, reason="iperf3 is not installed")


def _wait_listening(port: int, netns: list[str] | None = None) -> None:
    # Watch the socket table rather than connect: iperf3 -s treats any connection as a client.
    argv = [*(netns or []), "ss", "-Hltn", f"sport = :{port}"]
    for _ in range(100):
        if subprocess.run(argv, capture_output=True, text=True).stdout.strip():
            return
        time.sleep(0.02)
    raise RuntimeError(f"iperf3 -s did not listen on {port}")


@pytest.fixture
def iperf3_server() -> Iterator[int]:
    port = free_port()
    proc = subprocess.Popen(
        ["iperf3", "-s", "-B", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_listening(port)
        yield port
    finally:
        proc.kill()
        proc.wait()


@needs_iperf3
def test_loopback_measures_both_directions(iperf3_server: int) -> None:
    """Both directions report a rate, the bytes moved agree with rate × time, streams as asked."""
    result = measure(f"127.0.0.1:{iperf3_server}", Limits(max_duration_s=1, streams=2), threading.Event())
    assert result.engine == "iperf3" and result.server == f"127.0.0.1:{iperf3_server}"
    assert result.download_bps and result.upload_bps
    assert result.download_streams == result.upload_streams == 2
    # One second per direction, no warm-up: the bytes moved are the rate's worth (± the tail).
    assert 0.8 <= result.download_bytes * 8 / result.download_bps <= 1.3
    assert 0.8 <= result.upload_bytes * 8 / result.upload_bps <= 1.3
    assert result.latency_idle_s is None  # iperf3 measures none
    assert result.latency_loaded_s is not None and result.latency_loaded_s < 0.05


@needs_iperf3
def test_busy_server_is_refused_with_iperf3s_words(iperf3_server: int) -> None:
    """A server already running a test makes the engine fail as "refused", quoting iperf3."""
    other = subprocess.Popen(
        ["iperf3", "-c", "127.0.0.1", "-p", str(iperf3_server), "-t", "8", "-b", "1M"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.5)  # let the other client start its test
        with pytest.raises(EngineError) as err:
            measure(f"127.0.0.1:{iperf3_server}", Limits(max_duration_s=1), threading.Event())
    finally:
        other.kill()
        other.wait()
    assert err.value.reason == "refused"
    assert "busy" in err.value.detail and err.value.detail.startswith("download:")
    assert err.value.partial is None


@needs_iperf3
def test_nothing_listening_is_refused() -> None:
    """A port with no iperf3 server gives reason "refused" and iperf3's own message."""
    with pytest.raises(EngineError) as err:
        measure(f"127.0.0.1:{free_port()}", Limits(max_duration_s=1), threading.Event())
    assert err.value.reason == "refused"
    assert "Connection refused" in err.value.detail


@needs_iperf3
def test_cancel_stops_the_test(iperf3_server: int) -> None:
    """Setting `cancelled` mid-test ends it as a timeout with no result."""
    cancelled = threading.Event()
    threading.Timer(0.5, cancelled.set).start()
    with pytest.raises(EngineError) as err:
        measure(f"127.0.0.1:{iperf3_server}", Limits(max_duration_s=10), cancelled)
    assert err.value.reason == "timeout" and "cancelled" in err.value.detail


def test_missing_binary_is_unsupported(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """With no iperf3 on PATH the engine says "unsupported" instead of failing obscurely."""
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(EngineError) as err:
        measure("127.0.0.1", Limits(), threading.Event())
    assert err.value.reason == "unsupported" and "iperf3" in err.value.detail


@pytest.mark.parametrize(
    ("server", "expected"),
    [
        ("10.0.0.5", ("10.0.0.5", 5201)),
        ("iperf.example.net:5300", ("iperf.example.net", 5300)),
        ("[2001:db8::1]:5202", ("2001:db8::1", 5202)),
        ("2001:db8::1", ("2001:db8::1", 5201)),
    ],
)
def test_server_strings(server: str, expected: tuple[str, int]) -> None:
    """HOST, HOST:PORT, [V6]:PORT and a bare IPv6 address are all accepted."""
    assert parse_server(server) == expected


@pytest.mark.parametrize("server", ["", "host:0", "host:99999", "host:http", "[::1]x"])
def test_bad_server_strings_fail_clearly(server: str) -> None:
    """A malformed server string is an "error" naming the expected form, before anything runs."""
    with pytest.raises(EngineError) as err:
        measure(server, Limits(), threading.Event())
    assert err.value.reason == "error" and "HOST[:PORT]" in err.value.detail


def test_report_error_field_and_garbage() -> None:
    """iperf3's JSON "error" field becomes the detail; output that is not JSON is "protocol"."""
    # Captured from iperf3 3.12 with nothing listening.
    refused = '{"start": {"connected": [], "version": "iperf 3.12"}, "intervals": [], "end": {},\n'
    refused += ' "error": "unable to connect to server: Connection refused"}'
    with pytest.raises(EngineError) as err:
        parse_report(refused)
    assert err.value.reason == "refused" and err.value.detail.endswith("Connection refused")
    with pytest.raises(EngineError) as err:
        parse_report("iperf3: error - unable to resolve host", "")
    assert err.value.reason == "protocol" and "unable to resolve" in err.value.detail


@needs_iperf3
@pytest.mark.netns
def test_lab_link_reads_the_goodput_limit(lab: Callable[..., Lab]) -> None:
    """Across a 50 Mbit/s lab link both directions read within 3% of the goodput limit."""
    link = lab(rate_mbit=50, rtt_ms=10)
    link.popen(link.server_ns, ["iperf3", "-s"], stdout=subprocess.DEVNULL)
    _wait_listening(5201, ["ip", "netns", "exec", link.server_ns])
    with link.inside(link.client_ns):
        result = measure(link.server_ip, Limits(max_duration_s=3), threading.Event())
    limit = link.goodput_limit_bps
    assert result.download_bps is not None and result.upload_bps is not None
    assert abs(result.download_bps / limit - 1) <= 0.03
    assert abs(result.upload_bps / limit - 1) <= 0.03
    # The warm-up second is excluded from the rate but its bytes are counted.
    assert result.download_bytes * 8 > result.download_bps * 2
    # Under load the RTT is the 10 ms path plus the shaper's queue (at most 20 ms) and its burst
    # (15,140 B = 2.4 ms at 50 Mbit/s), plus up to ~2 ms of the user-space delay line's scheduling.
    assert result.latency_loaded_s is not None and 0.010 <= result.latency_loaded_s <= 0.035
