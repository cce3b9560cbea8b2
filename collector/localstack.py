"""`python -m collector.localstack`: the whole system on this machine's loopback, to try it out.

Starts, each with a temporary data directory: Prometheus (with the remote-write receiver) and
Alertmanager running the repository's configs, rendered with loopback addresses and intervals
sped up (30 s scrapes become 2 s; every `for:`, range window and group interval shrinks alike), two
test servers (TEST ONLY paced: one at 200 Mbit/s, one at 20 Mbit/s), a local DNS resolver
(dnsmasq, when installed), and three agents with different site identities: a healthy scraped
site, a scraped site whose speed tests fall below the requirement, and a site that pushes. Every
agent probe only touches loopback. Prints the URLs and runs until Ctrl-C, then stops everything.

With `--history INVENTORY` (make run: the Nam Định example), Prometheus starts on a month of
backfilled history for that province (collector/backfill.py), so the dashboards and the monthly
report have a month to show from the first minute. The history is generated once a day (and again
when the generator or the inventory changes) into run/history/ (ending when it was generated) and
hard-linked into each run's data directory. Its inventory rules are loaded (its scrape addresses are
not on this machine: the fleet simulator below stands in for them), and the verdict rules keep their
real 7-day windows so the month is judged as in production. From the history's end on, the province
lives on in the fleet simulator (collector/fleet.py): every site the history last heard is scraped
from it or pushes through it (the same intervals ÷ speedup), so the live panels and the site-state
rules see a working province; the sites the history ends silent on (dead, never installed, in
maintenance) stay silent: the dead ones alert as down (their "last heard" comes from the history),
the never-installed ones as never heard. The calendar month and the report show the history as it
was.

The integration test (tests/test_alerting_integration.py) builds the same stack with `Stack`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import yaml

from collector import backfill, inventory, targets

if TYPE_CHECKING:
    from collector.fleet import Fleet

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS_DIR = ROOT / "collector" / "prometheus"
ALERTMANAGER_DIR = ROOT / "collector" / "alertmanager"
PROMETHEUS_BIN = "/usr/bin/prometheus"
ALERTMANAGER_BIN = "/usr/bin/prometheus-alertmanager"
INSTALL_HINT = "apt-get install prometheus prometheus-alertmanager"
DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")
UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0, "y": 31536000.0}
PROVINCE = "Tỉnh Ninh Bình"
COMMUNE = "Xã Giao Minh"


def seconds(text: str) -> float:
    """A Prometheus duration ("1h30m", "500ms") in seconds."""
    parts = DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration: {text!r}")
    return sum(float(n) * UNITS[u] for n, u in parts)


def duration(value: float) -> str:
    """Seconds -> a Prometheus duration, in whole milliseconds (at least 1 ms)."""
    ms = max(1, round(value * 1000))
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def scale(text: str, speedup: float) -> str:
    """A Prometheus duration ("30s", "5m", "1h30m") divided by `speedup`, written back as one."""
    return duration(seconds(text) / speedup)


def scale_expr(expr: str, speedup: float) -> str:
    """Shrink every range `[5m]` and subquery `[30m:1m]` in a PromQL expression."""

    def one(m: re.Match[str]) -> str:
        inner = ":".join(scale(part, speedup) if part else part for part in m.group(1).split(":"))
        return f"[{inner}]"

    return re.sub(r"\[([0-9a-z.:]+)\]", one, expr)


def render_rules(
    src: Path,
    dst: Path,
    speedup: float,
    keep_windows: tuple[str, ...] = (),
    keep_intervals: tuple[str, ...] = (),
) -> None:
    """Copy the rule files with every `for:`, group interval and range divided by `speedup`; the
    ranges of the files named in `keep_windows`, and the group intervals of those named in
    `keep_intervals`, stay as they are (re-reading a week every few seconds would only load the
    machine)."""
    dst.mkdir(parents=True, exist_ok=True)
    for path in sorted(src.glob("*.yml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        for group in doc["groups"]:
            if "interval" in group and path.name not in keep_intervals:
                group["interval"] = scale(group["interval"], speedup)
            for rule in group["rules"]:
                if path.name not in keep_windows:
                    rule["expr"] = scale_expr(str(rule["expr"]), speedup)
                for key in ("for", "keep_firing_for"):
                    if key in rule:
                        rule[key] = scale(rule[key], speedup)
        (dst / path.name).write_text(
            yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8"
        )


@dataclass(frozen=True)
class Ports:
    """The loopback TCP ports the stack's services listen on."""

    prometheus: int
    alertmanager: int
    speedtest: int
    speedtest_slow: int
    dns: int


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the kernel's choice for port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def render_prometheus(
    workdir: Path,
    ports: Ports,
    speedup: float,
    keep_windows: tuple[str, ...] = (),
    keep_intervals: tuple[str, ...] = (),
) -> Path:
    """prometheus.yml with loopback targets, absolute paths and shortened intervals."""
    doc = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text(encoding="utf-8"))
    g = doc["global"]
    for key in ("scrape_interval", "evaluation_interval"):
        g[key] = scale(g[key], speedup)
    g["scrape_timeout"] = g["scrape_interval"]
    if seconds(g["scrape_interval"]) > 1:
        g["scrape_timeout"] = duration(seconds(g["scrape_interval"]) / 2)
    render_rules(PROMETHEUS_DIR / "rules", workdir / "rules", speedup, keep_windows, keep_intervals)
    doc["rule_files"] = [str(workdir / "rules" / "*.yml"), str(workdir / "inventory" / "*.rules.yml")]
    doc["alerting"]["alertmanagers"] = [
        {"static_configs": [{"targets": [f"127.0.0.1:{ports.alertmanager}"]}]}
    ]
    loopback = {
        "hotspot-speedtest-server": [f"127.0.0.1:{ports.speedtest}", f"127.0.0.1:{ports.speedtest_slow}"],
        "prometheus": [f"127.0.0.1:{ports.prometheus}"],
        "alertmanager": [f"127.0.0.1:{ports.alertmanager}"],
    }
    # Jobs with nothing to scrape here (node_exporter) are left out.
    doc["scrape_configs"] = [
        j for j in doc["scrape_configs"] if j["job_name"] == "hotspot-agent" or j["job_name"] in loopback
    ]
    for job in doc["scrape_configs"]:
        if "scrape_interval" in job:  # a job's own interval shrinks like the global one
            job["scrape_interval"] = scale(job["scrape_interval"], speedup)
            job["scrape_timeout"] = duration(
                min(seconds(g["scrape_timeout"]), seconds(job["scrape_interval"]))
            )
        if job["job_name"] == "hotspot-agent":
            job["file_sd_configs"] = [
                {"files": [str(workdir / "inventory" / "sites-*.json")], "refresh_interval": "5s"}
            ]
        else:
            job["static_configs"] = [{"targets": loopback[job["job_name"]]}]
    path = workdir / "prometheus.yml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def render_alertmanager(workdir: Path, speedup: float, webhook_url: str | None) -> Path:
    """alertmanager.yml with shortened timers and every receiver replaced by one loopback webhook
    (or by nothing), so a local run never mails or messages anyone."""
    doc = yaml.safe_load((ALERTMANAGER_DIR / "alertmanager.yml").read_text(encoding="utf-8"))
    route = doc["route"]
    for key in ("group_wait", "group_interval"):
        route[key] = scale(route[key], speedup)
    doc["templates"] = [str(ALERTMANAGER_DIR / "templates" / "*.tmpl")]
    doc["global"] = {"resolve_timeout": doc["global"].get("resolve_timeout", "5m")}
    hook = [{"url": webhook_url, "send_resolved": True}] if webhook_url else None
    doc["receivers"] = [
        {"name": r["name"], **({"webhook_configs": hook} if hook else {})} for r in doc["receivers"]
    ]
    path = workdir / "alertmanager.yml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


