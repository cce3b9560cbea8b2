"""A local server speaking the speedtest.net protocol as speedtest-cli 2.1.3 uses it (no internet here).

It answers, on one plain-HTTP port and optionally one TLS port:
  /speedtest-config.php            the configuration XML (client position, thread counts, test length)
  /speedtest-servers[-static].php  the server list XML (`servers`: id, url, position)
  .../latency.txt                  "test=test"
  .../random{N}x{N}.jpg            N×N "image": bytes close to the real files' sizes
  .../upload.php (POST)            reads the body, answers "size=N"
Requests in proxy form ("GET http://www.speedtest.net/... HTTP/1.1") are served directly, and
CONNECT host:443 is answered by terminating TLS here with a certificate from a test CA: so
`http_proxy`/`https_proxy` pointing at this server reach it without any name resolution. Inside a
lab namespace, /etc/netns hosts entries and the TLS port (443) do the same job.

Behaviours for failure tests: `config_status=403` (what speedtest.net answers today to plain HTTP),
`servers=[]` (an empty list), `hang=True` (a request gets its headers and then one byte every
0.5 s, so no socket timeout ever fires; it stops when the server stops), `hang_upload=True`
(uploads are neither read nor answered).

Run by hand / from bench scripts:
    python -m tests.support.ookla_server --listen 0.0.0.0:80 --tls-listen 0.0.0.0:443 --tls-dir DIR \\
        --server-url http://10.77.2.2/speedtest/upload.php
(`--tls-dir` holds ca.pem, server.pem and server.key made by `make_tls`).
"""

from __future__ import annotations

import argparse
import re
import socket
import socketserver
import ssl
import subprocess
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from agent.bandwidth.speedtest_engine import JPG_BYTES  # the sizes of the real random{N}x{N}.jpg files

SPEEDTEST_NAMES = ("www.speedtest.net", "c.speedtest.net")
CHUNK = bytes(range(256)) * 4096  # 1 MiB written again and again: the body's content does not matter


def jpg_bytes(n: int) -> int:
    """Bytes of random{n}x{n}.jpg: the real size where known, else the same bytes per pixel."""
    return JPG_BYTES.get(n, round(n * n * 1.977))


@dataclass(frozen=True)
class ListedServer:
    """One entry of the server list."""

    id: int
    url: str  # http://HOST[:PORT]/speedtest/upload.php
    lat: float = 21.03
    lon: float = 105.85
    name: str = "Hà Nội"
    sponsor: str = "Lab"


@dataclass
class Behaviour:
    """What the server answers; tests change it between runs."""

    servers: list[ListedServer] = field(default_factory=list)
    config_status: int = 200
    hang: bool = False
    hang_upload: bool = False  # uploads are never read nor answered (the download works)
    client_lat: float = 20.42  # Nam Định
    client_lon: float = 106.17


