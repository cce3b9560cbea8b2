"""Every dashboard query against a real Prometheus that scraped real agents and ran the recording rules.

The fleet: two real agents (`python -m agent.cli run`) pinging loopback and checking a local web
server; one inventory site whose agent is not running (down); and two sites served by a stand-in
exposition that follows docs/metrics.md, for what a real agent cannot produce here yet (bandwidth
tests, push queue, wifi radio, temperature sensor): one meets the requirement, one is below it.
Counters of the stand-in grow at every scrape so the 1d/7d/30d recording rules have data within
seconds; the rule files are loaded as written, only their group `interval` is dropped so they run
at the test's 1 s evaluation interval instead of every 1-2 minutes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.test_grafana_dashboards import (
    AGENT_METRIC,
    DASHBOARDS,
    ROOT,
    RULES_DIR,
    load,
    metric_names,
    substitute,
    targets,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("prometheus") is None, reason="prometheus (Debian package) not installed"
    ),
]

PROVINCE = "Nam Định"
GIAO_MINH, GIAO_THIEN = "Xã Giao Minh", "Xã Giao Thiện"
REAL_SITES = {"nd-real-1": GIAO_MINH, "nd-real-2": GIAO_THIEN}
STANDIN_SITES = {"nd-meets": GIAO_MINH, "nd-below": GIAO_THIEN}
DOWN_SITE = ("nd-down", GIAO_THIEN)
NAMES = ("overview", "commune", "site", "fleet")
# Present once every enabled probe of a real agent has run once.
FIRST_RUN_METRICS = {
    "hotspot_ping_rtt_seconds",
    "hotspot_dns_success",
    "hotspot_http_success",
    "hotspot_http_first_byte_seconds",
    "hotspot_system_cpu_usage_ratio",
    "hotspot_interface_receive_bytes_total",
    "hotspot_diagnosis",
}

# Panels allowed to return nothing in a healthy fleet, with the reason. None today: the stand-in
# pushes, so even the push panels have series (the dropped-samples counters sit at 0).
EMPTY_IN_HEALTHY_FLEET: dict[str, str] = {}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def get_json(url: str, timeout: float = 10) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


# ---------------------------------------------------------------- the stand-in exposition


def identity(site: str, commune: str) -> str:
    return f'site="{site}",site_type="commune_office",commune="{commune}",province="{PROVINCE}"'


def standin_exposition(site: str, commune: str, scrape: int, meets: bool) -> str:
    """The agent's exposition as docs/metrics.md describes it, for one site at its n-th scrape."""
    ident = identity(site, commune)
    lines: list[str] = []

    def family(name: str, kind: str, samples: list[tuple[str, float]]) -> None:
        lines.append(f"# HELP {name} {name.replace('_', ' ')}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            extra = f",{labels}" if labels else ""
            lines.append(f"{name}{{{ident}{extra}}} {value}")

    now = time.time()
    down_mbps = 92.0 if meets else 41.0
    tests = 5 * scrape  # counters grow at every scrape: the 7d rules see tests within seconds
    meeting = tests if meets else scrape
    lat = f'name="{site}",commune_code="13636",latitude="20.2{len(site)}",longitude="106.4{len(site)}"'
    family(
        "hotspot_site_info",
        "gauge",
        [(f'{lat},isp="VNPT",contracted_download_mbps="100",contracted_upload_mbps="100"', 1)],
    )
    for direction in ("download", "upload"):
        d = f'direction="{direction}"'
        family("hotspot_site_contracted_bytes_per_second", "gauge", [(d, 12.5e6)])
        family("hotspot_site_threshold_bytes_per_second", "gauge", [(d, 10e6)])
    family("hotspot_agent_info", "gauge", [('version="0.0.0-standin",python="3.11.2"', 1)])
    family("hotspot_agent_clock_seconds", "gauge", [("", now)])
    family("hotspot_agent_start_time_seconds", "gauge", [("", now - 3600)])
    family("hotspot_config_last_reload_successful", "gauge", [("", 1)])
    family("hotspot_config_reloads_total", "counter", [('result="success"', 0), ('result="failure"', 0)])
    probes = ("ping", "dns", "http", "wifi", "system", "bandwidth")
    family("hotspot_probe_success", "gauge", [(f'probe="{p}"', 1) for p in probes])
    family("hotspot_probe_runs_total", "counter", [(f'probe="{p}"', scrape) for p in probes])
    family(
        "hotspot_probe_failures_total",
        "counter",
        [(f'probe="bandwidth",reason="{r}"', scrape if r == "timeout" else 0) for r in ("timeout", "error")],
    )
    ping = 'target="203.0.113.1",role="internet",method="icmp"'
    gw = 'target="gateway",role="gateway",method="icmp"'
    family("hotspot_ping_up", "gauge", [(ping, 1), (gw, 1)])
    family("hotspot_ping_rtt_seconds", "gauge", [(f'{ping},stat="avg"', 0.031), (f'{gw},stat="avg"', 0.002)])
    family("hotspot_ping_jitter_seconds", "gauge", [(ping, 0.004), (gw, 0.001)])
    family("hotspot_ping_loss_ratio", "gauge", [(ping, 0.0), (gw, 0.0)])
    family("hotspot_ping_tests_total", "counter", [(ping, 30 * scrape), (gw, 30 * scrape)])
    family("hotspot_ping_tests_within_limit_total", "counter", [(ping, 30 * scrape), (gw, 30 * scrape)])
    dns = 'resolver="system",name="dichvucong.gov.vn"'
    family("hotspot_dns_success", "gauge", [(dns, 1)])
    family("hotspot_dns_lookup_seconds", "gauge", [(dns, 0.012)])
    http = 'url="https://dichvucong.gov.vn/",kind="reachability"'
    portal = 'url="http://connectivitycheck.gstatic.com/generate_204",kind="portal_check"'
    family("hotspot_http_success", "gauge", [(http, 1), (portal, 1)])
    family("hotspot_http_first_byte_seconds", "gauge", [(http, 0.12), (portal, 0.05)])
    family("hotspot_http_captive_portal", "gauge", [(portal, 0)])
    family("hotspot_wifi_signal_dbm", "gauge", [('interface="wlan0"', -58)])
    family("hotspot_wifi_stations", "gauge", [('interface="wlan0"', 7)])
    family("hotspot_interface_receive_bytes_total", "counter", [('interface="eth0"', 1e6 * scrape)])
    family("hotspot_interface_transmit_bytes_total", "counter", [('interface="eth0"', 2e5 * scrape)])
    family("hotspot_system_cpu_usage_ratio", "gauge", [("", 0.12)])
    family("hotspot_system_memory_total_bytes", "gauge", [("", 1e9)])
    family("hotspot_system_memory_available_bytes", "gauge", [("", 6e8)])
    family("hotspot_system_disk_total_bytes", "gauge", [('path="/"', 8e9)])
    family("hotspot_system_disk_free_bytes", "gauge", [('path="/"', 5e9)])
    family("hotspot_system_temperature_celsius", "gauge", [('sensor="cpu_thermal"', 48)])
    family(
        "hotspot_diagnosis",
        "gauge",
        [
            (f'cause="{c}"', 1 if c == ("healthy" if meets else "uplink_fault") else 0)
            for c in ("healthy", "lan_fault", "uplink_fault", "dns_fault", "captive_portal", "unknown")
        ],
    )
    family("hotspot_diagnosis_since_timestamp_seconds", "gauge", [("", now - 5400)])
    bw = 'engine="http",server="http://speedtest.example/"'
    family(
        "hotspot_bandwidth_goodput_bytes_per_second",
        "gauge",
        [(f'{bw},direction="download"', down_mbps * 125_000), (f'{bw},direction="upload"', 88 * 125_000)],
    )
    family(
        "hotspot_bandwidth_latency_seconds",
        "gauge",
        [(f'{bw},state="idle"', 0.02), (f'{bw},state="loaded"', 0.09)],
    )
    family(
        "hotspot_bandwidth_tests_total",
        "counter",
        [(f'{bw},direction="{d}"', tests) for d in ("download", "upload")],
    )
    family(
        "hotspot_bandwidth_tests_meeting_threshold_total",
        "counter",
        [(f'{bw},direction="download"', meeting), (f'{bw},direction="upload"', tests)],
    )
    family(
        "hotspot_bandwidth_test_bytes_total",
        "counter",
        [(f'{bw},direction="{d}"', 4e8 * scrape) for d in ("download", "upload")],
    )
    family("hotspot_bandwidth_tests_deferred_total", "counter", [(bw, scrape // 2)])
    family("hotspot_bandwidth_tests_skipped_total", "counter", [('reason="budget"', 0)])
    family("hotspot_bandwidth_budget_bytes", "gauge", [("", 50e9)])
    family("hotspot_bandwidth_budget_remaining_bytes", "gauge", [("", 50e9 - 8e8 * scrape)])
    family("hotspot_push_queue_samples", "gauge", [("", 120)])
    family(
        "hotspot_push_samples_dropped_total",
        "counter",
        [(f'reason="{r}"', 0) for r in ("queue_full", "too_old", "rejected")],
    )
    return "\n".join(lines) + "\n"


class StandIn(BaseHTTPRequestHandler):
    """/metrics/SITE serves the stand-in exposition; / and /generate_204 are the real agents' HTTP targets."""

    scrapes: dict[str, int] = {}  # noqa: RUF012 - one counter per site, shared by the server's threads

    def do_GET(self) -> None:
        if self.path.startswith("/metrics/"):
            site = self.path.removeprefix("/metrics/")
            self.scrapes[site] = self.scrapes.get(site, 0) + 1
            body = standin_exposition(
                site, STANDIN_SITES[site], self.scrapes[site], site == "nd-meets"
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
        elif self.path == "/generate_204":
            self.send_response(204)
            self.end_headers()
            return
        else:
            body = b"ok\n"
            self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


# ---------------------------------------------------------------- the fleet


@dataclass
class Fleet:
    url: str
    real_metrics: set[str]
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def query(self, expr: str, *, instant: bool) -> Any:
        now = time.time()
        params = {"query": expr, "time": f"{now:.3f}"}
        path = "query"
        if not instant:
            params = {"query": expr, "start": f"{now - 300:.3f}", "end": f"{now:.3f}", "step": "5"}
            path = "query_range"
        data = urllib.parse.urlencode(params).encode()
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/{path}", data=data, timeout=20) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return json.loads(exc.read())


def agent_config(path: Path, site: str, commune: str, web: int) -> None:
    config = {
        "site": {
            "id": site,
            "commune": commune,
            "province": PROVINCE,
            "type": "health_station",
            "name": f"Trạm y tế {commune}",
            "latitude": 20.25,
            "longitude": 106.41,
        },
        "state_dir": str(path.parent / f"state-{site}"),
        "probes": {
            # Loopback only: 10 "internet" targets so the latency rules get tests quickly.
            "ping": {
                "targets": [f"127.0.0.{i}" for i in range(1, 11)],
                "gateway": False,
                "interval_s": 2,
                "jitter_s": 0,
                "count": 2,
            },
            "dns": {"resolvers": [f"127.0.0.1:{free_port()}"], "names": ["ok.test"], "interval_s": 5},
            "http": {
                "urls": [f"http://127.0.0.1:{web}/"],
                "portal_check_url": f"http://127.0.0.1:{web}/generate_204",
                "interval_s": 5,
            },
            "wifi": {"enabled": False},
            "bandwidth": {"enabled": False},
            "system": {"interval_s": 2, "jitter_s": 0},
        },
    }
    path.write_text(yaml.safe_dump(config, allow_unicode=True))


def site_type(site: str) -> str:
    return "health_station" if site in REAL_SITES else "commune_office"


def prometheus_config(tmp: Path, jobs: list[tuple[str, str, str, str]]) -> Path:
    """The collector's own hotspot-agent job (its relabelling kept), with static targets; rules as shipped."""
    shipped = yaml.safe_load((ROOT / "collector/prometheus/prometheus.yml").read_text())
    job = next(j for j in shipped["scrape_configs"] if j["job_name"] == "hotspot-agent")
    job.pop("file_sd_configs", None)
    static = []
    for address, path, site, commune in jobs:
        static.append(
            {
                "targets": [address],
                "labels": {
                    "__metrics_path__": path,
                    "site": site,
                    "site_type": site_type(site),
                    "commune": commune,
                    "province": PROVINCE,
                },
            }
        )
    job["static_configs"] = static
    job["scrape_interval"] = "1s"
    rules = tmp / "rules"
    rules.mkdir()
    for path in sorted(RULES_DIR.glob("*.yml")):
        doc = yaml.safe_load(path.read_text())
        for group in doc.get("groups", []):
            group.pop("interval", None)  # run every rule at the test's 1 s evaluation interval
        (rules / path.name).write_text(yaml.safe_dump(doc, allow_unicode=True))
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules / "*.yml")],
        "scrape_configs": [job],
    }
    out = tmp / "prometheus.yml"
    out.write_text(yaml.safe_dump(config, allow_unicode=True))
    return out


def wait_for(what: str, check: Any, seconds: float) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        try:
            value = check()
        except (OSError, ValueError):
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds} s waiting for {what}")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """Stand-in server, two real agents, Prometheus with the shipped rules; torn down afterwards."""
    tmp = tmp_path_factory.mktemp("hmg-fleet")
    server = ThreadingHTTPServer(("127.0.0.1", 0), StandIn)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    web = server.server_address[1]
    processes: list[subprocess.Popen[bytes]] = []
    try:
        jobs = [(f"127.0.0.1:{web}", f"/metrics/{s}", s, c) for s, c in STANDIN_SITES.items()]
        jobs.append((f"127.0.0.1:{free_port()}", "/metrics", *DOWN_SITE))  # nothing listens: the site is down
        agent_urls = []
        for site, commune in REAL_SITES.items():
            port = free_port()
            config = tmp / f"{site}.yaml"
            agent_config(config, site, commune, web)
            log = (tmp / f"{site}.log").open("wb")
            processes.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "agent.cli",
                        "run",
                        "--config",
                        str(config),
                        "--listen",
                        f"127.0.0.1:{port}",
                    ],
                    cwd=ROOT,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, "PYTHONPATH": str(ROOT)},
                )
            )
            jobs.append((f"127.0.0.1:{port}", "/metrics", site, commune))
            agent_urls.append(f"http://127.0.0.1:{port}/metrics")
        prom_port = free_port()
        prom_log = (tmp / "prometheus.log").open("wb")
        processes.append(
            subprocess.Popen(
                [
                    "prometheus",
                    f"--config.file={prometheus_config(tmp, jobs)}",
                    f"--storage.tsdb.path={tmp / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{prom_port}",
                ],
                stdout=prom_log,
                stderr=subprocess.STDOUT,
            )
        )
        fleet = Fleet(f"http://127.0.0.1:{prom_port}", set(), processes)

        def real_names() -> set[str]:
            names: set[str] = set()
            for url in agent_urls:
                with urllib.request.urlopen(url, timeout=5) as response:
                    text = response.read().decode()
                one = {
                    line.split("{")[0].split(" ")[0]
                    for line in text.splitlines()
                    if line.startswith("hotspot_")
                }
                if not one >= FIRST_RUN_METRICS:
                    return set()
                names |= one
            return names

        fleet.real_metrics = wait_for("both real agents' first measurements", real_names, 60)

        def judged() -> bool:
            result = fleet.query("count(site:hotspot_requirement_met:bool)", instant=True)["data"]["result"]
            ready = fleet.query("site:hotspot_availability:ratio_7d", instant=True)["data"]["result"]
            return bool(result) and result[0]["value"][1] == "2" and len(ready) >= 4

        wait_for("the recording rules to judge the stand-in sites", judged, 90)
        yield fleet
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        server.shutdown()
        server.server_close()


# ---------------------------------------------------------------- what the dashboards ask


def values(name: str, site: str | None = None) -> dict[str, str]:
    """What Grafana substitutes for the variables (All = the variable's allValue, '.*')."""
    commune = GIAO_MINH if name == "commune" else ".*"
    return {
        "province": PROVINCE,
        "commune": commune,
        "site_type": ".*",
        "site": site or "",
        "__range": "5m",
        "__rate_interval": "1m",
        "__interval": "5s",
    }


def panel_queries(name: str) -> list[tuple[str, str, dict[str, Any]]]:
    data = load(DASHBOARDS / f"en/{name}.json")
    return [(panel["title"], target["refId"], target) for panel, target in targets(data)]


ALL_QUERIES = [(name, title, ref, target) for name in NAMES for title, ref, target in panel_queries(name)]


def qid(item: tuple[str, str, str, dict[str, Any]]) -> str:
    return f"{item[0]}:{item[1]}:{item[2]}"


def test_a_broken_query_is_reported_as_bad_data(fleet: Fleet) -> None:
    """The parse check below can fail: Prometheus answers a syntax error with 400 bad_data."""
    answer = fleet.query('sum by (site) (hotspot_agent_info{site="x"}', instant=True)
    assert answer["status"] == "error" and answer["errorType"] == "bad_data"


@pytest.mark.parametrize("item", ALL_QUERIES, ids=qid)
def test_panel_query_parses_and_returns_data(
    fleet: Fleet, item: tuple[str, str, str, dict[str, Any]]
) -> None:
    """Each panel query, variables substituted, is valid PromQL and returns series from the fleet."""
    name, title, _ref, target = item
    sites = [None] if name != "site" else [*STANDIN_SITES, *REAL_SITES]
    found = {}
    for site in sites:
        expr = substitute(target["expr"], values(name, site))
        answer = fleet.query(expr, instant=bool(target.get("instant")))
        assert answer["status"] == "success", f"{expr}\n{answer.get('error')}"
        found[site] = bool(answer["data"]["result"])
    if title in EMPTY_IN_HEALTHY_FLEET:
        return
    assert any(found.values()), f"{name} / {title}: no data for {target['expr']}"
    if name == "site":
        # A panel whose metrics a real agent exports must show data for a real agent's site.
        agent_metrics, _ = metric_names({"panels": [{"targets": [target]}], "templating": {"list": []}})
        if agent_metrics and agent_metrics <= fleet.real_metrics:
            assert all(found[s] for s in REAL_SITES), f"{title}: empty for a real agent: {target['expr']}"


def test_status_covers_every_case(fleet: Fleet) -> None:
    """The map's status query tells down (0), below (1), not enough tests (2) and meets (3) apart."""
    target = next(t for n, title, _r, t in ALL_QUERIES if n == "overview" and title == "Map of sites")
    answer = fleet.query(substitute(target["expr"], values("overview")), instant=True)
    status = {r["metric"]["site"]: r["value"][1] for r in answer["data"]["result"]}
    assert status["nd-meets"] == "3" and status["nd-below"] == "1"
    assert status["nd-real-1"] == status["nd-real-2"] == "2"  # no bandwidth tests yet: not judged


def test_down_site_counted_down(fleet: Fleet) -> None:
    """The 'Sites down' stat counts the inventory site whose agent does not answer."""
    target = next(t for n, title, _r, t in ALL_QUERIES if n == "overview" and title == "Sites down")
    answer = fleet.query(substitute(target["expr"], values("overview")), instant=True)
    assert answer["data"]["result"][0]["value"][1] == "1"


@pytest.mark.parametrize("name", NAMES)
def test_variable_queries_list_the_fleet(fleet: Fleet, name: str) -> None:
    """Each label_values(selector, label) variable lists values the fleet really has."""
    for variable in load(DASHBOARDS / f"en/{name}.json")["templating"]["list"]:
        match = re.fullmatch(r"label_values\((.*), (\w+)\)", variable["query"])
        assert match, variable["query"]
        selector = substitute(match.group(1), values(name))
        now = time.time()
        query = urllib.parse.urlencode(
            {"match[]": selector, "start": f"{now - 300:.0f}", "end": f"{now:.0f}"}
        )
        series = get_json(f"{fleet.url}/api/v1/series?{query}")["data"]
        assert {s[match.group(2)] for s in series}, variable["name"]


def test_every_agent_metric_used_is_exported_by_an_agent(fleet: Fleet) -> None:
    """Each hotspot_* metric a dashboard reads is exported by a real agent or, where a real agent
    cannot produce it here, by the stand-in that follows docs/metrics.md; the report lists which."""
    used = {m for name in NAMES for m in metric_names(load(DASHBOARDS / f"en/{name}.json"))[0]}
    standin = set(AGENT_METRIC.findall(standin_exposition("nd-meets", GIAO_MINH, 1, True)))
    assert used <= fleet.real_metrics | standin, sorted(used - fleet.real_metrics - standin)
    missing_in_real = sorted(used - fleet.real_metrics)
    print("dashboard metrics only the stand-in exports:", missing_in_real)