@dataclass(frozen=True)
class LabSite:
    """One agent of the local stack."""

    id: str
    name: str
    type: str
    reach: str = "pull"  # or "push"
    slow: bool = False  # measure against the paced (TEST ONLY) test server
    bandwidth_interval_s: float = 30.0
    # The engine needs a few seconds at a steady rate before it trusts an estimate: more when paced.
    bandwidth_max_duration_s: float = 8.0


DEFAULT_SITES = (
    LabSite("lab-ubnd", f"Bộ phận một cửa UBND {COMMUNE}", "commune_office"),
    LabSite("lab-tyt", f"Trạm y tế {COMMUNE}", "health_station", slow=True),
    LabSite("lab-nvh1", f"Nhà văn hóa thôn 1, {COMMUNE}", "village_hall", reach="push"),
)


def identity(site: LabSite) -> dict[str, str]:
    """The site keys the agent config and the inventory share."""
    return {
        "id": site.id,
        "name": site.name,
        "type": site.type,
        "commune": COMMUNE,
        "commune_code": "14161",
        "province": PROVINCE,
        "isp": "VNPT",
    }


def agent_config(site: LabSite, ports: Ports, workdir: Path, speedup: float, dns: bool) -> str:
    """An agent config whose every probe touches only loopback."""
    every = max(1.0, 60.0 / speedup)
    server = ports.speedtest_slow if site.slow else ports.speedtest
    doc: dict[str, Any] = {
        "site": {
            **identity(site),
            "latitude": 20.25293,
            "longitude": 106.5474,
            "contracted_download_mbps": 100,
            "contracted_upload_mbps": 100,
        },
        "probes": {
            "ping": {
                "targets": ["127.0.0.1"],
                "gateway": False,
                "count": 3,
                "packet_interval_s": 0.05,
                "interval_s": every,
                "jitter_s": every / 4,
            },
            "dns": (
                {
                    "resolvers": [f"127.0.0.1:{ports.dns}"],
                    "names": ["dichvucong.hotspot.test"],
                    "interval_s": every,
                    "jitter_s": every / 4,
                    "query_timeout_s": 1.0,
                    "timeout_s": 5.0,
                }
                if dns
                else {"enabled": False}
            ),
            "http": {
                "urls": [f"http://127.0.0.1:{ports.speedtest}/getIP"],
                "portal_check_url": "",
                "interval_s": every,
                "jitter_s": every / 4,
                "request_timeout_s": 2.0,
                "timeout_s": 5.0,
            },
            "wifi": {"enabled": False},
            "system": {"interval_s": max(1.0, 15.0 / speedup), "jitter_s": 0.2},
            "bandwidth": {
                "server": f"http://127.0.0.1:{server}/",
                "interval_s": site.bandwidth_interval_s,
                "jitter_s": 0.5,
                "timeout_s": 60.0,
                "max_duration_s": site.bandwidth_max_duration_s,
                "max_bytes": 300_000_000,
                "monthly_budget_bytes": 0,
                "defer_threshold_bytes_per_s": 0,
            },
        },
        "state_dir": str(workdir / f"{site.id}-state"),
        "log_level": "info",
    }
    if site.reach == "push":
        doc["push"] = {
            "enabled": True,
            "url": f"http://127.0.0.1:{ports.prometheus}/api/v1/write",
            "interval_s": max(0.5, 15.0 / speedup),
        }
    return yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)


