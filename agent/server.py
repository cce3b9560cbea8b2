"""The agent's HTTP endpoint: /metrics (Prometheus text format) and /healthz.

Optional TLS (with client-certificate auth) and HTTP basic auth, both off by default. The port
faces a public wifi LAN, so every connection is bounded before auth is checked: the request head
in 10 s and 16 KiB, 256 open connections, a backlog of 512 (agent.http_guard, docs/servers.md).
/metrics speaks Prometheus text or OpenMetrics, gzipped when asked, via prometheus_client.
"""

from __future__ import annotations

import base64
import gzip
import hmac
import json
import logging
import threading
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from agent.config import Exposition
from agent.http_guard import GuardedHandler, GuardedServer, Limits, server_tls_context
from agent.schema import split_host_port

log = logging.getLogger(__name__)

# The site's LAN is a public wifi network: every connection is bounded (agent.http_guard). A scrape
# takes milliseconds, so a few workers serve a burst of hundreds from the queue and the backlog.
LIMITS = Limits(max_connections=256, max_workers=4, head_timeout_s=10.0, idle_timeout_s=30.0)


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

        class Handler(GuardedHandler):
            server_version = "hotspot-agent"

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
                    # prometheus_client's own negotiation: OpenMetrics when the scraper asks for it.
                    encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
                    body = encoder(registry)
                    if "gzip" in self.headers.get("Accept-Encoding", ""):  # Prometheus asks for it
                        self._reply(200, content_type, gzip.compress(body, compresslevel=1), "gzip")
                    else:
                        self._reply(200, content_type, body)
                elif path == "/healthz":
                    ok, details = health()
                    body = json.dumps({"status": "ok" if ok else "unhealthy", **details}, indent=1).encode()
                    self._reply(200 if ok else 503, "application/json", body)
                elif path == "/":
                    self._reply(200, "text/html; charset=utf-8", b'<a href="/metrics">metrics</a>\n')
                else:
                    self._reply(404, "text/plain; charset=utf-8", b"not found\n")

            def _reply(self, status: int, content_type: str, body: bytes, encoding: str = "") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                if encoding:
                    self.send_header("Content-Encoding", encoding)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # scrapes are not news
                log.debug("%s " + format, self.client_address[0], *args)

        tls = None
        if exposition.tls_cert_file:
            tls = server_tls_context(
                exposition.tls_cert_file, exposition.tls_key_file, exposition.client_ca_file
            )
        self._httpd = GuardedServer((host or "0.0.0.0", port), Handler, LIMITS, tls)
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
