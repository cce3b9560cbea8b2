"""A province with history: a realistic month of measurements for an inventory, backfilled into a
Prometheus data directory with Prometheus's own tool (`promtool tsdb create-blocks-from openmetrics`).

`hotspot-collector backfill --inventory FILE --start 2026-10-29 --end 2026-12-02 --out DIR` writes
TSDB blocks into DIR (Prometheus's --storage.tsdb.path), and DIR/inventory.yaml: the inventory as
the history used it (a few sites put in maintenance and a few ISPs changed, so the month shows
them; deterministic per --seed). Every site gets a profile (good, slow, marginal, flaky, slow
latency, dead from some day on, never heard); one commune loses every site for 36 hours and one ISP
has a bad day (goodput at 40%).

What is written, per site (identity labels as the agents' series), is what the agents and the
collector's rules would have recorded, at a coarse step:
- every 5 min: `site:hotspot_up:bool` and `site:hotspot_internet_up:bool` (what the site-state rules
  record; availability is their average);
- every hour: `site:hotspot_inventory:info`, `hotspot_site_info`, `hotspot_ping_up`,
  `hotspot_ping_rtt_seconds`, `site:hotspot_last_heard:timestamp`, `hotspot_diagnosis` (healthy, or
  an uplink fault for slow and laggy lines) and its `_since_timestamp_seconds`;
- every 6 hours: the latency test counters and RTT histogram (60 tests an hour);
- after each bandwidth test (every 6 h): the goodput histogram, the agent's test counters (the
  contract check) and the last test's goodput gauges;
- what only the site and fleet dashboards read (`agent_health`): hourly ping jitter and loss,
  DNS, HTTP, wifi, device and interface series; every 6 h the agent's version, clock, start time,
  config state, push queue (pushing sites), test data, budget, idle/loaded latency and probe
  failure counters.
Nothing is written while a site is not heard. `truth` returns the figures the generator knows, per
site and calendar month, to check the rules and the report against.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import datetime as dt
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import yaml

from agent.probes.bandwidth import GOODPUT_BOUNDS, GOODPUT_BOUNDS_MBPS
from agent.probes.ping import RTT_BOUNDS_S
from collector.inventory import Inventory, InventoryError, InventorySite, load

__all__ = ["GOODPUT_BOUNDS_MBPS", "SiteTruth", "backfill", "month_of"]
STATE_STEP = 300  # s
HOUR = 3600
TEST_EVERY = 6 * HOUR
COUNTER_EVERY = 6 * HOUR  # latency test counters: sampled this often
PING_TESTS_PER_HOUR = 60
PROFILES = ("good", "slow", "marginal", "flaky", "laggy", "dead", "never")
WEIGHTS = (0.76, 0.06, 0.05, 0.06, 0.03, 0.03, 0.01)
ISPS = ("Viettel", "VNPT", "FPT Telecom")


@dataclass
class SiteTruth:
    """What the generator made for one site within one period (counts are exact)."""

    tests: dict[str, int] = field(default_factory=lambda: {"download": 0, "upload": 0})
    goodputs: dict[str, list[float]] = field(default_factory=lambda: {"download": [], "upload": []})
    first_test: float | None = None  # when its first bandwidth test in the period ran
    latency_tests: int = 0
    latency_within: int = 0
    up_steps: int = 0
    steps: int = 0

    @property
    def availability(self) -> float:
        """Share (0-1) of the period's state steps in which the site was up; 0.0 for no steps."""
        return self.up_steps / self.steps if self.steps else 0.0


@dataclass(frozen=True)
class Plan:
    """The history's shape: who is what, and the province-wide events."""

    start: int
    end: int
    profiles: dict[str, str]
    dead_from: dict[str, int]
    outage_commune: str
    outage: tuple[int, int]
    bad_isp: str
    bad_day: tuple[int, int]
    seed: int
    midnight: frozenset[str]


