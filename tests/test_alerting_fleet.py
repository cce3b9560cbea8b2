"""The alerting at province scale, end to end: part of the Nam Định inventory (293 sites, three
quarters pushing) simulated by collector/fleet.py, real Prometheus 2.42 and Alertmanager 0.25 with
the repository's rules, routes and templates, every interval divided by SPEEDUP. All faults start
at once in one run, on different sites, communes and ISPs; each test then checks what arrived at
the receivers: one message per fault, none for what is no fault. Plus Telegram's limits, checked
through Alertmanager with alerts posted to it directly."""

from __future__ import annotations

import dataclasses
import json
import re
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from collector import inventory, localstack
from collector.fleet import Collector, FakeTelegram, Fleet, Recorder, render_alertmanager
from collector.inventory import Inventory, InventorySite
from tests.support.alertmanager import Alertmanager

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
SPEEDUP = 10.0  # 20 s scrapes -> 2 s, 15 s pushes -> 1.5 s, `for: 20s` -> 2 s, group_wait 15 s -> 1.5 s
DISTRICTS = {"Huyện Vụ Bản", "Huyện Xuân Trường", "Huyện Nam Trực", "Huyện Giao Thủy"}
VNPT_DISTRICT = "Huyện Giao Thủy"  # its sites are given to another ISP, which then goes down
RUN_S = 90.0  # after the faults start: 15 min at production intervals
BUDGET_S = 120.0 / SPEEDUP  # the worst-case site-down -> notification target, scaled
SLACK_S = 3.0  # a loaded 2-core machine: scrapes and evaluations start late


def need_collector() -> None:
    if not (Path(localstack.PROMETHEUS_BIN).exists() and Path(localstack.ALERTMANAGER_BIN).exists()):
        pytest.skip(f"Prometheus/Alertmanager not installed ({localstack.INSTALL_HINT})")


def province_part() -> Inventory:
    full = inventory.load(ROOT / "collector" / "examples" / "nam-dinh.yaml")
    sites = tuple(
        dataclasses.replace(s, isp="VNPT") if s.district == VNPT_DISTRICT else s
        for s in full.sites
        if s.district in DISTRICTS
    )
    return Inventory(sites=sites)