def make_tls(directory: Path) -> tuple[Path, Path, Path]:
    """A test CA and a certificate for the speedtest.net names: (ca.pem, server.pem, server.key)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca, ca_key = directory / "ca.pem", directory / "ca.key"
    cert, key, csr = directory / "server.pem", directory / "server.key", directory / "server.csr"
    ext = directory / "server.ext"
    ext.write_text(
        "subjectAltName=" + ",".join(f"DNS:{n}" for n in SPEEDTEST_NAMES) + "\n"
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n"
    )
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    steps = [
        ["openssl", "req", "-x509", *ec, "-keyout", ca_key, "-out", ca, "-days", "2", "-subj", "/CN=test CA"],
        ["openssl", "req", *ec, "-keyout", key, "-out", csr, "-subj", f"/CN={SPEEDTEST_NAMES[0]}"],
        ["openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-days", "2"],
    ]
    steps[-1] += ["-out", cert, "-extfile", ext]
    for step in steps:
        subprocess.run([str(a) for a in step], check=True, capture_output=True)
    return ca, cert, key


class OoklaServer:
    """The server: `start()`, use `.port` / `.tls_port` / `.proxy_url`, `stop()` (or a with-block)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: tuple[Path, Path] | None = None,  # (server.pem, server.key): also serve TLS
        tls_port: int = 0,
        behaviour: Behaviour | None = None,
    ) -> None:
        self.behaviour = behaviour or Behaviour()
        self.stopping = threading.Event()
        self.requests: list[str] = []  # "METHOD path" of every request, for tests to inspect
        self._ctx: ssl.SSLContext | None = None
        if tls is not None:
            self._ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._ctx.load_cert_chain(str(tls[0]), str(tls[1]))
        self._plain = _Server((host, port), _Handler, self)
        self._tls = _Server((host, tls_port), _Handler, self, tls=True) if self._ctx else None
        self._threads: list[threading.Thread] = []

    @property
    def port(self) -> int:
        return int(self._plain.server_address[1])

    @property
    def tls_port(self) -> int:
        assert self._tls is not None
        return int(self._tls.server_address[1])

    @property
    def proxy_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> OoklaServer:
        for srv in (self._plain, self._tls):
            if srv is not None:
                t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
                t.start()
                self._threads.append(t)
        return self

    def stop(self) -> None:
        self.stopping.set()
        for srv in (self._plain, self._tls):
            if srv is not None:
                srv.shutdown()
                srv.server_close()

    def __enter__(self) -> OoklaServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def config_xml(self, client_ip: str) -> bytes:
        b = self.behaviour
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n<settings>\n'
            f'<client ip="{client_ip}" lat="{b.client_lat}" lon="{b.client_lon}" isp="Lab ISP" '
            'isprating="3.7" rating="0" ispdlavg="0" ispulavg="0" loggedin="0" country="VN"/>\n'
            '<server-config threadcount="4" ignoreids="" notonmap="" forcepingid="" preferredserverid=""/>\n'
            '<download testlength="10" initialtest="250K" mintestsize="250K" threadsperurl="4"/>\n'
            '<upload testlength="10" ratio="5" initialtest="0" mintestsize="32K" threads="2" '
            'maxchunksize="512K" maxchunkcount="50" threadsperurl="4"/>\n'
            "</settings>\n"
        ).encode()

    def servers_xml(self) -> bytes:
        rows = [
            f'<server url="{s.url}" lat="{s.lat}" lon="{s.lon}" name="{s.name}" country="Vietnam" '
            f'cc="VN" sponsor="{s.sponsor}" id="{s.id}" host="{urlsplit(s.url).netloc}"/>'
            for s in self.behaviour.servers
        ]
        body = '<?xml version="1.0" encoding="UTF-8"?>\n<settings>\n<servers>\n'
        return (body + "\n".join(rows) + "\n</servers>\n</settings>\n").encode()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, addr: tuple[str, int], handler: Any, owner: OoklaServer, tls: bool = False) -> None:
        self.owner = owner
        self.tls = tls
        super().__init__(addr, handler)

    def get_request(self) -> tuple[Any, Any]:
        conn, addr = super().get_request()
        if self.tls and self.owner._ctx is not None:
            conn = self.owner._ctx.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
        return conn, addr


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read .requests instead
        pass

    def setup(self) -> None:
        super().setup()
        if isinstance(self.connection, ssl.SSLSocket):
            try:
                self.connection.do_handshake()
            except (ssl.SSLError, OSError):
                self.close_connection = True

    def finish(self) -> None:
        super().finish()
        # After a CONNECT the handler speaks through its own TLS socket, which socketserver (closing
        # the accepted socket) does not know of.
        self.connection.close()

    def do_CONNECT(self) -> None:
        owner = self.server.owner
        owner.requests.append(f"CONNECT {self.path}")
        if owner._ctx is None:
            self.send_error(405, "no TLS here")
            return
        self.send_response(200, "Connection established")
        self.end_headers()
        self.wfile.flush()
        # Terminate the tunnel's TLS here: the client trusts the test CA (SSL_CERT_FILE).
        try:
            tls = owner._ctx.wrap_socket(self.connection, server_side=True)
        except (ssl.SSLError, OSError):
            self.close_connection = True
            return
        self.connection = self.request = tls
        self.rfile = tls.makefile("rb")
        self.wfile = socketserver._SocketWriter(tls)  # type: ignore[attr-defined]
        self.close_connection = False

    def do_GET(self) -> None:
        self._answer(upload=False)

    def do_POST(self) -> None:
        self._answer(upload=True)

    def _answer(self, upload: bool) -> None:
        owner = self.server.owner
        path = urlsplit(self.path).path
        owner.requests.append(f"{self.command} {path}")
        if owner.behaviour.hang:
            self._trickle()
            return
        if path.endswith("/speedtest-config.php"):
            if owner.behaviour.config_status != 200:
                self._send(owner.behaviour.config_status, b"Forbidden\n")
            else:
                self._send(200, owner.config_xml(self.client_address[0]), "text/xml")
        elif re.search(r"/speedtest-servers(-static)?\.php$", path):
            self._send(200, owner.servers_xml(), "text/xml")
        elif path.endswith("/latency.txt"):
            self._send(200, b"test=test")
        elif m := re.search(r"/random(\d+)x\1\.jpg$", path):
            self._send_image(jpg_bytes(int(m.group(1))))
        elif path.endswith("/upload.php") and upload and owner.behaviour.hang_upload:
            owner.stopping.wait(60)
            self.close_connection = True
        elif path.endswith("/upload.php") and upload:
            self._receive_upload()
        else:
            self._send(404, b"not found\n")

    def _send(self, status: int, body: bytes, ctype: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _send_image(self, size: int) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(size))
        self.end_headers()
        left = size
        view = memoryview(CHUNK)
        try:
            while left > 0 and not self.server.owner.stopping.is_set():
                n = min(left, len(CHUNK))
                self.wfile.write(view[:n])
                left -= n
        except OSError:  # the client stops reading when its test time is up
            self.close_connection = True

    def _receive_upload(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        got = 0
        try:
            while got < length:
                chunk = self.rfile.read(min(65536, length - got))
                if not chunk:
                    break
                got += len(chunk)
        except OSError:
            self.close_connection = True
            return
        self._send(200, f"size={got}".encode())

    def _trickle(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "100000")
        self.end_headers()
        try:
            while not self.server.owner.stopping.wait(0.5):
                self.wfile.write(b" ")
                self.wfile.flush()
        except OSError:
            pass
        self.close_connection = True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:8080", help="HOST:PORT for plain HTTP")
    parser.add_argument("--tls-listen", help="HOST:PORT for HTTPS (needs --tls-dir)")
    parser.add_argument("--tls-dir", type=Path, help="directory with server.pem and server.key")
    parser.add_argument("--server-url", action="append", default=[], help="a test server's upload.php URL")
    args = parser.parse_args()
    host, _, port = args.listen.rpartition(":")
    tls = None
    tls_port = 0
    if args.tls_listen:
        tls_host, _, tls_port_text = args.tls_listen.rpartition(":")
        if tls_host != host:
            parser.error("--tls-listen must use the same host as --listen")
        tls = (args.tls_dir / "server.pem", args.tls_dir / "server.key")
        tls_port = int(tls_port_text)
    servers = [ListedServer(id=1000 + i, url=url) for i, url in enumerate(args.server_url)]
    server = OoklaServer(host, int(port), tls, tls_port, Behaviour(servers=servers))
    server.start()
    print(f"listening on {host}:{server.port}" + (f" and TLS {server.tls_port}" if tls else ""), flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    socket.setdefaulttimeout(60)  # a stuck client never pins a thread for long
    main()
