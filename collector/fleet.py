"""A province-scale fleet simulator for the alerting: every site of an inventory, from one process.

`Fleet(inventory, speedup)` produces, in real time with every interval divided by `speedup`, the
series real agents would: scraped sites are served from one HTTP server (one path per site, given
to Prometheus as file_sd targets with `__metrics_path__`), pushing sites are sent by remote write
(agent/push/encoding.py), one request for the whole fleet per push interval. Faults
are injected per site (so per commune or ISP by selecting its sites): silence, uplink down with
the gateway answering, one ping target ignoring ICMP, a crash loop, a flapping link, clock skew.

`Collector` runs a real Prometheus and Alertmanager with the repository's rules, routes and
templates (timers divided by `speedup`); every receiver becomes a webhook to a `Recorder`, and
Telegram receivers can go to `FakeTelegram`, which enforces Telegram's limits (4,096 characters,
valid HTML, a message rate per chat). Used by tests/test_alerting_integration.py and bench/.

Series per site (the ones the alert rules read): hotspot_agent_clock_seconds,
hotspot_agent_start_time_seconds, hotspot_ping_{up,loss_ratio,rtt_seconds} for two internet
targets and the gateway, hotspot_diagnosis{cause}, hotspot_config_last_reload_successful.
"""

from __future__ import annotations

import contextlib
import html.parser
import http.client
import json
import struct
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from agent.push import encoding
from collector import targets
from collector.inventory import Inventory, InventorySite
from collector.localstack import (
    ALERTMANAGER_BIN,
    ALERTMANAGER_DIR,
    PROMETHEUS_BIN,
    PROMETHEUS_DIR,
    free_port,
    http_ok,
    render_rules,
    scale,
    wait_until,
)

SCRAPE_S = 20.0  # production: the hotspot-agent job's scrape interval (prometheus.yml)
PUSH_S = 15.0  # production: the agent's push.interval_s default
INTERNET = ("1.1.1.1", "8.8.8.8")
CAUSES = ("healthy", "lan_fault", "uplink_fault", "dns_fault", "captive_portal", "unknown")
FAULTS = ("silent", "flapping", "uplink_down", "one_target_silent", "crash_loop", "clock_skew")


@dataclass
class Fault:
    """One fault on one site from `start` (time.time()) until `end` (None: for good).

    flapping: silent for `down_s` of every `period_s`; crash_loop: restarts every `period_s` and
    is unreachable for `down_s` after each start; clock_skew: the clock is off by `skew_s`."""

    kind: str
    start: float
    end: float | None = None
    period_s: float = 0.0
    down_s: float = 0.0
    skew_s: float = 0.0

    def active(self, now: float) -> bool:
        """True while the fault is in effect at `now` (simulated seconds): from `start`, until `end`."""
        return self.start <= now and (self.end is None or now < self.end)