@dataclass
class Run:
    fleet: Fleet
    collector: Collector
    recorder: Recorder
    telegram: FakeTelegram
    t0: float  # time.monotonic() when the faults started
    cast: dict[str, list[str]]  # scenario -> its site ids
    communes: dict[str, str]  # scenario -> commune

    def firing(self, alertname: str, **labels: str) -> list[tuple[float, dict[str, Any]]]:
        """(seconds after t0, alert) of each firing notification of this alert, any receiver but
        the province's district copy (the same message, sent to a second team)."""
        return [
            (note.at - self.t0, alert)
            for note, alert in self.recorder.alerts("firing", alertname=alertname, **labels)
            if note.receiver != "hai-hau-giao-thuy-it"
        ]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    need_collector()
    inv = province_part()
    stray = InventorySite(
        id="nd-99999-nvh1",
        name="Nhà văn hóa lạc",
        type="village_hall",
        commune="Xã Không Có",
        commune_code="99999",
        province="Tỉnh Nam Định",
        latitude=20.3,
        longitude=106.2,
        isp="Viettel",
        push=True,
    )
    fleet = Fleet(inv, SPEEDUP, unlisted=[stray])
    by_commune: dict[str, list[InventorySite]] = {}
    for s in inv.sites:
        if s.isp == "Viettel":
            by_commune.setdefault(s.commune, []).append(s)
    communes = iter(sorted(by_commune))

    def commune_with(reach: str) -> str:
        return next(c for c in communes if any(s.reach == reach for s in by_commune[c]))

    def one(commune: str, reach: str) -> list[str]:
        return [next(s.id for s in by_commune[commune] if s.reach == reach)]

    picked = {
        name: commune_with(reach)
        for name, reach in [
            ("scraped_down", "pull"),
            ("pushed_down", "push"),
            ("commune_dark", "pull"),
            ("missed_scrape", "pull"),
            ("missed_push", "push"),
            ("uplink_down", "pull"),
            ("one_target_silent", "push"),
            ("crash_loop", "push"),
            ("flapping", "pull"),
            ("clock_skew", "pull"),
            ("never_heard", "push"),
        ]
    }
    cast = {
        "scraped_down": one(picked["scraped_down"], "pull"),
        "pushed_down": one(picked["pushed_down"], "push"),
        "commune_dark": [s.id for s in by_commune[picked["commune_dark"]]],
        "missed_scrape": one(picked["missed_scrape"], "pull"),
        "missed_push": one(picked["missed_push"], "push"),
        "uplink_down": one(picked["uplink_down"], "pull"),
        "one_target_silent": one(picked["one_target_silent"], "push"),
        "crash_loop": one(picked["crash_loop"], "push"),
        "flapping": one(picked["flapping"], "pull"),
        "clock_skew": one(picked["clock_skew"], "pull"),
        "never_heard": one(picked["never_heard"], "push"),
        "isp_down": fleet.select(isp="VNPT"),
    }
    fleet.inject(cast["never_heard"], "silent")  # from before its first push
    recorder = Recorder()
    telegram = FakeTelegram(per_minute=20, minute_s=60.0 / SPEEDUP)
    workdir = tmp_path_factory.mktemp("fleet")
    with Collector(workdir, fleet, recorder, telegram) as collector:
        listed = len(inv.sites) - 1

        def all_heard() -> bool:
            got = collector.query("count(site:hotspot_heard:bool)")
            return bool(got) and int(got[0]["value"][1]) == listed

        localstack.wait_until(all_heard, 90, "every site heard")
        time.sleep(4 * 20 / SPEEDUP)  # a few evaluations of steady state
        t0 = time.monotonic()
        fleet.inject(cast["scraped_down"] + cast["pushed_down"] + cast["commune_dark"], "silent")
        fleet.inject(cast["isp_down"], "silent")
        fleet.inject(cast["missed_scrape"], "silent", duration_s=20 / SPEEDUP)
        fleet.inject(cast["missed_push"], "silent", duration_s=15 / SPEEDUP)
        fleet.inject(cast["uplink_down"], "uplink_down")
        fleet.inject(cast["one_target_silent"], "one_target_silent")
        fleet.inject(cast["crash_loop"], "crash_loop", period_s=60 / SPEEDUP, down_s=5 / SPEEDUP)
        fleet.inject(cast["flapping"], "flapping", period_s=600 / SPEEDUP, down_s=100 / SPEEDUP)
        fleet.inject(cast["clock_skew"], "clock_skew", skew_s=60)
        while time.monotonic() < t0 + RUN_S:
            time.sleep(1)
        yield Run(fleet, collector, recorder, telegram, t0, cast, picked)
    recorder.close()
    telegram.close()


def test_one_silent_site_one_message_within_two_minutes(run: Run) -> None:
    """A silent scraped site and a silent pushing site: one site-down message each, within the
    2-minute worst case (scaled); the fleet pushed without errors."""
    assert run.fleet.push_failures == 0
    for scenario in ("scraped_down", "pushed_down"):
        (site,) = run.cast[scenario]
        got = run.firing("HotspotSiteDown", site=site)
        print(f"\n{scenario}: notified {got[0][0] if got else None!r} s after the cut (÷{SPEEDUP:g})")
        assert len(got) == 1, (scenario, got)
        assert got[0][0] <= BUDGET_S + SLACK_S, (scenario, got[0][0])
        assert got[0][1]["annotations"]["summary_vi"].startswith("Không nhận được số liệu từ điểm")


def test_missed_scrape_or_push_sends_nothing(run: Run) -> None:
    for scenario in ("missed_scrape", "missed_push"):
        (site,) = run.cast[scenario]
        assert list(run.recorder.alerts(site=site)) == [], scenario