def wait_until(
    check: Callable[[], bool], timeout_s: float, what: str, proc: subprocess.Popen[str] | None = None
) -> None:
    """Poll `check` every 0.1 s until it returns True. Raises RuntimeError (naming `what`) when
    `proc` exits first or after `timeout_s` seconds.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        time.sleep(0.1)
    raise RuntimeError(f"{what} not ready after {timeout_s:.0f} s")


def http_ok(url: str) -> bool:
    """True when a GET of `url` answers 200 within 2 s; False for any error or other status."""
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@dataclass
class Stack:
    """The running local system. Use as a context manager: everything stops on exit."""

    workdir: Path
    speedup: float = 15.0
    sites: tuple[LabSite, ...] = DEFAULT_SITES
    webhook_url: str | None = None
    # Both test servers are paced (TEST ONLY): on loopback an unpaced test runs at tens of Gbit/s
    # and never settles on a stable estimate within its limits.
    fast_pace_mbps: float = 200.0
    slow_pace_mbps: float = 20.0
    ports: Ports = field(default_factory=lambda: Ports(*(free_port() for _ in range(5))))
    processes: dict[str, subprocess.Popen[str]] = field(default_factory=dict)
    agent_ports: dict[str, int] = field(default_factory=dict)
    has_prometheus: bool = True
    has_dns: bool = True
    history: Path | None = None  # an inventory: start on a month of backfilled history for it
    history_cache: Path = ROOT / "run" / "history"
    fleet: Fleet | None = None  # the history's province, live
    _logs: list[TextIO] = field(default_factory=list)

    @property
    def prometheus_url(self) -> str:
        """Prometheus' base URL on loopback, e.g. http://127.0.0.1:40123."""
        return f"http://127.0.0.1:{self.ports.prometheus}"

    @property
    def alertmanager_url(self) -> str:
        """Alertmanager's base URL on loopback."""
        return f"http://127.0.0.1:{self.ports.alertmanager}"

    def log_path(self, name: str) -> Path:
        """The file that process `name`'s stdout and stderr go to, in the work directory."""
        return self.workdir / f"{name}.log"

    def spawn(self, name: str, argv: list[str]) -> subprocess.Popen[str]:
        """Start `argv` from the repository root as process `name`, output to its log file."""
        log = self.log_path(name).open("a", encoding="utf-8")
        self._logs.append(log)
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, text=True)
        self.processes[name] = proc
        return proc

    def __enter__(self) -> Stack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Start the test servers, dnsmasq (if installed) and the collector, then every agent; waits
        until each answers. Raises RuntimeError when a process exits early or never answers.
        """
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.has_prometheus = Path(PROMETHEUS_BIN).exists() and Path(ALERTMANAGER_BIN).exists()
        self.has_dns = shutil.which("dnsmasq") is not None
        for port, pace, name in (
            (self.ports.speedtest, self.fast_pace_mbps, "speedtest-server"),
            (self.ports.speedtest_slow, self.slow_pace_mbps, "speedtest-server-slow"),
        ):
            argv = [
                sys.executable,
                "-m",
                "collector.cli",
                "speedtest-server",
                "--listen",
                f"127.0.0.1:{port}",
            ]
            if pace:
                argv += ["--test-only-pace-mbps", str(pace)]
            proc = self.spawn(name, argv)
            wait_until(partial(http_ok, f"http://127.0.0.1:{port}/metrics"), 15, name, proc)
        if self.has_dns:
            self.spawn("dnsmasq", self.dnsmasq_argv())
        self.write_inventory()
        if self.has_prometheus:
            province = self.load_history(self.history) if self.history is not None else None
            history_end = time.time()  # before any live rule records a state
            self.start_collector()
            if province is not None:
                self.start_fleet(province, history_end)
        for site in self.sites:
            self.start_agent(site.id)

    def dnsmasq_argv(self) -> list[str]:
        """A resolver on loopback that answers only *.hotspot.test and asks no one else."""
        return [
            "dnsmasq",
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            "--listen-address=127.0.0.1",
            f"--port={self.ports.dns}",
            "--address=/hotspot.test/127.0.0.1",
            f"--pid-file={self.workdir / 'dnsmasq.pid'}",
            "--log-facility=-",
        ]

    def write_inventory(self) -> None:
        """Write the stack's inventory (loopback scrape addresses, one free port per pulled agent) and
        its file_sd targets into the work directory.
        """
        for site in self.sites:
            self.agent_ports.setdefault(site.id, free_port())
        lines = ["sites:"]
        for site in self.sites:
            entry: dict[str, str | bool] = {**identity(site)}
            entry |= (
                {"push": True}
                if site.reach == "push"
                else {"scrape": f"127.0.0.1:{self.agent_ports[site.id]}"}
            )
            lines.append("  - " + json.dumps(entry, ensure_ascii=False))
        path = self.workdir / "sites.yaml"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        targets.write(inventory.load(path), self.workdir / "inventory")

    def load_history(self, inventory_path: Path) -> inventory.Inventory:
        """A month of history up to today for the inventory, generated once a day into the cache
        and hard-linked (blocks are never rewritten in place) into this run's data directory.
        Returns the inventory as the history used it."""
        now = dt.datetime.now(backfill.TZ)
        end = now.replace(minute=now.minute - now.minute % 5, second=0, microsecond=0)
        # A new generator or an edited inventory makes a new history, not one from this morning.
        made_from = hashlib.sha256(Path(backfill.__file__).read_bytes() + inventory_path.read_bytes())
        cached = self.history_cache / f"{inventory_path.stem}-{now:%Y-%m-%d}-{made_from.hexdigest()[:8]}"
        if not (cached / "inventory.yaml").exists():
            shutil.rmtree(cached, ignore_errors=True)
            print(f"generating a month of history for {inventory_path} (once a day; a few minutes)...")
            start = (end - dt.timedelta(days=31)).replace(hour=0, minute=0)
            stats = backfill.backfill(inventory_path, start, end, cached / "tmp")
            (cached / "tmp").rename(cached / "data")
            (cached / "data" / "inventory.yaml").rename(cached / "inventory.yaml")
            print(f"  {stats['samples']:,.0f} samples, TSDB {stats['tsdb_bytes'] / 1e6:.0f} MB in {cached}")
            for old in self.history_cache.glob(f"{inventory_path.stem}-*"):
                if old != cached:  # earlier histories; a running stack keeps its own hard links
                    shutil.rmtree(old, ignore_errors=True)
        shutil.copytree(
            cached / "data", self.workdir / "prometheus-data", copy_function=os.link, dirs_exist_ok=True
        )
        province = inventory.load(cached / "inventory.yaml")
        (self.workdir / "inventory" / "history.rules.yml").write_text(
            targets.rules_file(province), encoding="utf-8"
        )
        return province

    def start_fleet(self, province: inventory.Inventory, history_end: float) -> None:
        """Keep the history's province alive: the sites whose last state in the history (at
        `history_end`, Unix seconds, before any live rule ran) is "heard" are served and pushed by a
        fleet simulator; the others stay silent."""
        from collector.fleet import Fleet  # collector.fleet builds on this module

        url = (
            self.prometheus_url
            + "/api/v1/query?"
            + urllib.parse.urlencode(
                {"query": "last_over_time(site:hotspot_up:bool[2d]) == 1", "time": f"{history_end:.3f}"}
            )
        )
        with urllib.request.urlopen(url, timeout=30) as resp:
            heard = {r["metric"]["site"] for r in json.load(resp)["data"]["result"]}
        fleet = Fleet(province, self.speedup)
        fleet.inject([site_id for site_id in fleet.sites if site_id not in heard], "silent")
        (self.workdir / "inventory" / "sites-history.json").write_text(
            json.dumps(fleet.file_sd(), ensure_ascii=False), encoding="utf-8"
        )
        fleet.start(self.prometheus_url + "/api/v1/write")
        self.fleet = fleet

    def start_collector(self) -> None:
        """Start Alertmanager and Prometheus with the repository's configs rendered for loopback and
        the speed-up; waits until both answer.
        """
        # On a month of history the verdicts and the availability they read keep their real windows:
        # a backfilled week is judged as a week, not as the last 11 hours of a silent demo.
        # "Last heard" keeps its 3 days too, so the dead sites of a history made hours ago are still
        # known as heard once (down, not "never heard"); it runs at the sped-up pace, so that is known
        # before the sped-up "never heard" alert could fire.
        verdicts = ("requirement.yml", "verdict.yml") if self.history is not None else ()
        windows = (*verdicts, "site-history.yml") if self.history is not None else ()
        prom_config = render_prometheus(self.workdir, self.ports, self.speedup, windows, verdicts)
        am_config = render_alertmanager(self.workdir, self.speedup, self.webhook_url)
        am = self.spawn(
            "alertmanager",
            [
                ALERTMANAGER_BIN,
                f"--config.file={am_config}",
                f"--storage.path={self.workdir / 'alertmanager-data'}",
                f"--web.listen-address=127.0.0.1:{self.ports.alertmanager}",
                "--cluster.listen-address=",  # no gossip port on every address
            ],
        )
        prom = self.spawn(
            "prometheus",
            [
                PROMETHEUS_BIN,
                f"--config.file={prom_config}",
                f"--storage.tsdb.path={self.workdir / 'prometheus-data'}",
                f"--web.listen-address=127.0.0.1:{self.ports.prometheus}",
                "--web.enable-remote-write-receiver",
                "--web.enable-lifecycle",
                # Long enough to keep a backfilled month (blocks past retention are deleted at once).
                f"--storage.tsdb.retention.time={'400d' if self.history is not None else '1d'}",
            ],
        )
        wait_until(lambda: http_ok(self.alertmanager_url + "/-/ready"), 30, "alertmanager", am)
        wait_until(lambda: http_ok(self.prometheus_url + "/-/ready"), 30, "prometheus", prom)

    def site(self, site_id: str) -> LabSite:
        """The stack's site with id `site_id`; StopIteration when there is none."""
        return next(s for s in self.sites if s.id == site_id)

    def start_agent(self, site_id: str) -> None:
        """Write site `site_id`'s agent config and start the agent; waits until its /metrics answers."""
        site = self.site(site_id)
        config = self.workdir / f"{site.id}.yaml"
        config.write_text(
            agent_config(site, self.ports, self.workdir, self.speedup, self.has_dns), encoding="utf-8"
        )
        port = self.agent_ports[site.id]
        proc = self.spawn(
            f"agent-{site.id}",
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
        )
        wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/metrics"), 30, f"agent {site.id}", proc)

    def stop_process(self, name: str, timeout_s: float = 10) -> None:
        """SIGTERM process `name`, SIGKILL after `timeout_s` seconds; nothing when it is not running."""
        proc = self.processes.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def stop_agent(self, site_id: str) -> None:
        """Stop the agent of site `site_id` (its site goes silent, as a power cut would)."""
        self.stop_process(f"agent-{site_id}")

    def stop(self) -> None:
        """Stop the fleet and every process, newest first, and close their log files."""
        if self.fleet is not None:
            self.fleet.stop()
            self.fleet = None
        for name in reversed(list(self.processes)):
            self.stop_process(name)
        for log in self._logs:
            log.close()
        self._logs.clear()

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query against the local Prometheus."""
        url = self.prometheus_url + "/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=10) as resp:
            body = json.load(resp)
        return list(body["data"]["result"])

    def alerts(self) -> list[dict[str, Any]]:
        """Alertmanager's active alerts (/api/v2/alerts)."""
        with urllib.request.urlopen(self.alertmanager_url + "/api/v2/alerts", timeout=10) as resp:
            return list(json.load(resp))


