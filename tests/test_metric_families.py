"""Metric families: declared by their probes, described before any result, labels placed by name."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from agent.config import probes_settings_class
from agent.families import Family, ProbeMetrics, Samples, Tally
from agent.metrics import AgentMetrics
from agent.probes import PROBES
from agent.probes.base import ProbeSettings, ProbeSpec
from agent.probes.ping import PingStats
from agent.result import Result
from agent.schema import SchemaError, check, each, is_host, parse, positive
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

    def show(results: Sequence[Result[Any]], out: Samples) -> None:
        out.add(family, 1, target="a", role="internet")
        out.add(family, 0, role="gateway", target="b")

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
    metrics = ProbeMetrics[ProbeSettings, None](families=(family,))
    spec = ProbeSpec("x", ProbeSettings, lambda s, c: [], metrics=metrics)
    with pytest.raises(ValueError, match="declared twice: x_up"):
        AgentMetrics(SITE, probes={"x": spec, "y": spec})


def test_counter_and_histogram_names_are_checked() -> None:
    """A counter must end in _total and a histogram must have buckets."""
    with pytest.raises(ValueError, match="_total"):
        Family("x_runs", "counter", "Runs.")
    with pytest.raises(ValueError, match="buckets"):
        Family("x_seconds", "histogram", "Time.")


@dataclass(frozen=True)
class _EchoSettings(ProbeSettings):
    targets: tuple[str, ...] = check(each(is_host), default=("a.vn",))
    wait_s: float = check(positive, default=1.0)
    within_run = ("wait_s",)


_ECHO_UP = Family("x_echo_up", "gauge", "1 when the echo came back.", ("target",))
_ECHO_TESTS = Family("x_echo_tests_total", "counter", "Echo tests.", ("target",))


def test_a_new_probe_needs_only_its_spec() -> None:
    """A probe known only by its ProbeSpec gets its config key, its checks, and its series at 0."""

    def start(settings: _EchoSettings, tally: Tally) -> None:
        for target in settings.targets:
            tally.declare(_ECHO_TESTS, target=target)

    metrics = ProbeMetrics[_EchoSettings, bool](families=(_ECHO_UP, _ECHO_TESTS), start=start)
    spec = ProbeSpec("echo", _EchoSettings, lambda s, c: [], metrics=metrics)
    probes = probes_settings_class({"echo": spec})
    parsed: Any = parse(probes, {"echo": {"targets": ["b.vn"]}})
    assert parsed.enabled() == {"echo": _EchoSettings(targets=("b.vn",))}
    with pytest.raises(SchemaError) as err:
        parse(probes, {"echo": {"targets": ["-bad-"], "wait_s": 40, "timeout_s": 30}})
    assert err.value.problems == [
        "echo.targets[0]: not a host name or address",
        "echo.wait_s: must be less than timeout_s (the whole run's limit)",
    ]
    m = AgentMetrics(SITE, probes={"echo": spec})
    m.set_probes(parsed.enabled())
    registry = CollectorRegistry()
    registry.register(m)
    assert registry.get_sample_value("x_echo_tests_total", {**SITE.labels(), "target": "b.vn"}) == 0
