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
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from agent import __version__
from agent.diagnosis import CAUSES, INPUTS, Diagnosis, diagnose
from agent.families import Family, LabelValues
from agent.probes import PROBES
from agent.probes.base import ProbeSettings, ProbeSpec
from agent.result import REASONS, Result
from agent.site import MBPS, Site

__all__ = ["AgentMetrics"]

# -- the agent's own families (a probe's are declared in its module) --------------------------------

SITE_INFO = Family(
    "hotspot_site_info",
    "gauge",
    "The site's description; value always 1.",
    (
        "name",
        "commune_code",
        "latitude",
        "longitude",
        "isp",
        "contracted_download_mbps",
        "contracted_upload_mbps",
    ),
)
CONTRACTED = Family(
    "hotspot_site_contracted_bytes_per_second", "gauge", "The contracted line speed.", ("direction",)
)
THRESHOLD = Family(
    "hotspot_site_threshold_bytes_per_second",
    "gauge",
    "The speed a bandwidth test must reach to meet the requirement.",
    ("direction",),
)
AGENT_INFO = Family(
    "hotspot_agent_info", "gauge", "The agent's version; value always 1.", ("version", "python")
)
CLOCK = Family("hotspot_agent_clock_seconds", "gauge", "The agent's clock at scrape time (Unix time).")
START_TIME = Family("hotspot_agent_start_time_seconds", "gauge", "When the agent started (Unix time).")
CONFIG_OK = Family(
    "hotspot_config_last_reload_successful",
    "gauge",
    "1 when the last config (re)load succeeded, 0 when a reload was refused.",
)
RESTART_REQUIRED = Family(
    "hotspot_config_restart_required",
    "gauge",
    "1 while the config file changes a setting the agent applies only at a restart (the log names it).",
)
RELOADS = Family("hotspot_config_reloads_total", "counter", "Config reloads (SIGHUP) by result.", ("result",))
PROBE_SUCCESS = Family(
    "hotspot_probe_success",
    "gauge",
    "1 when the probe's last run succeeded for every target, else 0.",
    ("probe",),
)
PROBE_DURATION = Family("hotspot_probe_duration_seconds", "gauge", "How long the last run took.", ("probe",))
PROBE_LAST_RUN = Family(
    "hotspot_probe_last_run_timestamp_seconds",
    "gauge",
    "When the probe's last run finished (Unix time).",
    ("probe",),
)
PROBE_LAST_SUCCESS = Family(
    "hotspot_probe_last_success_timestamp_seconds",
    "gauge",
    "When the probe's last fully successful run finished (Unix time).",
    ("probe",),
)
PROBE_RUNS = Family("hotspot_probe_runs_total", "counter", "Probe runs.", ("probe",))
PROBE_FAILURES = Family(
    "hotspot_probe_failures_total", "counter", "Failed target measurements by reason.", ("probe", "reason")
)
DIAGNOSIS = Family(
    "hotspot_diagnosis",
    "gauge",
    "1 for the current likely cause of trouble (or healthy), 0 for the others.",
    ("cause",),
)
DIAGNOSIS_SINCE = Family(
    "hotspot_diagnosis_since_timestamp_seconds", "gauge", "When the current diagnosis began (Unix time)."
)
CORE_FAMILIES = (
    SITE_INFO,
    CONTRACTED,
    THRESHOLD,
    AGENT_INFO,
    CLOCK,
    START_TIME,
    CONFIG_OK,
    RESTART_REQUIRED,
    RELOADS,
    PROBE_SUCCESS,
    PROBE_DURATION,
    PROBE_LAST_RUN,
    PROBE_LAST_SUCCESS,
    PROBE_RUNS,
    PROBE_FAILURES,
    DIAGNOSIS,
    DIAGNOSIS_SINCE,
)

# The client's own formatting of `le` ("1e+07"): the collector's rules match these strings.
_go_float = cast(Callable[[float], str], floatToGoString)


def _empty(family: Family, site_labels: Sequence[str]) -> Metric:
    """A prometheus_client family without samples (for describe())."""
    labels = [*site_labels, *family.labels]
    if family.kind == "histogram":
        return HistogramMetricFamily(family.name, family.doc, labels=labels)
    if family.kind == "counter":
        return CounterMetricFamily(family.name, family.doc, labels=labels)
    return GaugeMetricFamily(family.name, family.doc, labels=labels)


