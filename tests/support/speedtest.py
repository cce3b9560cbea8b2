"""The collector's speedtest server in a thread on a free loopback port, and its counters."""

from __future__ import annotations

import threading

from collector.speedtest_server import ServerSettings, SpeedtestServer, serve


def start(settings: ServerSettings) -> SpeedtestServer:
    """A server on 127.0.0.1 port 0, serving in a daemon thread; the caller shuts it down."""
    server = serve("127.0.0.1", 0, settings)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    return server


def metric(server: SpeedtestServer, name: str, labels: dict[str, str] | None = None) -> float | None:
    """One sample of the server's own metrics, None when it does not exist."""
    return server.metrics.registry.get_sample_value(name, labels or {})
