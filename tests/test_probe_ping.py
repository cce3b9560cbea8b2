"""The ping probe: ICMP/TCP latency, jitter and loss, run for real on loopback and in test namespaces.

The probe runs in-process, so namespace cases start it under `ip netns exec` in a subprocess that
prints the Results as JSON. Topology made by `lab`: namespace A (the site: lo, v0 10.200.7.1/24)
and namespace B (its peer and gateway: lo, v1 10.200.7.2/24), joined by a veth pair and nothing
else. 10.200.7.3 is unused: its ARP requests are never answered, so every packet to it is lost.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agent.probes import ping
from agent.probes.base import ProbeContext
from agent.schema import SchemaError, parse
from agent.site import Site
from tests.support.ports import free_port

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures" / "ping"
PEER, DEAD = "10.200.7.2", "10.200.7.3"
ICMP_ALLOWED, ICMP_DENIED = "0 2147483647", "1 0"
# Drops CAP_NET_RAW for good: no raw sockets for the probe even though it runs as root.
NO_NET_RAW = ("setpriv", "--inh-caps=-all", "--bounding-set=-net_raw")
FAST: dict[str, Any] = {"gateway": False, "count": 4, "packet_interval_s": 0.05, "packet_timeout_s": 0.5}

RUNNER = """
import json, sys
from pathlib import Path
from agent.probes import ping
from agent.probes.base import ProbeContext
from agent.schema import parse
from agent.site import Site
settings = parse(ping.Settings, json.loads(sys.argv[1]))
context = ProbeContext(site=Site(id="lab", commune="Lab", province="Lab"), state_dir=Path("/nonexistent"))
print(json.dumps([r.to_json() for r in ping.run(settings, context)]))
"""

_names = itertools.count()


def context() -> ProbeContext:
    return ProbeContext(site=Site(id="lab", commune="Lab", province="Lab"), state_dir=Path("/nonexistent"))


def sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=30)


@dataclass
class Lab:
    site: str  # namespace A, where the probe runs
    peer: str  # namespace B

    def sysctl_ping_group_range(self, value: str) -> None:
        sh("ip", "netns", "exec", self.site, "sysctl", "-qw", f"net.ipv4.ping_group_range={value}")

    def probe(self, *prefix: str, **settings: object) -> list[dict]:
        """Run the probe inside namespace A (after `prefix`, e.g. a capability drop); its Results as JSON."""
        cmd = ["ip", "netns", "exec", self.site, *prefix, sys.executable, "-c", RUNNER, json.dumps(settings)]
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)


@pytest.fixture
def namespaces() -> Iterator[list[str]]:
    """Names for fresh namespaces; every namespace (and its /etc/netns entry) is deleted afterwards."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2")
    made: list[str] = []
    try:
        yield made
    finally:
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
            shutil.rmtree(Path("/etc/netns") / ns, ignore_errors=True)
        if made and Path("/etc/netns").is_dir() and not any(Path("/etc/netns").iterdir()):
            Path("/etc/netns").rmdir()  # only when empty: another test or tool may be using it


def new_namespace(made: list[str], role: str) -> str:
    name = f"hmp{os.getpid()}n{next(_names)}{role}"
    made.append(name)  # before creating, so that a half-made namespace is still removed
    try:
        sh("ip", "netns", "add", name)
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"ip netns add failed: {exc.stderr.strip()}")
    sh("ip", "-n", name, "link", "set", "lo", "up")
    return name


@pytest.fixture
def lab(namespaces: list[str]) -> Lab:
    """Namespaces A and B joined by a veth pair; nothing else is reachable from either."""
    site, peer = new_namespace(namespaces, "a"), new_namespace(namespaces, "b")
    sh("ip", "-n", site, "link", "add", "v0", "type", "veth", "peer", "name", "v1", "netns", peer)
    sh("ip", "-n", site, "addr", "add", "10.200.7.1/24", "dev", "v0")
    sh("ip", "-n", peer, "addr", "add", f"{PEER}/24", "dev", "v1")
    sh("ip", "-n", site, "link", "set", "v0", "up")
    sh("ip", "-n", peer, "link", "set", "v1", "up")
    return Lab(site, peer)


def needs_setpriv() -> None:
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")


def only(results: list[dict]) -> dict:
    assert len(results) == 1, results
    return results[0]


