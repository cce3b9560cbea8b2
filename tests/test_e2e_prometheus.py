"""End to end: a real agent process scraped by a real Prometheus; the site's series carry its labels."""

from __future__ import annotations

import shutil
from collections.abc import Callable

import pytest

from tests.support.agentproc import LOOPBACK_PROBES, AgentProcess, site_yaml
from tests.support.prometheus import Prometheus

pytestmark = pytest.mark.skipif(shutil.which("prometheus") is None, reason="prometheus is not installed")


def test_prometheus_scrapes_agent_with_site_labels(
    agent: Callable[..., AgentProcess], prometheus: Callable[..., Prometheus]
) -> None:
    """Prometheus finds the site's info, probe and measurement series, all with the site's labels."""
    site = agent(site_yaml("nd-14161-tyt") + LOOPBACK_PROBES)
    target = site.url.removeprefix("http://")
    prom = prometheus(
        f"""
global: {{scrape_interval: 1s, evaluation_interval: 1s}}
scrape_configs:
  - job_name: hotspot-agent
    static_configs: [{{targets: ["{target}"], labels: {{instance: nd-14161-tyt}}}}]
"""
    )
    (info,) = prom.wait_for('hotspot_site_info{site="nd-14161-tyt"}')
    labels = info["metric"]
    assert labels["site_type"] == "health_station"
    assert labels["commune"] == "Xã Giao Minh"
    assert labels["province"] == "Ninh Bình"
    assert labels["latitude"] == "20.25293" and labels["isp"] == "VNPT"
    assert "district" not in labels  # optional, and this site has none
    (up,) = prom.wait_for('hotspot_ping_up{site="nd-14161-tyt", target="127.0.0.1"}')
    assert up["value"][1] == "1"
    assert up["metric"]["commune"] == "Xã Giao Minh" and up["metric"]["role"] == "internet"
    rtt = prom.wait_for('hotspot_ping_rtt_seconds{site="nd-14161-tyt", stat="avg"}')
    assert 0 < float(rtt[0]["value"][1]) < 0.1
    prom.wait_for('hotspot_system_memory_total_bytes{site="nd-14161-tyt"} > 0')
    failures = prom.wait_for('hotspot_probe_failures_total{site="nd-14161-tyt", probe="ping"}')
    assert {f["metric"]["reason"] for f in failures} >= {"timeout", "unreachable", "dns"}
    # every series the agent exposes carries the identity labels
    unlabelled = prom.query('{job="hotspot-agent", __name__=~"hotspot_.*", site=""}')
    assert unlabelled == []
