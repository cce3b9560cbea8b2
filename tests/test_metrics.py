"""Metrics: results become labelled families at scrape time, promtool-clean, documented, never a fake 0."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from agent.bandwidth.budget import BudgetStatus
from agent.bandwidth.engine import BandwidthTest
from agent.metrics import AgentMetrics
from agent.probes import PROBES
from agent.probes.bandwidth import BandwidthRun
from agent.probes.dns import DnsLookup
from agent.probes.http import HttpCheck
from agent.probes.ping import PingStats
from agent.probes.ping import Settings as ping_settings
from agent.probes.system import InterfaceStats, SystemStats
from agent.probes.wifi import WifiLink
from agent.result import Result, failure
from agent.site import Site

ROOT = Path(__file__).resolve().parent.parent
SITE = Site(
    id="nd-13636-ubnd",
    commune="Phường Vị Xuyên",
    province="Ninh Bình",
    district="Thành phố Nam Định",
    type="commune_office",
    latitude=20.44129,
    longitude=106.17024,
    isp="Viettel",
)
LABELS = {
    "site": "nd-13636-ubnd",
    "site_type": "commune_office",
    "commune": "Phường Vị Xuyên",
    "province": "Ninh Bình",
    "district": "Thành phố Nam Định",
}


def ping(target: str, received: int, role: str = "internet", avg: float | None = 0.02) -> Result:
    stats = PingStats(
        address="192.0.2.1" if role == "internet" else "192.168.1.1",
        role=role,  # type: ignore[arg-type]
        method="icmp",
        sent=10,
        received=received,
        loss_ratio=(10 - received) / 10,
        rtt_min_s=None if not received else 0.01,
        rtt_avg_s=None if not received else avg,
        rtt_max_s=None if not received else 0.03,
        jitter_s=None if received < 2 else 0.002,
    )
    if received:
        return Result("ping", target, True, data=stats)
    return failure("ping", target, "unreachable", "no reply", data=stats)


BUDGET = BudgetStatus(30_000_000_000, 130_000_000, 29_870_000_000, "2026-11", True)


def bw(outcome: str, test: BandwidthTest | None) -> BandwidthRun:
    return BandwidthRun(outcome, test, BUDGET, None)  # type: ignore[arg-type]


def full_metrics() -> AgentMetrics:
    """An AgentMetrics that has seen one result of every kind."""
    m = AgentMetrics(SITE, clock=lambda: 1_700_000_000.0)
    m.set_probes({name: spec.settings() for name, spec in PROBES.items()})
    m.record_run("ping", [ping("gateway", 10, "gateway"), ping("1.1.1.1", 9), ping("8.8.8.8", 0)], 1.0, 2.0)
    m.record_run(
        "dns",
        [
            Result(
                "dns",
                "system/a.vn",
                True,
                data=DnsLookup("system", "10.0.0.1", "a.vn", "NOERROR", ("1.2.3.4",), 0.01),
            ),
            failure(
                "dns",
                "system/b.vn",
                "dns",
                "NXDOMAIN",
                data=DnsLookup("system", "10.0.0.1", "b.vn", "NXDOMAIN", (), 0.02),
            ),
        ],
        1.0,
        0.1,
    )
    portal = HttpCheck("http://p/generate_204", "portal_check", 204, 0.05, 0.06, 0, False, "")
    page = HttpCheck("https://dichvucong.gov.vn/", "reachability", 200, 0.2, 0.5, 1000, False, "")
    m.record_run(
        "http",
        [Result("http", page.url, True, data=page), Result("http", portal.url, True, data=portal)],
        1,
        1,
    )
    link = WifiLink(
        "wlan0", "managed", True, "Wifi-UBND", "aa:bb:cc:dd:ee:ff", 2.412e9, -61.0, 72.2e6, 65e6, None
    )
    ap = WifiLink("wlan1", "AP", True, "Wifi-UBND", "aa:bb:cc:dd:ee:01", 5.18e9, None, None, None, 7)
    m.record_run(
        "wifi", [Result("wifi", "wlan0", True, data=link), Result("wifi", "wlan1", True, data=ap)], 1, 0.1
    )
    eth = InterfaceStats("eth0", True, 1e9, 100, 200, 3, 4, 0, 0, 0, 0)
    stats = SystemStats(
        0.25,
        0.5,
        1 << 30,
        1 << 29,
        (("/", 1 << 34, 1 << 33),),
        (("cpu_thermal", 51.5),),
        1.6e9,
        30 << 20,
        1.5,
        (eth,),
    )
    m.record_run("system", [Result("system", "", True, data=stats)], 1, 0.5)
    test = BandwidthTest(
        "http", "http://speed.example.vn/", 91e6, 60e6, 80_000_000, 50_000_000, 0.012, 0.085, 4, 4, 12.0
    )
    m.record_run("bandwidth", [Result("bandwidth", "", True, data=bw("measured", test))], 1, 12.0)
    return m


def exposition(m: AgentMetrics) -> str:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(m)
    return generate_latest(reg).decode()


def value(m: AgentMetrics, name: str, /, **labels: str) -> float | None:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(m)
    return reg.get_sample_value(name, {**LABELS, **labels})


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_exposition_is_promtool_clean() -> None:
    """`promtool check metrics` finds nothing to complain about in a full exposition."""
    text = exposition(full_metrics())
    res = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    assert res.returncode == 0 and res.stdout + res.stderr == "", res.stdout + res.stderr


def test_every_series_carries_site_labels() -> None:
    """Every sample has site, site_type, commune, province (and district when set)."""
    for line in exposition(full_metrics()).splitlines():
        if line and not line.startswith("#"):
            for key, val in LABELS.items():
                assert f'{key}="{val}"' in line, line


def test_names_match_the_reference() -> None:
    """Every metric the agent exposes is in docs/metrics.md, and every documented agent metric exists."""
    exposed = set(re.findall(r"^# TYPE (\S+) ", exposition(full_metrics()), re.M))
    exposed = {n + "_total" if not n.endswith("_total") and _is_counter(n) else n for n in exposed}
    doc = (ROOT / "docs" / "metrics.md").read_text()
    documented = set(re.findall(r"`(hotspot_[a-z0-9_]+)`", doc))
    # A histogram's series (name_bucket, name_count, name_sum) are documented under its name.
    documented = {
        re.sub(r"_(bucket|count|sum)$", "", n) if re.sub(r"_(bucket|count|sum)$", "", n) in exposed else n
        for n in documented
    }
    assert exposed - documented == set()
    elsewhere = {n for n in documented if n.startswith("hotspot_push_")}  # the pusher's own collector
    assert documented - elsewhere - exposed == set()


def _is_counter(name: str) -> bool:
    return bool(re.search(rf"^# TYPE {name} counter", exposition(full_metrics()), re.M))


def test_failed_measurement_is_absent_not_zero() -> None:
    """At 100% loss the RTT series are absent, loss is 1 and up is 0; nothing reads as a 0 ms RTT."""
    m = full_metrics()
    labels = {"target": "8.8.8.8", "role": "internet", "method": "icmp"}
    assert value(m, "hotspot_ping_up", **labels) == 0
    assert value(m, "hotspot_ping_loss_ratio", **labels) == 1.0
    assert value(m, "hotspot_ping_rtt_seconds", stat="avg", **labels) is None
    assert (
        value(m, "hotspot_ping_rtt_seconds", stat="avg", target="1.1.1.1", role="internet", method="icmp")
        == 0.02
    )
    assert value(m, "hotspot_dns_lookup_seconds", resolver="system", name="b.vn") == 0.02
    assert value(m, "hotspot_dns_success", resolver="system", name="b.vn") == 0


def test_failed_bandwidth_direction_not_exported() -> None:
    """A test whose upload failed exports the download only, and counts only the download test."""
    m = AgentMetrics(SITE)
    partial = BandwidthTest("http", "s", 95e6, None, 1000, 20, 0.01, None, 4, 0, 3.0)
    m.record_run(
        "bandwidth", [failure("bandwidth", "", "refused", "upload refused", data=bw("failed", partial))], 1, 1
    )
    bwl = {"engine": "http", "server": "s"}
    assert value(m, "hotspot_bandwidth_goodput_bytes_per_second", direction="download", **bwl) == 95e6 / 8
    assert value(m, "hotspot_bandwidth_goodput_bytes_per_second", direction="upload", **bwl) is None
    assert value(m, "hotspot_bandwidth_tests_total", direction="upload", engine="http") is None
    assert value(m, "hotspot_bandwidth_tests_total", direction="download", engine="http") == 1
    assert value(m, "hotspot_bandwidth_test_bytes_total", direction="upload", engine="http") == 20
    assert value(m, "hotspot_probe_success", probe="bandwidth") == 0
    assert value(m, "hotspot_probe_failures_total", probe="bandwidth", reason="refused") == 1


def test_threshold_counting_follows_site_rule() -> None:
    """Tests are counted as meeting the requirement at >= pass_ratio × contracted speed, per direction."""
    m = AgentMetrics(SITE)  # 100/100 Mbps, pass ratio 0.8
    for down, up in ((81e6, 79e6), (80e6, 95e6), (50e6, 50e6)):
        test = BandwidthTest("http", "s", down, up, 1, 1, None, None, 4, 4, 1.0)
        m.record_run("bandwidth", [Result("bandwidth", "", True, data=bw("measured", test))], 1, 1)
    meets = "hotspot_bandwidth_tests_meeting_threshold_total"
    assert value(m, "hotspot_bandwidth_tests_total", direction="download", engine="http") == 3
    assert value(m, meets, direction="download", engine="http") == 2
    assert value(m, meets, direction="upload", engine="http") == 1
    assert value(m, "hotspot_site_threshold_bytes_per_second", direction="download") == 80e6 / 8


def test_lower_bound_figures_count_only_when_they_decide() -> None:
    """'At least X' meets when X meets; under the threshold it is inconclusive, counted apart, never
    as a failed test; the histogram takes it as X; the gauge says which figure is a lower bound."""
    m = AgentMetrics(SITE)  # 100/100 Mbps, pass ratio 0.8
    test = BandwidthTest(
        "http",
        "s",
        850e6,
        60e6,
        1,
        1,
        None,
        None,
        4,
        4,
        1.0,
        download_lower_bound=True,
        upload_lower_bound=True,
    )
    m.record_run("bandwidth", [Result("bandwidth", "", True, data=bw("measured", test))], 1, 1)
    down, up = {"direction": "download", "engine": "http"}, {"direction": "upload", "engine": "http"}
    assert value(m, "hotspot_bandwidth_tests_total", **down) == 1
    assert value(m, "hotspot_bandwidth_tests_meeting_threshold_total", **down) == 1
    assert not value(m, "hotspot_bandwidth_tests_total", **up)  # no series yet, or 0
    assert not value(m, "hotspot_bandwidth_tests_meeting_threshold_total", **up)
    assert value(m, "hotspot_bandwidth_tests_inconclusive_total", **up) == 1
    assert not value(m, "hotspot_bandwidth_tests_inconclusive_total", **down)
    assert value(m, "hotspot_bandwidth_test_goodput_bytes_per_second_count", **up) == 1
    bwl = {"engine": "http", "server": "s"}
    assert value(m, "hotspot_bandwidth_goodput_lower_bound", direction="upload", **bwl) == 1


def test_latency_tests_counted_against_site_limit() -> None:
    """A latency test is within the limit when its average RTT is at or under the site's limit."""
    m = AgentMetrics(SITE)  # 100 ms
    m.record_run("ping", [ping("x", 10, avg=0.1), ping("y", 10, avg=0.101), ping("z", 0)], 1, 1)
    for target, within in (("x", 1), ("y", 0), ("z", 0)):
        assert value(m, "hotspot_ping_tests_within_limit_total", target=target, role="internet") == within
        assert value(m, "hotspot_ping_tests_total", target=target, role="internet") == 1


