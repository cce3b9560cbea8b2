"""A real Prometheus (Debian's /usr/bin/prometheus) on a free loopback port, for integration tests."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from tests.support.ports import free_port
from tests.support.processes import terminate, wait_ready

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"


def prometheus_argv(config: Path, data: Path, port: int, *extra: str) -> list[str]:
    """The command line of a Prometheus on 127.0.0.1:port with this config file and TSDB directory."""
    return [
        PROMETHEUS,
        f"--config.file={config}",
        f"--storage.tsdb.path={data}",
        f"--web.listen-address=127.0.0.1:{port}",
        *extra,
    ]


class Prometheus:
    def __init__(self, config: str, workdir: Path, extra_args: tuple[str, ...] = ()) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = workdir / "prometheus.yml"
        self.config_path.write_text(config)
        self.log_path = workdir / "prometheus.log"
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                prometheus_argv(self.config_path, workdir / "data", self.port, *extra_args),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_ready(self.proc, self.url + "/-/ready", self.log_path, "prometheus")

    def api(self, path: str, **params: str) -> Any:
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as resp:
            return json.loads(resp.read())["data"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        return list(self.api("query", query=promql)["result"])

    def wait_for(self, promql: str, timeout: float = 30) -> list[dict[str, Any]]:
        """Poll until the query returns something; return it (or raise with the log)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = self.query(promql)
            if result:
                return result
            time.sleep(0.5)
        raise AssertionError(f"no data for {promql!r} within {timeout}s")

    def stop(self) -> None:
        terminate(self.proc)
