"""The monthly report: `hotspot-collector report --month 2026-11 --prometheus URL [--province P]`.

Judges every inventory site over one calendar month (Asia/Ho_Chi_Minh) under the province's rule
(collector/requirement.yaml, the file the recording rules are generated from), and writes a
self-contained, print-ready HTML page and an .xlsx workbook with: the rule in words; province and
per-commune shares with their denominators; one row per site (tests, median and 10th-percentile
goodput, latency, availability, verdict, reason, and its contract beside); the failing sites worst
first; charts (matplotlib, embedded as PNG).

Calendar months cannot be expressed as PromQL windows, so the report asks for the month itself:
every counter's month figure is its last value before the month's end minus its last value before
the month's start (exact: no extrapolation, as `increase()` would add at the edges), or
`increase()` over the month when the counter reset inside it (an agent restart). Availability is
`avg_over_time(site:hotspot_internet_up:bool[<month>])` at the month's end. Sites come from
`site:hotspot_inventory:info` seen during the month, so a site that sent nothing is still listed.
"""

from __future__ import annotations

import argparse
import base64
import calendar
import datetime as dt
import html
import io
import json
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.probes.bandwidth import GOODPUT_BOUNDS
from agent.probes.ping import RTT_BOUNDS_S
from agent.schema import url_has_credentials
from agent.site import MBPS
from collector.requirement import DEFAULT_FILE, Requirement, RequirementError, load

TZ = dt.timezone(dt.timedelta(hours=7))  # Asia/Ho_Chi_Minh: UTC+7, no daylight saving
GOODPUT = "hotspot_bandwidth_test_goodput_bytes_per_second"
RTT = "hotspot_ping_test_rtt_seconds"
DIRECTIONS = ("download", "upload")
VERDICT_ORDER = ("fails", "not_enough", "meets", "maintenance")


class ReportError(Exception):
    """A problem the user can fix: bad month, unreachable Prometheus, no sites."""


# -- the period ---------------------------------------------------------------------------------


def month_bounds(month: str) -> tuple[dt.datetime, dt.datetime]:
    """ "2026-11" -> [start, end) in Asia/Ho_Chi_Minh. Raises ReportError for a malformed month."""
    try:
        first = dt.datetime.strptime(month, "%Y-%m").replace(tzinfo=TZ)
    except ValueError:
        raise ReportError(f"--month: expected YYYY-MM, got {month!r}") from None
    days = calendar.monthrange(first.year, first.month)[1]
    return first, first + dt.timedelta(days=days)


# -- Prometheus ---------------------------------------------------------------------------------


class Prom:
    """Instant queries against the Prometheus HTTP API; counts queries and their time."""

    def __init__(self, url: str, timeout: float = 120) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.queries = 0
        self.seconds = 0.0

    def query(self, promql: str, at: float) -> list[dict[str, Any]]:
        """Instant PromQL query evaluated at `at` (Unix seconds); the answer's `data.result` list.
        Raises ReportError when Prometheus refuses the query or cannot be reached.
        """
        data = urllib.parse.urlencode({"query": promql, "time": f"{at:.3f}"}).encode()
        t0 = time.monotonic()
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/query", data=data, timeout=self.timeout) as resp:
                body = json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:500]
            raise ReportError(f"Prometheus at {self.url} refused a query ({exc.code}): {detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise ReportError(f"cannot reach Prometheus at {self.url}: {exc}") from None
        finally:
            self.queries += 1
            self.seconds += time.monotonic() - t0
        if body.get("status") != "success":
            raise ReportError(f"Prometheus at {self.url}: {body.get('error', body)}")
        return list(body["data"]["result"])


def _key(metric: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, v) for k, v in metric.items() if k != "__name__"))


def month_increase(
    prom: Prom, selector: str, start: float, end: float
) -> dict[tuple[tuple[str, str], ...], float]:
    """Per series: how much the counter grew in [start, end) (see the module's docstring)."""
    dur = f"{round(end - start)}s"
    back = f"{round(end - start) + 35 * 86400}s"  # finds the value before the month of a quiet series
    t_end, t_start = end - 0.001, start - 0.001
    last_end = {
        _key(r["metric"]): float(r["value"][1])
        for r in prom.query(f"last_over_time({selector}[{back}])", t_end)
    }
    last_start = {
        _key(r["metric"]): float(r["value"][1])
        for r in prom.query(f"last_over_time({selector}[{back}])", t_start)
    }
    reset = {_key(r["metric"]) for r in prom.query(f"resets({selector}[{dur}]) > 0", t_end)}
    out = {k: v - last_start.get(k, 0.0) for k, v in last_end.items()}
    if reset:
        for r in prom.query(f"increase({selector}[{dur}])", t_end):
            k = _key(r["metric"])
            if k in reset:
                out[k] = float(r["value"][1])
    return out


# -- per-site figures and verdicts --------------------------------------------------------------