def describe(stack: Stack, speedup: float) -> None:
    """Print what runs where: the URLs of the started stack, and what is missing."""
    if not stack.has_prometheus:
        print(
            f"Prometheus or Alertmanager is not installed ({PROMETHEUS_BIN}, {ALERTMANAGER_BIN}):\n"
            f"  {INSTALL_HINT}\nRunning the test servers and agents without them.\n"
        )
    if not stack.has_dns:
        print("dnsmasq is not installed (apt-get install dnsmasq-base): the agents' DNS probe is off.\n")
    print(f"hotspot-monitor local stack (intervals ÷ {speedup:g}); logs and data in {stack.workdir}")
    if stack.has_prometheus:
        print(f"  Prometheus    {stack.prometheus_url}  (try: site:hotspot_up:bool, ALERTS)")
        print(f"  Alertmanager  {stack.alertmanager_url}")
    fast, slow = stack.ports.speedtest, stack.ports.speedtest_slow
    print(
        f"  test servers  http://127.0.0.1:{fast}/ ({stack.fast_pace_mbps:g} Mbit/s), "
        f"http://127.0.0.1:{slow}/ ({stack.slow_pace_mbps:g} Mbit/s)"
    )
    if stack.fleet is not None:
        live = sum(1 for sim in stack.fleet.sites.values() if sim.heard(time.time()))
        print(
            f"  province      {stack.fleet.inventory.sites[0].province}: a month of history, "
            f"{live} of {len(stack.fleet.sites)} sites live from the fleet simulator"
        )
        month = dt.datetime.now(backfill.TZ).strftime("%Y-%m")
        print(
            f"  report        .venv/bin/hotspot-collector report --month {month} "
            f'--province "{stack.fleet.inventory.sites[0].province}" --prometheus {stack.prometheus_url}'
        )
    for site in stack.sites:
        how = "pushes to Prometheus" if site.reach == "push" else "scraped"
        server = f", {stack.slow_pace_mbps:g} Mbit/s test server" if site.slow else ""
        port = stack.agent_ports[site.id]
        print(f"  agent {site.id:<9} http://127.0.0.1:{port}/metrics  ({how}{server})")