@dataclass
class SimSite:
    """One simulated agent: its inventory entry, when it started (simulated seconds) and the faults
    applied to it; `listed` is False for a pushing site the inventory lacks.
    """

    site: InventorySite
    started: float
    faults: list[Fault] = field(default_factory=list)
    listed: bool = True

    def _active(self, kind: str, now: float) -> Fault | None:
        for fault in self.faults:
            if fault.kind == kind and fault.active(now):
                return fault
        return None

    def start_time(self, now: float) -> float:
        """The agent's process start time at `now`: restarted every `period_s` during a crash loop."""
        crash = self._active("crash_loop", now)
        if crash is None:
            return self.started
        return crash.start + ((now - crash.start) // crash.period_s) * crash.period_s

    def heard(self, now: float) -> bool:
        """False while the agent cannot be scraped or cannot push."""
        if self._active("silent", now):
            return False
        flap = self._active("flapping", now)
        if flap is not None and (now - flap.start) % flap.period_s < flap.down_s:
            return False
        crash = self._active("crash_loop", now)
        return not (crash is not None and now - self.start_time(now) < crash.down_s)

    def samples(self, now: float) -> list[tuple[str, dict[str, str], float]]:
        """(metric name, labels besides the identity, value) as the agent would export them."""
        uplink = self._active("uplink_down", now) is not None
        deaf = self._active("one_target_silent", now) is not None
        skew = self._active("clock_skew", now)
        out: list[tuple[str, dict[str, str], float]] = [
            ("hotspot_agent_clock_seconds", {}, now + (skew.skew_s if skew else 0.0)),
            ("hotspot_agent_start_time_seconds", {}, self.start_time(now)),
            ("hotspot_config_last_reload_successful", {}, 1.0),
        ]
        for target, role in [(t, "internet") for t in INTERNET] + [("192.168.1.1", "gateway")]:
            answers = role == "gateway" or not (uplink or (deaf and target == INTERNET[1]))
            labels = {"target": target, "role": role, "method": "icmp"}
            out.append(("hotspot_ping_up", labels, 1.0 if answers else 0.0))
            out.append(("hotspot_ping_loss_ratio", labels, 0.0 if answers else 1.0))
            if answers:
                out.append(("hotspot_ping_rtt_seconds", {**labels, "stat": "avg"}, 0.03))
        cause = "uplink_fault" if uplink else "healthy"
        out += [("hotspot_diagnosis", {"cause": c}, 1.0 if c == cause else 0.0) for c in CAUSES]
        return out


def exposition(identity: dict[str, str], samples: Iterable[tuple[str, dict[str, str], float]]) -> str:
    """Prometheus text exposition of `samples` ((name, labels, value) triples), each with the
    `identity` labels first, e.g. `hotspot_up{site="nd-1-ubnd",role="internet"} 1.0`.
    """
    lines = []
    for name, labels, value in samples:
        pairs = ",".join(f'{k}="{v}"' for k, v in {**identity, **labels}.items())
        lines.append(f"{name}{{{pairs}}} {value!r}")
    return "\n".join(lines) + "\n"


class _QuietServer(ThreadingHTTPServer):
    """A scraper hanging up (Prometheus stopping) is no error worth a traceback."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class Fleet:
    """Every site of `inventory`, plus `unlisted` pushing site ids the inventory lacks."""

    def __init__(self, inventory: Inventory, speedup: float, unlisted: Iterable[InventorySite] = ()) -> None:
        now = time.time()
        self.inventory = inventory
        self.speedup = speedup
        self.push_interval_s = PUSH_S / speedup
        self.sites = {s.id: SimSite(s, now) for s in inventory.sites}
        self.sites |= {s.id: SimSite(s, now, listed=False) for s in unlisted}
        self.pushed_requests = 0
        self.pushed_samples = 0
        self.push_failures = 0
        self._labels: dict[tuple[str, str, str], bytes] = {}
        self._stop = threading.Event()
        fleet = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: one connection per target, as from an agent

            def do_GET(self) -> None:
                parts = self.path.strip("/").split("/")
                sim = fleet.sites.get(parts[1]) if len(parts) == 3 and parts[0] == "sites" else None
                now = time.time()
                if sim is None:
                    self.send_error(404)
                    return
                if not sim.heard(now):
                    self.close_connection = True  # a dead agent: the scrape fails at once
                    return
                body = exposition(sim.site.labels(), sim.samples(now)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                with contextlib.suppress(OSError):  # Prometheus gave up on a slow scrape
                    self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self._threads: list[threading.Thread] = []

    # --- faults -----------------------------------------------------------------------------

    def select(
        self, *, commune: str | None = None, isp: str | None = None, reach: str | None = None
    ) -> list[str]:
        """Ids of the listed sites matching every given attribute."""
        return [
            sim.site.id
            for sim in self.sites.values()
            if sim.listed
            and (commune is None or sim.site.commune == commune)
            and (isp is None or sim.site.isp == isp)
            and (reach is None or sim.site.reach == reach)
        ]

    def inject(
        self, site_ids: Iterable[str], kind: str, duration_s: float | None = None, **params: float
    ) -> None:
        """Start a fault now on each site; `duration_s` None keeps it for good. Errors: ValueError
        for an unknown fault kind, KeyError for an unknown site id."""
        if kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r}: one of {', '.join(FAULTS)}")
        now = time.time()
        for site_id in site_ids:
            end = None if duration_s is None else now + duration_s
            self.sites[site_id].faults.append(Fault(kind, now, end, **params))

    def clear(self, site_ids: Iterable[str]) -> None:
        """End every fault of the given sites (KeyError for an id not in the fleet)."""
        for site_id in site_ids:
            self.sites[site_id].faults.clear()

    # --- serving and pushing ----------------------------------------------------------------

    def file_sd(self) -> list[dict[str, Any]]:
        """Target groups for the scraped sites: one path per site on this process's server."""
        return [
            {
                "targets": [f"127.0.0.1:{self.port}"],
                "labels": {
                    **targets.target_labels(sim.site),
                    "__metrics_path__": f"/sites/{sim.site.id}/metrics",
                },
            }
            for sim in self.sites.values()
            if sim.site.reach == "pull"
        ]

    def _encoded(self, sim: SimSite, name: str, labels: dict[str, str]) -> bytes:
        key = (sim.site.id, name, json.dumps(labels, sort_keys=True))
        enc = self._labels.get(key)
        if enc is None:
            full = {
                "__name__": name,
                "job": "hotspot-agent",
                "instance": sim.site.id,
                **sim.site.labels(),
                **labels,
            }
            enc = self._labels[key] = encoding.encode_labels(full)
        return enc

    def write_request(self, now: float) -> tuple[bytes, int]:
        """One compressed WriteRequest with a sample of every series of every pushing site heard
        now; returns it and its number of samples."""
        ts = int(now * 1000)
        series = []
        for sim in self.sites.values():
            if sim.site.reach != "push" or not sim.heard(now):
                continue
            for name, labels, value in sim.samples(now):
                series.append((self._encoded(sim, name, labels), [(ts, struct.pack("<d", value))]))
        return encoding.compress(encoding.encode_write_request(series)), len(series)

    def _push_loop(self, url: str) -> None:
        parts = urllib.parse.urlsplit(url)
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=10)
        headers = {
            "Content-Encoding": "snappy",
            "Content-Type": "application/x-protobuf",
            "X-Prometheus-Remote-Write-Version": "0.1.0",
        }
        next_at = time.monotonic()
        while not self._stop.is_set():
            body, n = self.write_request(time.time())
            try:
                conn.request("POST", parts.path, body=body, headers=headers)
                resp = conn.getresponse()
                resp.read()
                ok = resp.status < 300
            except (OSError, http.client.HTTPException):
                conn.close()
                ok = False
            self.pushed_requests += 1
            self.pushed_samples += n if ok else 0
            self.push_failures += 0 if ok else 1
            next_at += self.push_interval_s
            self._stop.wait(max(0.0, next_at - time.monotonic()))
        conn.close()

    def start(self, push_url: str) -> None:
        """Serve the pulled sites' /metrics and start pushing the pushing sites to `push_url` (a
        remote-write URL), each on a daemon thread.
        """
        self._threads = [
            threading.Thread(target=self.server.serve_forever, daemon=True),
            threading.Thread(target=self._push_loop, args=(push_url,), daemon=True),
        ]
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        """Stop serving and pushing; returns when both threads have ended."""
        self._stop.set()
        if self._threads:  # shutdown() waits for serve_forever(), which only start() runs
            self.server.shutdown()
        self.server.server_close()
        for t in self._threads:
            t.join(15)  # the push thread closes its connection after its current push