@dataclass
class SiteRow:
    """One inventory site's figures for the month, as read from Prometheus: test counts and counts
    meeting per direction, goodput histogram buckets (cumulative, GOODPUT_BOUNDS in bytes/s),
    latency tests and RTT buckets, availability (0-1), and the verdict with its reasons.
    """

    site: str
    name: str
    commune: str
    district: str
    province: str
    site_type: str
    isp: str
    maintenance: bool
    contracted_mbps: dict[str, float]
    tests: dict[str, float] = field(default_factory=lambda: dict.fromkeys(DIRECTIONS, 0.0))
    meeting: dict[str, float] = field(default_factory=lambda: dict.fromkeys(DIRECTIONS, 0.0))
    buckets: dict[str, list[float]] = field(default_factory=dict)  # cumulative, per GOODPUT_BOUNDS
    contract_tests: dict[str, float] = field(default_factory=lambda: dict.fromkeys(DIRECTIONS, 0.0))
    contract_meeting: dict[str, float] = field(default_factory=lambda: dict.fromkeys(DIRECTIONS, 0.0))
    latency_tests: float = 0.0
    latency_within: float = 0.0
    rtt_buckets: list[float] = field(default_factory=list)
    availability: float | None = None
    last_heard: float | None = None
    period_end: float = 0.0
    verdict: str = ""
    reasons: list[tuple[str, str]] = field(default_factory=list)  # (English, Vietnamese)
    contract: str = ""

    def share(self, direction: str) -> float | None:
        """Share (0-1) of the month's `direction` tests that met the rule; None with no test."""
        n = self.tests[direction]
        return self.meeting[direction] / n if n > 0 else None

    @property
    def latency_share(self) -> float | None:
        """Share (0-1) of internet latency tests within the limit; None with no test."""
        return self.latency_within / self.latency_tests if self.latency_tests > 0 else None

    def quantile_mbps(self, direction: str, q: float) -> float | None:
        """Goodput quantile `q` (0-1) of `direction` tests in Mbit/s, interpolated in the agents'
        histogram buckets as Prometheus' histogram_quantile does; None with no test.
        """
        b = self.buckets.get(direction)
        if not b or self.tests[direction] < 1:
            return None
        return _quantile(q, [x / MBPS for x in GOODPUT_BOUNDS], b, self.tests[direction])

    @property
    def median_rtt_ms(self) -> float | None:
        """Median internet RTT in ms from the RTT histogram (answered tests only); None with no test."""
        if not self.rtt_buckets or self.latency_tests < 1:
            return None
        answered = self.rtt_buckets[-1]
        v = _quantile(0.5, [b * 1000 for b in RTT_BOUNDS_S], self.rtt_buckets[:-1], answered)
        return v

    def severity(self) -> tuple[float, float]:
        """Worst first: least available, then fewest tests meeting."""
        shares = [s for s in (self.share(d) for d in DIRECTIONS) if s is not None]
        return (self.availability or 0.0, min(shares) if shares else 0.0)


def _quantile(q: float, bounds: list[float], cumulative: list[float], total: float) -> float | None:
    """Prometheus's histogram_quantile on one histogram: linear within the bucket; the top bucket's
    lower bound when the rank lands above the highest boundary."""
    if total <= 0:
        return None
    rank = q * total
    prev_bound, prev_count = 0.0, 0.0
    for bound, count in zip(bounds, cumulative, strict=False):
        if count >= rank:
            if count == prev_count:
                return bound
            return prev_bound + (bound - prev_bound) * (rank - prev_count) / (count - prev_count)
        prev_bound, prev_count = bound, count
    return bounds[-1]


