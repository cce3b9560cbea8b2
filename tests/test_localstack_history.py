"""make run on a province with history: the province lives on after the history ends.

A local stack started on a backfilled month of 80 Nam Định sites must go on hearing every site the
history last heard (scraped from, or pushed by, the fleet simulator), so only the sites the history
ends silent on can be "never heard"; before, every one of them was (778 of 785 in make run).
"""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from collector.localstack import ROOT, LabSite, Stack

pytestmark = pytest.mark.slow


def query(base: str, promql: str, at: float | None = None) -> list[dict[str, object]]:
    params = {"query": promql} | ({} if at is None else {"time": f"{at:.3f}"})
    with urllib.request.urlopen(f"{base}/api/v1/query?{urllib.parse.urlencode(params)}", timeout=30) as r:
        return list(json.load(r)["data"]["result"])


def sites_of(rows: list[dict[str, object]]) -> set[str]:
    return {str(r["metric"]["site"]) for r in rows}  # type: ignore[index]


def test_the_history_province_stays_heard_after_the_history_ends(tmp_path: Path) -> None:
    doc = yaml.safe_load((ROOT / "collector" / "examples" / "nam-dinh.yaml").read_text(encoding="utf-8"))
    doc["sites"] = doc["sites"][:80]  # with seed 1: one dead site (the 75th), one never installed (the 41st)
    province = tmp_path / "province.yaml"
    province.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    lab = (LabSite("lab-ubnd", "Bộ phận một cửa UBND Xã Giao Minh", "commune_office"),)
    with Stack(tmp_path / "stack", sites=lab, history=province, history_cache=tmp_path / "cache") as s:
        assert s.fleet is not None
        started = time.time()
        base = s.prometheus_url
        # What the history says at its end, read back at a moment before any live rule ran.
        before = started - 60
        heard_at_end = sites_of(query(base, "last_over_time(site:hotspot_up:bool[2d]) == 1", before))
        silent_at_end = sites_of(query(base, "last_over_time(site:hotspot_up:bool[2d]) == 0", before))
        assert len(heard_at_end) >= 60, "the demo province should be mostly working"
        listed = {site["id"] for site in doc["sites"]}
        # The inventory as the history used it (a site or two put in maintenance).
        maintenance = {site.id for site in s.fleet.inventory.sites if site.maintenance}
        assert listed == {site.id for site in s.fleet.inventory.sites}
        live_down: set[str] = set()
        assert heard_at_end | silent_at_end <= listed
        # Live: every one of them heard again, scraped or pushed, within a few intervals.
        live: set[str] = set()
        while time.time() - started < 60 and not heard_at_end <= live:
            time.sleep(2)
            live = sites_of(query(base, 'site:hotspot_up:bool{site=~"nd-.*"} == 1'))
        assert live == heard_at_end
        reach = {site["id"]: "push" if site.get("push") else "pull" for site in doc["sites"]}
        assert {reach[site] for site in live} == {"push", "pull"}, "both ways of reaching a site"
        # No alert, pending or firing, ever called a site never heard that the history heard at all:
        # the dead ones are down ("last heard" comes from the history), not "never heard".
        heard_ever = sites_of(query(base, "last_over_time(site:hotspot_last_heard:timestamp[3d])", before))
        assert heard_at_end <= heard_ever
        dead = (silent_at_end & heard_ever) - maintenance
        while time.time() - started < 90 and not dead <= live_down:
            time.sleep(2)
            live_down = sites_of(query(base, 'site:hotspot_down:info{site=~"nd-.*"}'))
        assert dead and live_down == dead
        # Only the sites the history never heard fire "never heard" (after its `for`, 10 min ÷ 15),
        # and no other site ever did.
        never_installed = listed - heard_ever - maintenance
        firing = 'max_over_time(ALERTS{alertname="HotspotSiteNeverHeard", alertstate="firing"}[10m])'
        never: set[str] = set()
        while time.time() - started < 120 and not never_installed <= never:
            time.sleep(2)
            never = sites_of(query(base, firing))
        assert never_installed and never == never_installed
