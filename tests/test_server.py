"""The /metrics endpoint: plain, basic auth, TLS and client certificates, against real HTTP clients."""

from __future__ import annotations

import base64
import gzip
import socket
import ssl
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Gauge

from agent.config import Exposition
from agent.schema import BasicAuth, Secret
from agent.server import MetricsServer
from tests.support.tls import openssl


def registry() -> CollectorRegistry:
    reg = CollectorRegistry()
    Gauge("hotspot_test_value", "A test value.", registry=reg).set(42)
    return reg


def healthy() -> tuple[bool, dict[str, object]]:
    return True, {"probes": {}}


@pytest.fixture
def serve() -> Iterator[object]:
    servers: list[MetricsServer] = []

    def start(exposition: Exposition) -> MetricsServer:
        server = MetricsServer(exposition, registry(), healthy, listen="127.0.0.1:0")
        server.start()
        servers.append(server)
        return server

    yield start
    for s in servers:
        s.stop()


def get(
    url: str, headers: dict[str, str] | None = None, context: ssl.SSLContext | None = None
) -> tuple[int, str]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5, context=context) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_plain_metrics_and_healthz(serve) -> None:
    """/metrics serves the registry in text format; /healthz answers JSON; others 404."""
    server = serve(Exposition())
    host, port = server.address
    status, body = get(f"http://{host}:{port}/metrics")
    assert status == 200 and "hotspot_test_value 42.0" in body
    status, body = get(f"http://{host}:{port}/healthz")
    assert status == 200 and '"status": "ok"' in body
    assert get(f"http://{host}:{port}/nope")[0] == 404


def test_basic_auth(serve) -> None:
    """With basic auth on, a request without or with wrong credentials gets 401."""
    server = serve(Exposition(basic_auth=BasicAuth("prometheus", Secret("pa55"))))
    url = "http://{}:{}/metrics".format(*server.address)
    assert get(url)[0] == 401
    wrong = base64.b64encode(b"prometheus:nope").decode()
    assert get(url, {"Authorization": f"Basic {wrong}"})[0] == 401
    right = base64.b64encode(b"prometheus:pa55").decode()
    status, body = get(url, {"Authorization": f"Basic {right}"})
    assert status == 200 and "hotspot_test_value" in body


def test_metrics_negotiates_openmetrics_and_gzip(serve) -> None:
    """A scraper asking for OpenMetrics gets it; one accepting gzip (Prometheus does) gets it gzipped."""
    server = serve(Exposition())
    url = "http://{}:{}/metrics".format(*server.address)
    req = urllib.request.Request(url, headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.headers["Content-Type"].startswith("application/openmetrics-text")
        assert resp.read().decode().endswith("# EOF\n")
    req = urllib.request.Request(url, headers={"Accept-Encoding": "gzip"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.headers["Content-Encoding"] == "gzip"
        assert "hotspot_test_value 42.0" in gzip.decompress(resp.read()).decode()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=test-ca",
        "-keyout",
        str(d / "ca.key"),
        "-out",
        str(d / "ca.pem"),
    )
    for name, cn in (("server", "127.0.0.1"), ("client", "prometheus")):
        openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            f"/CN={cn}",
            "-keyout",
            str(d / f"{name}.key"),
            "-out",
            str(d / f"{name}.csr"),
        )
        ext = d / f"{name}.ext"
        ext.write_text("subjectAltName=IP:127.0.0.1\n")
        openssl(
            "x509",
            "-req",
            "-in",
            str(d / f"{name}.csr"),
            "-CA",
            str(d / "ca.pem"),
            "-CAkey",
            str(d / "ca.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            str(ext),
            "-out",
            str(d / f"{name}.pem"),
        )
    return d


def test_tls_and_client_certificates(serve, pki: Path) -> None:
    """With TLS and a client CA, only clients with a certificate from that CA are served."""
    server = serve(
        Exposition(
            tls_cert_file=str(pki / "server.pem"),
            tls_key_file=str(pki / "server.key"),
            client_ca_file=str(pki / "ca.pem"),
        )
    )
    url = "https://{}:{}/metrics".format(*server.address)
    ctx = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    with pytest.raises((urllib.error.URLError, ssl.SSLError, ConnectionResetError)):
        get(url, context=ctx)  # no client certificate
    ctx.load_cert_chain(str(pki / "client.pem"), str(pki / "client.key"))
    status, body = get(url, context=ctx)
    assert status == 200 and "hotspot_test_value" in body


def test_tls_handshake_failure_does_not_stop_server(serve, pki: Path) -> None:
    """A plain-HTTP client on the TLS port fails alone; the server keeps serving."""
    server = serve(Exposition(tls_cert_file=str(pki / "server.pem"), tls_key_file=str(pki / "server.key")))
    host, port = server.address
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        get(f"http://{host}:{port}/metrics")
    ctx = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    assert get(f"https://{host}:{port}/metrics", context=ctx)[0] == 200


def test_silent_tls_connections_hold_no_thread_and_block_no_scrape(serve, pki: Path) -> None:
    """100 connections that never finish a TLS handshake: no thread each, and a scrape is served."""
    server = serve(Exposition(tls_cert_file=str(pki / "server.pem"), tls_key_file=str(pki / "server.key")))
    host, port = server.address
    before = threading.active_count()
    silent = [socket.create_connection((host, port), timeout=5) for _ in range(100)]
    try:
        for s in silent[:50]:
            s.sendall(b"\x16\x03\x01\x00")  # the start of a ClientHello, never finished
        ctx = ssl.create_default_context(cafile=str(pki / "ca.pem"))
        status, body = get(f"https://{host}:{port}/metrics", context=ctx)
        assert status == 200 and "hotspot_test_value" in body
        assert threading.active_count() <= before + 2  # the scrape's worker, at most
    finally:
        for s in silent:
            s.close()
