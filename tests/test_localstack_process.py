"""`make run`'s stack as a process: a closed terminal (SIGHUP) or a service manager (SIGTERM) stops
it cleanly, and a second signal while it stops leaves nothing behind and prints no traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from collector.localstack import ALERTMANAGER_BIN, PROMETHEUS_BIN, ROOT

pytestmark = pytest.mark.slow


def children(pid: int) -> set[int]:
    """Every descendant process of `pid` (read from /proc)."""
    found: set[int] = set()
    todo = [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            kids = (task / "children").read_text().split() if (task / "children").exists() else []
            for kid in map(int, kids):
                if kid not in found:
                    found.add(kid)
                    todo.append(kid)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@pytest.mark.skipif(
    not (Path(PROMETHEUS_BIN).exists() and Path(ALERTMANAGER_BIN).exists()), reason="no Prometheus"
)
def test_sighup_then_sigterm_stops_everything(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "collector.localstack", "--no-history", "--workdir", str(tmp_path)]
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    started: set[int] = set()
    try:
        with proc.stdout:
            lines = []
            for line in proc.stdout:
                lines.append(line)
                if "Ctrl-C stops everything" in line:
                    break
            else:
                pytest.fail("the stack did not start:\n" + "".join(lines))
            started = children(proc.pid)
            assert len(started) >= 6  # test servers, Prometheus, Alertmanager, agents (and dnsmasq)
            proc.send_signal(signal.SIGHUP)  # the terminal closes ...
            time.sleep(0.3)
            proc.send_signal(signal.SIGTERM)  # ... and something else asks again while it stops
            assert proc.wait(90) == 0
            out = "".join(lines) + proc.stdout.read()
        assert "Traceback" not in out, out
        deadline = time.time() + 10
        while time.time() < deadline and any(alive(pid) for pid in started):
            time.sleep(0.2)
        left = [pid for pid in started if alive(pid)]
        assert not left, f"processes left running: {left}"
    finally:  # whatever failed above, nothing of the stack outlives the test
        for pid in [proc.pid, *started]:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        proc.wait(10)