def test_counters_accumulate_and_failures_start_at_zero() -> None:
    """Packet counters add up over runs; failure counters exist at 0 before any failure."""
    m = AgentMetrics(SITE)
    m.set_probes({"ping": ping_settings(targets=("x",), gateway=False)})
    assert value(m, "hotspot_probe_failures_total", probe="ping", reason="timeout") == 0
    assert value(m, "hotspot_probe_success", probe="ping") is None  # no run yet: unknown, not failed
    assert value(m, "hotspot_ping_tests_total", target="x", role="internet") == 0  # so increase() sees test 1
    for _ in range(3):
        m.record_run("ping", [ping("x", 9)], 1, 1)
    assert value(m, "hotspot_ping_packets_sent_total", target="x", role="internet") == 30
    assert value(m, "hotspot_ping_packets_received_total", target="x", role="internet") == 27
    assert value(m, "hotspot_probe_runs_total", probe="ping") == 3


def test_diagnosis_exported_with_since() -> None:
    """The diagnosis is one-hot over the causes and says since when it holds."""
    m = AgentMetrics(SITE)
    m.record_run("ping", [ping("gateway", 10, "gateway"), ping("1.1.1.1", 10)], 100.0, 1)
    assert value(m, "hotspot_diagnosis", cause="healthy") == 1
    assert value(m, "hotspot_diagnosis", cause="uplink_fault") == 0
    m.record_run("ping", [ping("gateway", 10, "gateway"), ping("1.1.1.1", 0)], 200.0, 1)
    assert value(m, "hotspot_diagnosis", cause="uplink_fault") == 1
    assert value(m, "hotspot_diagnosis_since_timestamp_seconds") == 200.0
    m.record_run("ping", [ping("gateway", 10, "gateway"), ping("1.1.1.1", 0)], 300.0, 1)
    assert value(m, "hotspot_diagnosis_since_timestamp_seconds") == 200.0  # unchanged cause keeps its start


