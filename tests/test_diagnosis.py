"""The diagnosis decision table, row by row, on Results built directly (a pure function over data)."""

from __future__ import annotations

import pytest

from agent.diagnosis import CAUSES, Diagnosis, diagnose
from agent.probes.dns import DnsLookup
from agent.probes.http import HttpCheck
from agent.probes.ping import PingStats
from agent.probes.wifi import WifiLink
from agent.result import Result


def ping(target: str, role: str, received: int, sent: int = 10) -> Result:
    rtt = 0.02 if received else None
    stats = PingStats(
        address=target if target != "gateway" else "192.168.1.1",
        role=role,  # type: ignore[arg-type]
        method="icmp",
        sent=sent,
        received=received,
        loss_ratio=1 - received / sent,
        rtt_min_s=rtt,
        rtt_avg_s=rtt,
        rtt_max_s=rtt,
        jitter_s=0.001 if received else None,
    )
    if received:
        return Result("ping", target, ok=True, data=stats)
    return Result("ping", target, ok=False, reason="unreachable", detail="100% loss", data=stats)


def gw(up: bool) -> Result:
    return ping("gateway", "gateway", 10 if up else 0)


def inet(target: str, up: bool) -> Result:
    return ping(target, "internet", 10 if up else 0)


def dns(name: str, up: bool, reason: str = "timeout") -> Result:
    lookup = DnsLookup(
        resolver="system",
        server="192.168.1.1",
        name=name,
        rcode="NOERROR" if up else "",
        addresses=("203.0.113.7",) if up else (),
        lookup_s=0.01 if up else None,
    )
    if up:
        return Result("dns", f"system {name}", ok=True, data=lookup)
    return Result("dns", f"system {name}", ok=False, reason=reason, detail="no answer", data=lookup)  # type: ignore[arg-type]


def http(url: str, up: bool, reason: str = "timeout", status: int | None = None) -> Result:
    check = HttpCheck(
        url=url,
        kind="reachability",
        status=status if status is not None else (200 if up else None),
        first_byte_s=0.05 if up or status else None,
        total_s=0.1 if up or status else None,
        body_bytes=1000 if up else 0,
        captive_portal=False,
        location="",
    )
    if up:
        return Result("http", url, ok=True, data=check)
    return Result("http", url, ok=False, reason=reason, detail="failed", data=check)  # type: ignore[arg-type]


def portal(found: bool, location: str = "http://10.0.0.1/login") -> Result:
    url = "http://connectivitycheck.gstatic.com/generate_204"
    check = HttpCheck(
        url=url,
        kind="portal_check",
        status=302 if found else 204,
        first_byte_s=0.03,
        total_s=0.03,
        body_bytes=0,
        captive_portal=found,
        location=location if found else "",
    )
    if found:
        return Result("http", url, ok=False, reason="captive_portal", detail="redirected", data=check)
    return Result("http", url, ok=True, data=check)


def wifi_not_associated() -> Result:
    link = WifiLink("wlan0", "managed", False, "", "", None, None, None, None, None)
    return Result("wifi", "wlan0", ok=False, reason="unreachable", detail="not connected", data=link)


HEALTHY = [gw(True), inet("1.1.1.1", True), inet("8.8.8.8", True), dns("vneid.gov.vn", True), portal(False)]