def main(argv: list[str] | None = None) -> int:
    """`python -m collector.localstack`: run the stack until Ctrl-C; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m collector.localstack", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--speedup", type=float, default=15.0, help="divide every interval by this (default 15)"
    )
    parser.add_argument(
        "--workdir", type=Path, help="keep data and logs here (default: a temporary directory)"
    )
    parser.add_argument(
        "--history",
        type=Path,
        default=ROOT / "collector" / "examples" / "nam-dinh.yaml",
        help="start on a month of backfilled history for this inventory (default: %(default)s)",
    )
    parser.add_argument("--no-history", action="store_true", help="start with an empty Prometheus")
    args = parser.parse_args(argv)
    if args.speedup <= 0:
        print("--speedup: must be greater than 0", file=sys.stderr)
        return 2

    def stop_on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # a service manager's SIGTERM stops the stack like Ctrl-C

    signal.signal(signal.SIGTERM, stop_on_term)
    # A closed terminal's SIGHUP would end this process by default and leave Prometheus,
    # Alertmanager and the agents running (they take SIGHUP as "reload"): stop them all instead.
    signal.signal(signal.SIGHUP, stop_on_term)
    with tempfile.TemporaryDirectory(prefix="hotspot-localstack-") as tmp:
        workdir = args.workdir or Path(tmp)
        stack = Stack(workdir, speedup=args.speedup, history=None if args.no_history else args.history)
        try:
            stack.start()
            describe(stack, args.speedup)
            print("Ctrl-C stops everything.")
            while True:
                time.sleep(1)
                for name, proc in list(stack.processes.items()):
                    if proc.poll() is not None:
                        print(
                            f"{name} exited with {proc.returncode}; see {stack.log_path(name)}",
                            file=sys.stderr,
                        )
                        stack.processes.pop(name)
        except KeyboardInterrupt:
            print("\nstopping...")
        except (RuntimeError, inventory.InventoryError) as exc:
            print(f"local stack: {exc}; logs in {workdir}", file=sys.stderr)
            return 1
        finally:
            # A second Ctrl-C or SIGTERM (make passes its own on) must not cut the stopping short
            # and leave Prometheus or an agent behind.
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                signal.signal(sig, signal.SIG_IGN)
            stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
