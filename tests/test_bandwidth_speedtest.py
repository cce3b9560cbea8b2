"""The speedtest-cli engine against tests/support/ookla_server.py, a local server speaking
speedtest.net's protocol.

speedtest.net is reached through `https_proxy`/`http_proxy` pointing at the local server, which
terminates the CONNECT tunnel's TLS with a certificate from a test CA named in SSL_CERT_FILE (the
library's HTTPS connections use Python's default context, which reads it). The lab test reaches it by
name instead, through /etc/netns hosts.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.bandwidth.engine import EngineError, Limits
from agent.bandwidth.speedtest_engine import measure
from tests.support.ookla_server import ListedServer, OoklaServer, make_tls

ROOT = Path(__file__).resolve().parent.parent
QUICK = Limits(max_duration_s=0.5, max_bytes=20_000_000)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    return make_tls(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def ookla(tls: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch) -> Iterator[OoklaServer]:
    ca, cert, key = tls
    with OoklaServer(tls=(cert, key)) as server:
        base = f"http://127.0.0.1:{server.port}"
        # Three servers at increasing distance from the client (Nam Định, 20.42 N 106.17 E).
        server.behaviour.servers = [
            ListedServer(id=7001, url=f"{base}/near/speedtest/upload.php", lat=20.5, lon=106.2),
            ListedServer(id=7002, url=f"{base}/mid/speedtest/upload.php", lat=21.0, lon=105.8),
            ListedServer(id=7003, url=f"{base}/far/speedtest/upload.php", lat=10.8, lon=106.7),
        ]
        for name in ("no_proxy", "NO_PROXY"):
            monkeypatch.delenv(name, raising=False)
        for name in ("http_proxy", "https_proxy"):
            monkeypatch.setenv(name, server.proxy_url)
        monkeypatch.setenv("SSL_CERT_FILE", str(ca))
        yield server


def test_full_test_maps_the_librarys_results(ookla: OoklaServer) -> None:
    """A test reports both directions, bytes within the byte limit, 8/8 streams and the idle ping."""
    seen: list[str] = []
    result = measure("", QUICK, threading.Event(), lambda phase, bps: seen.append(phase))
    assert result.engine == "speedtest"
    assert result.server in {"7001", "7002", "7003"}
    assert result.download_bps and result.upload_bps
    assert 0 < result.download_bytes <= QUICK.max_bytes and 0 < result.upload_bytes <= QUICK.max_bytes
    assert (result.download_streams, result.upload_streams) == (8, 8)
    assert result.latency_idle_s is not None and 0 < result.latency_idle_s < 1
    assert result.latency_loaded_s is None
    assert seen == ["download", "upload"]
    # secure=True: the configuration was fetched through a TLS tunnel, never in plain HTTP.
    assert ookla.requests[:2] == ["CONNECT www.speedtest.net:443", "GET /speedtest-config.php"]
    assert any("/near/speedtest/latency.txt" in r for r in ookla.requests)


def test_server_ids_pick_the_server(ookla: OoklaServer) -> None:
    """ "7003" tests against server 7003 even though it is the farthest."""
    result = measure("7003", QUICK, threading.Event())
    assert result.server == "7003"
    assert any("/far/speedtest/random" in r for r in ookla.requests)


def test_unknown_server_id_is_an_error(ookla: OoklaServer) -> None:
    """Ids that speedtest.net does not list fail as "error" naming the ids."""
    with pytest.raises(EngineError) as err:
        measure("1234,5678", QUICK, threading.Event())
    assert err.value.reason == "error" and "1234,5678" in err.value.detail


def test_refused_configuration_is_an_http_status(ookla: OoklaServer) -> None:
    """speedtest.net answering 403 is reason "http_status", saying speedtest.net refused."""
    ookla.behaviour.config_status = 403
    with pytest.raises(EngineError) as err:
        measure("", QUICK, threading.Event())
    assert err.value.reason == "http_status"
    assert "speedtest.net refused" in err.value.detail and "403" in err.value.detail
    assert err.value.partial is None


def test_empty_server_list_is_an_error(ookla: OoklaServer) -> None:
    """A server list with no servers fails clearly instead of measuring nothing."""
    ookla.behaviour.servers = []
    with pytest.raises(EngineError) as err:
        measure("", QUICK, threading.Event())
    assert err.value.reason == "error" and "no servers" in err.value.detail


def test_hanging_server_is_abandoned_as_timeout(ookla: OoklaServer) -> None:
    """A server that trickles one byte per 0.5 s is abandoned at the hard limit as "timeout"."""
    ookla.behaviour.hang = True
    started = time.monotonic()
    with pytest.raises(EngineError) as err:
        measure("", QUICK, threading.Event())
    assert err.value.reason == "timeout" and "contacting speedtest.net" in err.value.detail
    assert time.monotonic() - started < 30  # bounded (the limit here is 7 s), not the library's mercy


def test_upload_hang_keeps_the_download_as_partial(ookla: OoklaServer) -> None:
    """When only the upload hangs, the timeout's `partial` holds the measured download and no upload."""
    ookla.behaviour.hang_upload = True
    with pytest.raises(EngineError) as err:
        measure("", QUICK, threading.Event())
    assert err.value.reason == "timeout" and "during the upload" in err.value.detail
    partial = err.value.partial
    assert partial is not None and partial.download_bps and partial.download_bytes > 0
    assert partial.upload_bps is None and partial.upload_bytes == 0


