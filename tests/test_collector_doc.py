"""docs/collector.md states the alerting's timings: every one is computed here from the shipped
files (prometheus.yml, the rule files, alertmanager.yml, the agent's push default), and the test
fails when the doc and the files disagree."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import yaml

from agent.push.settings import PushSettings
from collector.localstack import seconds

ROOT = Path(__file__).resolve().parent.parent
PROM = ROOT / "collector" / "prometheus"
DOC = (ROOT / "docs" / "collector.md").read_text(encoding="utf-8")


def groups() -> list[dict[str, Any]]:
    """The groups of the rule files this doc describes (push.yml is docs/push.md's)."""
    found: list[dict[str, Any]] = []
    for path in (PROM / "rules" / "site-state.yml", PROM / "rules" / "alerts.yml"):
        found += yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]
    return found


def rule(name: str) -> dict[str, Any]:
    (found,) = [r for g in groups() for r in g["rules"] if r.get("alert") == name or r.get("record") == name]
    return found


def window(record: str, metric: str) -> float:
    """The range, in seconds, `record` reads `metric` over."""
    (found,) = re.findall(rf"{re.escape(metric)}(?:\{{[^}}]*\}})?\[(\w+)\]", str(rule(record)["expr"]))
    return seconds(found)


def words(s: float | None) -> str:
    """A duration as the doc writes it: "20 s", "10 min", "13 h", or "-"."""
    if s is None:
        return "-"
    if s >= 3600 and s % 3600 == 0:
        return f"{s / 3600:g} h"
    if s >= 60 and s % 60 == 0:
        return f"{s / 60:g} min"
    return f"{s:g} s"


def whole(s: float) -> int:
    return math.floor(s + 0.5)


def timings() -> dict[str, dict[str, float]]:
    prom = yaml.safe_load((PROM / "prometheus.yml").read_text(encoding="utf-8"))
    am = yaml.safe_load(
        (ROOT / "collector" / "alertmanager" / "alertmanager.yml").read_text(encoding="utf-8")
    )
    (agent_job,) = [j for j in prom["scrape_configs"] if j["job_name"] == "hotspot-agent"]
    scrape = seconds(agent_job["scrape_interval"])
    (state,) = [g for g in groups() if g["name"] == "hotspot-site-state"]
    evaluation = seconds(state["interval"])
    hold = seconds(rule("HotspotSiteDown")["for"])
    wait = seconds(am["route"]["group_wait"])
    push = PushSettings().interval_s
    silent_pull = window("site:hotspot_silent:bool", 'up{job="hotspot-agent"}')
    silent_push = window("site:hotspot_silent:bool", "hotspot_agent_clock_seconds")
    return {
        "scraped": {
            "window": silent_pull,
            "window_typical": silent_pull - scrape / 2,
            "eval": evaluation,
            "eval_typical": evaluation / 2,
            "for": hold,
            "wait": wait,
        },
        "pushed": {
            "window": silent_push,
            "window_typical": silent_push - push / 2,
            "eval": evaluation,
            "eval_typical": evaluation / 2,
            "for": hold,
            "wait": wait,
        },
    }


def test_down_to_notification_tables_match_the_files() -> None:
    """Each step of the two tables, and their totals, as computed from the files; both under 2 min."""
    for reach, t in timings().items():
        worst = t["window"] + t["eval"] + t["for"] + t["wait"]
        typical = t["window_typical"] + t["eval_typical"] + t["for"] + t["wait"]
        assert worst <= 120, reach
        rows = [
            f"| silent: the last {'successful scrape' if reach == 'scraped' else 'pushed sample'} leaves the "
            f"{t['window']:g} s window | {t['window']:g} s | {whole(t['window_typical'])} s |",
            "| until the next evaluation of the site-state group | "
            f"{t['eval']:g} s | {whole(t['eval_typical'])} s |",
            f"| `for` | {t['for']:g} s | {t['for']:g} s |",
            f"| Alertmanager `group_wait` | {t['wait']:g} s | {t['wait']:g} s |",
            f"| **total ({reach})** | **{worst:g} s** | **{whole(typical)} s** |",
        ]
        for row in rows:
            assert row in DOC, row


def test_stated_intervals_match_the_files() -> None:
    prom = yaml.safe_load((PROM / "prometheus.yml").read_text(encoding="utf-8"))
    g = prom["global"]
    for key in ("scrape_interval", "scrape_timeout", "evaluation_interval"):
        assert f"`{key}: {g[key]}`" in DOC, key
    (agent_job,) = [j for j in prom["scrape_configs"] if j["job_name"] == "hotspot-agent"]
    scrape = words(seconds(agent_job["scrape_interval"]))
    assert f"scrapes every {scrape}" in DOC
    (state,) = [g for g in groups() if g["name"] == "hotspot-site-state"]
    assert f"site-state rules run every {words(seconds(state['interval']))}" in DOC
    assert f"pushes every {words(PushSettings().interval_s)}" in DOC
    up_window = window("site:hotspot_up:bool", "hotspot_agent_clock_seconds")
    assert f"a sample pushed in the last {words(up_window)}" in DOC
    am = yaml.safe_load(
        (ROOT / "collector" / "alertmanager" / "alertmanager.yml").read_text(encoding="utf-8")
    )
    for key in ("group_wait", "group_interval", "repeat_interval"):
        assert f"`{key}: {am['route'][key]}`" in DOC, key


def test_alert_table_matches_the_rules() -> None:
    """Every alert is in the doc's table, with its `for` and `keep_firing_for` as in the rules."""
    table = {
        m.group(1): (m.group(2), m.group(3))
        for m in re.finditer(
            r"^\| (Hotspot\w+) \| .* \| ([^|]+) \| ([^|]+) \| (?:critical|warning|info) \|$", DOC, re.M
        )
    }
    for g in groups():
        for r in g["rules"]:
            if "alert" not in r:
                continue
            hold = words(seconds(r["for"])) if "for" in r else "-"
            keep = words(seconds(r["keep_firing_for"])) if "keep_firing_for" in r else "-"
            assert table.get(r["alert"]) == (hold, keep), r["alert"]