def test_scrape_does_not_measure() -> None:
    """Scraping twice changes no counter: scrapes only read results."""
    m = full_metrics()
    assert exposition(m).replace("1.7e+09", "") == exposition(m).replace("1.7e+09", "")
    assert value(m, "hotspot_probe_runs_total", probe="ping") == 1


def test_deferred_run_keeps_last_measurement_and_counts() -> None:
    """A deferred or skipped run is counted, and the last test's figures stay exported."""
    m = AgentMetrics(SITE)
    m.set_probes({"bandwidth": PROBES["bandwidth"].settings()})
    assert value(m, "hotspot_bandwidth_tests_deferred_total") == 0
    test = BandwidthTest("http", "s", 91e6, 60e6, 1, 1, None, None, 4, 4, 1.0)
    m.record_run("bandwidth", [Result("bandwidth", "s", True, data=bw("measured", test))], 1, 1)
    m.record_run(
        "bandwidth", [failure("bandwidth", "s", "limit", "deferred", data=bw("deferred", None))], 2, 1
    )
    m.record_run("bandwidth", [failure("bandwidth", "s", "limit", "skipped", data=bw("skipped", None))], 3, 1)
    assert value(m, "hotspot_bandwidth_tests_deferred_total") == 1
    assert value(m, "hotspot_bandwidth_tests_skipped_total", reason="budget") == 1
    bw_labels = {"engine": "http", "server": "s"}
    assert (
        value(m, "hotspot_bandwidth_goodput_bytes_per_second", direction="download", **bw_labels) == 91e6 / 8
    )
    assert value(m, "hotspot_bandwidth_tests_total", direction="download", engine="http") == 1
    assert value(m, "hotspot_bandwidth_budget_remaining_bytes") == 29_870_000_000


