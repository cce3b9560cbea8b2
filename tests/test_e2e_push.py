"""Push and pull together: the agent process pushes to a real VictoriaMetrics while a real Prometheus
scrapes it, and both hold the same series with the same labels."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable

import pytest

from tests.support.agentproc import LOOPBACK_PROBES, AgentProcess, site_yaml
from tests.support.prometheus import Prometheus
from tests.support.receivers import Receiver

pytestmark = pytest.mark.skipif(
    not (shutil.which("prometheus") and shutil.which("victoria-metrics")),
    reason="needs prometheus and victoria-metrics",
)
COMPARED = ("hotspot_site_info", "hotspot_ping_up", "hotspot_probe_runs_total", "hotspot_system_load1")


def test_pushed_series_equal_pulled_series(
    victoria: Receiver, agent: Callable[..., AgentProcess], prometheus: Callable[..., Prometheus]
) -> None:
    """Every compared metric has identical label sets whether pushed (remote write) or pulled (scrape)."""
    vm = victoria
    config = (
        site_yaml("nd-14161-tyt")
        + LOOPBACK_PROBES
        + f"push: {{enabled: true, url: '{vm.write_url}', interval_s: 1, min_backoff_s: 0.2}}\n"
    )
    site = agent(config)
    target = site.url.removeprefix("http://")
    prom = prometheus(
        f"""
global: {{scrape_interval: 1s}}
scrape_configs:
  - job_name: hotspot-agent
    static_configs: [{{targets: ["{target}"], labels: {{instance: nd-14161-tyt}}}}]
"""
    )
    prom.wait_for('hotspot_ping_up{site="nd-14161-tyt"}')
    time.sleep(3)  # a few push intervals
    for name in COMPARED:
        pulled = {frozenset(r["metric"].items()) for r in prom.query(name)}
        pushed = set(vm.samples(name))
        assert pulled, name
        assert pushed == pulled, (name, pushed ^ pulled)
    text = site.metrics()
    assert "hotspot_push_samples_sent_total{" in text and 'site="nd-14161-tyt"' in text
