"""Results -> Prometheus metric families, built at scrape time from the latest results.

`AgentMetrics` keeps what the metrics need (the latest Result per probe and target, run bookkeeping,
counters accumulated from results) and is a prometheus_client Collector. Scrapes only read this
state: they never trigger a measurement. Every series carries the site's identity labels.
Names and meanings: docs/metrics.md.
"""

from __future__ import annotations

import platform
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import cast

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from agent import __version__
from agent.bandwidth.engine import BandwidthTest
from agent.diagnosis import CAUSES, Diagnosis, diagnose
from agent.probes import bandwidth, dns, ping
from agent.probes.bandwidth import BandwidthRun
from agent.probes.base import ProbeSettings
from agent.probes.dns import DnsLookup
from agent.probes.http import HttpCheck
from agent.probes.ping import PingStats
from agent.probes.system import SystemStats
from agent.probes.wifi import WifiLink
from agent.result import REASONS, Result
from agent.site import Site

MBPS = 1_000_000 / 8  # bytes per second in one Mbit/s
LabelKey = tuple[tuple[str, str], ...]
_DIAGNOSIS_INPUTS = ("ping", "dns", "http", "wifi")

# Each test's goodput and each latency test's average RTT go into histograms, so that the
# collector judges them against whatever threshold the province's rule sets, not the agent
# (docs/metrics.md). The goodput boundaries are the usual requirement levels and 80% of each
# (the usual pass ratio), so any of them, at 100% or 80%, is judged exactly: a test "reaches X"
# when it is above the X boundary. Changing a boundary is a change of the metric's contract:
# collector/requirement.yaml may only name boundaries listed here.
GOODPUT_BOUNDS_MBPS = (
    1,
    2,
    5,
    8,
    10,
    16,
    20,
    24,
    30,
    40,
    50,
    64,
    80,
    100,
    120,
    150,
    160,
    200,
    240,
    300,
    400,
    500,
    800,
    1000,
)
GOODPUT_BOUNDS = tuple(m * MBPS for m in GOODPUT_BOUNDS_MBPS)  # bytes per second (base unit)
RTT_BOUNDS_S = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.0)
_HISTOGRAM_BOUNDS = {
    "hotspot_bandwidth_test_goodput_bytes_per_second": GOODPUT_BOUNDS,
    "hotspot_ping_test_rtt_seconds": RTT_BOUNDS_S,
}
_HISTOGRAM_DOCS = {
    "hotspot_bandwidth_test_goodput_bytes_per_second": "Each bandwidth test's goodput, per direction.",
    "hotspot_ping_test_rtt_seconds": "Each answered latency test's mean RTT (unanswered: not observed).",
}


class _Families:
    """Collects samples into families; every sample gets the site labels first."""

    def __init__(self, site_labels: Mapping[str, str]) -> None:
        self.site_labels = dict(site_labels)
        self._families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {}
        self._histograms: dict[str, HistogramMetricFamily] = {}

    def add(self, kind: str, name: str, doc: str, value: float | None, /, **labels: str) -> None:
        if value is None:  # no measurement: no sample (never a 0 that looks like one)
            return
        all_labels = {**self.site_labels, **labels}
        family = self._families.get(name)
        if family is None:
            family = (GaugeMetricFamily if kind == "gauge" else CounterMetricFamily)(
                name, doc, labels=list(all_labels)
            )
            self._families[name] = family
        family.add_metric(list(all_labels.values()), float(value))

    def gauge(self, name: str, doc: str, value: float | None, /, **labels: str) -> None:
        self.add("gauge", name, doc, value, **labels)

    def counter(self, name: str, doc: str, value: float | None, /, **labels: str) -> None:
        self.add("counter", name, doc, value, **labels)

    def histogram(self, name: str, doc: str, hist: _Histogram, /, **labels: str) -> None:
        all_labels = {**self.site_labels, **labels}
        family = self._histograms.get(name)
        if family is None:
            family = HistogramMetricFamily(name, doc, labels=list(all_labels))
            self._histograms[name] = family
        buckets = [(_go_float(b), float(c)) for b, c in zip(hist.bounds, hist.cumulative(), strict=False)]
        buckets.append(("+Inf", float(hist.count)))
        family.add_metric(list(all_labels.values()), buckets, hist.sum)

    def __iter__(self) -> Iterator[Metric]:
        yield from self._families.values()
        yield from self._histograms.values()


# The client's own formatting of `le` ("1e+07"): the collector's rules match these strings.
_go_float = cast(Callable[[float], str], floatToGoString)