def test_goodput_histogram_lets_the_collector_judge_any_boundary() -> None:
    """Each test's goodput lands in the histogram per direction: tests above a boundary are
    count - bucket{le=boundary}, whatever the agent's own contract says."""
    m = AgentMetrics(SITE)
    m.set_probes({"bandwidth": PROBES["bandwidth"].settings()})
    hist = "hotspot_bandwidth_test_goodput_bytes_per_second"
    labels = {"direction": "download", "engine": "http"}
    assert value(m, f"{hist}_count", **labels) == 0  # exists at 0 before any test: increase() sees the first
    for down, up in ((81e6, 79e6), (80e6, 95e6), (45e6, 1200e6)):
        test = BandwidthTest("http", "s", down, up, 1, 1, None, None, 4, 4, 1.0)
        m.record_run("bandwidth", [Result("bandwidth", "", True, data=bw("measured", test))], 1, 1)
    assert value(m, f"{hist}_count", **labels) == 3
    assert value(m, f"{hist}_sum", **labels) == 206e6 / 8
    assert value(m, f"{hist}_bucket", le="1e+07", **labels) == 2  # 80 Mbit/s exactly is not above 80
    assert value(m, f"{hist}_bucket", le="5e+06", **labels) == 0  # 40 Mbit/s
    assert value(m, f"{hist}_bucket", le="6.25e+06", **labels) == 1  # 50 Mbit/s
    upload = {"direction": "upload", "engine": "http"}
    assert value(m, f"{hist}_bucket", le="1.25e+08", **upload) == 2  # 1000 Mbit/s
    assert value(m, f"{hist}_bucket", le="+Inf", **upload) == 3


def test_rtt_histogram_observes_answered_tests_only() -> None:
    """Answered latency tests go into the RTT histogram; unanswered ones only into the tests counter,
    so bucket{le="0.1"} / tests_total is the share within 100 ms."""
    m = AgentMetrics(SITE)
    m.record_run("ping", [ping("x", 10, avg=0.1), ping("x", 10, avg=0.101), ping("x", 0)], 1, 1)
    hist, labels = "hotspot_ping_test_rtt_seconds", {"target": "x", "role": "internet"}
    assert value(m, f"{hist}_bucket", le="0.1", **labels) == 1
    assert value(m, f"{hist}_count", **labels) == 2
    assert value(m, "hotspot_ping_tests_total", **labels) == 3
