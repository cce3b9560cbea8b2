"""The collector's Prometheus and Alertmanager configs: promtool and amtool accept them, and the
rule unit tests (collector/prometheus/rules/tests/*.yml) pass with no false alert."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
PROM = ROOT / "collector" / "prometheus"
AM = ROOT / "collector" / "alertmanager"
RULE_FILES = sorted((PROM / "rules").glob("*.yml"))
TEST_FILES = sorted((PROM / "rules" / "tests").glob("*.yml"))
ANNOTATIONS = {"summary_vi", "summary_en", "description_vi", "description_en"}


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} not installed (apt-get install prometheus prometheus-alertmanager)")
    return path


def alert_rules() -> list[dict[str, object]]:
    rules = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            rules += [r for r in group["rules"] if "alert" in r]
    return rules


def test_promtool_check_rules() -> None:
    """`promtool check rules` accepts every rule file."""
    run = subprocess.run(
        [need("promtool"), "check", "rules", *map(str, RULE_FILES)], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_promtool_check_config() -> None:
    """`promtool check config` accepts prometheus.yml (and the rule files it names)."""
    run = subprocess.run(
        [need("promtool"), "check", "config", str(PROM / "prometheus.yml")], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"SUCCESS: {len(RULE_FILES)} rule files found" in run.stdout


def test_promtool_rule_unit_tests_pass() -> None:
    """Every rule unit test passes: alerts fire when and only when they should (0 false alerts)."""
    run = subprocess.run(
        [need("promtool"), "test", "rules", *map(str, TEST_FILES)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.count("SUCCESS") == len(TEST_FILES)


def test_every_alert_is_unit_tested_firing_and_quiet() -> None:
    """Each alert has a test where it fires and one where it must not (exp_alerts: [])."""
    fired: set[str] = set()
    quiet: set[str] = set()
    for path in TEST_FILES:
        for case in yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]:
            for check in case.get("alert_rule_test", []):
                (fired if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {str(r["alert"]) for r in alert_rules()}
    assert names - fired == set()
    assert names - quiet == {"HotspotWatchdog"}  # always firing: that is its job


def records() -> dict[str, str]:
    """Recording rule name -> its expression, over every rule file."""
    found: dict[str, str] = {}
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            found |= {str(r["record"]): str(r["expr"]) for r in group["rules"] if "record" in r}
    return found


def for_collector(rule: dict[str, object]) -> bool:
    labels = rule.get("labels") or {}
    return isinstance(labels, dict) and labels.get("team") == "collector"


def test_every_alert_has_severity_and_both_languages() -> None:
    """Alerts carry a severity and summary/description in Vietnamese and English (the watchdog,
    which is no fault, is "info")."""
    for rule in alert_rules():
        labels = rule.get("labels") or {}
        allowed = ("info",) if rule["alert"] == "HotspotWatchdog" else ("critical", "warning")
        assert isinstance(labels, dict) and labels.get("severity") in allowed, rule["alert"]
        annotations = rule.get("annotations") or {}
        assert isinstance(annotations, dict) and set(annotations) == ANNOTATIONS, rule["alert"]


def test_site_alerts_skip_sites_in_maintenance() -> None:
    """Every per-site alert joins the inventory with maintenance="false", itself or through the
    recorded series it reads (site:hotspot_watched:info and those built on it)."""
    recorded = records()

    def holds_back(expr: str, seen: frozenset[str] = frozenset()) -> bool:
        if 'maintenance="false"' in expr:
            return True
        used = {name for name in recorded if re.search(rf"(?<![\w:]){re.escape(name)}(?![\w:])", expr)}
        return any(holds_back(recorded[name], seen | {name}) for name in used - seen)

    for rule in alert_rules():
        if not for_collector(rule):
            assert holds_back(str(rule["expr"])), rule["alert"]


def test_collector_alerts_go_to_its_administrators() -> None:
    """Alerts about the collector itself (and about the inventory) carry team="collector", which
    alertmanager.yml routes to the administrators before any province route."""
    names = {str(r["alert"]) for r in alert_rules() if for_collector(r)}
    expected = {
        "HotspotSpeedtestServerDown",
        "HotspotInventoryMissing",
        "HotspotTargetNotInInventory",
        "HotspotSiteNeverHeard",
        "HotspotNotificationsFailing",
        "HotspotRuleEvaluationFailing",
        "HotspotRuleGroupSlow",
        "HotspotRemoteWriteRejected",
        "HotspotCollectorDiskFilling",
        "HotspotCollectorComponentDown",
    }
    assert expected <= names


def test_dashboard_record_names_exist() -> None:
    """The recording rule names the dashboards code against are all defined."""
    records = set()
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            records |= {r["record"] for r in group["rules"] if "record" in r}
    expected = {f"site:hotspot_bandwidth_tests_meeting:ratio_{w}" for w in ("1d", "7d", "30d")}
    expected |= {f"site:hotspot_latency_tests_within_limit:ratio_{w}" for w in ("1d", "7d", "30d")}
    expected |= {f"site:hotspot_availability:ratio_{w}" for w in ("1d", "7d", "30d")}
    expected |= {
        "site:hotspot_up:bool",
        "site:hotspot_requirement_met:bool",
        "commune:hotspot_requirement_met:bool",
        "province:hotspot_communes_meeting:ratio",
        "province:hotspot_sites_meeting:ratio",
    }
    assert expected - records == set()


def test_rules_use_only_documented_agent_metrics() -> None:
    """Every hotspot_* metric a rule reads is in docs/metrics.md (the agent's contract)."""
    documented = set(
        re.findall(r"`(hotspot_[a-z_]+)`", (ROOT / "docs" / "metrics.md").read_text(encoding="utf-8"))
    )
    used: set[str] = set()
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            for rule in group["rules"]:
                used |= set(re.findall(r"(?<![:\w])(hotspot_[a-z_]+)", str(rule["expr"])))
    assert used - documented == set()


def test_amtool_check_config() -> None:
    """`amtool check-config` accepts alertmanager.yml and its templates."""
    run = subprocess.run(
        [need("amtool"), "check-config", str(AM / "alertmanager.yml")], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 templates" in run.stdout


@pytest.mark.parametrize(
    ("labels", "receivers"),
    [
        (["province=Tỉnh Nam Định", "district=Huyện Hải Hậu"], "hai-hau-giao-thuy-it,nam-dinh-it"),
        (["province=Tỉnh Ninh Bình", "severity=critical"], "ninh-binh-oncall"),
        (["province=Tỉnh Ninh Bình", "severity=warning"], "ninh-binh-it"),
        (["alertname=HotspotInventoryMissing", "team=collector"], "collector-admins"),
        # a collector alert with a province label still goes to the administrators
        (
            [
                "alertname=HotspotSiteNeverHeard",
                "team=collector",
                "province=Tỉnh Nam Định",
                "district=Huyện Hải Hậu",
            ],
            "collector-admins",
        ),
        (
            ["alertname=HotspotTargetNotInInventory", "team=collector", "province=Tỉnh Ninh Bình"],
            "collector-admins",
        ),
        (["alertname=HotspotWatchdog", "team=collector", "severity=info"], "watchdog"),
        (["province=Tỉnh Khác"], "province-it"),
    ],
)
def test_alertmanager_routes(labels: list[str], receivers: str) -> None:
    """Alerts are routed by province (and district) to the team responsible; the collector's own to
    its administrators, the watchdog to the dead man's switch."""
    run = subprocess.run(
        [need("amtool"), "config", "routes", "test", f"--config.file={AM / 'alertmanager.yml'}", *labels],
        capture_output=True,
        text=True,
    )
    assert run.stdout.strip() == receivers, run.stdout + run.stderr
