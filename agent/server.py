"""The agent's HTTP endpoint: /metrics (Prometheus text format) and /healthz.

Optional TLS (with client-certificate auth) and HTTP basic auth, both off by default.
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
import socket
import ssl
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from agent.config import Exposition
from agent.schema import split_host_port

log = logging.getLogger(__name__)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    tls: ssl.SSLContext | None = None

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = super().get_request()
        if self.tls is not None:
            # The handshake happens on first read, in the connection's own thread, so a slow or
            # silent client cannot stall the accept loop.
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up or fails the TLS handshake is its problem, not a traceback in our log.
        log.info("connection from %s failed: %s", client_address[0], sys.exc_info()[1])


class _Server6(_Server):
    address_family = socket.AF_INET6


class MetricsServer:
    """Serves the registry; `health` returns (healthy, details) for /healthz."""

    def __init__(
        self,
        exposition: Exposition,
        registry: CollectorRegistry,
        health: Callable[[], tuple[bool, dict[str, Any]]],
        listen: str | None = None,
    ) -> None:
        host, port = split_host_port(listen or exposition.listen)
        auth = exposition.basic_auth
        expected = (
            "Basic " + base64.b64encode(f"{auth.username}:{auth.password.reveal()}".encode()).decode()
            if auth
            else None
        )

        class Handler(BaseHTTPRequestHandler):
            server_version = "hotspot-agent"
            timeout = 30  # seconds a client may take to send its request

            def do_GET(self) -> None:
                if expected is not None:
                    given = self.headers.get("Authorization", "")
                    if not hmac.compare_digest(given.encode(), expected.encode()):
                        self.send_response(401)
                        self.send_header("WWW-Authenticate", 'Basic realm="hotspot-agent"')
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._reply(200, CONTENT_TYPE_LATEST, generate_latest(registry))
                elif path == "/healthz":
                    ok, details = health()
                    body = json.dumps({"status": "ok" if ok else "unhealthy", **details}, indent=1).encode()
                    self._reply(200 if ok else 503, "application/json", body)
                elif path == "/":
                    self._reply(200, "text/html; charset=utf-8", b'<a href="/metrics">metrics</a>\n')
                else:
                    self._reply(404, "text/plain; charset=utf-8", b"not found\n")

            def _reply(self, status: int, content_type: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # scrapes are not news
                log.debug("%s " + format, self.client_address[0], *args)

        server_class = _Server6 if ":" in host else _Server
        self._httpd = server_class((host or "0.0.0.0", port), Handler)
        if exposition.tls_cert_file:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            context.load_cert_chain(exposition.tls_cert_file, exposition.tls_key_file)
            if exposition.client_ca_file:
                context.load_verify_locations(exposition.client_ca_file)
                context.verify_mode = ssl.CERT_REQUIRED
            self._httpd.tls = context
        self.scheme = "https" if exposition.tls_cert_file else "http"
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="metrics-server", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._httpd.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
