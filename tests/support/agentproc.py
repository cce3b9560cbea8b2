"""Start a real agent process (`python -m agent.cli run`) for tests, on a free loopback port."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.support.paths import ROOT

# Probes that touch nothing but this machine: for tests and the local stack.
LOOPBACK_PROBES = """
probes:
  ping: {targets: ["127.0.0.1"], gateway: false, count: 3, packet_interval_s: 0.05,
         interval_s: 2, jitter_s: 0.5}
  dns: {enabled: false}
  http: {enabled: false}
  wifi: {enabled: false}
  system: {interval_s: 2, jitter_s: 0.5, disk_paths: ["/"]}
  bandwidth: {enabled: false}
"""


def site_yaml(site_id: str, commune: str = "Xã Giao Minh", name: str = "Trạm y tế xã Giao Minh") -> str:
    return (
        f'site: {{id: {site_id}, name: "{name}", type: health_station, commune: "{commune}",'
        ' province: "Ninh Bình", latitude: 20.25293, longitude: 106.5474, isp: VNPT}\n'
    )


@dataclass
class AgentProcess:
    proc: subprocess.Popen[str]
    url: str  # http://127.0.0.1:PORT
    config_path: Path
    log_path: Path

    def metrics(self) -> str:
        with urllib.request.urlopen(self.url + "/metrics", timeout=5) as resp:
            return str(resp.read().decode())

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 10) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return int(self.proc.returncode)


def start_agent(
    config_text: str, workdir: Path, listen: str | None = "127.0.0.1:0", name: str = "agent"
) -> AgentProcess:
    """Write the config, start the agent, and wait until it serves /metrics (listen None: the
    config's own `exposition.listen`, which a reload may move)."""
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / f"{name}.yaml"
    if "state_dir:" not in config_text:
        config_text += f"state_dir: {workdir / (name + '-state')}\n"
    config_path.write_text(config_text, encoding="utf-8")
    log_path = workdir / f"{name}.log"
    with log_path.open("w") as log:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(
            [sys.executable, "-m", "agent.cli", "run", "--config", str(config_path)]
            + (["--listen", listen] if listen is not None else []),
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        m = re.search(r"metrics on (https?)://([^/]+)/metrics", log_path.read_text(errors="replace"))
        if m:
            return AgentProcess(proc, f"{m.group(1)}://{m.group(2)}", config_path, log_path)
        if proc.poll() is not None:
            raise RuntimeError(f"agent exited with {proc.returncode}:\n{log_path.read_text()}")
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"agent did not start:\n{log_path.read_text()}")