def test_dark_commune_one_message_naming_its_sites(run: Run) -> None:
    """Mixed reach (scraped office, pushing village halls): one commune message listing every
    site, and no site message before or after it."""
    commune = run.communes["commune_dark"]
    got = run.firing("HotspotCommuneOutage", commune=commune)
    assert len(got) == 1, got
    assert got[0][0] <= BUDGET_S + SLACK_S
    text = got[0][1]["annotations"]["description_vi"]
    assert all(f"({site}," in text for site in run.cast["commune_dark"]), text
    for site in run.cast["commune_dark"]:
        assert list(run.recorder.alerts(alertname="HotspotSiteDown", site=site)) == []


def test_isp_outage_a_handful_of_messages(run: Run) -> None:
    """Every VNPT site of the province down: one ISP message; none per commune or site."""
    got = run.firing("HotspotIspOutage", isp="VNPT")
    assert len(got) == 1, got
    vnpt = set(run.cast["isp_down"])
    communes = {s.commune for s in run.fleet.inventory.sites if s.id in vnpt}
    assert f"thuộc {len(communes)} xã/phường" in got[0][1]["annotations"]["description_vi"]
    per_site = [a for _, a in run.recorder.alerts("firing") if a["labels"].get("site") in vnpt]
    per_commune = [
        a
        for _, a in run.recorder.alerts("firing", alertname="HotspotCommuneOutage")
        if a["labels"]["commune"] in communes
    ]
    assert per_site == [] and per_commune == []


def test_site_faults_one_message_each(run: Run) -> None:
    """Uplink down with the gateway answering, a crash loop, a clock skew: one message each; one
    ping target ignoring ICMP: nothing."""
    (uplink,) = run.cast["uplink_down"]
    got = run.firing("HotspotUplinkDown", site=uplink)
    assert len(got) == 1 and "nhà mạng" in got[0][1]["annotations"]["description_vi"]
    assert len(run.firing("HotspotAgentRestarting", site=run.cast["crash_loop"][0])) == 1
    assert len(run.firing("HotspotClockSkew", site=run.cast["clock_skew"][0])) == 1
    assert list(run.recorder.alerts(site=run.cast["one_target_silent"][0])) == []


def test_flapping_link_one_open_message(run: Run) -> None:
    """Down 100 s every 10 min: one message that stays open over the flaps (no resolved message),
    and the availability recorded over a period is about 5/6."""
    (site,) = run.cast["flapping"]
    assert len(run.firing("HotspotSiteDown", site=site)) == 1
    assert list(run.recorder.alerts("resolved", site=site)) == []
    window = f"{600 / SPEEDUP:g}s"
    got = run.collector.query(f'avg_over_time(site:hotspot_up:bool{{site="{site}"}}[{window}])')
    assert got and abs(float(got[0]["value"][1]) - 5 / 6) < 0.08, got


def test_inventory_gaps_go_to_the_collector_admins(run: Run) -> None:
    """A listed site never heard and a pushing agent missing from the inventory: one message
    each, to the collector's administrators only."""
    never = run.cast["never_heard"][0]
    heard = [
        n.receiver for n, _ in run.recorder.alerts("firing", alertname="HotspotSiteNeverHeard", site=never)
    ]
    stray = [n.receiver for n, _ in run.recorder.alerts("firing", alertname="HotspotTargetNotInInventory")]
    assert heard == ["collector-admins"]
    assert stray == ["collector-admins"]


def test_no_false_messages_and_telegram_accepts_all(run: Run) -> None:
    """Nothing else arrived: every firing alert is one of the faults above (or the watchdog), and
    Telegram refused no message (length, HTML, rate)."""
    faulty = {s for sites in run.cast.values() for s in sites}
    expected_names = {
        "HotspotWatchdog",
        "HotspotIspOutage",
        "HotspotCommuneOutage",
        "HotspotSiteNeverHeard",
        "HotspotTargetNotInInventory",
    }
    unexpected = [
        a["labels"]
        for _, a in run.recorder.alerts("firing")
        if a["labels"]["alertname"] not in expected_names and a["labels"].get("site") not in faulty
    ]
    assert unexpected == []
    assert run.telegram.refused == []
    assert run.telegram.accepted and all(len(m["text"]) <= 4096 for m in run.telegram.accepted)


