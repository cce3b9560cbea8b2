"""Both servers under each attack: RSS growth, threads, and a normal client's latency meanwhile.

Attacks (tests/support/attacks.py, loopback only): a header flood (60 connections from 4 addresses, 98
header lines of 64 KB each, then a byte a second), a slowloris (256 connections from 8 addresses,
a header byte every 2 s each), and a burst of 200 parallel scrapes. Targets: the agent
(`agent.cli run`, basic auth on) and the bandwidth test server, from this tree and, with
--old-tree, from another checkout (e.g. the previous release) in the same run; with
--waitress-python, prometheus_client's WSGI app under waitress as the library candidate.

    git archive OLD_COMMIT | tar -x -C /tmp/old        # optional: the "before" servers
    .venv/bin/python -m bench.server_attacks [--seconds 6] [--old-tree /tmp/old] \\
        [--waitress-python /path/to/venv-with-waitress/bin/python]

Copy the printed table into bench/RESULTS-server-attacks.md.
"""

from __future__ import annotations

import argparse
import base64
import functools
import math
import multiprocessing as mp
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.support import attacks
from tests.support.agentproc import LOOPBACK_PROBES, site_yaml
from tests.support.paths import ROOT

LISTEN = ("--listen", "127.0.0.1:0")
AUTH = {"Authorization": "Basic " + base64.b64encode(b"prometheus:pa55").decode()}

WAITRESS_APP = """
import sys
from prometheus_client import make_wsgi_app
from waitress.server import create_server
# The settings that bound connections: at most 256, 10 s of silence, 16 KiB of head, backlog 512.
server = create_server(make_wsgi_app(), host="127.0.0.1", port=0, threads=4, connection_limit=256,
                       channel_timeout=10, max_request_header_size=16384, backlog=512)
print("port", server.effective_port, flush=True)
server.run()
"""


@contextmanager
def agent(root: Path) -> Iterator[tuple[int, int]]:
    """(pid, port) of an agent started from the tree at `root`."""
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "pw").write_text("pa55\n")
        (d / "agent.yaml").write_text(
            site_yaml("nd-bench")
            + LOOPBACK_PROBES
            + f"state_dir: {d / 'state'}\n"
            + f"exposition: {{basic_auth: {{username: prometheus, password: {{file: {d / 'pw'}}}}}}}\n"
        )
        log = d / "agent.log"
        with log.open("w") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "agent.cli", "run", "--config", str(d / "agent.yaml"), *LISTEN],
                cwd=root,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            for _ in range(400):
                m = re.search(r"metrics on https?://[^/]+:(\d+)/metrics", log.read_text())
                if m:
                    break
                time.sleep(0.05)
            else:
                raise RuntimeError(log.read_text())
            yield proc.pid, int(m.group(1))
        finally:
            proc.terminate()
            proc.wait(10)


@contextmanager
def speedtest(root: Path) -> Iterator[tuple[int, int]]:
    proc, port = attacks.start_speedtest_server(root=root)
    try:
        yield proc.pid, port
    finally:
        proc.terminate()
        proc.wait(10)


@contextmanager
def waitress(python: str) -> Iterator[tuple[int, int]]:
    proc = subprocess.Popen([python, "-c", WAITRESS_APP], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        yield proc.pid, int(proc.stdout.readline().split()[1])
    finally:
        proc.terminate()
        proc.wait(10)


def scrape_burst(port: int, stop: threading.Event, path: str, headers: dict[str, str]) -> None:
    """200 parallel scrapes from 8 addresses, again and again."""
    while not stop.is_set():
        attacks.parallel_scrapes(port, path, 200, headers, addresses=8)


def measure(
    pid: int,
    port: int,
    path: str,
    headers: dict[str, str],
    attack: Callable[..., None] | None,
    seconds: float,
) -> str:
    for _ in range(3):
        attacks.parallel_scrapes(port, path, 4, headers)
    rss0, threads0 = attacks.proc_status(pid)
    probe_stop = threading.Event()
    watch, probe = attacks.Watch(pid), attacks.Probe()
    threading.Thread(target=watch.run, daemon=True).start()
    # The attack runs in its own process, so that it does not take the normal client's GIL.
    stop = mp.Event()
    attacker = None
    if attack is not None:
        extra = (path, headers) if attack is scrape_burst else ()
        attacker = mp.Process(target=attack, args=(port, stop, *extra), daemon=True)
        attacker.start()
    # Let the attack reach its full size: connects beyond a full backlog wait for SYN retries.
    time.sleep(10 if attack is attacks.slowloris else 1.5)
    prober = threading.Thread(target=attacks.normal_client, args=(port, path, probe_stop, probe, headers))
    prober.start()
    time.sleep(seconds)
    probe_stop.set()
    prober.join(15)
    stop.set()
    if attacker is not None:
        attacker.join(30)
    time.sleep(2)
    watch.stop.set()
    rss_after, _ = attacks.proc_status(pid)
    p50, p99 = probe.percentiles()
    failed = probe.failures()
    kinds = sorted({s for _t, s in failed})
    return (
        f"{(max(watch.rss) - rss0) / attacks.MIB:+.1f} | {(rss_after - rss0) / attacks.MIB:+.1f} | "
        f"{threads0} → {max(watch.threads)} | {ms(p50)} | {ms(p99)} | "
        f"{len(failed)}/{len(probe.results)} {' '.join(kinds)}"
    )


def ms(seconds: float) -> str:
    return "–" if math.isnan(seconds) else f"{seconds * 1000:.0f}"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=6.0, help="normal client's time under each attack")
    parser.add_argument("--old-tree", type=Path, help="a checkout of the servers to compare with")
    parser.add_argument("--waitress-python", help="a python with waitress and prometheus_client installed")
    args = parser.parse_args()
    targets: list[tuple[str, Callable[[], Any], str, dict[str, str]]] = []
    for label, root in (("", ROOT), (" (old)", args.old_tree)):
        if root is None:
            continue
        targets.append((f"agent{label}", functools.partial(agent, root), "/metrics", AUTH))
        targets.append((f"speedtest server{label}", functools.partial(speedtest, root), "/empty", {}))
    if args.waitress_python:
        waitress_target = functools.partial(waitress, args.waitress_python)
        targets.append(("waitress + prometheus_client", waitress_target, "/metrics", {}))
    runs: list[tuple[str, Callable[..., None] | None]] = [("none", None)]
    runs += [("header flood", attacks.header_flood), ("slowloris", attacks.slowloris)]
    runs.append(("200 parallel scrapes", scrape_burst))
    print(
        "| server | attack | RSS growth peak (MiB) | RSS after (MiB) | threads before → peak "
        "| normal client p50 (ms) | p99 (ms) | normal client failed |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, start, path, headers in targets:
        for attack_name, attack in runs:
            with start() as (pid, port):
                row = measure(pid, port, path, headers, attack, args.seconds)
            print(f"| {name} | {attack_name} | {row} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