# --- receivers ---------------------------------------------------------------------------------


@dataclass
class Notification:
    """One webhook notification as Alertmanager sent it: when it arrived, to which receiver (the
    URL path), and its JSON body.
    """

    at: float  # time.monotonic() on arrival
    receiver: str
    payload: dict[str, Any]


class Recorder:
    """Alertmanager's webhook receiver: records every notification, by receiver (the URL path)."""

    def __init__(self) -> None:
        self.received: list[Notification] = []
        rec = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                rec.received.append(Notification(time.monotonic(), self.path.strip("/"), json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def alerts(
        self, status: str | None = None, **labels: str
    ) -> Iterator[tuple[Notification, dict[str, Any]]]:
        """Every (notification, alert) whose alert has this status and these label values."""
        for note in self.received:
            for alert in note.payload["alerts"]:
                if status is not None and alert["status"] != status:
                    continue
                if all(alert["labels"].get(k) == v for k, v in labels.items()):
                    yield note, alert

    def close(self) -> None:
        """Stop the receiver's HTTP server and close its socket."""
        self.server.shutdown()
        self.server.server_close()


TELEGRAM_TAGS = {
    "b",
    "strong",
    "i",
    "em",
    "u",
    "ins",
    "s",
    "strike",
    "del",
    "a",
    "code",
    "pre",
    "span",
    "tg-spoiler",
}


def telegram_html_problem(text: str) -> str | None:
    """None when Telegram's HTML parse mode accepts `text`, else why not (as Telegram's parser
    refuses unknown tags, unclosed or crossed tags, and a bare '<' or '&')."""
    stack: list[str] = []
    problems: list[str] = []

    class Parser(html.parser.HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            if tag not in TELEGRAM_TAGS:
                problems.append(f"unsupported start tag {tag!r}")
            stack.append(tag)

        def handle_endtag(self, tag: str) -> None:
            if not stack or stack.pop() != tag:
                problems.append(f"unexpected end tag {tag!r}")

    parser = Parser(convert_charrefs=False)
    parser.feed(text)
    parser.close()
    if stack:
        problems.append(f"unclosed tag {stack[-1]!r}")
    stripped = text
    for tag in TELEGRAM_TAGS:
        stripped = stripped.replace(f"<{tag}>", "").replace(f"</{tag}>", "")
    if "<" in stripped or ">" in stripped.replace("&gt;", ""):
        problems.append("a bare '<' or '>'")
    return problems[0] if problems else None


class FakeTelegram:
    """The Bot API's sendMessage, with Telegram's limits: at most 4,096 characters, valid HTML in
    parse_mode HTML, and at most `per_minute` messages per chat per (scaled) minute, above which it
    answers 429 with retry_after like Telegram does. Records what it accepted and refused."""

    def __init__(self, per_minute: int = 20, minute_s: float = 60.0) -> None:
        self.accepted: list[dict[str, Any]] = []
        self.refused: list[tuple[int, str, dict[str, Any]]] = []
        self.sent_at: dict[str, list[float]] = {}
        tg = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
                if self.headers.get("Content-Type", "").startswith("application/json"):
                    msg = json.loads(raw)
                else:
                    msg = {k: v[0] for k, v in urllib.parse.parse_qs(raw).items()}
                if not self.path.endswith("/sendMessage"):
                    answer: dict[str, Any] = {
                        "ok": True,
                        "result": {"id": 1, "is_bot": True, "first_name": "x"},
                    }
                    code = 200
                else:
                    code, answer = tg.send(msg)
                body = json.dumps(answer).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.per_minute = per_minute
        self.minute_s = minute_s
        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def send(self, msg: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Answer one sendMessage call as Telegram would: (HTTP status, JSON body). 200 with
        `ok: true` when accepted; 400 with a description for empty or too long text or bad HTML;
        429 with `parameters.retry_after` (seconds) above the per-minute limit.
        """
        text = str(msg.get("text", ""))
        chat = str(msg.get("chat_id", ""))
        now = time.monotonic()
        recent = [t for t in self.sent_at.get(chat, []) if now - t < self.minute_s]
        problem = None
        code = 400
        if len(recent) >= self.per_minute:
            code, problem = 429, "Too Many Requests: retry later"
        elif not text or len(text) > 4096:
            problem = "Bad Request: message is too long" if text else "Bad Request: message text is empty"
        elif msg.get("parse_mode") == "HTML":
            why = telegram_html_problem(text)
            problem = None if why is None else f"Bad Request: can't parse entities: {why}"
        if problem is not None:
            self.refused.append((code, problem, msg))
            answer: dict[str, Any] = {"ok": False, "error_code": code, "description": problem}
            if code == 429:
                answer["parameters"] = {"retry_after": max(1, round(self.minute_s / self.per_minute))}
            return code, answer
        self.sent_at[chat] = [*recent, now]
        self.accepted.append(msg)
        result = {
            "message_id": len(self.accepted),
            "date": int(time.time()),
            "chat": {"id": int(chat or 0), "type": "group"},
            "text": text,
        }
        return 200, {"ok": True, "result": result}

    def close(self) -> None:
        """Stop the fake Bot API's HTTP server and close its socket."""
        self.server.shutdown()
        self.server.server_close()


# --- the collector ------------------------------------------------------------------------------


def render_prometheus(workdir: Path, fleet: Fleet, prom_port: int, am_port: int, speedup: float) -> Path:
    """prometheus.yml for the fleet: the repository's rules with intervals divided by `speedup`,
    the inventory rules, the hotspot-agent job pointed at the fleet's server."""
    doc = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text(encoding="utf-8"))
    for key in ("scrape_interval", "evaluation_interval"):
        doc["global"][key] = scale(doc["global"][key], speedup)
    doc["global"]["scrape_timeout"] = doc["global"]["scrape_interval"]
    render_rules(PROMETHEUS_DIR / "rules", workdir / "rules", speedup)
    inventory_dir = workdir / "inventory"
    inventory_dir.mkdir(parents=True, exist_ok=True)
    (inventory_dir / targets.RULES_FILE).write_text(targets.rules_file(fleet.inventory), encoding="utf-8")
    (inventory_dir / "sites-fleet.json").write_text(
        json.dumps(fleet.file_sd(), ensure_ascii=False), encoding="utf-8"
    )
    doc["rule_files"] = [str(workdir / "rules" / "*.yml"), str(inventory_dir / "*.rules.yml")]
    doc["alerting"]["alertmanagers"] = [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]
    agent_job = next(j for j in doc["scrape_configs"] if j["job_name"] == "hotspot-agent")
    agent_job["scrape_interval"] = scale(agent_job["scrape_interval"], speedup)
    agent_job["scrape_timeout"] = agent_job["scrape_interval"]
    agent_job["file_sd_configs"] = [{"files": [str(inventory_dir / "sites-*.json")]}]
    doc["scrape_configs"] = [
        agent_job,
        {"job_name": "prometheus", "static_configs": [{"targets": [f"127.0.0.1:{prom_port}"]}]},
    ]
    path = workdir / "prometheus.yml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def render_alertmanager(
    workdir: Path, speedup: float, recorder_url: str, telegram: FakeTelegram | None = None
) -> Path:
    """alertmanager.yml with the repository's routes, inhibitions and templates, timers divided by
    `speedup`; every receiver a webhook to `recorder_url/<receiver>`, and receivers that have a
    Telegram config in the repository also send it (same template) to `telegram`."""
    doc = yaml.safe_load((ALERTMANAGER_DIR / "alertmanager.yml").read_text(encoding="utf-8"))

    def shrink(route: dict[str, Any]) -> None:
        for key in ("group_wait", "group_interval", "repeat_interval"):
            if key in route:
                route[key] = scale(route[key], speedup)
        for sub in route.get("routes", []):
            shrink(sub)

    shrink(doc["route"])
    doc["templates"] = [str(ALERTMANAGER_DIR / "templates" / "*.tmpl")]
    doc["global"] = {"resolve_timeout": scale(doc["global"].get("resolve_timeout", "5m"), speedup)}
    receivers = []
    for r in doc["receivers"]:
        new: dict[str, Any] = {
            "name": r["name"],
            "webhook_configs": [{"url": f"{recorder_url}/{r['name']}", "send_resolved": True}],
        }
        if telegram is not None and r.get("telegram_configs"):
            new["telegram_configs"] = [
                {**c, "api_url": telegram.url, "bot_token": "123:fleet"} for c in r["telegram_configs"]
            ]
        receivers.append(new)
    doc["receivers"] = receivers
    path = workdir / "alertmanager.yml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


class Collector:
    """Prometheus 2.42 + Alertmanager 0.25 on loopback for a fleet. A context manager."""

    def __init__(
        self, workdir: Path, fleet: Fleet, recorder: Recorder, telegram: FakeTelegram | None = None
    ) -> None:
        self.workdir = workdir
        self.fleet = fleet
        self.prom_port = free_port()
        self.am_port = free_port()
        self.prom_url = f"http://127.0.0.1:{self.prom_port}"
        self.am_url = f"http://127.0.0.1:{self.am_port}"
        self.recorder = recorder
        self.telegram = telegram
        self.procs: list[subprocess.Popen[str]] = []

    def __enter__(self) -> Collector:
        speedup = self.fleet.speedup
        am_config = render_alertmanager(self.workdir, speedup, self.recorder.url, self.telegram)
        prom_config = render_prometheus(self.workdir, self.fleet, self.prom_port, self.am_port, speedup)
        # The children hold their own copies of the log file; ours closes once both started.
        with (self.workdir / "collector.log").open("w", encoding="utf-8") as log:
            am = subprocess.Popen(
                [
                    ALERTMANAGER_BIN,
                    f"--config.file={am_config}",
                    f"--storage.path={self.workdir / 'am-data'}",
                    f"--web.listen-address=127.0.0.1:{self.am_port}",
                    "--cluster.listen-address=",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
            )
            self.procs.append(am)
            prom = subprocess.Popen(
                [
                    PROMETHEUS_BIN,
                    f"--config.file={prom_config}",
                    f"--storage.tsdb.path={self.workdir / 'prom-data'}",
                    f"--web.listen-address=127.0.0.1:{self.prom_port}",
                    "--web.enable-remote-write-receiver",
                    "--storage.tsdb.retention.time=1d",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
            )
            self.procs.append(prom)
        try:
            wait_until(lambda: http_ok(self.am_url + "/-/ready"), 30, "alertmanager", am)
            wait_until(lambda: http_ok(self.prom_url + "/-/ready"), 60, "prometheus", prom)
        except BaseException:
            self.__exit__()
            raise
        self.fleet.start(self.prom_url + "/api/v1/write")
        return self

    def __exit__(self, *exc: object) -> None:
        self.fleet.stop()
        for proc in reversed(self.procs):
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()

    def query(self, promql: str) -> list[dict[str, Any]]:
        """Instant PromQL query; the `data.result` list of Prometheus' answer. Raises urllib.error.URLError
        (or HTTPError for a refused query) when Prometheus cannot answer.
        """
        url = f"{self.prom_url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
        with urllib.request.urlopen(url, timeout=10) as resp:
            return list(json.loads(resp.read())["data"]["result"])

    def alerts(self) -> list[dict[str, Any]]:
        """The alerts Alertmanager holds now (its /api/v2/alerts list)."""
        with urllib.request.urlopen(self.am_url + "/api/v2/alerts", timeout=10) as resp:
            return list(json.loads(resp.read()))
