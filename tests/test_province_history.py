"""The province views on a province with history: a backfilled month (a subset of the Nam Định
inventory, ending now) in a real Prometheus running the shipped rules and the backfill's inventory
rules. Every query of the overview and commune dashboards returns data, every inventory site is on
the map (the never-heard and dead ones too), and the verdict rules count every site once."""

from __future__ import annotations

import datetime as dt
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from collector import backfill, inventory, targets
from tests.support.dashboards import DASHBOARDS, RULES_DIR, load, substitute
from tests.support.dashboards import targets as panel_targets
from tests.support.prometheus import Prometheus

ROOT = Path(__file__).resolve().parent.parent
SITES = 40
PROVINCE = "Tỉnh Nam Định"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("promtool") is None or not Path("/usr/bin/prometheus").exists(),
        reason="needs prometheus and promtool (apt-get install prometheus)",
    ),
]
# Panels that are empty in a province where nothing of the kind happens right now.
MAY_BE_EMPTY = {"Alerts firing"}


@pytest.fixture(scope="module")
def province(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Prometheus, list[str], str]]:
    tmp = tmp_path_factory.mktemp("history")
    doc = yaml.safe_load((ROOT / "collector/examples/nam-dinh.yaml").read_text(encoding="utf-8"))
    doc["sites"] = doc["sites"][:SITES]
    inv = tmp / "inventory.yaml"
    inv.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    now = dt.datetime.now(backfill.TZ)
    start = (now - dt.timedelta(days=9)).replace(hour=0, minute=0, second=0, microsecond=0)
    data = tmp / "work" / "data"
    # Ends now: a block reaching into the future would make Prometheus refuse every live sample
    # (and recorded one) older than its end.
    backfill.backfill(inv, start, now - dt.timedelta(seconds=1), data, seed=3)
    used = inventory.load(data / "inventory.yaml")
    rules = tmp / "rules"
    rules.mkdir()
    for path in sorted(RULES_DIR.glob("*.yml")):
        rdoc = yaml.safe_load(path.read_text(encoding="utf-8"))
        for group in rdoc["groups"]:
            group.pop("interval", None)  # every group at the test's 1 s evaluation interval
        (rules / path.name).write_text(yaml.safe_dump(rdoc, allow_unicode=True), encoding="utf-8")
    (rules / "inventory.yml").write_text(targets.rules_file(used), encoding="utf-8")
    config = yaml.safe_dump(
        {"global": {"evaluation_interval": "1s"}, "rule_files": [str(rules / "*.yml")]}, allow_unicode=True
    )
    prom = Prometheus(config, tmp / "work", ("--storage.tsdb.retention.time=3650d",))
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            got = prom.query("count(site:hotspot_verdict:state_7d)")
            ratios = prom.query("site:hotspot_bandwidth_tests_meeting:ratio_7d")
            if got and got[0]["value"][1] == str(SITES) and ratios:
                break
            time.sleep(0.5)
        else:
            raise AssertionError("the verdict rules did not judge every site within 60 s")
        sites = [s.id for s in used.sites]
        # A commune with a heard site (the history's outage or dead sites may silence one).
        commune = sorted(r["metric"]["commune"] for r in ratios)[0]
        yield prom, sites, commune
    finally:
        prom.stop()


def values(commune: str) -> dict[str, str]:
    return {
        "province": PROVINCE,
        "commune": commune,
        "site_type": ".*",
        "__range": "7d",
        "__rate_interval": "2m",
        "__interval": "30s",
    }


QUERIES = [
    (name, panel["title"], target)
    for name in ("overview", "commune")
    for panel, target in panel_targets(load(DASHBOARDS / f"en/{name}.json"))
]


@pytest.mark.parametrize(("name", "title", "target"), QUERIES, ids=[f"{n}: {t}" for n, t, _ in QUERIES])
def test_province_panels_return_data(
    province: tuple[Prometheus, list[str], str], name: str, title: str, target: dict[str, Any]
) -> None:
    prom, _sites, commune = province
    expr = substitute(target["expr"], values(commune if name == "commune" else ".*"))
    if target.get("instant"):
        result = prom.query(expr)
    else:  # a graph: over the last day, as Grafana asks for it
        now = time.time()
        result = prom.api(
            "query_range", query=expr, start=f"{now - 86400:.0f}", end=f"{now:.0f}", step="300"
        )["result"]
    if title not in MAY_BE_EMPTY:
        assert result, f"{name} / {title}: no data for {target['expr']}"


def test_every_site_is_on_the_map_and_judged_once(province: tuple[Prometheus, list[str], str]) -> None:
    prom, sites, _ = province
    target = next(t for n, title, t in QUERIES if n == "overview" and title == "Map of sites")
    on_map = {r["metric"]["site"] for r in prom.query(substitute(target["expr"], values(".*")))}
    held = {r["metric"]["site"] for r in prom.query('site:hotspot_inventory:info{maintenance="true"}')}
    assert set(sites) - held <= on_map <= set(sites)  # dead and never-heard sites included
    judged = prom.query("count by (site) (site:hotspot_verdict:state_7d)")
    assert {r["metric"]["site"]: r["value"][1] for r in judged} == dict.fromkeys(sites, "1")
