"""The monthly report against a real Prometheus holding a backfilled province (a subset of the
Nam Định inventory), cross-checked against the generator's own ground truth; the HTML is looked at
in headless Chromium and the workbook opened with openpyxl."""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import statistics
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from collector import backfill, cli, report, requirement
from collector.backfill import TZ, SiteTruth
from collector.requirement import load
from tests.support.prometheus import Prometheus

ROOT = Path(__file__).resolve().parent.parent
SITES = 48
pytestmark = pytest.mark.skipif(
    shutil.which("promtool") is None or not Path("/usr/bin/prometheus").exists(),
    reason="needs prometheus and promtool (apt-get install prometheus)",
)


@dataclass
class Province:
    prom: Prometheus
    truth: dict[str, dict[str, SiteTruth]]
    inventory: dict[str, dict[str, object]]


@pytest.fixture(scope="module")
def province(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Province]:
    tmp = tmp_path_factory.mktemp("province")
    doc = yaml.safe_load((ROOT / "collector/examples/nam-dinh.yaml").read_text(encoding="utf-8"))
    doc["sites"] = doc["sites"][:SITES]
    inv = tmp / "inventory.yaml"
    inv.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    truth: dict[str, dict[str, SiteTruth]] = {}
    data = tmp / "work" / "data"
    start, end = dt.datetime(2026, 9, 29, tzinfo=TZ), dt.datetime(2026, 11, 2, tzinfo=TZ)
    backfill.backfill(inv, start, end, data, seed=7, truths=truth)
    used = yaml.safe_load((data / "inventory.yaml").read_text(encoding="utf-8"))
    # Backfilled blocks are older than the default 15-day retention: keep them.
    prom = Prometheus(
        "global:\n  scrape_interval: 30s\n", tmp / "work", ("--storage.tsdb.retention.time=3650d",)
    )
    try:
        yield Province(prom, truth, {s["id"]: s for s in used["sites"]})
    finally:
        prom.stop()


def expected_verdict(t: SiteTruth, maintenance: bool, days: float) -> str:
    """The rule computed independently, from the generator's own record of every test."""
    req = load()
    if maintenance:
        return "maintenance"
    if t.availability < req.availability:
        return "fails"
    min_bw, min_lat = req.min_tests(days)
    if min(t.tests.values()) < min_bw or t.latency_tests < min_lat:
        return "not_enough"
    shares = [sum(g > 80e6 for g in t.goodputs[d]) / len(t.goodputs[d]) for d in ("download", "upload")]
    ok = min(shares) >= req.site_test_share and t.latency_within / t.latency_tests >= req.latency_test_share
    return "meets" if ok else "fails"


@pytest.mark.slow
@pytest.mark.parametrize("month", ["2026-10", "2026-09"])
def test_figures_match_the_generators_ground_truth(province: Province, month: str) -> None:
    """Per site: tests per direction, latency tests and availability are the generator's exact
    counts for the calendar month (UTC+7; 2026-09 is the backfill's first two days only, and tests
    at exactly 00:00 on 1 October belong to October); every verdict is the independently computed
    one; the medians fall in the bucket of the true median."""
    rep = report.build(report.Prom(province.prom.url), month, load())
    start, end = report.month_bounds(month)
    days = (end - start).total_seconds() / 86400
    assert {r.site for r in rep.sites} == set(province.inventory)  # every site, heard or not
    verdicts = set()
    for row in rep.sites:
        t = province.truth[row.site].get(month, SiteTruth())
        assert row.tests == {d: float(n) for d, n in t.tests.items()}, row.site
        assert row.latency_tests == t.latency_tests, row.site
        assert row.availability == pytest.approx(t.availability, abs=1e-9), row.site
        maintenance = bool(province.inventory[row.site].get("maintenance"))
        assert row.verdict == expected_verdict(t, maintenance, days), (row.site, row.reasons)
        verdicts.add(row.verdict)
        if row.last_heard is not None:  # a real state step, to the second
            assert (
                row.last_heard - dt.datetime(2026, 9, 29, tzinfo=TZ).timestamp()
            ) % backfill.STATE_STEP == 0
        if t.goodputs["download"]:
            true_median = statistics.median(t.goodputs["download"]) / 1e6
            bounds = [0, *backfill.GOODPUT_BOUNDS_MBPS, float("inf")]
            i = next(k for k in range(len(bounds) - 1) if bounds[k] < true_median <= bounds[k + 1])
            got = row.quantile_mbps("download", 0.5)
            assert got is not None and bounds[i] - 1e-9 <= got <= bounds[i + 1] + 1e-9, row.site
    if month == "2026-10":
        assert {"meets", "fails", "maintenance"} <= verdicts
        # The boundary case is present: a site testing at exactly 2026-10-01 00:00 (UTC+7).
        first = dt.datetime(2026, 10, 1, tzinfo=TZ).timestamp()
        assert any(province.truth[r.site]["2026-10"].first_test == first for r in rep.sites)
    else:
        assert verdicts <= {"not_enough", "fails", "maintenance"}  # two days: too few tests to meet


def test_month_bounds_are_calendar_months_in_vietnam() -> None:
    assert report.month_bounds("2026-11") == (
        dt.datetime(2026, 10, 31, 17, tzinfo=dt.UTC),
        dt.datetime(2026, 11, 30, 17, tzinfo=dt.UTC),
    )
    assert report.month_bounds("2026-12")[1] == dt.datetime(2026, 12, 31, 17, tzinfo=dt.UTC)
    assert report.month_bounds("2028-02")[1] - report.month_bounds("2028-02")[0] == dt.timedelta(days=29)
    with pytest.raises(report.ReportError, match="expected YYYY-MM"):
        report.month_bounds("2026-13")