# --- gateway discovery from captured routing tables -------------------------------------------


def test_gateway_is_the_lowest_metric_default_route_with_a_gateway() -> None:
    """Of three default routes, the gateway-less ppp0 one is skipped and metric 100 beats 600."""
    assert ping.default_gateway(FIXTURES / "route-three-defaults.txt") == "198.51.100.1"


def test_no_default_route_means_no_gateway(tmp_path: Path) -> None:
    """Tables whose only gateway route is not a default route yield no gateway."""
    (tmp_path / "ipv6_route").write_text("")
    assert ping.default_gateway(FIXTURES / "route-no-default.txt", tmp_path / "ipv6_route") is None


def test_unreadable_route_tables_raise_oserror(tmp_path: Path) -> None:
    """Both tables missing is an OSError for run() to turn into a Result, not a silent 'no gateway'."""
    with pytest.raises(OSError):  # noqa: PT011  any OSError is the contract; its text is the kernel's
        ping.default_gateway(tmp_path / "absent", tmp_path / "absent6")
    # one missing (a kernel without IPv6, or without IPv4): the other still counts
    assert ping.default_gateway(FIXTURES / "route-three-defaults.txt", tmp_path / "absent6") == "198.51.100.1"


def test_ipv6_default_route_when_ipv4_has_none() -> None:
    """IPv6-only (or IPv4 over ppp without a gateway): the IPv6 default gateway, a link-local one
    with its zone so that it can be pinged. Captured from the kernel (see fixtures/ping/README.md)."""
    v6 = FIXTURES / "ipv6_route-ra-default.txt"
    assert ping.default_gateway(FIXTURES / "route-no-default.txt", v6) == "fe80::c6e9:84ff:fe1a:2b01%wlan0"
    routes = ping.default_routes(FIXTURES / "route-default-no-gateway.txt", v6)
    assert routes == [
        ping.DefaultRoute(4, "eth0", None, 100),
        ping.DefaultRoute(6, "wlan0", "fe80::c6e9:84ff:fe1a:2b01%wlan0", 600),
    ]
    static = FIXTURES / "ipv6_route-static.txt"  # global next hop: no zone; lo's unreachable one left out
    assert ping.default_routes(FIXTURES / "route-no-default.txt", static) == [
        ping.DefaultRoute(6, "eth0", "fd00::1", 1024)
    ]
    # dual stack: IPv4's gateway comes first
    assert ping.default_gateway(FIXTURES / "route-three-defaults.txt", v6) == "198.51.100.1"


def test_odd_interface_name_does_not_spoil_the_table(tmp_path: Path) -> None:
    """Interface names are bytes the kernel does not check; one that is not ASCII costs nothing else."""
    v4 = (FIXTURES / "route-three-defaults.txt").read_bytes().replace(b"\nwan0", b"\nw\xe4n\xff")
    (tmp_path / "route").write_bytes(v4)
    routes = ping.default_routes(tmp_path / "route", FIXTURES / "ipv6_route-ra-default.txt")
    assert [(r.interface, r.gateway) for r in routes] == [
        ("ppp0", None),
        ("w\ufffdn\ufffd", "198.51.100.1"),
        ("wlan0", "10.42.0.254"),
        ("wlan0", "fe80::c6e9:84ff:fe1a:2b01%wlan0"),
    ]


# --- statistics and settings ------------------------------------------------------------------


def test_summary_of_a_partly_lost_run() -> None:
    """Loss counts unanswered packets; jitter is the mean absolute step between consecutive RTTs."""
    stats = ping.summarize("192.0.2.1", "internet", "icmp", 4, [0.010, 0.030, 0.020])
    assert (stats.sent, stats.received, stats.loss_ratio) == (4, 3, 0.25)
    assert (stats.rtt_min_s, stats.rtt_max_s) == (0.010, 0.030)
    assert stats.rtt_avg_s == pytest.approx(0.020)
    assert stats.jitter_s == pytest.approx(0.015)


def test_summary_without_replies_has_no_rtt_values() -> None:
    """At 100% loss the loss ratio is 1.0 and every RTT statistic and jitter is None, never 0."""
    stats = ping.summarize("192.0.2.1", "internet", "tcp", 5, [])
    assert stats.loss_ratio == 1.0
    assert (stats.rtt_min_s, stats.rtt_avg_s, stats.rtt_max_s, stats.jitter_s) == (None, None, None, None)


