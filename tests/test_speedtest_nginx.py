"""The documented nginx front (collector/examples/speedtest-server.nginx.conf) before a real test server.

Real nginx (Debian's nginx-light) on loopback with a self-signed certificate: HTTPS download, a
chunked upload streamed through, getIP answering the client's own address, and the per-address
connection limit answering 429.
"""

from __future__ import annotations

import http.client
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from collector.speedtest_server import MIB, ServerSettings, SpeedtestServer
from tests.support.ports import free_port
from tests.support.speedtest import metric, start
from tests.support.tls import openssl

ROOT = Path(__file__).resolve().parent.parent
SITE = ROOT / "collector" / "examples" / "speedtest-server.nginx.conf"

pytestmark = pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx not installed")


def start_nginx(tmp_path: Path, upstream: int) -> tuple[subprocess.Popen[str] | None, int, int]:
    """nginx with the shipped site config on two free loopback ports: (process, HTTPS, HTTP port)."""
    port, plain_port = free_port(), free_port()
    site = (
        SITE.read_text()
        .replace("listen 443 ssl;", f"listen 127.0.0.1:{port} ssl;")
        .replace("listen [::]:443 ssl;", "")
        .replace("listen 8989;", f"listen 127.0.0.1:{plain_port};")
        .replace("listen [::]:8989;", "")
        .replace("127.0.0.1:8990", f"127.0.0.1:{upstream}")
        .replace("/etc/ssl/speedtest/fullchain.pem", str(tmp_path / "cert.pem"))
        .replace("/etc/ssl/speedtest/privkey.pem", str(tmp_path / "key.pem"))
    )
    (tmp_path / "site.conf").write_text(site)
    temp = "".join(f"{kind}_temp_path {tmp_path}/{kind};\n" for kind in ("client_body", "proxy"))
    temp += "".join(f"{kind}_temp_path {tmp_path}/{kind};\n" for kind in ("fastcgi", "uwsgi", "scgi"))
    (tmp_path / "nginx.conf").write_text(
        f"worker_processes 1;\npid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\n"
        "events { worker_connections 512; }\n"
        f"http {{\naccess_log off;\n{temp}include {tmp_path}/site.conf;\n}}\n"
    )
    conf, log = str(tmp_path / "nginx.conf"), str(tmp_path / "error.log")
    nginx = subprocess.Popen(
        ["nginx", "-e", log, "-p", str(tmp_path), "-c", conf, "-g", "daemon off;"],
        stderr=subprocess.DEVNULL,
        text=True,
    )
    for _ in range(200):
        if nginx.poll() is not None:
            return None, port, plain_port
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return nginx, port, plain_port
        except OSError:
            time.sleep(0.05)
    nginx.kill()
    nginx.wait(10)
    return None, port, plain_port


@pytest.fixture
def front(tmp_path: Path) -> Iterator[tuple[SpeedtestServer, int, int, ssl.SSLContext]]:
    server = start(ServerSettings(max_connections=1024, max_connections_per_ip=1024))
    key, cert = str(tmp_path / "key.pem"), str(tmp_path / "cert.pem")
    san = "subjectAltName=IP:127.0.0.1"
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
            "-addext", san, "-keyout", key, "-out", cert)  # fmt: skip
    for _attempt in range(3):  # a port picked free may be taken before nginx binds it
        nginx, port, plain_port = start_nginx(tmp_path, server.server_address[1])
        if nginx is not None:
            break
    else:
        raise RuntimeError(f"nginx did not start: {(tmp_path / 'error.log').read_text()}")
    yield server, port, plain_port, ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))
    nginx.terminate()
    nginx.wait(10)
    server.shutdown()
    server.server_close()


Front = tuple[SpeedtestServer, int, int, ssl.SSLContext]  # server, HTTPS port, HTTP port, client TLS


def https(port: int, ctx: ssl.SSLContext, source: str = "127.0.0.1") -> http.client.HTTPSConnection:
    return http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10, source_address=(source, 0))


def test_download_and_chunked_upload_stream_through(
    front: Front,
) -> None:
    """A download over HTTPS, then a chunked upload on the same connection, and a plain-HTTP
    download, reach the server whole."""
    server, port, plain_port, ctx = front
    c = https(port, ctx)
    c.request("GET", "/garbage.php?ckSize=3")
    resp = c.getresponse()
    assert resp.status == 200 and len(resp.read()) == 3 * MIB
    c.request("POST", "/empty.php", body=iter([b"a" * MIB, b"b" * 12345]), encode_chunked=True)
    resp = c.getresponse()
    assert resp.status == 200
    resp.read()
    c.close()
    plain = http.client.HTTPConnection("127.0.0.1", plain_port, timeout=10)  # the agents' way in
    plain.request("GET", "/garbage?ckSize=1")
    resp = plain.getresponse()
    assert resp.status == 200 and len(resp.read()) == MIB
    plain.close()
    assert metric(server, "hotspot_speedtest_server_received_bytes_total") == MIB + 12345
    assert metric(server, "hotspot_speedtest_server_sent_bytes_total") == 4 * MIB


def test_getip_is_the_clients_address_and_metrics_are_not_public(
    front: Front,
) -> None:
    _server, port, _plain_port, ctx = front
    c = https(port, ctx, source="127.0.0.5")
    c.request("GET", "/backend/getIP.php")
    resp = c.getresponse()
    assert resp.status == 200 and b'"processedString": "127.0.0.5"' in resp.read()
    c.request("GET", "/metrics")
    resp = c.getresponse()
    assert resp.status == 404
    resp.read()
    c.close()


def test_per_address_connection_limit_answers_429(front: Front) -> None:
    """32 downloads in progress from one address: a 33rd request from it gets 429, another address 200."""
    _server, port, _plain_port, ctx = front
    held = []
    for _ in range(32):
        c = https(port, ctx, source="127.0.0.6")
        c.request("GET", "/garbage.php?ckSize=100")
        assert c.getresponse().status == 200  # and its body left unread: the request stays active
        held.append(c)
    try:
        over = https(port, ctx, source="127.0.0.6")
        held.append(over)
        over.request("GET", "/empty.php")
        assert over.getresponse().status == 429
        other = https(port, ctx, source="127.0.0.7")
        held.append(other)
        other.request("GET", "/empty.php")
        assert other.getresponse().status == 200
    finally:
        for c in held:
            c.close()
