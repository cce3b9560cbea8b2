"""Agent footprint: steady-state RSS, CPU between runs, and /metrics response time.

Runs the agent with config.example.yaml's probes and intervals, but every target moved to loopback
(a local DNS server and HTTP server stand in for the internet; bandwidth tests are off, since their
cost is the test itself — see RESULTS-bandwidth.md). Usage:

    .venv/bin/python -m bench.agent_footprint --minutes 10 > bench/RESULTS-agent.md
"""

from __future__ import annotations

import argparse
import http.server
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import yaml

from tests.support.agentproc import start_agent
from tests.support.dnsserver import DnsServer, Zone
from tests.support.paths import ROOT

CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def proc_rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class NoContent(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=10)
    args = parser.parse_args()

    web = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NoContent)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    web_url = f"http://127.0.0.1:{web.server_address[1]}"
    with DnsServer({"dichvucong.gov.vn": Zone(("127.0.0.2",)), "vneid.gov.vn": Zone(("127.0.0.3",))}) as dns:
        config = yaml.safe_load((ROOT / "config.example.yaml").read_text(encoding="utf-8"))
        probes = config["probes"]
        probes["ping"].update(targets=["127.0.0.1", "127.0.0.2"], gateway=False)
        probes["dns"].update(resolvers=[dns.address])
        probes["http"].update(urls=[web_url + "/"], portal_check_url=web_url + "/generate_204")
        probes["bandwidth"]["enabled"] = False
        config.pop("push")  # off by default; its cost is measured in RESULTS-push.md
        workdir = Path(tempfile.mkdtemp(prefix="hotspot-bench-"))
        agent = start_agent(yaml.safe_dump(config, allow_unicode=True), workdir)
        pid = agent.proc.pid
        try:
            time.sleep(30)  # imports done, first runs of every probe over
            start_cpu, start = proc_cpu_s(pid), time.monotonic()
            rss = []
            while time.monotonic() - start < args.minutes * 60:
                time.sleep(10)
                rss.append(proc_rss_bytes(pid))
            cpu_share = (proc_cpu_s(pid) - start_cpu) / (time.monotonic() - start)
            times = []
            for _ in range(200):
                t0 = time.perf_counter()
                with urllib.request.urlopen(agent.url + "/metrics", timeout=5) as resp:
                    size = len(resp.read())
                times.append(time.perf_counter() - t0)
            series = sum(1 for line in agent.metrics().splitlines() if line and not line.startswith("#"))
        finally:
            agent.stop()
    web.shutdown()
    times.sort()
    load = os.getloadavg()
    print("# Agent footprint\n")
    print(f"Command: `.venv/bin/python -m bench.agent_footprint --minutes {args.minutes:g}`  ")
    print(
        f"Date: {time.strftime('%Y-%m-%d')}, Python {sys.version.split()[0]}, {os.cpu_count()} cores, "
        f"load average at the end {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}\n"
    )
    print("| measure | value | target |\n| --- | --- | --- |")
    print(f"| RSS after {args.minutes:g} min (last sample) | {rss[-1] / 2**20:.1f} MiB | ≤ 40 MB |")
    print(f"| RSS max over the run | {max(rss) / 2**20:.1f} MiB | |")
    print(f"| CPU between runs (average over the run, all probes) | {cpu_share:.2%} of a core | < 1% |")
    print(f"| /metrics response time, median of 200 | {statistics.median(times) * 1000:.2f} ms | < 10 ms |")
    print(
        f"| /metrics response time, 99th percentile | {times[int(len(times) * 0.99) - 1] * 1000:.2f} ms | |"
    )
    print(f"| /metrics size | {size} bytes, {series} series | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