def judge(row: SiteRow, req: Requirement, days: float) -> None:
    """Set the site's verdict, reasons and contract check (same rule as rules/verdict.yml)."""
    if row.maintenance:
        row.verdict, row.reasons, row.contract = "maintenance", [("in maintenance", "đang bảo trì")], ""
        return
    min_bw, min_lat = req.min_tests(days)
    reasons: list[tuple[str, str]] = []
    avail = row.availability
    low = avail is not None and avail < req.availability
    if low:
        if row.last_heard is None:
            reasons.append(("never heard in the month", "không gửi số liệu trong tháng"))
        elif row.last_heard < row.period_end - 3600:
            when = dt.datetime.fromtimestamp(row.last_heard, TZ).strftime("%Y-%m-%d %H:%M")
            reasons.append((f"last heard {when}", f"gửi số liệu lần cuối {when}"))
        level = f"{req.availability:.0%}"
        reasons.append(
            (
                f"available {avail:.0%} of the month (< {level})",
                f"hoạt động {avail:.0%} thời gian (< {level})",
            )
        )
    judged = all(row.tests[d] >= min_bw for d in DIRECTIONS) and row.latency_tests >= min_lat
    ok = True
    for d in DIRECTIONS:
        s = row.share(d)
        if s is None or s < req.site_test_share:
            ok = False
            if judged:
                thr, need = req.threshold_mbps(d), req.site_test_share
                vi_d = "tải xuống" if d == "download" else "tải lên"
                reasons.append(
                    (
                        f"{d}: {s or 0:.0%} of tests above {thr:g} Mbit/s (< {need:.0%})",
                        f"{vi_d}: {s or 0:.0%} lần đo trên {thr:g} Mbit/s (< {need:.0%})",
                    )
                )
    ls = row.latency_share
    if ls is None or ls < req.latency_test_share:
        ok = False
        if judged:
            limit, need = req.latency_limit_ms, req.latency_test_share
            reasons.append(
                (
                    f"latency: {ls or 0:.1%} of tests ≤ {limit:g} ms (< {need:.0%})",
                    f"độ trễ: {ls or 0:.1%} lần đo ≤ {limit:g} ms (< {need:.0%})",
                )
            )
    if low:
        row.verdict = "fails"
    elif not judged:
        row.verdict = "not_enough"
        down, up, lat = (f"{x:.0f}" for x in (row.tests["download"], row.tests["upload"], row.latency_tests))
        reasons.append(
            (
                f"not enough tests: {down} down, {up} up, {lat} latency "
                f"({min_bw}, {min_bw}, {min_lat} needed)",
                f"chưa đủ lần đo: {down} xuống, {up} lên, {lat} độ trễ (cần {min_bw}, {min_bw}, {min_lat})",
            )
        )
    elif ok and avail is not None:
        row.verdict = "meets"
    else:
        row.verdict = "fails"
    row.reasons = reasons
    # The contract: the agent's own count against its contracted speed; shown beside, never instead.
    cshares = [
        row.contract_meeting[d] / row.contract_tests[d] if row.contract_tests[d] >= min_bw else None
        for d in DIRECTIONS
    ]
    if any(s is None for s in cshares):
        row.contract = "not_enough"
    else:
        row.contract = "meets" if min(s for s in cshares if s is not None) >= req.site_test_share else "fails"


@dataclass
class Report:
    """The monthly report's content: the period (Asia/Ho_Chi_Minh), the rule it was judged by
    (collector/requirement.yaml), one SiteRow per inventory site, and the query count and time.
    """

    month: str
    start: dt.datetime
    end: dt.datetime
    evaluated_at: dt.datetime
    province: str
    req: Requirement
    sites: list[SiteRow]
    queries: int = 0
    query_seconds: float = 0.0

    @property
    def partial(self) -> bool:
        """True when the month is not over yet: figures so far, not final verdicts."""
        return self.evaluated_at < self.end

    def counts(self, rows: list[SiteRow] | None = None) -> dict[str, int]:
        """Sites per verdict (VERDICT_ORDER keys, zeros included), over `rows` or every site."""
        c = dict.fromkeys(VERDICT_ORDER, 0)
        for r in self.sites if rows is None else rows:
            c[r.verdict] += 1
        return c

    def communes(self) -> list[dict[str, Any]]:
        """One dict per commune, sorted by name: its verdict (meets only when every site outside
        maintenance meets) and its sites' verdict counts.
        """
        by: dict[tuple[str, str], list[SiteRow]] = defaultdict(list)
        for r in self.sites:
            by[(r.district, r.commune)].append(r)
        out = []
        for (district, commune), rows in sorted(by.items(), key=lambda kv: (kv[0][1], kv[0][0])):
            c = self.counts(rows)
            counted = len(rows) - c["maintenance"]
            verdict = "maintenance" if counted == 0 else ("meets" if c["meets"] == counted else "fails")
            out.append(
                {"commune": commune, "district": district, "counted": counted, **c, "verdict": verdict}
            )
        return out

    def shares(self) -> dict[str, tuple[int, int]]:
        """(meeting, out of) for sites and for communes; maintenance is left out of both counts."""
        c = self.counts()
        communes = self.communes()
        counted_c = [x for x in communes if x["verdict"] != "maintenance"]
        return {
            "sites": (c["meets"], len(self.sites) - c["maintenance"]),
            "communes": (sum(1 for x in counted_c if x["verdict"] == "meets"), len(counted_c)),
        }

    def failing(self) -> list[SiteRow]:
        """Sites that fail or lack tests, failing first, then by severity and id."""
        rows = [r for r in self.sites if r.verdict in ("fails", "not_enough")]
        return sorted(rows, key=lambda r: (r.verdict != "fails", *r.severity(), r.site))