@dataclass
class _Histogram:
    """Counts of observations per bucket (not cumulative), their sum and count."""

    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    sum: float = 0.0
    count: int = 0

    def observe(self, value: float) -> None:
        if not self.counts:
            self.counts = [0] * len(self.bounds)
        for i, bound in enumerate(self.bounds):
            if value <= bound:
                self.counts[i] += 1
                break
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[int]:
        out, total = [], 0
        for c in self.counts or [0] * len(self.bounds):
            total += c
            out.append(total)
        return out


@dataclass
class _ProbeState:
    results: list[Result] = field(default_factory=list)
    success: bool | None = None
    duration_s: float | None = None
    last_run: float | None = None
    last_success: float | None = None
    runs: int = 0


# Counters derived from each new Result: (metric name, label pairs) -> increment.
Increments = dict[tuple[str, LabelKey], float]


class AgentMetrics(Collector):
    """The agent's results store and its Prometheus collector."""

    def __init__(self, site: Site, clock: Callable[[], float] = time.time) -> None:
        self.site = site
        self._clock = clock
        self._lock = threading.Lock()
        self._probes: dict[str, _ProbeState] = {}
        self._failures: Counter[tuple[str, str]] = Counter()
        self._counters: Counter[tuple[str, LabelKey]] = Counter()
        self._histograms: dict[tuple[str, LabelKey], _Histogram] = {}
        self._diagnosis: Diagnosis | None = None
        self._diagnosis_since: float | None = None
        self._last_test: BandwidthTest | None = None  # the last bandwidth run that tested
        self.started_at = clock()
        self.config_ok = True
        self.reloads: Counter[str] = Counter({"success": 0, "failure": 0})

    # -- recording (called by the scheduler's threads) ------------------------------------------

    def set_probes(self, probes: Mapping[str, ProbeSettings]) -> None:
        """Declare the enabled probes, so that their counters exist at 0 from the start: otherwise
        increase() in Prometheus never counts the first event after an agent starts."""
        with self._lock:
            for name, settings in probes.items():
                self._probes.setdefault(name, _ProbeState())
                for reason in REASONS:
                    self._failures.setdefault((name, reason), 0)
                for key in _counters_at_start(name, settings):
                    self._counters.setdefault(key, 0)
                for hname, hkey in _histograms_at_start(name, settings):
                    self._histograms.setdefault((hname, hkey), _Histogram(_HISTOGRAM_BOUNDS[hname]))

    def record_run(self, probe: str, results: list[Result], finished_at: float, duration_s: float) -> None:
        increments = _increments(probe, results, self.site)
        observations = _observations(probe, results)
        with self._lock:
            state = self._probes.setdefault(probe, _ProbeState())
            state.results = list(results)
            state.runs += 1
            state.duration_s = duration_s
            state.last_run = finished_at
            state.success = bool(results) and all(r.ok for r in results)
            if state.success:
                state.last_success = finished_at
            for r in results:
                if r.reason is not None:
                    self._failures[(probe, r.reason)] += 1
            self._counters.update(increments)
            for hname, key, value in observations:
                self._histograms.setdefault((hname, key), _Histogram(_HISTOGRAM_BOUNDS[hname])).observe(value)
            for r in results:
                if isinstance(r.data, BandwidthRun) and r.data.test is not None:
                    self._last_test = r.data.test
            if probe in _DIAGNOSIS_INPUTS:
                self._update_diagnosis(finished_at)

    def _update_diagnosis(self, now: float) -> None:
        latest = [r for name in _DIAGNOSIS_INPUTS for r in self._probes.get(name, _ProbeState()).results]
        current = diagnose(latest)
        if self._diagnosis is None or current.cause != self._diagnosis.cause:
            self._diagnosis_since = now
        self._diagnosis = current

    def latest(self, probe: str) -> list[Result]:
        with self._lock:
            return list(self._probes.get(probe, _ProbeState()).results)

    def failures_count(self, probe: str, reason: str) -> float:
        with self._lock:
            return self._failures[(probe, reason)]

    @property
    def diagnosis(self) -> Diagnosis | None:
        return self._diagnosis

    # -- exposition (called at scrape time) -----------------------------------------------------

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            f = _Families(self.site.labels())
            self._collect_site(f)
            self._collect_probes(f)
            for probe, state in self._probes.items():
                render = _RENDERERS.get(probe)
                if render is not None:
                    for result in state.results:
                        render(f, result)
            if self._last_test is not None:
                _render_bandwidth_test(f, self._last_test)
            for (name, key), value in sorted(self._counters.items()):
                f.counter(name, _COUNTER_DOCS[name], value, **dict(key))
            for (name, key), hist in sorted(self._histograms.items()):
                f.histogram(name, _HISTOGRAM_DOCS[name], hist, **dict(key))
            self._collect_diagnosis(f)
        yield from f

    def describe(self) -> Iterable[Metric]:
        return []  # families depend on results; an empty describe keeps registration cheap

    def _collect_site(self, f: _Families) -> None:
        s = self.site
        f.gauge(
            "hotspot_site_info",
            "The site's description; value always 1.",
            1,
            name=s.name,
            commune_code=s.commune_code,
            latitude="" if s.latitude is None else f"{s.latitude:.5f}",
            longitude="" if s.longitude is None else f"{s.longitude:.5f}",
            isp=s.isp,
            contracted_download_mbps=f"{s.contracted_download_mbps:g}",
            contracted_upload_mbps=f"{s.contracted_upload_mbps:g}",
        )
        for direction, mbps in (
            ("download", s.contracted_download_mbps),
            ("upload", s.contracted_upload_mbps),
        ):
            f.gauge(
                "hotspot_site_contracted_bytes_per_second",
                "The contracted line speed.",
                mbps * MBPS,
                direction=direction,
            )
            f.gauge(
                "hotspot_site_threshold_bytes_per_second",
                "The speed a bandwidth test must reach to meet the requirement.",
                mbps * MBPS * s.pass_ratio,
                direction=direction,
            )
        f.gauge(
            "hotspot_agent_info",
            "The agent's version; value always 1.",
            1,
            version=__version__,
            python=platform.python_version(),
        )
        f.gauge("hotspot_agent_clock_seconds", "The agent's clock at scrape time (Unix time).", self._clock())
        f.gauge("hotspot_agent_start_time_seconds", "When the agent started (Unix time).", self.started_at)
        f.gauge(
            "hotspot_config_last_reload_successful",
            "1 when the last config (re)load succeeded, 0 when a reload was refused.",
            1 if self.config_ok else 0,
        )
        for outcome, count in sorted(self.reloads.items()):
            f.counter(
                "hotspot_config_reloads_total", "Config reloads (SIGHUP) by result.", count, result=outcome
            )

    def _collect_probes(self, f: _Families) -> None:
        for probe, state in sorted(self._probes.items()):
            if state.success is not None:
                f.gauge(
                    "hotspot_probe_success",
                    "1 when the probe's last run succeeded for every target, else 0.",
                    1 if state.success else 0,
                    probe=probe,
                )
            f.gauge(
                "hotspot_probe_duration_seconds", "How long the last run took.", state.duration_s, probe=probe
            )
            f.gauge(
                "hotspot_probe_last_run_timestamp_seconds",
                "When the probe's last run finished (Unix time).",
                state.last_run,
                probe=probe,
            )
            f.gauge(
                "hotspot_probe_last_success_timestamp_seconds",
                "When the probe's last fully successful run finished (Unix time).",
                state.last_success,
                probe=probe,
            )
            f.counter("hotspot_probe_runs_total", "Probe runs.", state.runs, probe=probe)
        for (probe, reason), count in sorted(self._failures.items()):
            f.counter(
                "hotspot_probe_failures_total",
                "Failed target measurements by reason.",
                count,
                probe=probe,
                reason=reason,
            )

    def _collect_diagnosis(self, f: _Families) -> None:
        if self._diagnosis is None:
            return
        for cause in CAUSES:
            f.gauge(
                "hotspot_diagnosis",
                "1 for the current likely cause of trouble (or healthy), 0 for the others.",
                1 if cause == self._diagnosis.cause else 0,
                cause=cause,
            )
        f.gauge(
            "hotspot_diagnosis_since_timestamp_seconds",
            "When the current diagnosis began (Unix time).",
            self._diagnosis_since,
        )


