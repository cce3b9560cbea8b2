"""Metric families: declared by their probes, described before any result, labels placed by name."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from agent.families import Family, ProbeMetrics
from agent.metrics import AgentMetrics
from agent.probes import PROBES
from agent.probes.base import ProbeSettings, ProbeSpec
from agent.probes.ping import PingStats
from agent.result import Result
from agent.site import Site

SITE = Site(id="s1", commune="Xã A", province="Nam Định")


def test_second_registration_fails_at_registration() -> None:
    """Two stores in one registry (as two pushers once ran unseen) are refused when registered."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(AgentMetrics(SITE))
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        registry.register(AgentMetrics(SITE))


def test_describe_lists_every_family_before_any_result() -> None:
    """describe() names every probe's families, with no run recorded yet."""
    described = {m.name for m in AgentMetrics(SITE).describe()}
    assert "hotspot_ping_rtt_seconds" in described
    assert "hotspot_bandwidth_tests_meeting_threshold" in described  # counters without _total
    assert "hotspot_bandwidth_test_goodput_bytes_per_second" in described
    assert "hotspot_probe_failures" in described
    for spec in PROBES.values():
        for family in spec.metrics.families:
            assert family.name.removesuffix("_total") in described, family.name


def test_described_families_cover_a_full_exposition() -> None:
    """Every family a scrape yields was described, with the same type."""
    m = AgentMetrics(SITE)
    m.set_probes({name: spec.settings() for name, spec in PROBES.items()})
    stats = PingStats("192.0.2.1", "internet", "icmp", 10, 9, 0.1, 0.01, 0.02, 0.03, 0.002)
    m.record_run("ping", [Result("ping", "x", True, data=stats)], 1.0, 1.0)
    described = {f.name: f.type for f in m.describe()}
    collected = {f.name: f.type for f in m.collect()}
    assert collected and all(described.get(name) == kind for name, kind in collected.items())


def test_labels_are_placed_by_name_not_by_order() -> None:
    """The same labels given in another order land on the same series with the right values."""
    family = Family("x_up", "gauge", "Up.", ("target", "role"))

    def show(results: object, out: object) -> None:
        out.add(family, 1, target="a", role="internet")  # type: ignore[attr-defined]
        out.add(family, 0, role="gateway", target="b")  # type: ignore[attr-defined]

    spec = ProbeSpec("x", ProbeSettings, lambda s, c: [], metrics=ProbeMetrics(families=(family,), show=show))
    m = AgentMetrics(SITE, probes={"x": spec})
    m.record_run("x", [], 1.0, 1.0)
    registry = CollectorRegistry()
    registry.register(m)
    site = SITE.labels()
    assert registry.get_sample_value("x_up", {**site, "target": "a", "role": "internet"}) == 1
    assert registry.get_sample_value("x_up", {**site, "target": "b", "role": "gateway"}) == 0
    assert 'role="gateway"' in generate_latest(registry).decode()


def test_undeclared_label_names_fail() -> None:
    """A sample whose label names are not its family's is refused, never exported half-labelled."""
    family = Family("x_up", "gauge", "Up.", ("target",))
    with pytest.raises(ValueError, match="x_up: labels"):
        family.values({"host": "a"})
    with pytest.raises(ValueError, match="x_up: labels"):
        family.values({"target": "a", "role": "b"})


def test_family_declared_twice_fails() -> None:
    """Two probes declaring the same family name are refused when the store is built."""
    family = Family("x_up", "gauge", "Up.")
    spec = ProbeSpec("x", ProbeSettings, lambda s, c: [], metrics=ProbeMetrics(families=(family,)))
    with pytest.raises(ValueError, match="declared twice: x_up"):
        AgentMetrics(SITE, probes={"x": spec, "y": spec})


def test_counter_and_histogram_names_are_checked() -> None:
    """A counter must end in _total and a histogram must have buckets."""
    with pytest.raises(ValueError, match="_total"):
        Family("x_runs", "counter", "Runs.")
    with pytest.raises(ValueError, match="buckets"):
        Family("x_seconds", "histogram", "Time.")