def build(prom: Prom, month: str, req: Requirement, province: str = "", now: float | None = None) -> Report:
    """Query Prometheus and judge every inventory site of the month. Raises ReportError."""
    start, end = month_bounds(month)
    now = time.time() if now is None else now
    if start.timestamp() >= now:
        raise ReportError(f"--month {month} has not begun yet")
    t0, t1 = start.timestamp(), min(end.timestamp(), now)
    days = (t1 - t0) / 86400
    sel = f'province="{_promql_str(province)}"' if province else ""
    dur = f"{round(t1 - t0)}s"
    at = t1 - 0.001

    inventory = prom.query(f"last_over_time(site:hotspot_inventory:info{{{sel}}}[{dur}])", at)
    if not inventory:
        where = f" in province {province!r}" if province else ""
        raise ReportError(
            f"no inventory sites{where} in Prometheus for {month} (site:hotspot_inventory:info is written "
            "by `hotspot-collector targets`)"
        )
    provinces = sorted({r["metric"].get("province", "") for r in inventory})
    if len(provinces) > 1 and not province:
        raise ReportError(
            f"several provinces in Prometheus ({', '.join(provinces)}): choose one with --province"
        )
    rows: dict[str, SiteRow] = {}
    for r in inventory:
        m = r["metric"]
        rows[m["site"]] = SiteRow(
            site=m["site"],
            name=m.get("name", m["site"]),
            commune=m.get("commune", ""),
            district=m.get("district", ""),
            province=m.get("province", ""),
            site_type=m.get("site_type", ""),
            isp=m.get("isp", ""),
            maintenance=m.get("maintenance") == "true",
            contracted_mbps={d: float(m.get(f"contracted_{d}_mbps", "nan")) for d in DIRECTIONS},
        )

    def per_site(selector: str) -> dict[tuple[tuple[str, str], ...], float]:
        return month_increase(prom, selector, t0, t1)

    for k, v in per_site(f"{GOODPUT}_count{{{sel}}}").items():
        d = dict(k)
        if d["site"] in rows:
            rows[d["site"]].tests[d["direction"]] += v
    bucket_index = {b: i for i, b in enumerate(GOODPUT_BOUNDS)}
    for k, v in per_site(f"{GOODPUT}_bucket{{{sel}}}").items():
        d = dict(k)
        row = rows.get(d["site"])
        le = float(d["le"])
        if row is None or le not in bucket_index:
            continue
        row.buckets.setdefault(d["direction"], [0.0] * len(GOODPUT_BOUNDS))[bucket_index[le]] += v
    for row in rows.values():
        for direction in DIRECTIONS:
            b = row.buckets.get(direction)
            below = b[bucket_index[req.threshold_mbps(direction) * MBPS]] if b else 0.0
            row.meeting[direction] = row.tests[direction] - below
    for k, v in per_site(f"hotspot_bandwidth_tests_total{{{sel}}}").items():
        d = dict(k)
        if d["site"] in rows:
            rows[d["site"]].contract_tests[d["direction"]] += v
    for k, v in per_site(f"hotspot_bandwidth_tests_meeting_threshold_total{{{sel}}}").items():
        d = dict(k)
        if d["site"] in rows:
            rows[d["site"]].contract_meeting[d["direction"]] += v
    ping_sel = f'role="internet"{"," + sel if sel else ""}'
    for k, v in per_site(f"hotspot_ping_tests_total{{{ping_sel}}}").items():
        d = dict(k)
        if d["site"] in rows:
            rows[d["site"]].latency_tests += v
    rtt_index = {b: i for i, b in enumerate(RTT_BOUNDS_S)}
    for k, v in per_site(f"{RTT}_bucket{{{ping_sel}}}").items():
        d = dict(k)
        row = rows.get(d["site"])
        if row is None:
            continue
        if not row.rtt_buckets:
            row.rtt_buckets = [0.0] * (len(RTT_BOUNDS_S) + 1)
        le = float(d["le"])
        i = rtt_index.get(le, len(RTT_BOUNDS_S) if d["le"] == "+Inf" else -1)
        if i >= 0:
            row.rtt_buckets[i] += v
    for row in rows.values():
        if row.rtt_buckets:
            row.latency_within = row.rtt_buckets[rtt_index[req.latency_limit_ms / 1000]]
    for r in prom.query(f"avg_over_time(site:hotspot_internet_up:bool{{{sel}}}[{dur}])", at):
        if (row := rows.get(r["metric"].get("site", ""))) is not None:
            row.availability = float(r["value"][1])
    # When each site was last heard: the rule that carries it forward (rules/site-history.yml), read
    # at the month's end; a value before the month means not heard in it. (A subquery over the
    # month's state took half the report's query time.)
    for r in prom.query(
        f"max by (site) (last_over_time(site:hotspot_last_heard:timestamp{{{sel}}}[1d]))", at
    ):
        if (row := rows.get(r["metric"].get("site", ""))) is not None and float(r["value"][1]) >= t0:
            row.last_heard = float(r["value"][1])
    for row in rows.values():
        if row.availability is None and not row.maintenance:
            row.availability = 0.0  # listed, never heard: no sample at all is no availability
        row.period_end = t1
        judge(row, req, days)
    sites = sorted(rows.values(), key=lambda r: (r.commune, r.site))
    return Report(
        month,
        start,
        end,
        dt.datetime.fromtimestamp(t1, TZ),
        province or provinces[0],
        req,
        sites,
        prom.queries,
        prom.seconds,
    )