TABLE = [
    # (row, results, expected cause, words the detail must contain)
    ("1 nothing measured", [], "unknown", "no measurements"),
    (
        "1 only probe errors",
        [Result("ping", "1.1.1.1", ok=False, reason="unsupported", detail="no ICMP")],
        "unknown",
        "no measurements",
    ),
    ("2 gateway silent, internet silent", [gw(False), inet("1.1.1.1", False)], "lan_fault", "router"),
    ("2 gateway silent, nothing else", [gw(False)], "lan_fault", "192.168.1.1"),
    ("2 wifi not associated", [wifi_not_associated(), inet("1.1.1.1", False)], "lan_fault", "wlan0"),
    ("2 gateway ignores ping but internet answers", [gw(False), *HEALTHY[1:]], "healthy", "works"),
    (
        "2 an idle radio while the router answers is no LAN fault (ISP outage)",
        [wifi_not_associated(), gw(True), inet("1.1.1.1", False), http("https://dichvucong.gov.vn/", False)],
        "uplink_fault",
        "router answers",
    ),
    (
        "4 no default route read: the router was not measured, no LAN fault",
        [
            Result("ping", "gateway", ok=False, reason="unreachable", detail="no default route"),
            inet("1.1.1.1", False),
        ],
        "uplink_fault",
        "router was not measured",
    ),
    (
        "4 default route without a gateway (ppp): not measured",
        [
            Result("ping", "gateway", ok=False, reason="unsupported", detail="gateway not measured"),
            inet("1.1.1.1", False),
        ],
        "uplink_fault",
        "router was not measured",
    ),
    ("3 portal found", [gw(True), inet("1.1.1.1", True), portal(True)], "captive_portal", "10.0.0.1/login"),
    (
        "3 portal redirects the reachability check too",
        [
            gw(True),
            inet("1.1.1.1", False),
            http("https://dichvucong.gov.vn/", False, "http_status", 302),
            portal(True),
        ],
        "captive_portal",
        "login page",
    ),
    (
        "4 router up, every internet target down",
        [gw(True), inet("1.1.1.1", False), inet("8.8.8.8", False), http("https://dichvucong.gov.vn/", False)],
        "uplink_fault",
        "internet provider",
    ),
    (
        "4 no gateway result",
        [inet("1.1.1.1", False), http("https://dichvucong.gov.vn/", False, "unreachable")],
        "uplink_fault",
        "router was not measured",
    ),
    (
        "4 names fail too while the line is down",
        [gw(True), inet("1.1.1.1", False), dns("vneid.gov.vn", False)],
        "uplink_fault",
        "modem",
    ),
    (
        "5 addresses answer, no name resolves",
        [gw(True), inet("1.1.1.1", True), dns("vneid.gov.vn", False), dns("dichvucong.gov.vn", False, "dns")],
        "dns_fault",
        "DNS",
    ),
    (
        "5 the URL's name failing does not count as the line down",
        [
            gw(True),
            inet("1.1.1.1", True),
            dns("vneid.gov.vn", False),
            http("https://vneid.gov.vn/", False, "dns"),
        ],
        "dns_fault",
        "(1 lookup failed)",
    ),
    (
        "6 names fail, no internet address measured",
        [gw(True), dns("vneid.gov.vn", False)],
        "unknown",
        "ping probe",
    ),
    ("7 everything answers", HEALTHY, "healthy", "works"),
    (
        "7 one website down is not the site's fault",
        [*HEALTHY, http("https://dichvucong.gov.vn/", False, "http_status", 503)],
        "healthy",
        "works",
    ),
    (
        "7 one internet target lost",
        [*HEALTHY, inet("9.9.9.9", False)],
        "healthy",
        "9.9.9.9",
    ),
    ("7 only names measured and they resolve", [dns("vneid.gov.vn", True)], "healthy", "works"),
    ("8 only the router measured", [gw(True)], "unknown", "cannot be told"),
]


@pytest.mark.parametrize(("row", "results", "cause", "words"), TABLE, ids=[t[0] for t in TABLE])
def test_decision_table(row, results, cause, words):
    """Each row of the decision table yields its cause and a detail naming what to check."""
    got = diagnose(results)
    assert isinstance(got, Diagnosis)
    assert got.cause == cause, got.detail
    assert words in got.detail
    assert got.detail.endswith(".") and "\n" not in got.detail


def test_every_cause_is_reachable_and_matches_the_metric_contract():
    """The causes are exactly the `cause` label values of hotspot_diagnosis, and the table uses them all."""
    assert set(CAUSES) == {"healthy", "lan_fault", "uplink_fault", "dns_fault", "captive_portal", "unknown"}
    assert {t[2] for t in TABLE} == set(CAUSES)


def test_accepts_any_iterable_and_order_does_not_matter():
    """A generator in another order gives the same diagnosis."""
    results = [gw(True), inet("1.1.1.1", False), http("https://dichvucong.gov.vn/", False)]
    assert diagnose(iter(results)) == diagnose(list(reversed(results)))