class _Samples:
    """Collects samples into families; every sample gets the site labels first.

    Label values are placed by name in the family's declared order, so the order of the keyword
    arguments never matters; a sample with other label names than its family's is a ValueError.
    """

    def __init__(self, site_labels: Mapping[str, str]) -> None:
        self._site_names = list(site_labels)
        self._site_values = list(site_labels.values())
        self._families: dict[str, Metric] = {}

    def _family(self, family: Family) -> Metric:
        found = self._families.get(family.name)
        if found is None:
            found = self._families[family.name] = _empty(family, self._site_names)
        return found

    def add(self, family: Family, value: float | None, /, **labels: str) -> None:
        values = family.values(labels)
        if value is None:  # no measurement: no sample (never a 0 that looks like one)
            return
        metric = cast(GaugeMetricFamily | CounterMetricFamily, self._family(family))
        metric.add_metric([*self._site_values, *values], float(value))

    def histogram(self, family: Family, values: LabelValues, hist: _Histogram) -> None:
        buckets = [(_go_float(b), float(c)) for b, c in zip(hist.bounds, hist.cumulative(), strict=False)]
        buckets.append(("+Inf", float(hist.count)))
        metric = cast(HistogramMetricFamily, self._family(family))
        metric.add_metric([*self._site_values, *values], buckets, hist.sum)

    def __iter__(self) -> Iterator[Metric]:
        yield from self._families.values()


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


class _Tally:
    """The counters and histograms accumulated from results, by family and label values."""

    def __init__(self) -> None:
        self.counters: dict[tuple[Family, LabelValues], float] = {}
        self.histograms: dict[tuple[Family, LabelValues], _Histogram] = {}

    def declare(self, family: Family, /, **labels: str) -> None:
        key = (family, family.values(labels))
        if family.kind == "histogram":
            self.histograms.setdefault(key, _Histogram(family.buckets))
        else:
            self.counters.setdefault(key, 0)

    def add(self, family: Family, value: float, /, **labels: str) -> None:
        key = (family, family.values(labels))
        self.counters[key] = self.counters.get(key, 0) + value

    def observe(self, family: Family, value: float, /, **labels: str) -> None:
        key = (family, family.values(labels))
        self.histograms.setdefault(key, _Histogram(family.buckets)).observe(value)


@dataclass
class _ProbeState:
    results: list[Result[Any]] = field(default_factory=list)
    standing: Sequence[Result[Any]] = ()  # what the probe's gauges show
    success: bool | None = None
    duration_s: float | None = None
    last_run: float | None = None
    last_success: float | None = None
    runs: int = 0


