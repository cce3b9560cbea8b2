"""make run on a province with history: the province lives on after the history ends.

A local stack started on a backfilled month of 40 Nam Định sites must go on hearing every site the
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
    doc["sites"] = doc["sites"][:40]
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
        assert len(heard_at_end) >= 30, "the demo province should be mostly working"
        listed = {site["id"] for site in doc["sites"]}
        assert heard_at_end | silent_at_end <= listed
        # Live: every one of them heard again, scraped or pushed, within a few intervals.
        live: set[str] = set()
        while time.time() - started < 60 and not heard_at_end <= live:
            time.sleep(2)
            live = sites_of(query(base, 'site:hotspot_up:bool{site=~"nd-.*"} == 1'))
        assert live == heard_at_end
        reach = {site["id"]: "push" if site.get("push") else "pull" for site in doc["sites"]}
        assert {reach[site] for site in live} == {"push", "pull"}, "both ways of reaching a site"
        # And no alert, pending or firing, calls any of them never heard.
        never = sites_of(query(base, 'ALERTS{alertname="HotspotSiteNeverHeard"}'))
        assert not never & heard_at_end
