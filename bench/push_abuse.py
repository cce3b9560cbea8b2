"""The push client against two misbehaving receivers on loopback; prints one line per measurement.

1. A receiver answering every request `503` with `Retry-After: 0`: requests per second the pusher
   makes over --seconds (the default settings: min_backoff_s 1, max_backoff_s 60).
2. A receiver that sends its `200` one byte every --drip-s seconds: how long one request takes
   with timeout_s = --timeout-s.

Run from the repository root; to measure another version of the code, put its tree first on
PYTHONPATH (e.g. `git archive main agent | tar -x -C /tmp/before`, then PYTHONPATH=/tmp/before).
"""

from __future__ import annotations

import argparse
import http.server
import socket
import tempfile
import threading
import time
from pathlib import Path

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import CollectorRegistry

import agent
from agent.push.pusher import Pusher
from agent.push.remote_write import RemoteWriteClient
from agent.push.settings import PushSettings


def retry_after_zero(seconds: float) -> float:
    """Requests per second against a receiver that always answers 503 with Retry-After: 0."""
    hits: list[float] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            hits.append(time.monotonic())
            self.send_response(503)
            self.send_header("Retry-After", "0")
            self.send_header("Content-Length", "4")
            self.end_headers()
            self.wfile.write(b"busy")

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    class One:
        def collect(self):  # type: ignore[no-untyped-def]
            g = GaugeMetricFamily("bench_one", "one series")
            g.add_metric([], 1.0)
            yield g

    registry = CollectorRegistry()
    registry.register(One())
    url = f"http://127.0.0.1:{server.server_address[1]}/api/v1/write"
    with tempfile.TemporaryDirectory() as tmp:
        pusher = Pusher(PushSettings(enabled=True, url=url), registry, Path(tmp), {"site": "b"})
        pusher.start()
        time.sleep(seconds)
        n = len(hits)
        pusher.stop()
    server.shutdown()
    server.server_close()
    return n / seconds


def drip(drip_s: float, timeout_s: float) -> float:
    """Seconds one POST takes when the receiver drips its 200 answer."""
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    sock = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        conn, _ = sock.accept()
        with conn:
            conn.recv(65536)
            for byte in answer:
                if stop.wait(drip_s):
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return

    threading.Thread(target=serve, daemon=True).start()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/api/v1/write"
    client = RemoteWriteClient(PushSettings(enabled=True, url=url, timeout_s=timeout_s))
    started = time.monotonic()
    client.post(b"x")
    took = time.monotonic() - started
    stop.set()
    client.close()
    sock.close()
    return took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--drip-s", type=float, default=0.5)
    ap.add_argument("--timeout-s", type=float, default=2.0)
    args = ap.parse_args()
    print(f"code: {Path(agent.__file__).parent}")
    print(f"Retry-After: 0 -> {retry_after_zero(args.seconds):.1f} requests/s over {args.seconds:g} s")
    took = drip(args.drip_s, args.timeout_s)
    print(f"drip 1 byte/{args.drip_s:g} s, timeout_s {args.timeout_s:g} -> request took {took:.1f} s")


if __name__ == "__main__":
    main()