class AgentMetrics(Collector):
    """The agent's results store and its Prometheus collector.

    `probes` are the probes it may record (by name; the registry in agent/probes by default): each
    brings its own families, counters and gauges through its ProbeSpec.metrics, so this class
    names none of them. describe() lists every family up front, so registering two of these (or
    anything else with the same names) in one registry fails at registration.
    """

    def __init__(
        self,
        site: Site,
        clock: Callable[[], float] = time.time,
        probes: Mapping[str, ProbeSpec[Any, Any]] = PROBES,
    ) -> None:
        self.site = site
        self._clock = clock
        self._specs = dict(probes)
        self._lock = threading.Lock()
        self._probes: dict[str, _ProbeState] = {}
        self._failures: Counter[tuple[str, str]] = Counter()
        self._tally = _Tally()
        self._diagnosis: Diagnosis | None = None
        self._diagnosis_since: float | None = None
        self.started_at = clock()
        self.config_ok = True
        self.restart_required = False
        self.reloads: Counter[str] = Counter({"success": 0, "failure": 0})
        names = [f.name for f in self._families()]
        if len(names) != len(set(names)):
            twice = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"metric families declared twice: {', '.join(twice)}")

    def _families(self) -> list[Family]:
        return [*CORE_FAMILIES, *(f for spec in self._specs.values() for f in spec.metrics.families)]

    # -- recording (called by the scheduler's threads) ------------------------------------------

    def set_probes(self, probes: Mapping[str, ProbeSettings]) -> None:
        """Declare the enabled probes, so that their counters exist at 0 from the start: otherwise
        increase() in Prometheus never counts the first event after an agent starts."""
        with self._lock:
            for name, settings in probes.items():
                self._probes.setdefault(name, _ProbeState())
                for reason in REASONS:
                    self._failures.setdefault((name, reason), 0)
                if (spec := self._specs.get(name)) is not None:
                    spec.metrics.start(settings, self._tally)

    def record_run(
        self, probe: str, results: list[Result[Any]], finished_at: float, duration_s: float
    ) -> None:
        spec = self._specs.get(probe)
        with self._lock:
            state = self._probes.setdefault(probe, _ProbeState())
            state.results = list(results)
            state.standing = spec.metrics.standing(state.standing, results) if spec else results
            state.runs += 1
            state.duration_s = duration_s
            state.last_run = finished_at
            state.success = bool(results) and all(r.ok for r in results)
            if state.success:
                state.last_success = finished_at
            for r in results:
                if r.reason is not None:
                    self._failures[(probe, r.reason)] += 1
                if spec is not None:
                    spec.metrics.count(r, self.site, self._tally)
            if probe in INPUTS:
                self._update_diagnosis(finished_at)

    def _update_diagnosis(self, now: float) -> None:
        latest = [r for name in INPUTS for r in self._probes.get(name, _ProbeState()).results]
        current = diagnose(latest)
        if self._diagnosis is None or current.cause != self._diagnosis.cause:
            self._diagnosis_since = now
        self._diagnosis = current

    def latest(self, probe: str) -> list[Result[Any]]:
        with self._lock:
            return list(self._probes.get(probe, _ProbeState()).results)

    def failures_count(self, probe: str, reason: str) -> float:
        with self._lock:
            return self._failures[(probe, reason)]

    @property
    def diagnosis(self) -> Diagnosis | None:
        return self._diagnosis

    # -- exposition (called at scrape time) -----------------------------------------------------

    def describe(self) -> Iterable[Metric]:
        """Every family this collector can produce, without samples."""
        site_labels = list(self.site.labels())
        return [_empty(f, site_labels) for f in self._families()]

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            out = _Samples(self.site.labels())
            self._collect_site(out)
            self._collect_probes(out)
            for probe, state in self._probes.items():
                if (spec := self._specs.get(probe)) is not None:
                    spec.metrics.show(state.standing, out)
            for (family, values), count in sorted(self._tally.counters.items(), key=_by_name):
                out.add(family, count, **dict(zip(family.labels, values, strict=True)))
            for (family, values), hist in sorted(self._tally.histograms.items(), key=_by_name):
                out.histogram(family, values, hist)
            self._collect_diagnosis(out)
        yield from out

    def _collect_site(self, out: _Samples) -> None:
        s = self.site
        out.add(
            SITE_INFO,
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
            out.add(CONTRACTED, mbps * MBPS, direction=direction)
        out.add(THRESHOLD, s.threshold_bps("download") / 8, direction="download")
        out.add(THRESHOLD, s.threshold_bps("upload") / 8, direction="upload")
        out.add(AGENT_INFO, 1, version=__version__, python=platform.python_version())
        out.add(CLOCK, self._clock())
        out.add(START_TIME, self.started_at)
        out.add(CONFIG_OK, 1 if self.config_ok else 0)
        out.add(RESTART_REQUIRED, 1 if self.restart_required else 0)
        for outcome, count in sorted(self.reloads.items()):
            out.add(RELOADS, count, result=outcome)

    def _collect_probes(self, out: _Samples) -> None:
        for probe, state in sorted(self._probes.items()):
            if state.success is not None:
                out.add(PROBE_SUCCESS, 1 if state.success else 0, probe=probe)
            out.add(PROBE_DURATION, state.duration_s, probe=probe)
            out.add(PROBE_LAST_RUN, state.last_run, probe=probe)
            out.add(PROBE_LAST_SUCCESS, state.last_success, probe=probe)
            out.add(PROBE_RUNS, state.runs, probe=probe)
        for (probe, reason), count in sorted(self._failures.items()):
            out.add(PROBE_FAILURES, count, probe=probe, reason=reason)

    def _collect_diagnosis(self, out: _Samples) -> None:
        if self._diagnosis is None:
            return
        for cause in CAUSES:
            out.add(DIAGNOSIS, 1 if cause == self._diagnosis.cause else 0, cause=cause)
        out.add(DIAGNOSIS_SINCE, self._diagnosis_since)


def _by_name(item: tuple[tuple[Family, LabelValues], object]) -> tuple[str, LabelValues]:
    (family, values), _ = item
    return family.name, values