def test_cancel_kills_the_test(ookla: OoklaServer) -> None:
    """Setting `cancelled` ends a hanging test at once as "timeout" (cancelled)."""
    ookla.behaviour.hang = True
    cancelled = threading.Event()
    threading.Timer(0.5, cancelled.set).start()
    with pytest.raises(EngineError) as err:
        measure("", QUICK, cancelled)
    assert err.value.reason == "timeout" and "cancelled" in err.value.detail


def test_untrusted_certificate_is_a_protocol_failure(
    ookla: OoklaServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A TLS certificate the client does not trust fails as "protocol", saying so."""
    other_ca, _, _ = make_tls(tmp_path / "other")
    monkeypatch.setenv("SSL_CERT_FILE", str(other_ca))
    with pytest.raises(EngineError) as err:
        measure("", QUICK, threading.Event())
    assert err.value.reason == "protocol" and "certificate" in err.value.detail


def test_proxy_refusing_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing listening where speedtest.net is reached gives reason "refused"."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: nothing listens there
    monkeypatch.setenv("https_proxy", f"http://127.0.0.1:{port}")
    with pytest.raises(EngineError) as err:
        measure("", QUICK, threading.Event())
    assert err.value.reason == "refused" and "speedtest.net" in err.value.detail


@pytest.mark.parametrize("server", ["abc", "12;34", "1234,", "http://x"])
def test_bad_server_strings_fail_clearly(server: str) -> None:
    """A server string that is not "" or comma-separated ids is an "error" before anything runs."""
    with pytest.raises(EngineError) as err:
        measure(server, QUICK, threading.Event())
    assert err.value.reason == "error" and "server ids" in err.value.detail


def _ookla_args(tls_dir: Path, url: str) -> list[str]:
    return [
        "--listen",
        "0.0.0.0:80",
        "--tls-listen",
        "0.0.0.0:443",
        "--tls-dir",
        str(tls_dir),
        "--server-url",
        url,
    ]


_IN_LAB = textwrap.dedent(
    """
    import json, sys, threading
    from agent.bandwidth.engine import EngineError, Limits
    from agent.bandwidth.speedtest_engine import measure
    try:
        r = measure("", Limits(max_duration_s=2), threading.Event())
        print(json.dumps({"ok": True, "down": r.download_bps, "up": r.upload_bps, "ping": r.latency_idle_s}))
    except EngineError as e:
        print(json.dumps({"ok": False, "reason": e.reason, "detail": e.detail}))
    """
)


@pytest.mark.netns
def test_lab_by_name_through_etc_netns_hosts(tls: tuple[Path, Path, Path]) -> None:
    """In a lab, speedtest.net names resolve to the lab server; without them it fails as "dns"."""
    from tests.support.netlab import Lab, unavailable_reason

    if (why := unavailable_reason()) is not None:
        pytest.skip(why)
    ca, _, _ = tls
    with Lab(rate_mbit=50, rtt_ms=10) as lab:
        url = f"http://{lab.server_ip}/speedtest/upload.php"
        server = lab.popen(
            lab.server_ns,
            [sys.executable, "-m", "tests.support.ookla_server", *_ookla_args(ca.parent, url)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert "listening" in server.stdout.readline()
        lab.hosts(lab.client_ns, {"www.speedtest.net": lab.server_ip, "c.speedtest.net": lab.server_ip})
        argv = ["env", f"SSL_CERT_FILE={ca}", sys.executable, "-c", _IN_LAB]
        ok = json.loads(lab.run(lab.client_ns, argv, timeout=60, cwd=ROOT).stdout)
        # The router namespace has no hosts entries; its resolver is its own empty loopback.
        no_names = json.loads(lab.run(lab.router_ns, argv, timeout=60, cwd=ROOT).stdout)
        limit = lab.goodput_limit_bps
    assert ok["ok"], ok
    # speedtest-cli counts ramp-up and, on upload, bytes still in socket buffers: loose bounds.
    assert 0.6 * limit <= ok["down"] <= 1.05 * limit
    assert 0.6 * limit <= ok["up"] <= 1.3 * limit
    assert 0.010 <= ok["ping"] <= 0.05
    assert no_names == {"ok": False, "reason": "dns", "detail": no_names["detail"]}
    assert "www.speedtest.net" in no_names["detail"]