# -- per-probe renderers: latest Result -> gauges ----------------------------------------------


def _render_ping(f: _Families, r: Result) -> None:
    d = r.data
    if not isinstance(d, PingStats):
        return
    labels = {"target": r.target, "role": d.role, "method": d.method}
    f.gauge(
        "hotspot_ping_up",
        "1 when at least one packet of the last run came back.",
        1 if d.received else 0,
        **labels,
    )
    for stat, value in (("min", d.rtt_min_s), ("avg", d.rtt_avg_s), ("max", d.rtt_max_s)):
        f.gauge("hotspot_ping_rtt_seconds", "Round-trip time in the last run.", value, stat=stat, **labels)
    f.gauge(
        "hotspot_ping_jitter_seconds",
        "Mean difference of consecutive round-trip times.",
        d.jitter_s,
        **labels,
    )
    f.gauge(
        "hotspot_ping_loss_ratio", "Share of the last run's packets that were lost.", d.loss_ratio, **labels
    )


def _render_dns(f: _Families, r: Result) -> None:
    d = r.data
    if not isinstance(d, DnsLookup):
        return
    labels = {"resolver": d.resolver, "name": d.name}
    f.gauge("hotspot_dns_success", "1 when the last lookup returned addresses.", 1 if r.ok else 0, **labels)
    f.gauge("hotspot_dns_lookup_seconds", "Time to the DNS answer.", d.lookup_s, **labels)


