"""A real Alertmanager (Debian's /usr/bin/prometheus-alertmanager) on a free loopback port."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.support.ports import free_port
from tests.support.processes import terminate, wait_ready

ALERTMANAGER = shutil.which("prometheus-alertmanager") or "/usr/bin/prometheus-alertmanager"


class Alertmanager:
    """Started with `config` (a path) and a data directory under `workdir`; ready once built.

    Clustering is off: one Alertmanager, so it never waits for peers before sending."""

    def __init__(self, config: Path, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / "alertmanager.log"
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    ALERTMANAGER,
                    f"--config.file={config}",
                    f"--storage.path={workdir / 'am-data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--cluster.listen-address=",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_ready(self.proc, self.url + "/-/ready", self.log_path, "alertmanager")

    def stop(self) -> None:
        terminate(self.proc)
