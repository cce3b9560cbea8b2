"""A local web server answering by path the way the internet and captive portals do (HTTP probe tests)."""

from __future__ import annotations

import contextlib
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from agent.probes import http
from tests.support.paths import ROOT

PORTAL_PAGE = (ROOT / "tests" / "fixtures" / "http" / "portal-login.html").read_bytes()


class Handler(BaseHTTPRequestHandler):
    """Answers by path the way the internet and captive portals do."""

    def do_GET(self) -> None:
        self.server.requests.append((self.path, dict(self.headers)))  # type: ignore[attr-defined]
        if self.path == "/generate_204":
            self.send_response(204)
            self.end_headers()
        elif self.path == "/hijacked":  # a portal redirecting the check to its login page
            self.reply(302, b"", Location="http://portal.example/login?orig=generate_204")
        elif self.path == "/portal-page":  # a portal serving its login page in place of the 204
            self.reply(200, PORTAL_PAGE, **{"Content-Type": "text/html; charset=utf-8"})
        elif self.path == "/empty-200":
            self.reply(200, b"")
        elif self.path == "/auth-required":
            self.reply(511, b"<html>log in first</html>")
        elif self.path == "/error":
            self.reply(500, b"oops")
        elif self.path == "/missing":
            self.reply(404, b"not here")
        elif self.path == "/slow":
            self.server.release.wait(10)  # type: ignore[attr-defined]  # set when the server stops
            self.reply(200, b"late")
        elif self.path == "/huge":
            self.send_response(200)
            self.send_header("Content-Length", str(3 * http.MAX_BODY_BYTES))
            self.end_headers()
            with contextlib.suppress(OSError):  # the probe stops reading after its cap
                for _ in range(3 * http.MAX_BODY_BYTES // 65536):
                    self.wfile.write(b"x" * 65536)
        elif self.path == "/short":
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"only a little")
            self.close_connection = True
        else:
            self.reply(200, b"<html>home</html>", **{"Content-Type": "text/html"})

    def reply(self, status: int, body: bytes, **headers: str) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients that stop reading early (the body cap, TLS failures) are what the tests do


@contextlib.contextmanager
def serve(tls: ssl.SSLContext | None = None) -> Iterator[tuple[str, list]]:
    """A ThreadingHTTPServer on 127.0.0.1, port 0, in a thread; yields its base URL and the
    (path, headers) of every request it got."""
    server = QuietServer(("127.0.0.1", 0), Handler)
    server.requests = []  # type: ignore[attr-defined]
    server.release = threading.Event()  # type: ignore[attr-defined]
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{server.server_address[1]}", server.requests  # type: ignore[attr-defined]
    finally:
        server.release.set()  # type: ignore[attr-defined]
        server.shutdown()
        server.server_close()
        thread.join(5)