def _render_http(f: _Families, r: Result) -> None:
    d = r.data
    if not isinstance(d, HttpCheck):
        return
    labels = {"url": d.url, "kind": d.kind}
    f.gauge(
        "hotspot_http_success", "1 when the last request got the expected answer.", 1 if r.ok else 0, **labels
    )
    f.gauge("hotspot_http_status_code", "HTTP status of the last answer.", d.status, **labels)
    f.gauge(
        "hotspot_http_first_byte_seconds", "Time to the first byte of the answer.", d.first_byte_s, **labels
    )
    f.gauge("hotspot_http_duration_seconds", "Time to the whole answer.", d.total_s, **labels)
    if d.kind == "portal_check" and d.status is not None:
        f.gauge(
            "hotspot_http_captive_portal",
            "1 when the portal check met a page or redirect instead of 204.",
            1 if d.captive_portal else 0,
            **labels,
        )


def _bytes(bps: float | None) -> float | None:
    return None if bps is None else bps / 8


def _render_wifi(f: _Families, r: Result) -> None:
    d = r.data
    if not isinstance(d, WifiLink):
        return
    iface = {"interface": d.interface}
    f.gauge(
        "hotspot_wifi_info",
        "The wifi link; value always 1.",
        1,
        ssid=d.ssid,
        bssid=d.bssid,
        mode=d.mode,
        **iface,
    )
    f.gauge(
        "hotspot_wifi_connected", "1 when associated (or an access point).", 1 if d.connected else 0, **iface
    )
    f.gauge("hotspot_wifi_signal_dbm", "Received signal strength.", d.signal_dbm, **iface)
    f.gauge(
        "hotspot_wifi_transmit_bitrate_bytes_per_second",
        "Transmit bitrate.",
        _bytes(d.tx_bitrate_bps),
        **iface,
    )
    f.gauge(
        "hotspot_wifi_receive_bitrate_bytes_per_second", "Receive bitrate.", _bytes(d.rx_bitrate_bps), **iface
    )
    f.gauge("hotspot_wifi_frequency_hertz", "Channel frequency.", d.frequency_hz, **iface)
    f.gauge("hotspot_wifi_stations", "Associated stations on the access point.", d.stations, **iface)


_INTERFACE_COUNTERS = (
    ("receive_bytes", "rx_bytes", "Bytes received."),
    ("transmit_bytes", "tx_bytes", "Bytes sent."),
    ("receive_packets", "rx_packets", "Packets received."),
    ("transmit_packets", "tx_packets", "Packets sent."),
    ("receive_errors", "rx_errors", "Receive errors."),
    ("transmit_errors", "tx_errors", "Transmit errors."),
    ("receive_drops", "rx_drops", "Received packets dropped."),
    ("transmit_drops", "tx_drops", "Outgoing packets dropped."),
)


