"""Real remote-write receivers on loopback for the push tests and benchmark (no tests in here).

Prometheus 2.42 (with the remote-write receiver and a 6 h out-of-order window) and VictoriaMetrics
1.79 run as processes on free loopback ports with temporary data dirs; `samples()` reads back what
they stored through their HTTP APIs. `TinyReceiver` speaks just enough remote write to answer with
chosen status codes. Run with `python -m tests.support.receivers`, it is the pushing child process of
the SIGKILL test.
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from agent.push.decoding import decode_write_request
from tests.support.paths import ROOT
from tests.support.ports import free_port
from tests.support.processes import wait_ready
from tests.support.prometheus import prometheus_argv

PROMETHEUS_CONFIG = """\
global:
  scrape_interval: 1m
storage:
  tsdb:
    out_of_order_time_window: 6h
"""


def have(binary: str) -> bool:
    return shutil.which(binary) is not None


class Receiver:
    """A Prometheus or VictoriaMetrics process that can be stopped and started on the same port/data."""

    def __init__(self, kind: str, workdir: Path) -> None:
        self.kind = kind
        self.workdir = workdir
        self.port = free_port()
        self.data = workdir / f"{kind}-data"
        self.data.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / f"{kind}.log"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def write_url(self) -> str:
        return f"{self.base}/api/v1/write"

    def _argv(self) -> list[str]:
        listen = f"127.0.0.1:{self.port}"
        if self.kind == "prometheus":
            config = self.workdir / "prometheus.yml"
            config.write_text(PROMETHEUS_CONFIG)
            return prometheus_argv(config, self.data, self.port, "--web.enable-remote-write-receiver")
        return [
            "victoria-metrics",
            f"-storageDataPath={self.data}",
            f"-httpListenAddr={listen}",
            "-retentionPeriod=100y",
            "-search.latencyOffset=0s",
            "-loggerLevel=ERROR",
        ]

    def start(self, timeout_s: float = 30.0) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self._argv(), stdout=out, stderr=subprocess.STDOUT)
        ready = "/-/ready" if self.kind == "prometheus" else "/health"
        wait_ready(self.proc, self.base + ready, self.log, self.kind, timeout_s)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def rss_bytes(self) -> int:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def _get(self, path: str, params: dict[str, str]) -> bytes:
        url = f"{self.base}{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=60) as resp:
            return bytes(resp.read())

    def samples(self, selector: str) -> dict[frozenset[tuple[str, str]], list[tuple[int, float]]]:
        """Every stored raw sample matching the selector: {labels: [(timestamp ms, value)...]}."""
        out: dict[frozenset[tuple[str, str]], list[tuple[int, float]]] = {}
        if self.kind == "victoria":
            self._get("/internal/force_flush", {})
            body = self._get(
                "/api/v1/export", {"match[]": selector, "start": "0", "end": str(int(time.time()) + 3600)}
            )
            for line in body.decode().splitlines():
                if not line.strip():
                    continue
                row = json.loads(line)
                key = frozenset(row["metric"].items())
                pts = [(int(t), float(v)) for t, v in zip(row["timestamps"], row["values"], strict=True)]
                out.setdefault(key, []).extend(pts)
        else:
            params = {"query": f"{selector}[30d]", "time": str(time.time() + 60)}
            doc = json.loads(self._get("/api/v1/query", params))
            for row in doc["data"]["result"]:
                key = frozenset(row["metric"].items())
                pts = [(round(float(t) * 1000), float(v)) for t, v in row["values"]]
                out.setdefault(key, []).extend(pts)
        return {k: sorted(v) for k, v in out.items()}


class TinyReceiver:
    """Answers remote-write requests with the given statuses in turn (then 204), recording them.

    Each answer is (status, body) or (status, body, {header: value}); `times` holds each request's
    arrival (monotonic seconds) and `auth` its Authorization header.
    """

    def __init__(self, statuses: list[tuple[int, str]] | list[tuple[int, str, dict[str, str]]]) -> None:
        self.statuses = list(statuses)
        self.requests: list[list[tuple[dict[str, str], list[tuple[int, float]]]]] = []
        self.answers: list[int] = []
        self.times: list[float] = []
        self.auth: list[str | None] = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                assert self.headers["Content-Encoding"] == "snappy"
                assert self.headers["Content-Type"] == "application/x-protobuf"
                assert self.headers["X-Prometheus-Remote-Write-Version"] == "0.1.0"
                answer: tuple[Any, ...] = owner.statuses.pop(0) if owner.statuses else (204, "")
                status, text, *extra = answer
                owner.requests.append(decode_write_request(body))
                owner.answers.append(status)
                owner.times.append(time.monotonic())
                owner.auth.append(self.headers["Authorization"])
                payload = text.encode()
                self.send_response(status)
                if status == 429:
                    self.send_header("Retry-After", "1")
                for key, value in (extra[0] if extra else {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.write_url = f"http://127.0.0.1:{self.server.server_address[1]}/api/v1/write"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def wait_until(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def push_settings(url: str, **kw: Any) -> Any:
    """Test push settings: 0.5 s snapshots, quick backoff (0.2 to 1 s), 2 s per request."""
    from agent.push.settings import PushSettings

    base: dict[str, Any] = dict(
        enabled=True, url=url, interval_s=0.5, min_backoff_s=0.2, max_backoff_s=1.0, timeout_s=2.0
    )
    base.update(kw)
    return PushSettings(**base)


def push_until(settings, state_dir: Path, until, what: str, timeout_s: float = 20):
    """Run a Pusher of seq_registry() with these settings until `until()` holds; returns it stopped."""
    from agent.push.pusher import Pusher

    registry, _ = seq_registry()
    pusher = Pusher(settings, registry, state_dir, {"site": "s1"})
    pusher.start()
    try:
        wait_until(until, timeout_s, what)
    finally:
        pusher.stop()
    return pusher


def start_vmauth(vm: Receiver, tmp_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    """vmauth with docs/vmauth.example.yml in front of vm; returns the process and the write URL."""
    port = free_port()
    example = (ROOT / "docs" / "vmauth.example.yml").read_text()
    config = tmp_path / "vmauth.yml"
    config.write_text(example.replace("http://127.0.0.1:8428", vm.base))
    proc = subprocess.Popen(
        ["vmauth", f"-auth.config={config}", f"-httpListenAddr=127.0.0.1:{port}", "-loggerLevel=ERROR"],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc, f"http://127.0.0.1:{port}/api/v1/write"
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("vmauth did not start")


def seq_registry(series: int = 3, gen: int = 0):
    """A registry whose gauge `pushtest_seq` counts the snapshots taken (one per collect)."""
    from prometheus_client.core import GaugeMetricFamily
    from prometheus_client.registry import CollectorRegistry

    class Seq:
        def __init__(self) -> None:
            self.n = 0

        def collect(self):
            self.n += 1
            g = GaugeMetricFamily("pushtest_seq", "snapshot number", labels=["site", "k", "gen"])
            for k in range(series):
                g.add_metric(["s1", str(k), str(gen)], float(self.n))
            yield g

    registry = CollectorRegistry()
    seq = Seq()
    registry.register(seq)
    return registry, seq


def child_main(argv: list[str]) -> None:
    """The pushing process of the SIGKILL test: push_url state_dir interval_s generation."""
    from agent.push.pusher import Pusher
    from agent.push.settings import PushSettings

    url, state, interval, gen = argv[0], Path(argv[1]), float(argv[2]), int(argv[3])
    registry, _seq = seq_registry(gen=gen)
    settings = PushSettings(
        enabled=True, url=url, interval_s=interval, min_backoff_s=0.2, max_backoff_s=1.0, timeout_s=2.0
    )
    pusher = Pusher(settings, registry, state, {"site": "s1"})
    pusher.start()
    print("started", flush=True)
    signal.sigwait({signal.SIGTERM})
    pusher.stop()


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    child_main(sys.argv[1:])