def _promql_str(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


# -- words --------------------------------------------------------------------------------------

WORDS: dict[str, dict[str, str]] = {
    "title": {"en": "Public wifi sites: monthly report", "vi": "Báo cáo tháng các điểm wifi công cộng"},
    "rule": {"en": "The rule", "vi": "Tiêu chí"},
    "shares": {"en": "Province", "vi": "Toàn tỉnh"},
    "sites_meeting": {"en": "Sites meeting the requirement", "vi": "Số điểm đạt yêu cầu"},
    "communes_meeting": {"en": "Communes meeting the requirement", "vi": "Số xã đạt yêu cầu"},
    "of": {"en": "of", "vi": "trên"},
    "communes": {"en": "Communes", "vi": "Các xã"},
    "sites": {"en": "Sites", "vi": "Các điểm"},
    "failing": {"en": "Sites that do not meet it, worst first", "vi": "Các điểm không đạt, nặng nhất trước"},
    "maintenance_list": {
        "en": "Sites in maintenance (not counted)",
        "vi": "Các điểm đang bảo trì (không tính)",
    },
    "meets": {"en": "meets", "vi": "đạt"},
    "fails": {"en": "does not meet", "vi": "không đạt"},
    "not_enough": {"en": "not enough measurements", "vi": "chưa đủ số liệu"},
    "maintenance": {"en": "in maintenance", "vi": "bảo trì"},
    "partial": {
        "en": "The month is not over: figures up to",
        "vi": "Tháng chưa kết thúc: số liệu đến",
    },
    "period": {"en": "Period", "vi": "Kỳ báo cáo"},
    "charts": {"en": "At a glance", "vi": "Tổng quan"},
}
COLUMNS = [
    ("site", "Site id", "Mã điểm"),
    ("name", "Name", "Tên"),
    ("commune", "Commune", "Xã"),
    ("site_type", "Type", "Loại"),
    ("isp", "ISP", "Nhà mạng"),
    ("tests_down", "Tests down", "Số lần đo xuống"),
    ("tests_up", "Tests up", "Số lần đo lên"),
    ("median_down", "Median down (Mbit/s)", "Trung vị xuống (Mbit/s)"),
    ("p10_down", "P10 down (Mbit/s)", "P10 xuống (Mbit/s)"),
    ("median_up", "Median up (Mbit/s)", "Trung vị lên (Mbit/s)"),
    ("p10_up", "P10 up (Mbit/s)", "P10 lên (Mbit/s)"),
    ("meeting_down", "Tests meeting, down", "Tỉ lệ đạt, xuống"),
    ("meeting_up", "Tests meeting, up", "Tỉ lệ đạt, lên"),
    ("latency", "Latency tests ≤ limit", "Độ trễ đạt"),
    ("median_rtt", "Median RTT (ms)", "Độ trễ trung vị (ms)"),
    ("availability", "Availability", "Thời gian hoạt động"),
    ("verdict", "Verdict", "Kết luận"),
    ("reason", "Reason", "Lý do"),
    ("contract", "Own contract", "Theo hợp đồng"),
]
SITE_TYPES = {
    "commune_office": ("Commune office", "UBND xã / phường"),
    "health_station": ("Health station", "Trạm y tế"),
    "village_hall": ("Village hall", "Nhà văn hóa thôn"),
    "other": ("Other", "Khác"),
}


COMMUNE_COLUMNS = [
    ("Commune", "Xã"),
    ("District", "Huyện"),
    ("Sites counted", "Số điểm được tính"),
    ("Meet", "Đạt"),
    ("Do not meet", "Không đạt"),
    ("Not enough measurements", "Chưa đủ số liệu"),
    ("In maintenance", "Bảo trì"),
    ("Verdict", "Kết luận"),
]


def commune_headers(lang: str) -> list[str]:
    """The commune table's column headers in `lang` ("en", "vi" or "both": "English / Việt")."""
    return [en if lang == "en" else vi if lang == "vi" else f"{en} / {vi}" for en, vi in COMMUNE_COLUMNS]


def word(key: str, lang: str) -> str:
    """The report's text `key` in `lang` ("en", "vi" or "both"); KeyError for an unknown key."""
    w = WORDS[key]
    return f"{w['en']} / {w['vi']}" if lang == "both" else w[lang]


def site_values(r: SiteRow, lang: str) -> dict[str, Any]:
    """One site's row, values typed for a spreadsheet (None = no measurement, never a zero)."""

    def rnd(v: float | None, n: int = 1) -> float | None:
        return None if v is None else round(v, n)

    types = SITE_TYPES.get(r.site_type)
    type_name = (
        r.site_type
        if types is None
        else (types[0] if lang == "en" else types[1] if lang == "vi" else f"{types[0]} / {types[1]}")
    )
    return {
        "site": r.site,
        "name": r.name,
        "commune": r.commune,
        "site_type": type_name,
        "isp": r.isp,
        "tests_down": round(r.tests["download"]),
        "tests_up": round(r.tests["upload"]),
        "median_down": rnd(r.quantile_mbps("download", 0.5)),
        "p10_down": rnd(r.quantile_mbps("download", 0.1)),
        "median_up": rnd(r.quantile_mbps("upload", 0.5)),
        "p10_up": rnd(r.quantile_mbps("upload", 0.1)),
        "meeting_down": rnd(r.share("download"), 3),
        "meeting_up": rnd(r.share("upload"), 3),
        "latency": rnd(r.latency_share, 4),
        "median_rtt": rnd(r.median_rtt_ms),
        "availability": rnd(r.availability, 4),
        "verdict": word(r.verdict, lang),
        "reason": "; ".join(
            en if lang == "en" else vi if lang == "vi" else f"{en} / {vi}" for en, vi in r.reasons
        ),
        "contract": word(r.contract, lang) if r.contract else "",
    }


def header(key: str, lang: str) -> str:
    """The site table's column header `key` in `lang`; KeyError for an unknown key."""
    for k, en, vi in COLUMNS:
        if k == key:
            return en if lang == "en" else vi if lang == "vi" else f"{en} / {vi}"
    raise KeyError(key)


# -- charts -------------------------------------------------------------------------------------


def charts(rep: Report, lang: str) -> list[bytes]:
    """PNG charts: sites per verdict; the distribution of sites' median download."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    out = []
    c = rep.counts()
    fig, ax = plt.subplots(figsize=(7, 2.6), dpi=110)
    labels = [word(v, "en" if lang == "both" else lang) for v in VERDICT_ORDER]
    colors = ["#c0392b", "#e67e22", "#27ae60", "#7f8c8d"]
    bars = ax.barh(labels[::-1], [c[v] for v in VERDICT_ORDER][::-1], color=colors[::-1])
    ax.bar_label(bars, padding=3)
    ax.set_xlabel(word("sites", "en" if lang == "both" else lang))
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    out.append(_png(fig))
    plt.close(fig)

    medians = [m for r in rep.sites if (m := r.quantile_mbps("download", 0.5)) is not None]
    fig, ax = plt.subplots(figsize=(7, 2.8), dpi=110)
    if medians:
        ax.hist(medians, bins=30, color="#2c7fb8")
    thr = rep.req.threshold_mbps("download")
    ax.axvline(thr, color="#c0392b", linestyle="--", label=f"{thr:g} Mbit/s")
    ax.set_xlabel(
        "Median download per site (Mbit/s)" if lang != "vi" else "Trung vị tốc độ tải xuống mỗi điểm (Mbit/s)"
    )
    ax.set_ylabel(word("sites", "en" if lang == "both" else lang))
    ax.legend()
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    out.append(_png(fig))
    plt.close(fig)
    return out


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


# -- HTML ---------------------------------------------------------------------------------------

CSS = """
@page { size: A4 landscape; margin: 8mm; }
@media print { body { margin: 0; font-size: 9pt; } table { font-size: 6.5pt; } }
body { font-family: "DejaVu Sans", Arial, sans-serif; font-size: 10pt; color: #111; margin: 16px; }
h1 { font-size: 16pt; margin: 0 0 4px; } h2 { font-size: 12pt; margin: 18px 0 6px; break-after: avoid; }
table { border-collapse: collapse; width: 100%; font-size: 8pt; }
th, td { border: 1px solid #bbb; padding: 2px 4px; text-align: left; vertical-align: top; }
th { background: #eee; } thead { display: table-header-group; } tr { break-inside: avoid; }
td.n { text-align: right; white-space: nowrap; } td.name { min-width: 11em; }
td.reason { min-width: 20em; } td.site { white-space: nowrap; }
.fails { color: #a01d10; font-weight: bold; } .not_enough { color: #b35900; }
.meets { color: #1e7d32; } .maintenance { color: #555; }
.big { font-size: 20pt; font-weight: bold; } .box { display: inline-block; margin-right: 40px; }
img { max-width: 100%; } .note { color: #555; }
"""


def _fmt(v: Any, key: str) -> str:
    if v is None:
        return "–"
    if key in ("meeting_down", "meeting_up", "latency", "availability"):
        return f"{v:.1%}"
    return html.escape(str(v))


def _css_class(r: SiteRow, key: str, value: Any) -> str:
    if key == "verdict":
        return r.verdict
    return "n" if isinstance(value, int | float) else key


def render_html(rep: Report, lang: str = "both") -> str:
    """The report as one self-contained HTML page (inline CSS, charts as data URIs) in `lang`."""
    e = html.escape
    sh = rep.shares()
    parts = [
        f'<!DOCTYPE html><html lang="{"vi" if lang == "vi" else "en"}"><head><meta charset="utf-8">',
        f"<title>{e(word('title', lang))} {e(rep.month)}</title><style>{CSS}</style></head><body>",
        f"<h1>{e(word('title', lang))}: {e(rep.province)}, {e(rep.month)}</h1>",
        f'<p class="note">{e(word("period", lang))}: {rep.start:%Y-%m-%d %H:%M} – '
        f"{rep.end:%Y-%m-%d %H:%M} (UTC+7)</p>",
    ]
    if rep.partial:
        parts.append(
            f'<p class="note"><b>{e(word("partial", lang))} {rep.evaluated_at:%Y-%m-%d %H:%M}.</b></p>'
        )
    parts.append(f"<h2>{e(word('rule', lang))}</h2><ul>")
    for lg in ("en", "vi") if lang == "both" else (lang,):
        parts += [f"<li>{e(s)}</li>" for s in rep.req.in_words(lg)]
    parts.append(f"</ul><h2>{e(word('shares', lang))}</h2>")
    for key, (n, d) in (("sites_meeting", sh["sites"]), ("communes_meeting", sh["communes"])):
        pct = f"{n / d:.1%}" if d else "–"
        parts.append(
            f'<div class="box"><div>{e(word(key, lang))}</div><div class="big">{pct}</div>'
            f"<div>{n} {e(word('of', lang))} {d}</div></div>"
        )
    c = rep.counts()
    parts.append("<p>" + ", ".join(f"{e(word(v, lang))}: {c[v]}" for v in VERDICT_ORDER) + "</p>")
    parts.append(f"<h2>{e(word('charts', lang))}</h2>")
    for png in charts(rep, lang):
        parts.append(f'<img alt="chart" src="data:image/png;base64,{base64.b64encode(png).decode()}">')

    parts.append(f"<h2>{e(word('communes', lang))}</h2><table><thead><tr>")
    parts.append("".join(f"<th>{e(h)}</th>" for h in commune_headers(lang)) + "</tr></thead><tbody>")
    for x in rep.communes():
        cells = [
            x["commune"],
            x["district"],
            x["counted"],
            x["meets"],
            x["fails"],
            x["not_enough"],
            x["maintenance"],
        ]
        parts.append(
            "<tr>"
            + "".join(f"<td{' class=n' if isinstance(v, int) else ''}>{e(str(v))}</td>" for v in cells)
            + f'<td class="{x["verdict"]}">{e(word(x["verdict"], lang))}</td></tr>'
        )
    parts.append("</tbody></table>")

    def table(rows: list[SiteRow]) -> None:
        keys = [k for k, _, _ in COLUMNS]
        parts.append(
            "<table><thead><tr>"
            + "".join(f"<th>{e(header(k, lang))}</th>" for k in keys)
            + "</tr></thead><tbody>"
        )
        for r in rows:
            v = site_values(r, lang)
            parts.append(
                "<tr>"
                + "".join(f'<td class="{_css_class(r, k, v[k])}">{_fmt(v[k], k)}</td>' for k in keys)
                + "</tr>"
            )
        parts.append("</tbody></table>")

    parts.append(f"<h2>{e(word('failing', lang))}</h2>")
    table(rep.failing())
    held = [r for r in rep.sites if r.verdict == "maintenance"]
    parts.append(f"<h2>{e(word('maintenance_list', lang))}</h2>")
    parts.append("<p>" + (", ".join(e(f"{r.name} ({r.site}, {r.commune})") for r in held) or "–") + "</p>")
    parts.append(f"<h2>{e(word('sites', lang))}</h2>")
    table(rep.sites)
    parts.append(
        f'<p class="note">{len(rep.sites)} sites; {rep.queries} Prometheus queries. '
        f"Generated by hotspot-collector report.</p></body></html>"
    )
    return "\n".join(parts)


# -- spreadsheet --------------------------------------------------------------------------------


def write_xlsx(rep: Report, path: Path, lang: str = "both") -> None:
    """The report as an .xlsx workbook at `path` (a summary sheet, a sheet per table, the charts);
    needs the `report` extra (openpyxl, matplotlib). Raises OSError when it cannot be written.
    """
    from openpyxl import Workbook
    from openpyxl.drawing.image import Image
    from openpyxl.styles import Font

    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = "Summary"
    bold = Font(bold=True)
    ws.append([f"{word('title', lang)}: {rep.province}, {rep.month}"])
    ws["A1"].font = Font(bold=True, size=14)
    ws.append([f"{rep.start:%Y-%m-%d %H:%M} – {rep.end:%Y-%m-%d %H:%M} (UTC+7)"])
    if rep.partial:
        ws.append([f"{word('partial', lang)} {rep.evaluated_at:%Y-%m-%d %H:%M}"])
    ws.append([])
    ws.append([word("rule", lang)])
    ws.cell(ws.max_row, 1).font = bold
    for lg in ("en", "vi") if lang == "both" else (lang,):
        for s in rep.req.in_words(lg):
            ws.append([s])
    ws.append([])
    sh = rep.shares()
    ws.append(["", "meeting", "counted (denominator)", "share"])
    for key, (n, d) in (("sites_meeting", sh["sites"]), ("communes_meeting", sh["communes"])):
        ws.append([word(key, lang), n, d, n / d if d else None])
        ws.cell(ws.max_row, 4).number_format = "0.0%"
    c = rep.counts()
    ws.append([])
    for v in VERDICT_ORDER:
        ws.append([word(v, lang), c[v]])
    for i, png in enumerate(charts(rep, lang)):
        img = Image(io.BytesIO(png))
        ws.add_image(img, f"F{4 + i * 22}")
    ws.column_dimensions["A"].width = 40

    cw = wb.create_sheet("Communes")
    cw.append(commune_headers(lang))
    for x in rep.communes():
        cw.append(
            [
                x["commune"],
                x["district"],
                x["counted"],
                x["meets"],
                x["fails"],
                x["not_enough"],
                x["maintenance"],
                word(x["verdict"], lang),
            ]
        )

    keys = [k for k, _, _ in COLUMNS]
    for title, rows in (("Sites", rep.sites), ("Failing", rep.failing())):
        sw = wb.create_sheet(title)
        sw.append([header(k, lang) for k in keys])
        for cell in sw[1]:
            cell.font = bold
        shares = [
            j
            for j, k in enumerate(keys, start=1)
            if k in ("meeting_down", "meeting_up", "latency", "availability")
        ]
        for i, r in enumerate(rows, start=2):  # (not sw.max_row: it scans every row, each time)
            vals = site_values(r, lang)
            sw.append([vals[k] for k in keys])
            for j in shares:
                sw.cell(i, j).number_format = "0.0%"
        sw.freeze_panes = "C2"
        sw.auto_filter.ref = sw.dimensions
    wb.save(path)


# -- command ------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `hotspot-collector report`."""
    parser.add_argument("--month", required=True, help="calendar month, YYYY-MM (Asia/Ho_Chi_Minh)")
    parser.add_argument("--prometheus", default="http://127.0.0.1:9090", help="Prometheus URL")
    parser.add_argument("--province", default="", help="the province (needed when Prometheus holds several)")
    parser.add_argument("--requirement", type=Path, default=DEFAULT_FILE, help="the province's rule (YAML)")
    parser.add_argument(
        "--lang", choices=("both", "en", "vi"), default="both", help="language(s) of the report"
    )
    parser.add_argument("--out", type=Path, default=Path("."), help="directory for the .html and .xlsx files")


def command(args: argparse.Namespace) -> int:
    """Run `hotspot-collector report`: write the .html and .xlsx for the month; 0 on success, 1 when
    a file cannot be written, 2 when Prometheus cannot answer or the rule is invalid (printed to
    stderr).
    """
    if url_has_credentials(args.prometheus):  # not echoed: it holds a password
        print(
            "hotspot-collector report: --prometheus: has a user name or password in it "
            "(USER:PASSWORD@HOST), which would be shown in every error; the report reads Prometheus "
            "without authentication: run it where Prometheus listens (e.g. http://127.0.0.1:9090)",
            file=sys.stderr,
        )
        return 2
    if not re.fullmatch(r"https?://[^/?#\s]+(/[^?#\s]*)?", args.prometheus):
        print(
            f"hotspot-collector report: --prometheus {args.prometheus}: not an http(s):// URL",
            file=sys.stderr,
        )
        return 2
    try:
        req = load(args.requirement)
        t0 = time.monotonic()
        rep = build(Prom(args.prometheus), args.month, req, args.province)
        args.out.mkdir(parents=True, exist_ok=True)
        stem = args.out / f"hotspot-report-{args.month}"
        Path(f"{stem}.html").write_text(render_html(rep, args.lang), encoding="utf-8")
        write_xlsx(rep, Path(f"{stem}.xlsx"), args.lang)
    except (ReportError, RequirementError) as exc:
        print(f"hotspot-collector report: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"hotspot-collector report: cannot write into {args.out}: {exc.strerror}", file=sys.stderr)
        return 1
    sh = rep.shares()
    print(
        f"{rep.province} {rep.month}: {sh['sites'][0]} of {sh['sites'][1]} sites and {sh['communes'][0]} of "
        f"{sh['communes'][1]} communes meet the requirement ({len(rep.sites)} sites, {rep.queries} queries "
        f"taking {rep.query_seconds:.1f} s, {time.monotonic() - t0:.1f} s in all)"
    )
    print(f"  {stem}.html\n  {stem}.xlsx")
    return 0
