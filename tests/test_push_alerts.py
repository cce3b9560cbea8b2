"""The documented absence alert for pushed sites, checked with promtool against synthetic series."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

RULES = Path(__file__).resolve().parent.parent / "docs" / "push-alerts.example.yml"

TEST = """
rule_files: [{rules}]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'hotspot_agent_clock_seconds{{job="hotspot-agent",site="a",commune="C",province="P"}}'
        values: '1x30 _x60'
      - series: 'hotspot_agent_clock_seconds{{job="hotspot-agent",site="b",commune="C",province="P"}}'
        values: '1x90'
    alert_rule_test:
      - eval_time: 20m
        alertname: SitePushSilent
        exp_alerts: []
      - eval_time: 50m
        alertname: SitePushSilent
        exp_alerts:
          - exp_labels: {{site: a, commune: C, province: P, severity: warning}}
            exp_annotations:
              summary: "a (C) has pushed nothing for 15 minutes"
              summary_vi: "a (C) không gửi dữ liệu trong 15 phút"
"""


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_silent_pushed_site_alerts_and_a_live_one_does_not(tmp_path):
    """A site whose pushes stop raises SitePushSilent after the lookback and `for`; a live one never."""
    test = tmp_path / "push-alerts.test.yml"
    test.write_text(TEST.format(rules=RULES))
    check = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    run = subprocess.run(["promtool", "test", "rules", str(test)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