# --- Telegram's limits, through Alertmanager alone ---------------------------------------------


def post_alerts(am_url: str, alerts: list[dict[str, Any]]) -> None:
    req = urllib.request.Request(
        am_url + "/api/v2/alerts",
        data=json.dumps(alerts).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200


def site_down(k: int, starts: datetime, ends: datetime | None = None) -> dict[str, Any]:
    """A HotspotSiteDown alert as the rules make it, with a name that needs HTML escaping."""
    site = f"nd-13999-nvh{k}"
    name = f"Nhà văn hóa thôn {k} <Đông> & Tây"
    alert: dict[str, Any] = {
        "labels": {
            "alertname": "HotspotSiteDown",
            "site": site,
            "site_type": "village_hall",
            "commune": "Xã Giao Hương",
            "district": "Huyện Giao Thủy",
            "province": "Tỉnh Nam Định",
            "severity": "critical",
            "name": name,
            "isp": "Viettel",
        },
        "annotations": {
            "summary_vi": f"Không nhận được số liệu từ điểm {name} ({site}), Xã Giao Hương",
            "summary_en": f"No data from site {name} ({site}) in Xã Giao Hương",
            "description_vi": "Máy chủ trung tâm không nhận được số liệu từ thiết bị đo. " * 8,
            "description_en": "The collector has had no data from the measuring agent. " * 8,
        },
        "startsAt": starts.isoformat(),
    }
    if ends is not None:
        alert["endsAt"] = ends.isoformat()
    return alert


@pytest.mark.parametrize("count", [5, 30])
def test_telegram_messages_fit_and_parse(
    tmp_path: Path, count: int, alertmanager: Callable[[Path], Alertmanager]
) -> None:
    """Five (and thirty) site-down alerts of one commune, with names that need escaping: every
    Telegram message is at most 4,096 characters, valid HTML, delivered; it names the first site
    in full, says how many more, gives Vietnam's local time; the resolved message says it is over."""
    need_collector()
    recorder = Recorder()
    telegram = FakeTelegram(per_minute=20, minute_s=60.0 / SPEEDUP)
    config = render_alertmanager(tmp_path, SPEEDUP, recorder.url, telegram)
    try:
        am_url = alertmanager(config).url
        starts = datetime(2026, 11, 29, 1, 23, tzinfo=UTC)  # 08:23 in Vietnam
        post_alerts(am_url, [site_down(k, starts) for k in range(count)])

        # Alertmanager may flush a group before all 30 alerts are in it (a busy machine): it then
        # sends the full group group_interval later. Wait for the message that has them all.
        def firing_text() -> str | None:
            full = f"+{count - 1} sự cố khác"
            return next((m["text"] for m in telegram.accepted if full in m["text"][:400]), None)

        localstack.wait_until(lambda: firing_text() is not None, 40, "the Telegram message")
        firing = firing_text() or ""
        ends = datetime.now(UTC) - timedelta(seconds=1)
        post_alerts(am_url, [site_down(k, starts, ends) for k in range(count)])

        def resolved_text() -> str | None:
            return next((m["text"] for m in telegram.accepted if "Đã khôi phục" in m["text"][:40]), None)

        localstack.wait_until(lambda: resolved_text() is not None, 40, "the resolved message")
        resolved = resolved_text() or ""
    finally:
        recorder.close()
        telegram.close()
    assert telegram.refused == []
    assert all(len(m["text"]) <= 4096 for m in telegram.accepted)
    assert "HotspotSiteDown" not in firing
    assert "08:23 29/11/2026 giờ Việt Nam (UTC+7)" in firing
    assert "&lt;Đông&gt; &amp; Tây" in firing
    assert f"+{count - 1} sự cố khác" in firing
    if count > 6:
        assert f"và {count - 6} sự cố khác" in firing
    assert "Mức độ/Severity: nghiêm trọng / critical" in firing
    assert "nhà văn hóa thôn / village hall" in firing
    assert resolved.startswith("<b>[Đã khôi phục / Resolved]")
    assert re.search(r"hết lúc \d\d:\d\d", resolved)