def _render_system(f: _Families, r: Result) -> None:
    d = r.data
    if not isinstance(d, SystemStats):
        return
    for i in d.interfaces:
        f.gauge("hotspot_interface_up", "1 when the link is up.", 1 if i.up else 0, interface=i.interface)
        f.gauge(
            "hotspot_interface_speed_bytes_per_second",
            "Link speed.",
            _bytes(i.speed_bps),
            interface=i.interface,
        )
        for name, attr, doc in _INTERFACE_COUNTERS:
            f.counter(f"hotspot_interface_{name}_total", doc, getattr(i, attr), interface=i.interface)
    f.gauge("hotspot_system_cpu_usage_ratio", "CPU busy share over the last sample, all cores.", d.cpu_ratio)
    f.gauge("hotspot_system_load1", "1-minute load average.", d.load1)
    f.gauge("hotspot_system_memory_total_bytes", "Memory in all.", d.memory_total_bytes)
    f.gauge("hotspot_system_memory_available_bytes", "Memory available.", d.memory_available_bytes)
    for path, total, free in d.disks:
        f.gauge("hotspot_system_disk_total_bytes", "Disk size.", total, path=path)
        f.gauge("hotspot_system_disk_free_bytes", "Disk space free.", free, path=path)
    for sensor, celsius in d.temperatures_c:
        f.gauge("hotspot_system_temperature_celsius", "Temperature.", celsius, sensor=sensor)
    f.gauge("hotspot_system_boot_time_seconds", "When the device booted (Unix time).", d.boot_time_s)
    f.gauge("hotspot_agent_resident_memory_bytes", "The agent's resident memory.", d.agent_rss_bytes)
    f.counter("hotspot_agent_cpu_seconds_total", "The agent's CPU time.", d.agent_cpu_s)


def _render_bandwidth(f: _Families, r: Result) -> None:
    """The budget from the latest run; the figures of the latest run that tested (a deferred or
    skipped run leaves the last measurement standing)."""
    run = r.data
    if not isinstance(run, BandwidthRun):
        return
    if run.budget.budget_bytes:  # 0 = unlimited: no budget series at all
        f.gauge(
            "hotspot_bandwidth_budget_bytes", "The monthly data budget for tests.", run.budget.budget_bytes
        )
        f.gauge(
            "hotspot_bandwidth_budget_remaining_bytes",
            "What is left of the monthly data budget.",
            run.budget.remaining_bytes,
        )


def _render_bandwidth_test(f: _Families, d: BandwidthTest) -> None:
    labels = {"engine": d.engine, "server": d.server}
    for direction, bps, streams in (
        ("download", d.download_bps, d.download_streams),
        ("upload", d.upload_bps, d.upload_streams),
    ):
        f.gauge(
            "hotspot_bandwidth_goodput_bytes_per_second",
            "The last test's goodput.",
            _bytes(bps),
            direction=direction,
            **labels,
        )
        if bps is not None:
            f.gauge("hotspot_bandwidth_streams", "TCP streams used.", streams, direction=direction, **labels)
    for state, value in (("idle", d.latency_idle_s), ("loaded", d.latency_loaded_s)):
        f.gauge(
            "hotspot_bandwidth_latency_seconds",
            "RTT before and during the test.",
            value,
            state=state,
            **labels,
        )
    f.gauge("hotspot_bandwidth_test_duration_seconds", "The last test's length.", d.duration_s, **labels)


_RENDERERS: dict[str, Callable[[_Families, Result], None]] = {
    "ping": _render_ping,
    "dns": _render_dns,
    "http": _render_http,
    "wifi": _render_wifi,
    "system": _render_system,
    "bandwidth": _render_bandwidth,
}


# -- counters accumulated from each Result -------------------------------------------------------

_COUNTER_DOCS = {
    "hotspot_ping_packets_sent_total": "Ping packets sent.",
    "hotspot_ping_packets_received_total": "Ping replies received.",
    "hotspot_ping_tests_total": "Latency tests (runs per target).",
    "hotspot_ping_tests_within_limit_total": "Latency tests whose average RTT was within the latency limit.",
    "hotspot_dns_lookups_total": "DNS lookups.",
    "hotspot_dns_lookup_failures_total": "DNS lookups that returned no address.",
    "hotspot_bandwidth_tests_total": "Bandwidth tests that produced a result for the direction.",
    "hotspot_bandwidth_tests_meeting_threshold_total": "Bandwidth tests at or above the threshold.",
    "hotspot_bandwidth_test_bytes_total": "Bytes moved by bandwidth tests.",
    "hotspot_bandwidth_tests_deferred_total": "Bandwidth tests given up because users were loading the line.",
    "hotspot_bandwidth_tests_skipped_total": "Bandwidth tests not run, by reason.",
}