def test_one_reply_has_rtt_but_no_jitter() -> None:
    """Jitter needs two replies."""
    stats = ping.summarize("192.0.2.1", "gateway", "icmp", 3, [0.004])
    assert stats.rtt_avg_s == 0.004 and stats.jitter_s is None


def test_settings_reject_a_flood_and_a_run_longer_than_its_timeout() -> None:
    """Impossible or abusive settings are refused with their key paths."""
    with pytest.raises(SchemaError) as err:
        parse(ping.Settings, {"count": 0, "packet_interval_s": 0.001, "tcp_port": 70000})
    text = str(err.value)
    assert "count: must be between 1" in text
    assert "packet_interval_s: must be at least" in text
    assert "tcp_port: must be between 1 and 65535" in text
    with pytest.raises(SchemaError, match="not under timeout_s"):
        parse(ping.Settings, {"count": 100, "packet_interval_s": 1.0, "timeout_s": 30})


# --- TCP method on this machine's loopback (no privileges needed) ------------------------------


def test_tcp_connect_to_a_listener_counts_replies() -> None:
    """Forced TCP to a listening port on loopback: every connect is a reply."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        port = server.getsockname()[1]
        settings = ping.Settings(targets=("127.0.0.1",), method="tcp", tcp_port=port, **FAST)
        (result,) = ping.run(settings, context())
    assert result.ok and result.target == "127.0.0.1"
    stats = result.data
    assert (stats.method, stats.role, stats.address) == ("tcp", "internet", "127.0.0.1")
    assert (stats.sent, stats.received, stats.loss_ratio) == (4, 4, 0.0)
    assert 0 < stats.rtt_min_s <= stats.rtt_avg_s <= stats.rtt_max_s
    assert stats.jitter_s is not None


def test_tcp_reset_is_a_reply() -> None:
    """A refused connection (RST) means the host answered: no loss."""
    settings = ping.Settings(targets=("127.0.0.1",), method="tcp", tcp_port=free_port(), **FAST)
    (result,) = ping.run(settings, context())
    assert result.ok and result.data.received == 4 and result.data.loss_ratio == 0.0


def test_cancelled_before_start_sends_nothing() -> None:
    """A run abandoned before it began reports a timeout and no stats, not a 100% loss."""
    ctx = context()
    ctx.cancelled.set()
    settings = ping.Settings(targets=("127.0.0.1",), method="tcp", tcp_port=free_port(), **FAST)
    (result,) = ping.run(settings, ctx)
    assert (result.ok, result.reason, result.data) == (False, "timeout", None)


def test_cancel_during_a_run_stops_it_early() -> None:
    """Setting the cancel flag mid-run stops sending; the packets already answered are kept."""
    ctx = context()
    settings = ping.Settings(
        targets=("127.0.0.1",),
        method="tcp",
        tcp_port=free_port(),
        gateway=False,
        count=1000,
        packet_interval_s=0.01,
        timeout_s=60,
    )
    timer = threading.Timer(0.3, ctx.cancelled.set)
    timer.start()
    try:
        (result,) = ping.run(settings, ctx)
    finally:
        timer.cancel()
    assert result.ok and "cancelled" in result.detail
    assert 0 < result.data.sent < 1000 and result.data.received == result.data.sent


# --- in namespaces ----------------------------------------------------------------------------


@pytest.mark.netns
def test_loopback_over_unprivileged_icmp(namespaces: list[str]) -> None:
    """With ping_group_range open, auto uses an unprivileged ICMP socket: method icmp, no loss."""
    site = Lab(new_namespace(namespaces, "a"), "")
    site.sysctl_ping_group_range(ICMP_ALLOWED)
    result = only(site.probe(targets=["127.0.0.1"], **FAST))
    assert result["ok"] and "unprivileged" in result["detail"]
    data = result["data"]
    assert (data["method"], data["sent"], data["received"], data["loss_ratio"]) == ("icmp", 4, 4, 0.0)
    assert data["rtt_min_s"] > 0 and data["jitter_s"] is not None


@pytest.mark.netns
def test_unprivileged_icmp_works_without_cap_net_raw(namespaces: list[str]) -> None:
    """ping_group_range alone is enough: without CAP_NET_RAW, IPv4 and IPv6 loopback still use ICMP."""
    needs_setpriv()
    site = Lab(new_namespace(namespaces, "a"), "")
    site.sysctl_ping_group_range(ICMP_ALLOWED)
    results = site.probe(*NO_NET_RAW, targets=["127.0.0.1", "::1"], **FAST)
    assert [(r["target"], r["ok"], r["data"]["method"]) for r in results] == [
        ("127.0.0.1", True, "icmp"),
        ("::1", True, "icmp"),
    ]
    assert all("unprivileged" in r["detail"] for r in results)


@pytest.mark.netns
def test_raw_socket_when_ping_group_range_is_closed(lab: Lab) -> None:
    """Root with CAP_NET_RAW but a closed ping_group_range falls back to a raw ICMP socket."""
    lab.sysctl_ping_group_range(ICMP_DENIED)
    result = only(lab.probe(targets=[PEER], **FAST))
    assert result["ok"] and result["data"]["method"] == "icmp" and "raw socket" in result["detail"]
    assert result["data"]["received"] == 4


@pytest.mark.netns
def test_auto_falls_back_to_tcp_without_icmp_permission(lab: Lab) -> None:
    """No ping_group_range and no CAP_NET_RAW: auto times TCP connects; the peer's RST is a reply."""
    needs_setpriv()
    lab.sysctl_ping_group_range(ICMP_DENIED)
    result = only(lab.probe(*NO_NET_RAW, targets=[PEER], tcp_port=9, **FAST))
    assert result["ok"]
    assert (result["data"]["method"], result["data"]["received"], result["data"]["loss_ratio"]) == (
        "tcp",
        4,
        0.0,
    )