@pytest.mark.slow
def test_shares_state_their_denominators_and_communes_need_every_site(province: Province) -> None:
    rep = report.build(report.Prom(province.prom.url), "2026-10", load())
    (met, counted), (cmet, ccounted) = rep.shares()["sites"], rep.shares()["communes"]
    c = rep.counts()
    assert counted == len(rep.sites) - c["maintenance"] and met == c["meets"]
    for x in rep.communes():
        rows = [r for r in rep.sites if r.commune == x["commune"] and r.district == x["district"]]
        others = [r.verdict for r in rows if r.verdict != "maintenance"]
        assert x["verdict"] == (
            "maintenance" if not others else "meets" if set(others) == {"meets"} else "fails"
        )
    assert cmet == sum(1 for x in rep.communes() if x["verdict"] == "meets")
    assert ccounted == sum(1 for x in rep.communes() if x["verdict"] != "maintenance")
    failing = rep.failing()
    assert failing and all(r.verdict in ("fails", "not_enough") for r in failing)
    fails = [r for r in failing if r.verdict == "fails"]
    assert [r.severity() for r in fails] == sorted(r.severity() for r in fails)  # worst first


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs chromium (apt-get install chromium)")
def test_html_renders_in_chromium_and_xlsx_opens(province: Province, tmp_path: Path) -> None:
    """The command writes both files; Chromium draws the page (a real, non-blank picture with the
    charts' colours); openpyxl reads the workbook back with the same figures."""
    from openpyxl import load_workbook
    from PIL import Image

    args = argparse.Namespace(
        month="2026-10",
        prometheus=province.prom.url,
        province="",
        requirement=requirement.DEFAULT_FILE,
        lang="both",
        out=tmp_path,
    )
    assert report.command(args) == 0
    page = tmp_path / "hotspot-report-2026-10.html"
    text = page.read_text(encoding="utf-8")
    assert "http://" not in text.replace(province.prom.url, "") and "<script" not in text  # self-contained
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            shutil.which("chromium") or "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1400,1800",
            f"--screenshot={shot}",
            page.as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    img = Image.open(shot).convert("RGB")
    assert img.size == (1400, 1800)
    colors: dict[tuple[int, ...], int] = {
        tuple(c) if isinstance(c, tuple) else (int(c),): n for n, c in img.getcolors(maxcolors=1 << 24) or []
    }
    ink = sum(n for c, n in colors.items() if sum(c) < 600) / (1400 * 1800)
    assert ink > 0.02, f"the page looks blank ({ink:.1%} ink)"
    assert colors.get((0x27, 0xAE, 0x60), 0) > 500  # the "meets" bar of the chart
    assert colors.get((0xC0, 0x39, 0x2B), 0) > 100  # the "does not meet" bar

    rep = report.build(report.Prom(province.prom.url), "2026-10", load())
    wb = load_workbook(tmp_path / "hotspot-report-2026-10.xlsx")
    assert wb.sheetnames == ["Summary", "Communes", "Sites", "Failing"]
    sites = list(wb["Sites"].iter_rows(min_row=2, values_only=True))
    assert len(sites) == len(rep.sites)
    by_id = {row[0]: row for row in sites}
    for r in rep.sites:
        assert by_id[r.site][5] == round(r.tests["download"])
        assert by_id[r.site][16] == report.word(r.verdict, "both")
    summary = list(wb["Summary"].iter_rows(values_only=True))
    met, counted = rep.shares()["sites"]
    assert any(
        row[0] and row[1] == met and row[2] == counted and row[3] == pytest.approx(met / counted)
        for row in summary
    )
    assert len(list(wb["Failing"].iter_rows(min_row=2))) == len(rep.failing())


def test_report_errors_are_plain(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = argparse.Namespace(
        month="2026-10",
        prometheus="http://127.0.0.1:9",
        province="",
        requirement=requirement.DEFAULT_FILE,
        lang="en",
        out=tmp_path,
    )
    assert report.command(args) == 2
    assert "cannot reach Prometheus at http://127.0.0.1:9" in capsys.readouterr().err
    args.month = "October"
    assert report.command(args) == 2
    assert "expected YYYY-MM" in capsys.readouterr().err


def test_backfill_errors_are_plain(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A bad inventory or period is told in a sentence, with nothing written."""
    from collector import cli

    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "sites:\n  - {id: a, commune: X, province: P, latitude: 91, longitude: 0}\n", encoding="utf-8"
    )
    out = tmp_path / "data"
    assert (
        cli.main(
            [
                "backfill",
                "--inventory",
                str(bad),
                "--start",
                "2026-10-01",
                "--end",
                "2026-10-02",
                "--out",
                str(out),
            ]
        )
        == 2
    )
    assert "sites[0].latitude: must be between -90 and 90" in capsys.readouterr().err
    assert not out.exists()
    inv = str(ROOT / "collector/examples/nam-dinh.yaml")
    assert (
        cli.main(
            [
                "backfill",
                "--inventory",
                inv,
                "--start",
                "2026-10-02",
                "--end",
                "2026-10-01",
                "--out",
                str(out),
            ]
        )
        == 2
    )
    assert "--end must be after --start" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        cli.main(
            ["backfill", "--inventory", inv, "--start", "October", "--end", "2026-10-01", "--out", str(out)]
        )
    assert exc.value.code == 2
    assert "not a date (YYYY-MM-DD): 'October'" in capsys.readouterr().err


def test_report_refuses_a_prometheus_that_is_no_url(capsys: pytest.CaptureFixture[str]) -> None:
    """`--prometheus notaurl` is a usage error (exit 2) with its reason, not a traceback."""
    assert cli.main(["report", "--month", "2026-11", "--prometheus", "notaurl"]) == 2
    assert "--prometheus notaurl: not an http(s):// URL" in capsys.readouterr().err
