"""The likely cause of a site's trouble, named from the latest Results of the other probes.

A pure function over data: `diagnose(latest)` takes the latest Result per probe and target and
returns the cause behind `hotspot_diagnosis{cause=...}` with one plain sentence an IT officer can
act on.

What each Result says (its "evidence": up, down, or nothing):

- ping, role from PingStats (or target "gateway" when no data): up when any reply came back (or a
  TCP connect was refused: the host answered); down on 100% loss, timeout, unreachable. A gateway
  Result without packets (no default route read, or one without a gateway address as on ppp) is
  "not measured": no evidence either way.
- dns: up when the lookup returned addresses; down on timeout, unreachable, refused, NXDOMAIN or
  SERVFAIL ("dns"), garbage ("protocol").
- http reachability: up on any HTTP answer (even an error status: the server was reached); down
  on timeout, unreachable, refused; a failure to resolve the URL's name is left to the dns probe.
- http portal check: a captive portal when it met a page or redirect; otherwise like reachability.
- wifi (client mode): down when the interface is not associated.
- Results with reason "unsupported", "error" or "limit" say nothing about the network.

Decision table, first matching row wins ("internet" = internet pings, reachability URLs and the
portal check; "up"/"down" = any / every such Result with evidence):

| # | gateway / wifi             | portal check   | internet       | dns            | cause          |
|---|----------------------------|----------------|----------------|----------------|----------------|
| 1 | no evidence from any probe |                |                |                | unknown        |
| 2 | gateway down, or wifi down and gateway not up | - | not up       | -              | lan_fault      |
| 3 | -                          | portal found   | -              | -              | captive_portal |
| 4 | gateway up or not measured | -              | down           | -              | uplink_fault   |
| 5 | -                          | -              | up             | every lookup down | dns_fault   |
| 6 | -                          | -              | not measured   | every lookup down | unknown     |
| 7 | -                          | -              | up, or not measured with a lookup up | - | healthy |
| 8 | anything else              |                |                |                | unknown        |

Row 2 needs "internet not up" because some routers do not answer ping: when the internet answers,
a silent gateway is not a fault. Row 4 without a gateway result: an outage is still called an
uplink fault (as the design asks), but the detail says that the router was not measured, so the
officer checks the router too. Row 7 tolerates single failures (one website down is that website's
problem, not the site's); the detail names them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal, get_args

from agent.probes import dns, http, ping, wifi
from agent.probes.dns import DnsLookup
from agent.probes.http import HttpCheck
from agent.probes.ping import PingStats
from agent.result import Result

Cause = Literal["healthy", "lan_fault", "uplink_fault", "dns_fault", "captive_portal", "unknown"]
CAUSES: tuple[Cause, ...] = get_args(Cause)

_NETWORK_DOWN = ("timeout", "unreachable")
# The probes whose latest Results diagnose() reads: the store re-diagnoses after each of their runs.
INPUTS = ("ping", "dns", "http", "wifi")


@dataclass(frozen=True)
class Diagnosis:
    cause: Cause
    detail: str  # one plain sentence for the IT officer


@dataclass
class _Evidence:
    """What the latest Results say, sorted by the layer they test."""

    gateway: list[tuple[str, bool]]
    wifi_down: list[str]
    internet: list[tuple[str, bool]]
    dns: list[tuple[str, bool]]
    portal: str | None  # where the captive portal sent us ("" when it answered with a page)

    def any_evidence(self) -> bool:
        return bool(self.gateway or self.wifi_down or self.internet or self.dns or self.portal is not None)


def _ping(result: Result[PingStats]) -> tuple[str, bool | None]:
    d = result.data
    role = d.role if d is not None else ("gateway" if result.target == "gateway" else "internet")
    if d is not None:
        return role, d.received > 0
    if role == "gateway":
        # No packets went to a router (no default route was read, or one without a gateway address,
        # as on ppp): the router was not measured, which says nothing about the LAN.
        return role, None
    if result.ok or result.reason == "refused":  # a refused TCP connect means the host answered
        return role, True
    return role, False if result.reason in _NETWORK_DOWN else None


def _http(result: Result[HttpCheck]) -> bool | None:
    if result.ok or result.reason in ("http_status", "protocol", "captive_portal"):
        return True  # an HTTP answer of any kind: the path to that server works
    return False if result.reason in (*_NETWORK_DOWN, "refused") else None


def _dns(result: Result[DnsLookup]) -> bool | None:
    if result.ok:
        return True
    return False if result.reason in (*_NETWORK_DOWN, "refused", "dns", "protocol") else None


def _collect(latest: Iterable[Result[Any]]) -> _Evidence:
    ev = _Evidence(gateway=[], wifi_down=[], internet=[], dns=[], portal=None)
    latest = list(latest)
    for p in ping.SPEC.of(latest):
        role, up = _ping(p)
        if up is not None:
            name = (p.data.address if p.data else "") or p.target
            (ev.gateway if role == "gateway" else ev.internet).append((name, up))
    for d in dns.SPEC.of(latest):
        if (up := _dns(d)) is not None:
            ev.dns.append(((d.data.name if d.data else "") or d.target, up))
    for h in http.SPEC.of(latest):
        check = h.data
        if check is not None:
            kind, captive, url, location = check.kind, check.captive_portal, check.url, check.location
        else:
            kind = "portal_check" if h.reason == "captive_portal" else "reachability"
            captive, url, location = False, "", ""
        if kind == "portal_check" and (captive or h.reason == "captive_portal"):
            ev.portal = location
        elif (up := _http(h)) is not None:
            ev.internet.append((url or h.target, up))
    for w in wifi.SPEC.of(latest):
        if w.reason == "unreachable" and w.data is not None and w.data.mode == "managed":
            ev.wifi_down.append(w.target)
    return ev


def _count(n: int, one: str, many: str = "") -> str:
    return f"{n} {one}" if n == 1 else f"{n} {many or one + 's'}"


def _names(items: list[tuple[str, bool]], up: bool) -> str:
    return ", ".join(name for name, ok in items if ok is up)


def diagnose(latest: Iterable[Result[Any]]) -> Diagnosis:
    """Name the likely cause from the latest Results (see the module docstring's table)."""
    ev = _collect(latest)
    if not ev.any_evidence():
        return Diagnosis(
            "unknown", "There are no measurements yet to tell whether the site's connection works."
        )

    internet_up = any(up for _, up in ev.internet)
    internet_down = bool(ev.internet) and not internet_up
    gateway_up = any(up for _, up in ev.gateway)
    gateway_down = bool(ev.gateway) and not gateway_up

    # A router that answers rules out a LAN fault, whatever a radio says (it may be an idle one).
    if (gateway_down or (ev.wifi_down and not gateway_up)) and not internet_up:
        if ev.wifi_down:
            where = ", ".join(ev.wifi_down)
            return Diagnosis(
                "lan_fault",
                f"The agent's wifi ({where}) is not connected to any network: check that the site's "
                "access point is powered on and broadcasting, and that the agent is within its range.",
            )
        return Diagnosis(
            "lan_fault",
            f"The agent cannot reach the site's router ({_names(ev.gateway, False)}): check that the "
            "router and access point are powered on and that the agent's cable to the router is plugged in.",
        )
    if ev.portal is not None:
        where = f" (it redirects to {ev.portal})" if ev.portal else ""
        return Diagnosis(
            "captive_portal",
            f"The internet connection is held behind a login page{where}: log in on that page or ask "
            "the provider to turn it off for this site, since users and the agent cannot get through.",
        )
    if internet_down:
        tried = _count(len(ev.internet), "internet address or website", "internet addresses and websites")
        if ev.gateway:
            return Diagnosis(
                "uplink_fault",
                f"The site's router answers but nothing on the internet does ({tried} tried): the "
                "internet line is down, so check the provider's modem lights and report the outage "
                "to the internet provider.",
            )
        return Diagnosis(
            "uplink_fault",
            f"Nothing on the internet answers ({tried} tried) and the router was not measured: check "
            "that the router is on, and if it is, report the outage to the internet provider.",
        )
    dns_all_down = bool(ev.dns) and not any(up for _, up in ev.dns)
    if dns_all_down and internet_up:
        return Diagnosis(
            "dns_fault",
            f"Internet addresses answer but no name resolves ({_count(len(ev.dns), 'lookup')} failed): "
            "the DNS server the site uses is failing, so check the router's DNS settings or ask the "
            "internet provider.",
        )
    if dns_all_down:
        return Diagnosis(
            "unknown",
            "No name resolves, and no internet address was measured to tell a DNS fault from a line fault: "
            "enable the ping probe's internet targets to find out.",
        )
    if internet_up or any(up for _, up in ev.dns):
        works = " and ".join(
            part
            for part, seen in (
                ("the internet answers", internet_up),
                ("names resolve", any(u for _, u in ev.dns)),
            )
            if seen
        )
        notes = []
        failed = [name for name, up in (*ev.internet, *ev.dns) if not up]
        if failed:
            notes.append(
                f"only {', '.join(failed)} failed, which points at those services rather than at the site"
            )
        if gateway_down:
            notes.append("the router does not answer ping, which many routers never do")
        if notes:
            return Diagnosis("healthy", f"The site's connection works ({works}); {'; '.join(notes)}.")
        return Diagnosis("healthy", f"The site's connection works: {works}.")
    return Diagnosis(
        "unknown",
        "The router answers but nothing on the internet was measured yet, so the cause cannot be told.",
    )