@pytest.mark.netns
def test_forced_icmp_without_permission_is_unsupported(lab: Lab) -> None:
    """method icmp where ICMP is not permitted fails with 'unsupported' and says how to allow it."""
    needs_setpriv()
    lab.sysctl_ping_group_range(ICMP_DENIED)
    result = only(lab.probe(*NO_NET_RAW, targets=[PEER], method="icmp", **FAST))
    assert (result["ok"], result["reason"], result["data"]) == (False, "unsupported", None)
    assert "ping_group_range" in result["detail"] and "CAP_NET_RAW" in result["detail"]


@pytest.mark.netns
def test_peer_answers_icmp_and_tcp(lab: Lab) -> None:
    """An address in the peer namespace answers ICMP echo and TCP connects alike."""
    lab.sysctl_ping_group_range(ICMP_ALLOWED)
    icmp = only(lab.probe(targets=[PEER], **FAST))
    tcp = only(lab.probe(targets=[PEER], method="tcp", tcp_port=9, **FAST))
    for result, method in ((icmp, "icmp"), (tcp, "tcp")):
        assert result["ok"] and result["data"]["method"] == method
        assert result["data"]["address"] == PEER and result["data"]["loss_ratio"] == 0.0


@pytest.mark.netns
@pytest.mark.parametrize("method", ["icmp", "tcp"])
def test_silent_address_is_full_loss(lab: Lab, method: str) -> None:
    """An unused address on the link (no ARP answer) loses every packet: ok False, unreachable, no RTTs."""
    lab.sysctl_ping_group_range(ICMP_ALLOWED)
    results = lab.probe(targets=[DEAD, PEER], method=method, tcp_port=9, **FAST)
    dead, alive = results
    assert (dead["target"], dead["ok"], dead["reason"]) == (DEAD, False, "unreachable")
    data = dead["data"]
    assert (data["sent"], data["received"], data["loss_ratio"], data["method"]) == (4, 0, 1.0, method)
    assert (data["rtt_min_s"], data["rtt_avg_s"], data["rtt_max_s"], data["jitter_s"]) == (None,) * 4
    assert alive["ok"] and alive["data"]["received"] == 4  # one dead target does not spoil the others


@pytest.mark.netns
def test_unroutable_address_is_full_loss_with_the_error(lab: Lab) -> None:
    """Packets the kernel refuses to send (an 'unreachable' route) count as sent and lost."""
    lab.sysctl_ping_group_range(ICMP_ALLOWED)
    sh("ip", "-n", lab.site, "route", "add", "unreachable", "10.200.9.0/24")
    result = only(lab.probe(targets=["10.200.9.1"], **FAST))
    assert (result["ok"], result["reason"]) == (False, "unreachable")
    assert (result["data"]["sent"], result["data"]["loss_ratio"]) == (4, 1.0)
    assert "last error" in result["detail"]


