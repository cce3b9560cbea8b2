"""The province views on a province with history: a backfilled month (a subset of the Nam Định
inventory, ending now) in a real Prometheus running the shipped rules and the backfill's inventory
rules. Every query of the four dashboards (overview, commune, site, fleet: every panel and every
template variable, variables set as Grafana sets them) returns data, every inventory site is on the
map (the never-heard and dead ones too), and the verdict rules count every site once."""

from __future__ import annotations

import datetime as dt
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from collector import backfill, inventory, targets
from tests.support.dashboards import DASHBOARDS, RULES_DIR, graph_step, load, substitute
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


@dataclass
class Province:
    prom: Prometheus
    sites: list[str]
    pick: dict[str, set[str]]  # variable -> the values Grafana's user would pick (heard, good sites)
    values: dict[str, dict[str, str]]  # dashboard -> its variables as Grafana sets them


@pytest.fixture(scope="module")
def province(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Province]:
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
        # A site heard to the end (good, not held), and a commune with one, as a user would pick.
        p = backfill.plan(used, int(start.timestamp()), int(now.timestamp()), 3)
        good = [s for s in used.sites if p.profiles[s.id] == "good" and not s.maintenance]
        pick = {"site": {s.id for s in good}, "commune": {s.commune for s in good}}
        boards = {name: grafana_values(prom, name, pick) for name in NAMES}
        yield Province(prom, [s.id for s in used.sites], pick, boards)
    finally:
        prom.stop()


NAMES = ("overview", "commune", "site", "fleet")
# What Grafana substitutes over the dashboards' default range (the last 7 days) on a panel about
# 1,000 points wide: a 10-minute step, $__rate_interval = max(step + scrape interval, 4 scrapes).
RANGE_S, STEP_S = 7 * 86400, 600
GRAFANA = {"__range": "7d", "__interval": "10m", "__rate_interval": "630s"}
# Queries empty on history alone, each with the reason (panel title -> why).
MAY_BE_EMPTY = {
    # An alert fires only after Prometheus has watched its condition live for the rule's `for`
    # time (20 s to 30 min); a Prometheus just started on history alone shows most of them pending.
    "Alerts firing": "alerts need Prometheus to watch their condition live for their `for` time",
}


def variable_values(prom: Prometheus, selector: str, label: str) -> list[str]:
    """What a `label_values(selector, label)` variable lists over the dashboard's range."""
    now = time.time()
    got = prom.api(f"label/{label}/values", **{"match[]": selector, "start": f"{now - RANGE_S:.0f}"})
    return sorted(got)


def grafana_values(prom: Prometheus, name: str, pick: dict[str, set[str]]) -> dict[str, str]:
    """The dashboard's variables as Grafana sets them, each from its own query in order: "All" (the
    variable's allValue) where it offers All, else the first value listed that is in `pick`."""
    values = dict(GRAFANA)
    for var in load(DASHBOARDS / f"en/{name}.json")["templating"]["list"]:
        if var["type"] == "datasource":
            continue
        match = re.fullmatch(r"label_values\((.*), (\w+)\)", var["query"])
        assert match, var["query"]
        listed = variable_values(prom, substitute(match.group(1), values), match.group(2))
        assert listed, f"{name}: variable {var['name']} lists nothing"
        if var.get("includeAll"):
            values[var["name"]] = var["allValue"]
        else:
            values[var["name"]] = next(v for v in listed if v in pick.get(var["name"], set(listed)))
    return values


def all_queries() -> list[tuple[str, str, dict[str, Any], int | None]]:
    """(dashboard, panel title, target, step of a graph or None for an instant query)."""
    return [
        (name, panel["title"], target, None if target.get("instant") else graph_step(panel, STEP_S))
        for name in NAMES
        for panel, target in panel_targets(load(DASHBOARDS / f"en/{name}.json"))
    ]


QUERIES = all_queries()


def run(prom: Prometheus, expr: str, step: int | None) -> list[dict[str, Any]]:
    """The query as Grafana sends it: instant at now, a graph over the dashboard's range."""
    if step is None:
        return prom.query(expr)
    end = time.time() // step * step  # Grafana aligns a graph's range to its step
    got = prom.api("query_range", query=expr, start=f"{end - RANGE_S:.0f}", end=f"{end:.0f}", step=f"{step}")
    return list(got["result"])


@pytest.mark.parametrize("name", NAMES)
def test_variables_list_the_province(province: Province, name: str) -> None:
    """Each variable's own query lists the province, and the commune and site chosen from it."""
    values = grafana_values(province.prom, name, province.pick)
    assert values["province"] == PROVINCE
    if name == "commune":
        assert values["commune"] in province.pick["commune"]
    if name == "site":
        assert values["site"] in province.pick["site"]


@pytest.mark.parametrize(
    ("name", "title", "target", "step"), QUERIES, ids=[f"{n}: {t}" for n, t, _, _ in QUERIES]
)
def test_every_panel_returns_data(
    province: Province, name: str, title: str, target: dict[str, Any], step: int | None
) -> None:
    values = province.values[name]
    result = run(province.prom, substitute(target["expr"], values), step)
    if title not in MAY_BE_EMPTY:
        assert result, f"{name} / {title}: no data for {target['expr']} with {values}"


def test_every_site_is_on_the_map_and_judged_once(province: Province) -> None:
    prom, sites = province.prom, province.sites
    target = next(t for n, title, t, _ in QUERIES if n == "overview" and title == "Map of sites")
    on_map = {
        r["metric"]["site"] for r in prom.query(substitute(target["expr"], province.values["overview"]))
    }
    held = {r["metric"]["site"] for r in prom.query('site:hotspot_inventory:info{maintenance="true"}')}
    assert set(sites) - held <= on_map <= set(sites)  # dead and never-heard sites included
    judged = prom.query("count by (site) (site:hotspot_verdict:state_7d)")
    assert {r["metric"]["site"]: r["value"][1] for r in judged} == dict.fromkeys(sites, "1")