def demo_inventory(path: Path, seed: int) -> dict[str, Any]:
    """The inventory's YAML with 1% of sites (at least one) in maintenance and ISPs spread over three (so the
    history has maintenance and an ISP to have a bad day)."""
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    rng = random.Random(seed)
    for raw in doc["sites"]:
        raw["isp"] = rng.choices(ISPS, (0.6, 0.3, 0.1))[0]
    for i in rng.sample(range(len(doc["sites"])), max(1, len(doc["sites"]) // 100)):
        doc["sites"][i]["maintenance"] = True
    return dict(doc)


def plan(inv: Inventory, start: int, end: int, seed: int) -> Plan:
    """Choose the history's shape from `seed` alone (same seed, same month): each site's profile
    (PROFILES, weighted by WEIGHTS), when dead sites die, and the province-wide events.
    `start` and `end` are Unix seconds.
    """
    rng = random.Random(seed)
    profiles, dead_from = {}, {}
    for site in inv.sites:
        profile = rng.choices(PROFILES, WEIGHTS)[0]
        profiles[site.id] = profile
        if profile == "dead":
            dead_from[site.id] = start + rng.randrange(0, end - start) // STATE_STEP * STATE_STEP
    communes = sorted({s.commune for s in inv.sites})
    span = end - start
    o_start = start + (span // 3) // HOUR * HOUR
    b_start = start + (2 * span // 3) // 86400 * 86400
    return Plan(
        start,
        end,
        profiles,
        dead_from,
        rng.choice(communes),
        (o_start, o_start + 36 * HOUR),
        rng.choice(ISPS[:2]),
        (b_start, b_start + 86400),
        seed,
        frozenset({next(s.id for s in inv.sites if s.commune == c) for c in communes}),
    )


def _labels(pairs: dict[str, str]) -> str:
    return ",".join(f'{k}="{_esc(v)}"' for k, v in pairs.items() if v)


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _inventory_labels(site: InventorySite) -> dict[str, str]:
    from collector.targets import inventory_labels

    return inventory_labels(site)


class _Site:
    """One site's history, generated step by step (deterministic per seed and site id)."""

    def __init__(self, site: InventorySite, p: Plan) -> None:
        self.site = site
        self.p = p
        self.profile = p.profiles[site.id]
        self.rng = random.Random(f"{p.seed}/{site.id}")
        self.ident = site.labels()
        base = {"good": 160.0, "slow": 55.0, "marginal": 85.0, "flaky": 150.0, "laggy": 140.0}
        self.median_mbps = base.get(self.profile, 150.0) * self.rng.uniform(0.85, 1.2)
        self.within_share = 0.85 if self.profile == "laggy" else 0.995
        # Flaky sites lose their line for some hours a few times a week.
        self.outages: list[tuple[int, int]] = []
        if self.profile == "flaky":
            t = p.start
            while t < p.end:
                t += int(self.rng.expovariate(1 / (2 * 86400)))
                self.outages.append((t, t + self.rng.randrange(2, 14) * HOUR))
        if site.commune == p.outage_commune:
            self.outages.append(p.outage)
        # The first site of each commune tests at midnight (UTC+7): a test exactly on a month's first
        # instant, the boundary case; the others at any hour of the 6. On the hour, like every other
        # coarse series: a graph's step (5, 10, 15 ... 60 min, aligned to itself by Grafana) then
        # lands on the samples instead of falling between them.
        self.phase = 0 if site.id in p.midnight else self.rng.randrange(0, TEST_EVERY // HOUR) * HOUR

    def heard(self, t: int) -> bool:
        if self.site.maintenance or self.profile == "never":
            return False
        if self.profile == "dead" and t >= self.p.dead_from[self.site.id]:
            return False
        return not any(a <= t < b for a, b in self.outages)

    def goodput_bps(self, t: int, direction: str) -> float:
        mbps = self.median_mbps * (0.9 if direction == "upload" else 1.0)
        if self.site.isp == self.p.bad_isp and self.p.bad_day[0] <= t < self.p.bad_day[1]:
            mbps *= 0.4
        return mbps * 1e6 * self.rng.lognormvariate(0, 0.18)


@dataclass
class _Series:
    name: str
    labels: str
    samples: list[tuple[int, float]] = field(default_factory=list)

    def put(self, t: int, value: float) -> None:
        """A counter sample, written only when it changed or a day has passed: a bucket that no
        test reaches stays one sample a day (increase() and last_over_time() need no more), which
        more than halves the history's size."""
        if not self.samples or self.samples[-1][1] != value or t - self.samples[-1][0] >= 86400:
            self.samples.append((t, value))


def site_history(
    site: InventorySite, p: Plan, truths: dict[str, dict[str, SiteTruth]] | None = None
) -> Iterator[_Series]:
    """The site's series with their samples; fills `truths[site][period]` when given."""
    s = _Site(site, p)
    ident = s.ident
    agent = {"job": "hotspot-agent", "instance": site.id, **ident}
    truth_of = _truth_lookup(truths, site.id)
    up = _Series("site:hotspot_up:bool", _labels(ident))
    inet = _Series("site:hotspot_internet_up:bool", _labels(ident))
    ping_up = _Series(
        "hotspot_ping_up", _labels({**agent, "target": "1.1.1.1", "role": "internet", "method": "icmp"})
    )
    last = _Series("site:hotspot_last_heard:timestamp", _labels(ident))
    heard_at: float | None = None
    for t in range(p.start, p.end, STATE_STEP):
        h = 1.0 if s.heard(t) else 0.0
        up.samples.append((t, h))
        inet.samples.append((t, h))
        if h:
            heard_at = t
        if (t - p.start) % HOUR == 0:
            if h:
                ping_up.samples.append((t, 1.0))
            if heard_at is not None:
                last.samples.append((t, heard_at))
        tr = truth_of(t)
        if tr is not None:
            tr.steps += 1
            tr.up_steps += int(h)
    yield from (up, inet, ping_up, last)

    info = _Series("site:hotspot_inventory:info", _labels(_inventory_labels(site)))
    site_info = _Series(
        "hotspot_site_info",
        _labels(
            {
                **agent,
                "name": site.name,
                "commune_code": site.commune_code,
                "latitude": "" if site.latitude is None else f"{site.latitude:.5f}",
                "longitude": "" if site.longitude is None else f"{site.longitude:.5f}",
                "isp": site.isp,
                "contracted_download_mbps": f"{site.contracted_download_mbps:g}",
                "contracted_upload_mbps": f"{site.contracted_upload_mbps:g}",
            }
        ),
    )
    ping_lbl = {**agent, "target": "1.1.1.1", "role": "internet"}
    ping_tests = _Series("hotspot_ping_tests_total", _labels(ping_lbl))
    ping_within = _Series("hotspot_ping_tests_within_limit_total", _labels(ping_lbl))
    rtt_buckets = [
        _Series("hotspot_ping_test_rtt_seconds_bucket", _labels({**ping_lbl, "le": _go(b)}))
        for b in RTT_BOUNDS_S
    ]
    rtt_inf = _Series("hotspot_ping_test_rtt_seconds_bucket", _labels({**ping_lbl, "le": "+Inf"}))
    rtt_count = _Series("hotspot_ping_test_rtt_seconds_count", _labels(ping_lbl))
    rtt_sum = _Series("hotspot_ping_test_rtt_seconds_sum", _labels(ping_lbl))
    rtt_gauge = _Series("hotspot_ping_rtt_seconds", _labels({**ping_lbl, "method": "icmp", "stat": "avg"}))
    n_rtt = len(RTT_BOUNDS_S)
    counts = [0] * n_rtt
    total = within = 0
    rtt_total = 0.0
    # The agent's own diagnosis: a line that is slow or laggy reads as an ISP uplink fault.
    cause = "uplink_fault" if s.profile in ("slow", "marginal", "laggy") else "healthy"
    diagnosis = {
        c: _Series("hotspot_diagnosis", _labels({**agent, "cause": c})) for c in ("healthy", "uplink_fault")
    }
    diag_since = _Series("hotspot_diagnosis_since_timestamp_seconds", _labels(agent))
    pending = pending_within = 0
    for t in range(p.start, p.end, HOUR):
        info.samples.append((t, 1.0))
        if not s.heard(t):
            continue
        site_info.samples.append((t, 1.0))
        n_within = sum(1 for _ in range(PING_TESTS_PER_HOUR) if s.rng.random() < s.within_share)
        fast = [s.rng.uniform(0.015, 0.09) for _ in range(n_within)]
        slow = [s.rng.uniform(0.11, 0.4) for _ in range(PING_TESTS_PER_HOUR - n_within)]
        for rtt in fast + slow:
            if (i := bisect.bisect_left(RTT_BOUNDS_S, rtt)) < n_rtt:
                counts[i] += 1
            rtt_total += rtt
        total += PING_TESTS_PER_HOUR
        within += n_within
        pending += PING_TESTS_PER_HOUR
        pending_within += n_within
        rtt_gauge.samples.append((t, round(sum(fast + slow) / PING_TESTS_PER_HOUR, 6)))
        for c, series in diagnosis.items():
            series.samples.append((t, 1.0 if c == cause else 0.0))
        diag_since.samples.append((t, diag_since.samples[0][1] if diag_since.samples else t))
        # The latency counters are sampled every 6 hours (a coarse step): their tests count in the
        # period of the sample that first shows them.
        if (t - p.start) % COUNTER_EVERY:
            continue
        tr = truth_of(t)
        if tr is not None:
            tr.latency_tests += pending
            tr.latency_within += pending_within
        pending = pending_within = 0
        ping_tests.samples.append((t, total))
        ping_within.samples.append((t, within))
        _put_histogram(t, rtt_buckets, counts, (rtt_inf, rtt_count), total, rtt_sum, rtt_total)
    yield from (
        info,
        site_info,
        ping_tests,
        ping_within,
        *rtt_buckets,
        rtt_inf,
        rtt_count,
        rtt_sum,
        rtt_gauge,
        *diagnosis.values(),
        diag_since,
    )

    for direction, contracted in (
        ("download", site.contracted_download_mbps),
        ("upload", site.contracted_upload_mbps),
    ):
        lbl = {**agent, "direction": direction, "engine": "http"}
        buckets = [
            _Series("hotspot_bandwidth_test_goodput_bytes_per_second_bucket", _labels({**lbl, "le": _go(b)}))
            for b in GOODPUT_BOUNDS
        ]
        inf = _Series(
            "hotspot_bandwidth_test_goodput_bytes_per_second_bucket", _labels({**lbl, "le": "+Inf"})
        )
        count = _Series("hotspot_bandwidth_test_goodput_bytes_per_second_count", _labels(lbl))
        gsum = _Series("hotspot_bandwidth_test_goodput_bytes_per_second_sum", _labels(lbl))
        tests = _Series("hotspot_bandwidth_tests_total", _labels(lbl))
        meeting = _Series("hotspot_bandwidth_tests_meeting_threshold_total", _labels(lbl))
        gauge = _Series(
            "hotspot_bandwidth_goodput_bytes_per_second", _labels({**lbl, "server": "http://speed.test/"})
        )
        per_bucket = [0] * len(GOODPUT_BOUNDS)
        n = n_meet = 0
        bsum = 0.0
        for t in range(p.start + s.phase, p.end, TEST_EVERY):
            if not s.heard(t):
                continue
            bps = s.goodput_bps(t, direction)
            value = bps / 8
            i = bisect.bisect_left(GOODPUT_BOUNDS, value)
            if i < len(per_bucket):
                per_bucket[i] += 1
            n += 1
            n_meet += bps >= contracted * 1e6 * 0.8
            bsum += value
            tr = truth_of(t)
            if tr is not None:
                tr.tests[direction] += 1
                tr.first_test = t if tr.first_test is None else min(tr.first_test, t)
                tr.goodputs[direction].append(bps)
            _put_histogram(t, buckets, per_bucket, (inf, count, tests), n, gsum, bsum)
            meeting.samples.append((t, n_meet))
            gauge.samples.append((t, round(value, 3)))
        yield from (*buckets, inf, count, gsum, tests, meeting, gauge)
    yield from agent_health(s, agent)


def agent_health(s: _Site, agent: dict[str, str]) -> Iterator[_Series]:
    """What else the site and fleet dashboards read from an agent while it is heard: hourly the
    ping jitter and loss, DNS, HTTP, wifi, system and interface series; every 6 hours (with each
    bandwidth test) the agent's identity, clock, config, push queue, test data and budget. Counters
    read by rate() over a few minutes (interface bytes, dropped push samples) get two samples a
    minute apart each time, as two consecutive scrapes would. Its own random stream: the verdict
    series (and `truth`) are the same with or without it.
    """
    p, site, rng = s.p, s.site, random.Random(f"{s.p.seed}/{s.site.id}/health")
    laggy, flaky = s.profile == "laggy", s.profile == "flaky"
    series: dict[tuple[str, str], _Series] = {}

    def one(metric: str, extra: dict[str, str]) -> _Series:
        key = (metric, ",".join(f"{k}={v}" for k, v in extra.items()))
        if key not in series:
            series[key] = _Series(metric, _labels({**agent, **extra}))
        return series[key]

    def put(metric: str, t: int, value: float, /, **extra: str) -> None:
        one(metric, extra).samples.append((t, round(value, 6)))

    def count(metric: str, t: int, value: float, /, **extra: str) -> None:
        """A counter read over long ranges only: a sample when it changed, else once a day."""
        one(metric, extra).put(t, value)

    ping = {"target": "1.1.1.1", "role": "internet"}
    dns = {"resolver": "system", "name": "vnexpress.net"}
    http = {"url": "https://vnexpress.net/", "kind": "reachability"}
    signal = rng.uniform(-72.0, -48.0)
    rx = tx = 0.0
    failures = {
        ("ping", "timeout"): 0,
        ("dns", "timeout"): 0,
        ("http", "timeout"): 0,
        ("bandwidth", "limit"): 0,
    }
    deferred = dropped = 0
    version = "0.1.0" if rng.random() < 0.85 else "0.0.9"  # a few agents not yet upgraded
    skew = rng.gauss(0, 0.3) if rng.random() < 0.95 else rng.uniform(60, 300)  # a few clocks off
    started = p.start - rng.randrange(1, 20) * 86400
    was_heard = True
    budget, budget_used, month = 30e9, 0.0, ""
    moved = {"download": 0.0, "upload": 0.0}
    for t in range(p.start, p.end, HOUR):
        if not s.heard(t):
            was_heard = False
            continue
        if not was_heard:  # back after an outage: the device (and the agent) restarted
            started, was_heard = t - rng.randrange(60, 3000), True
        local_hour = (t // HOUR + 7) % 24
        busy = 1.0 if 7 <= local_hour < 22 else 0.15  # public wifi: used in the daytime
        loss = rng.choice((0.0, 0.0, 0.0, 0.01, 0.02)) + (0.05 if flaky or laggy else 0.0)
        put(
            "hotspot_ping_jitter_seconds",
            t,
            round(rng.uniform(0.01, 0.04) if laggy else rng.uniform(0.001, 0.008), 4),
            method="icmp",
            **ping,
        )
        put("hotspot_ping_loss_ratio", t, loss, method="icmp", **ping)
        failures["ping", "timeout"] += int(loss > 0.04)
        dns_ok = rng.random() > (0.05 if flaky else 0.005)
        put("hotspot_dns_success", t, float(dns_ok), **dns)
        if dns_ok:
            put("hotspot_dns_lookup_seconds", t, round(rng.uniform(0.008, 0.06), 3), **dns)
        failures["dns", "timeout"] += int(not dns_ok)
        http_ok = dns_ok and rng.random() > 0.005
        put("hotspot_http_success", t, float(http_ok), **http)
        if http_ok:
            put("hotspot_http_first_byte_seconds", t, round(rng.uniform(0.05, 0.4), 3), **http)
        failures["http", "timeout"] += int(not http_ok)
        put("hotspot_wifi_signal_dbm", t, round(signal + rng.gauss(0, 2)), interface="wlan0")
        put(
            "hotspot_wifi_stations",
            t,
            rng.randrange(0, 6) + int(busy * rng.randrange(0, 25)),
            interface="wlan0",
        )
        put("hotspot_system_cpu_usage_ratio", t, round(rng.uniform(0.03, 0.12) + 0.15 * busy, 2))
        put("hotspot_system_memory_total_bytes", t, 1 << 30)
        put("hotspot_system_memory_available_bytes", t, rng.randrange(460, 720) << 20)
        put(
            "hotspot_system_temperature_celsius",
            t,
            rng.randrange(84, 100) / 2 + 12 * busy,
            sensor="cpu_thermal",
        )
        for pair in (t, t + 60)[: 2 if t + 60 < p.end else 1]:
            if pair > t:  # the next scrape: a minute of the hour's traffic
                rx += busy * rng.uniform(2e6, 20e6) / 8 * 60
                tx += busy * rng.uniform(0.5e6, 5e6) / 8 * 60
            put("hotspot_interface_receive_bytes_total", pair, int(rx), interface="eth0")
            put("hotspot_interface_transmit_bytes_total", pair, int(tx), interface="eth0")
        rx += busy * rng.uniform(2e6, 20e6) / 8 * 3540
        tx += busy * rng.uniform(0.5e6, 5e6) / 8 * 3540
        for (probe, reason), n in failures.items():
            count("hotspot_probe_failures_total", t, n, probe=probe, reason=reason)
        if (t - p.start) % TEST_EVERY:
            continue
        for direction, contracted in (
            ("download", site.contracted_download_mbps),
            ("upload", site.contracted_upload_mbps),
        ):
            put("hotspot_site_contracted_bytes_per_second", t, contracted * 1e6 / 8, direction=direction)
            put("hotspot_site_threshold_bytes_per_second", t, contracted * 1e6 / 8 * 0.8, direction=direction)
            moved[direction] += s.median_mbps * 1e6 / 8 * 10  # a 10-second test at the usual speed
            put(
                "hotspot_bandwidth_test_bytes_total",
                t,
                int(moved[direction]),
                direction=direction,
                engine="http",
            )
        if month_of(t) != month:  # the budget starts again each calendar month
            month, budget_used = month_of(t), 0.0
        budget_used += 2 * s.median_mbps * 1e6 / 8 * 10
        put("hotspot_bandwidth_budget_bytes", t, budget)
        put("hotspot_bandwidth_budget_remaining_bytes", t, max(0, int(budget - budget_used)))
        idle = rng.uniform(0.12, 0.3) if laggy else rng.uniform(0.015, 0.05)
        put("hotspot_bandwidth_latency_seconds", t, round(idle, 3), engine="http", state="idle")
        put(
            "hotspot_bandwidth_latency_seconds",
            t,
            round(idle + rng.uniform(0.02, 0.2), 3),
            engine="http",
            state="loaded",
        )
        if rng.random() < (0.1 if flaky else 0.02):
            deferred += 1
            failures["bandwidth", "limit"] += 1
        count("hotspot_bandwidth_tests_deferred_total", t, deferred, engine="http")
        count("hotspot_bandwidth_tests_skipped_total", t, 0, engine="http", reason="budget")
        put("hotspot_agent_info", t, 1, version=version, python="3.11.2")
        put("hotspot_agent_clock_seconds", t, t + skew)
        put("hotspot_agent_start_time_seconds", t, started)
        put("hotspot_config_last_reload_successful", t, 1)
        put("hotspot_system_disk_total_bytes", t, 16e9, path="/")
        put("hotspot_system_disk_free_bytes", t, 11e9 - (t - p.start) * 50, path="/")
        put(
            "hotspot_http_captive_portal",
            t,
            0,
            url="http://connectivitycheck.gstatic.com/generate_204",
            kind="portal_check",
        )
        if site.push:  # a queue that is mostly empty, and a few samples dropped after long outages
            put("hotspot_push_queue_samples", t, rng.randrange(0, 400))
            for pair in (t, t + 60)[: 2 if t + 60 < p.end else 1]:
                dropped += int(pair > t and flaky and rng.random() < 0.2) * rng.randrange(100, 2000)
                put("hotspot_push_samples_dropped_total", pair, dropped, reason="queue_full")
    yield from series.values()


def _put_histogram(
    t: int,
    buckets: list[_Series],
    counts: list[int],
    totals: tuple[_Series, ...],
    n: int,
    sums: _Series,
    total: float,
) -> None:
    """One sample of a histogram: cumulative buckets from per-bucket counts, +Inf/_count, _sum."""
    cum = 0
    for series, c in zip(buckets, counts, strict=True):
        cum += c
        series.put(t, cum)
    for series in totals:
        series.samples.append((t, n))
    sums.samples.append((t, round(total, 6)))


def _go(value: float) -> str:
    from agent.metrics import _go_float

    return _go_float(value)


def _truth_lookup(truths: dict[str, dict[str, SiteTruth]] | None, site: str) -> Any:
    if truths is None:
        return lambda t: None
    periods = truths.setdefault(site, {})

    def of(t: int) -> SiteTruth | None:
        key = month_of(t)
        return periods.setdefault(key, SiteTruth())

    return of


TZ = dt.timezone(dt.timedelta(hours=7))  # Asia/Ho_Chi_Minh: UTC+7 all year, no daylight saving


def month_of(t: float) -> str:
    """The calendar month (Asia/Ho_Chi_Minh) a Unix time falls in, as YYYY-MM."""
    return dt.datetime.fromtimestamp(t, TZ).strftime("%Y-%m")


# promtool cuts blocks of these lengths only (Prometheus's block ranges: 2 h × 3^k), aligned to
# multiples of the length since the epoch; a longer --max-block-duration takes the next one down.
BLOCK_HOURS = (2, 6, 18, 54, 162, 486)
DEFAULT_BLOCK_HOURS = 54  # peak memory and time: bench/RESULTS-verdicts.md


def write_chunks(outs: Sequence[IO[str]], bounds: list[int], series: Iterator[_Series]) -> list[int]:
    """Write every sample of `series` as OpenMetrics text lines (`name{labels} value timestamp`,
    values with 15 significant digits) into the file of its chunk: `outs[i]` takes the samples from
    `bounds[i]` (Unix s) up to `bounds[i + 1]`. Returns the samples written to each file; the
    caller adds `# EOF`."""
    counts = [0] * len(outs)
    for s in series:
        prefix = f"{s.name}{{{s.labels}}} "
        times = [t for t, _ in s.samples]
        lo = 0
        for i, out in enumerate(outs):
            hi = bisect.bisect_left(times, bounds[i + 1], lo) if i + 1 < len(bounds) else len(times)
            out.writelines(f"{prefix}{v:.15g} {t}\n" for t, v in s.samples[lo:hi])  # exact: times, sums
            counts[i] += hi - lo
            lo = hi
    return counts


def backfill(
    inventory_path: Path,
    start: dt.datetime,
    end: dt.datetime,
    out: Path,
    seed: int = 1,
    promtool: str = "promtool",
    truths: dict[str, dict[str, SiteTruth]] | None = None,
    block_hours: int = DEFAULT_BLOCK_HOURS,
) -> dict[str, float]:
    """Generate the history and turn it into blocks in `out`: one OpenMetrics file per block of
    `block_hours` (one of BLOCK_HOURS), each converted by its own promtool run, so promtool holds
    one block's text and samples at a time instead of the month's (it maps its whole input).
    Returns counts, timings (s) and sizes (bytes): sites, samples, openmetrics_bytes, generate_s,
    promtool_s, promtool_max_rss_bytes (the largest peak RSS of this process's children: promtool's
    when nothing bigger ran before), tsdb_bytes.
    Raises InventoryError for a bad inventory, ValueError for a block length promtool does not
    cut, RuntimeError when promtool fails."""
    if block_hours not in BLOCK_HOURS:
        raise ValueError(
            f"block_hours must be one of {BLOCK_HOURS} (promtool's block lengths), not {block_hours}"
        )
    load(inventory_path)  # every problem of the inventory, reported as for `targets`
    out.mkdir(parents=True, exist_ok=True)
    doc = demo_inventory(inventory_path, seed)
    inv_file = out / "inventory.yaml"
    inv_file.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    inv = load(inv_file)
    p = plan(inv, int(start.timestamp()), int(end.timestamp()), seed)
    stats: dict[str, float] = {"sites": len(inv.sites)}
    t0 = time.monotonic()
    block = block_hours * HOUR
    # Chunks on promtool's own block boundaries: each file gives exactly one block.
    bounds = list(range(p.start // block * block, p.end, block))
    with tempfile.TemporaryDirectory(prefix="hotspot-backfill-") as tmp:
        paths = [Path(tmp) / f"history-{i}.om" for i in range(len(bounds))]
        with contextlib.ExitStack() as stack:
            outs = [stack.enter_context(path.open("w", encoding="utf-8")) for path in paths]
            counts = [0] * len(outs)
            for site in inv.sites:
                written = write_chunks(outs, bounds, site_history(site, p, truths))
                counts = [a + b for a, b in zip(counts, written, strict=True)]
            for f in outs:
                f.write("# EOF\n")
        stats["samples"] = sum(counts)
        stats["openmetrics_bytes"] = sum(path.stat().st_size for path in paths)
        stats["generate_s"] = time.monotonic() - t0
        t1 = time.monotonic()
        for path, n in zip(paths, counts, strict=True):
            if n:
                _promtool(promtool, path, out, block_hours)
            path.unlink()  # the disk holds one chunk less at each step
        stats["promtool_s"] = time.monotonic() - t1
        stats["promtool_max_rss_bytes"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    stats["tsdb_bytes"] = sum(
        f.stat().st_size for f in out.rglob("*") if f.is_file() and f.name != "inventory.yaml"
    )
    return stats


MAX_DAYS = 400  # a longer history outlives the 400 d retention docs/collector.md gives Prometheus


def _promtool(promtool: str, om: Path, out: Path, block_hours: int) -> None:
    res = subprocess.run(
        [
            promtool,
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            f"--max-block-duration={block_hours}h",
            str(om),
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    if res.returncode != 0:
        raise RuntimeError(f"promtool create-blocks-from openmetrics failed: {res.stderr.strip()[-2000:]}")


def _date(text: str) -> dt.datetime:
    try:
        day = dt.datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=TZ)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None
    if day.timestamp() < 0:  # promtool and Prometheus keep no sample before the Unix epoch
        raise argparse.ArgumentTypeError(
            f"{text}: before the Unix epoch (1970-01-01 in UTC); give a later day"
        )
    return day


def _out_problem(out: Path) -> str | None:
    """Why `out` cannot take a history: it is not a directory, or already holds something."""
    try:
        if out.exists() and not out.is_dir():
            return "exists and is not a directory: give a new or empty directory"
        if out.is_dir() and any(out.iterdir()):
            return (
                "not empty: a second history in it would write blocks overlapping the ones already "
                "there, and Prometheus would merge the two into one; give a new or empty directory"
            )
    except OSError as exc:
        return f"cannot read it: {exc.strerror}"
    return None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `hotspot-collector backfill`."""
    parser.add_argument("--inventory", type=Path, required=True, help="the site inventory (YAML)")
    parser.add_argument("--start", type=_date, required=True, help="first day (YYYY-MM-DD, Asia/Ho_Chi_Minh)")
    parser.add_argument("--end", type=_date, required=True, help="day after the last (YYYY-MM-DD)")
    parser.add_argument("--out", type=Path, required=True, help="Prometheus data directory to fill")
    parser.add_argument("--seed", type=int, default=1)


def command(args: argparse.Namespace) -> int:
    """Run `hotspot-collector backfill`: 0 when the data directory was filled, 1 when promtool is
    missing or fails, 2 for a bad inventory or dates (every problem printed to stderr).
    """
    # Samples after now would lie ahead of Prometheus' head: it would then refuse every live
    # sample as out of bounds. A month not over yet is filled up to now.
    now = dt.datetime.now(TZ)
    if args.start >= now:
        print(f"hotspot-collector backfill: --start {args.start:%Y-%m-%d} is not before now", file=sys.stderr)
        return 2
    clipped = args.end > now
    args.end = min(args.end, now)
    if args.end <= args.start:
        print("hotspot-collector backfill: --end must be after --start", file=sys.stderr)
        return 2
    if (days := (args.end - args.start) / dt.timedelta(days=1)) > MAX_DAYS:
        print(
            f"hotspot-collector backfill: --start to --end spans {days:.0f} days; at most {MAX_DAYS} "
            "(Prometheus keeps 400 days in docs/collector.md): give a later --start",
            file=sys.stderr,
        )
        return 2
    if problem := _out_problem(args.out):
        print(f"hotspot-collector backfill: --out {args.out}: {problem}", file=sys.stderr)
        return 2
    if shutil.which("promtool") is None:
        print("hotspot-collector backfill: promtool not found (apt-get install prometheus)", file=sys.stderr)
        return 1
    if clipped:
        print(f"hotspot-collector backfill: the history ends now ({now:%Y-%m-%d %H:%M}, UTC+7), not at --end")
    try:
        stats = backfill(args.inventory, args.start, args.end, args.out, args.seed)
    except InventoryError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 2
    except (RuntimeError, OSError) as exc:
        print(f"hotspot-collector backfill: {exc}", file=sys.stderr)
        return 1
    print(
        f"{stats['sites']:.0f} sites, {stats['samples']:,.0f} samples: generated in "
        f"{stats['generate_s']:.1f} s, "
        f"blocks in {stats['promtool_s']:.1f} s, TSDB {stats['tsdb_bytes'] / 1e6:.1f} MB in {args.out}"
    )
    print(f"  the inventory as the history used it: {args.out / 'inventory.yaml'}")
    return 0