@pytest.mark.netns
def test_gateway_found_from_the_default_route_and_pinged(lab: Lab) -> None:
    """With a default route via the peer, target 'gateway' (role gateway) pings the peer's address."""
    lab.sysctl_ping_group_range(ICMP_ALLOWED)
    sh("ip", "-n", lab.site, "route", "add", "default", "via", PEER)
    result = only(lab.probe(**{**FAST, "gateway": True, "targets": []}))
    assert (result["target"], result["ok"]) == ("gateway", True)
    data = result["data"]
    assert (data["role"], data["address"], data["method"], data["received"]) == ("gateway", PEER, "icmp", 4)


@pytest.mark.netns
def test_ipv6_only_site_pings_its_link_local_gateway(lab: Lab) -> None:
    """No IPv4 default route, an IPv6 one via the router's link-local address: the gateway is measured."""
    lab.sysctl_ping_group_range(ICMP_ALLOWED)
    sh("ip", "-n", lab.site, "-6", "addr", "add", "fe80::1/64", "dev", "v0", "nodad")
    sh("ip", "-n", lab.peer, "-6", "addr", "add", "fe80::2/64", "dev", "v1", "nodad")
    sh("ip", "-n", lab.site, "-6", "route", "add", "default", "via", "fe80::2", "dev", "v0")
    result, ipv4 = lab.probe(**{**FAST, "gateway": True, "targets": ["192.0.2.1"]})
    assert (result["target"], result["ok"]) == ("gateway", True), result["detail"]
    data = result["data"]
    assert (data["role"], data["address"], data["received"]) == ("gateway", "fe80::2", 4)
    # an IPv4 target where the way out is IPv6 only: not measured, rather than a line that is down
    assert (ipv4["ok"], ipv4["reason"]) == (False, "unsupported"), ipv4["detail"]
    assert ipv4["detail"].startswith("not measured: the site has an IPv6 way out only")


@pytest.mark.netns
def test_default_route_without_gateway_is_not_measured(lab: Lab) -> None:
    """A point-to-point default route (ppp): no router to ping, which is 'unsupported', not a fault."""
    sh("ip", "-n", lab.site, "route", "add", "default", "dev", "v0")
    gateway = only(lab.probe(**{**FAST, "gateway": True, "targets": []}))
    assert (gateway["ok"], gateway["reason"]) == (False, "unsupported")
    assert gateway["detail"] == "gateway not measured: the default route (v0) has no gateway address to ping"


@pytest.mark.netns
def test_no_default_route_is_an_unreachable_gateway(lab: Lab) -> None:
    """Without a default route the gateway result fails 'unreachable' and says why in plain words."""
    lab.sysctl_ping_group_range(ICMP_ALLOWED)
    results = lab.probe(**{**FAST, "gateway": True, "targets": [PEER]})
    gateway = next(r for r in results if r["target"] == "gateway")
    assert (gateway["ok"], gateway["reason"], gateway["data"]) == (False, "unreachable", None)
    assert "no default route in /proc/net/route or /proc/net/ipv6_route" in gateway["detail"]
    assert next(r for r in results if r["target"] == PEER)["ok"]


@pytest.mark.netns
def test_unresolvable_name_is_a_dns_failure(namespaces: list[str]) -> None:
    """A name under .invalid fails with reason dns; other targets of the run are still measured.

    The namespace has only lo, and /etc/netns/NS/resolv.conf points the resolver at 127.0.0.1, so
    the query cannot leave the namespace.
    """
    site = Lab(new_namespace(namespaces, "a"), "")
    conf = Path("/etc/netns") / site.site
    conf.mkdir(parents=True)
    (conf / "resolv.conf").write_text("nameserver 127.0.0.1\n")
    site.sysctl_ping_group_range(ICMP_ALLOWED)
    name_result, loopback = site.probe(targets=["no-such-site.invalid", "127.0.0.1"], **FAST)
    assert (name_result["target"], name_result["ok"], name_result["reason"]) == (
        "no-such-site.invalid",
        False,
        "dns",
    )
    assert name_result["data"] is None and "did not resolve" in name_result["detail"]
    assert loopback["ok"]