def _counters_at_start(probe: str, settings: ProbeSettings) -> list[tuple[str, LabelKey]]:
    """The counter series a probe will have, as far as its settings tell."""
    if isinstance(settings, ping.Settings):
        targets = [(t, "internet") for t in settings.targets] + (
            [("gateway", "gateway")] if settings.gateway else []
        )
        return [
            (f"hotspot_ping_{n}_total", _key(target=t, role=role))
            for t, role in targets
            for n in ("packets_sent", "packets_received", "tests", "tests_within_limit")
        ]
    if isinstance(settings, dns.Settings):
        return [
            (f"hotspot_dns_{n}_total", _key(resolver=r, name=name))
            for r in settings.resolvers
            for name in settings.names
            for n in ("lookups", "lookup_failures")
        ]
    if isinstance(settings, bandwidth.Settings):
        return [
            ("hotspot_bandwidth_tests_deferred_total", ()),
            ("hotspot_bandwidth_tests_skipped_total", _key(reason="budget")),
        ] + [
            (f"hotspot_bandwidth_{n}_total", _key(direction=d, engine=settings.engine))
            for d in ("download", "upload")
            for n in ("tests", "tests_meeting_threshold", "test_bytes")
        ]
    return []


def _histograms_at_start(probe: str, settings: ProbeSettings) -> list[tuple[str, LabelKey]]:
    """The histogram series a probe will have, as far as its settings tell (at 0 from the start)."""
    if isinstance(settings, ping.Settings):
        return [
            ("hotspot_ping_test_rtt_seconds", _key(target=t, role="internet")) for t in settings.targets
        ] + (
            [("hotspot_ping_test_rtt_seconds", _key(target="gateway", role="gateway"))]
            if settings.gateway
            else []
        )
    if isinstance(settings, bandwidth.Settings):
        return [
            ("hotspot_bandwidth_test_goodput_bytes_per_second", _key(direction=d, engine=settings.engine))
            for d in ("download", "upload")
        ]
    return []


def _observations(probe: str, results: list[Result]) -> list[tuple[str, LabelKey, float]]:
    """(histogram, labels, value) for each measured value of the results."""
    out: list[tuple[str, LabelKey, float]] = []
    for r in results:
        d = r.data
        if probe == "ping" and isinstance(d, PingStats) and d.rtt_avg_s is not None:
            out.append(("hotspot_ping_test_rtt_seconds", _key(target=r.target, role=d.role), d.rtt_avg_s))
        elif probe == "bandwidth" and isinstance(d, BandwidthRun) and d.test is not None:
            for direction, bps in (("download", d.test.download_bps), ("upload", d.test.upload_bps)):
                if bps is not None:
                    key = _key(direction=direction, engine=d.test.engine)
                    out.append(("hotspot_bandwidth_test_goodput_bytes_per_second", key, bps / 8))
    return out


def _key(**labels: str) -> LabelKey:
    return tuple(sorted(labels.items()))


def _increments(probe: str, results: list[Result], site: Site) -> Increments:
    inc: Increments = {}

    def add(metric: str, value: float, /, **labels: str) -> None:
        k = (metric, _key(**labels))
        inc[k] = inc.get(k, 0) + value

    for r in results:
        d = r.data
        if probe == "ping" and isinstance(d, PingStats):
            labels = {"target": r.target, "role": d.role}
            add("hotspot_ping_packets_sent_total", d.sent, **labels)
            add("hotspot_ping_packets_received_total", d.received, **labels)
            add("hotspot_ping_tests_total", 1, **labels)
            within = d.rtt_avg_s is not None and d.rtt_avg_s <= site.latency_limit_ms / 1000
            add("hotspot_ping_tests_within_limit_total", 1 if within else 0, **labels)
        elif probe == "dns" and isinstance(d, DnsLookup):
            labels = {"resolver": d.resolver, "name": d.name}
            add("hotspot_dns_lookups_total", 1, **labels)
            add("hotspot_dns_lookup_failures_total", 0 if r.ok else 1, **labels)
        elif probe == "bandwidth" and isinstance(d, BandwidthRun):
            if d.outcome == "deferred":
                add("hotspot_bandwidth_tests_deferred_total", 1)
            elif d.outcome == "skipped":
                add("hotspot_bandwidth_tests_skipped_total", 1, reason="budget")
            if d.test is None:
                continue
            t = d.test
            for direction, bps, moved, contracted in (
                ("download", t.download_bps, t.download_bytes, site.contracted_download_mbps),
                ("upload", t.upload_bps, t.upload_bytes, site.contracted_upload_mbps),
            ):
                labels = {"direction": direction, "engine": t.engine}
                add("hotspot_bandwidth_test_bytes_total", moved, **labels)
                if bps is not None:
                    add("hotspot_bandwidth_tests_total", 1, **labels)
                    meets = bps >= contracted * 1e6 * site.pass_ratio
                    add("hotspot_bandwidth_tests_meeting_threshold_total", 1 if meets else 0, **labels)
    return inc
