"""The DNS probe against real DNS servers on loopback: dnsmasq, and a small server that misbehaves."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.config import ConfigError, loads
from agent.probes import dns
from agent.probes.base import ProbeContext
from agent.site import Site
from tests.support.dnsserver import DnsServer, Zone, dnsmasq

FIXTURES = Path(__file__).parent / "fixtures" / "dns"
SITE_YAML = "site: {id: nd-13636-ubnd, commune: Xã Giao Minh, province: Nam Định}\n"


@pytest.fixture
def context(tmp_path: Path) -> ProbeContext:
    return ProbeContext(site=Site(id="t", commune="c", province="p"), state_dir=tmp_path)


@pytest.fixture(scope="module")
def resolver() -> Iterator[str]:
    """A real dnsmasq: ok.test and its subdomains are 192.0.2.7, other .test names do not exist."""
    with dnsmasq(["--address=/ok.test/192.0.2.7", "--local=/test/"]) as address:
        yield address


def settings(resolvers: tuple[str, ...], names: tuple[str, ...], **kw: object) -> dns.Settings:
    kw.setdefault("query_timeout_s", 1.0)
    return dns.Settings(resolvers=resolvers, names=names, **kw)  # type: ignore[arg-type]


def one(results: list) -> Any:
    assert len(results) == 1
    return results[0]


def test_success_gives_addresses_and_lookup_time(resolver: str, context: ProbeContext) -> None:
    """A NOERROR answer with A records is a success carrying the addresses and the time to the reply."""
    r = one(dns.run(settings((resolver,), ("ok.test",)), context))
    assert r.ok and r.reason is None
    assert r.target == f"{resolver}/ok.test"
    assert r.data.rcode == "NOERROR"
    assert r.data.addresses == ("192.0.2.7",)
    assert r.data.lookup_s is not None and 0 < r.data.lookup_s < 1.0
    assert r.data.server == resolver and r.data.transport == "udp"


def test_one_result_per_resolver_and_name(resolver: str, context: ProbeContext) -> None:
    """Every (resolver, name) pair gets its own Result, targeted RESOLVER/NAME, in config order."""
    with DnsServer({"ok.test": Zone(addresses=("192.0.2.9",))}) as small:
        results = dns.run(settings((resolver, small.address), ("ok.test", "www.ok.test")), context)
    assert [r.target for r in results] == [
        f"{resolver}/ok.test",
        f"{resolver}/www.ok.test",
        f"{small.address}/ok.test",
        f"{small.address}/www.ok.test",
    ]
    assert [r.ok for r in results] == [True, True, True, False]
    assert results[2].data.addresses == ("192.0.2.9",)


def test_nxdomain_is_a_dns_failure_with_rcode(resolver: str, context: ProbeContext) -> None:
    """NXDOMAIN fails with reason dns, keeps the rcode and says it in plain words."""
    r = one(dns.run(settings((resolver,), ("nosuch.test",)), context))
    assert not r.ok and r.reason == "dns"
    assert r.data.rcode == "NXDOMAIN" and r.data.addresses == ()
    assert r.detail == f"dns: NXDOMAIN for nosuch.test from {resolver}"


@pytest.mark.parametrize("rcode", ["SERVFAIL", "REFUSED"])
def test_error_rcodes_are_dns_failures(rcode: str, context: ProbeContext) -> None:
    """SERVFAIL and REFUSED fail with reason dns and the rcode recorded."""
    with DnsServer({"x.vn": Zone(rcode=rcode)}) as server:
        r = one(dns.run(settings((server.address,), ("x.vn",)), context))
    assert (r.ok, r.reason, r.data.rcode) == (False, "dns", rcode)
    assert r.detail == f"dns: {rcode} for x.vn from {server.address}"


def test_noerror_without_address_is_a_failure(context: ProbeContext) -> None:
    """NOERROR with an empty answer section (no A record) is not a success."""
    with DnsServer({"empty.vn": Zone()}) as server:
        r = one(dns.run(settings((server.address,), ("empty.vn",)), context))
    assert (r.ok, r.reason, r.data.rcode) == (False, "dns", "NOERROR")
    assert "no address" in r.detail


def test_silent_resolver_times_out(context: ProbeContext) -> None:
    """A resolver that takes the query and never answers is a timeout with no lookup time."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        r = one(dns.run(settings((address,), ("ok.test",), query_timeout_s=0.3), context))
        assert silent.recv(512)  # the query did arrive
    assert (r.ok, r.reason) == (False, "timeout")
    assert r.data.lookup_s is None and r.data.rcode == ""
    assert "within 0.3 s" in r.detail


def test_closed_port_is_refused(context: ProbeContext) -> None:
    """Nothing listening (ICMP port unreachable on loopback) is reported as refused, not a timeout."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{s.getsockname()[1]}"
    r = one(dns.run(settings((address,), ("ok.test",)), context))
    assert (r.ok, r.reason) == (False, "refused")


@pytest.mark.parametrize("behaviour", ["garbage", "garbage_same_id", "other_question"])
def test_garbage_reply_is_protocol(behaviour: str, context: ProbeContext) -> None:
    """A reply that is not DNS, is cut short, or answers another question is a protocol failure."""
    with DnsServer({"bad.vn": Zone(addresses=("192.0.2.1",), behaviour=behaviour)}) as server:
        r = one(dns.run(settings((server.address,), ("bad.vn",), query_timeout_s=0.3), context))
    assert (r.ok, r.reason) == (False, "protocol")
    assert r.data.addresses == () and r.data.lookup_s is None
    assert "not valid DNS" in r.detail


def test_truncated_reply_is_asked_again_over_tcp(context: ProbeContext) -> None:
    """A UDP reply with TC set makes the probe ask over TCP and use that answer."""
    with DnsServer({"big.vn": Zone(addresses=("192.0.2.1", "192.0.2.2"), behaviour="truncate")}) as server:
        r = one(dns.run(settings((server.address,), ("big.vn",)), context))
        transports = [q[0] for q in server.queries]
    assert r.ok and r.data.transport == "tcp"
    assert r.data.addresses == ("192.0.2.1", "192.0.2.2")
    assert transports == ["udp", "tcp"]


def test_query_asks_recursion_and_follows_cname(context: ProbeContext) -> None:
    """The query sets RD; addresses reached through a CNAME chain count, with compressed names."""
    zones = {"www.x.vn": Zone(cname="cdn.x.vn"), "cdn.x.vn": Zone(addresses=("192.0.2.5",))}
    with DnsServer(zones) as server:
        r = one(dns.run(settings((server.address,), ("WWW.x.vn",)), context))
        flags = server.queries[0][2]
    assert flags & 0x0100  # recursion desired
    assert r.ok and r.data.addresses == ("192.0.2.5",)


def test_parses_captured_dnsmasq_reply() -> None:
    """A reply captured from dnsmasq (CNAME plus two A records, compression pointers) parses fully."""
    reply = (FIXTURES / "dnsmasq-cname-www.alias.test-id4242.bin").read_bytes()
    _flags, rcode, addresses = dns.parse_reply(reply, 0x4242, "www.alias.test")
    assert rcode == "NOERROR"
    assert addresses == ("192.0.2.7", "192.0.2.8")
    with pytest.raises(dns.ProtocolError):
        dns.parse_reply(reply, 0x4243, "www.alias.test")
    with pytest.raises(dns.ProtocolError):
        dns.parse_reply(reply, 0x4242, "other.test")
    with pytest.raises(dns.ProtocolError):
        dns.parse_reply(reply[:-3], 0x4242, "www.alias.test")


def test_compression_pointer_loop_is_protocol() -> None:
    """A name whose compression pointer points at itself is rejected, not followed forever."""
    header = bytes.fromhex("4242 8180 0001 0000 0000 0000".replace(" ", ""))
    with pytest.raises(dns.ProtocolError, match="loop"):
        dns.parse_reply(header + b"\xc0\x0c\x00\x01\x00\x01", 0x4242, "x.vn")


def test_system_resolver_is_first_nameserver_of_resolv_conf(tmp_path: Path, context: ProbeContext) -> None:
    """ "system" asks the first nameserver line of the given resolv.conf (port 53)."""
    pid = os.getpid()
    host = f"127.53.{pid // 250 % 250 + 1}.{pid % 250 + 1}"  # a loopback address of this test's own
    try:
        server = DnsServer({"ok.test": Zone(addresses=("192.0.2.53",))}, host=host, port=53)
        server.__enter__()
    except PermissionError:
        pytest.skip("binding port 53 needs root")
    try:
        conf = tmp_path / "resolv.conf"
        conf.write_text(
            f"# written by the test\nsearch example.org\nnameserver {host}\nnameserver 127.0.0.2\n"
        )
        r = one(dns.run(settings(("system",), ("ok.test",), resolv_conf=str(conf)), context))
    finally:
        server.__exit__()
    assert r.ok and r.target == "system/ok.test"
    assert r.data.resolver == "system" and r.data.server == f"{host}:53"
    assert r.data.addresses == ("192.0.2.53",)


@pytest.mark.parametrize("text", ["", "# no servers\nsearch example.org\n"])
def test_system_without_nameserver_fails_clearly(text: str, tmp_path: Path, context: ProbeContext) -> None:
    """A resolv.conf without a nameserver line is a dns failure that says so, not a crash."""
    conf = tmp_path / "resolv.conf"
    conf.write_text(text)
    r = one(dns.run(settings(("system",), ("ok.test",), resolv_conf=str(conf)), context))
    assert (r.ok, r.reason) == (False, "dns")
    assert f"no nameserver line in {conf}" in r.detail
    assert r.data.lookup_s is None


def test_ipv6_loopback_resolver_is_asked(context: ProbeContext) -> None:
    """A resolver on ::1, given as [::1]:PORT, answers over IPv6 (UDP, then TCP when truncated)."""
    zones = {
        "ok.test": Zone(addresses=("192.0.2.61",)),
        "big.test": Zone(("192.0.2.62",), behaviour="truncate"),
    }
    try:
        server = DnsServer(zones, host="::1").__enter__()
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback: {exc}")
    try:
        results = dns.run(settings((server.address,), ("ok.test", "big.test")), context)
    finally:
        server.__exit__()
    assert [(r.ok, r.data.addresses, r.data.transport) for r in results] == [
        (True, ("192.0.2.61",), "udp"),
        (True, ("192.0.2.62",), "tcp"),
    ], [r.detail for r in results]
    assert results[0].data.server == f"[::1]:{server.port}"


def test_link_local_nameserver_keeps_its_zone(tmp_path: Path) -> None:
    """resolv.conf's `nameserver fe80::1%eth0` and a configured [fe80::1%eth0]:53 keep the zone, which
    becomes the scope id at connect (without it every run failed "Invalid argument")."""
    conf = tmp_path / "resolv.conf"
    conf.write_text("nameserver fe80::1%eth0\nnameserver 192.0.2.53\n")
    assert dns.resolve_server("system", conf) == ("fe80::1%eth0", 53)
    assert dns.parse_resolver("[fe80::1%eth0]:5353") == ("fe80::1%eth0", 5353)
    assert loads(SITE_YAML + "probes: {dns: {resolvers: ['[fe80::1%eth0]:53', 'fe80::1%lo']}}\n")
    family, address = dns.socket_address(("fe80::1%lo", 53))
    assert (family, address) == (socket.AF_INET6, ("fe80::1", 53, 0, socket.if_nametoindex("lo")))
    with pytest.raises(OSError, match="no interface 'nosuch0' here"):
        dns.socket_address(("fe80::1%nosuch0", 53))


LINK_LOCAL_IN_NS = """
import json, sys
from pathlib import Path
from agent.probes import dns
from agent.probes.base import ProbeContext
from agent.site import Site
from tests.support.dnsserver import DnsServer, Zone
conf = Path(sys.argv[1])
ctx = ProbeContext(site=Site(id="t", commune="c", province="p"), state_dir=conf.parent)
with DnsServer({"ok.test": Zone(addresses=("192.0.2.77",))}, host="fe80::53%lo", port=53):
    s = dns.Settings(resolvers=("system", "[fe80::53%lo]:53"), names=("ok.test",), resolv_conf=str(conf))
    print(json.dumps([r.to_json() for r in dns.run(s, ctx)]))
"""


@pytest.mark.netns
def test_link_local_resolver_with_zone_answers(tmp_path: Path) -> None:
    """A real query to a link-local nameserver with a zone, in a namespace of the test's own."""
    import json
    import subprocess
    import sys

    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    ns = f"hmd{os.getpid()}"
    conf = tmp_path / "resolv.conf"
    conf.write_text("nameserver fe80::53%lo\n")
    try:
        for cmd in (["ip", "netns", "add", ns], ["ip", "-n", ns, "link", "set", "lo", "up"]):
            subprocess.run(cmd, check=True, capture_output=True, timeout=30)
        addr = ["ip", "-n", ns, "-6", "addr", "add", "fe80::53/64", "dev", "lo", "nodad"]
        subprocess.run(addr, check=True, capture_output=True, timeout=30)
        out = subprocess.run(
            ["ip", "netns", "exec", ns, sys.executable, "-c", LINK_LOCAL_IN_NS, str(conf)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=Path(__file__).resolve().parent.parent,
        )
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
    assert out.returncode == 0, out.stderr
    results = json.loads(out.stdout)
    assert [(r["ok"], r["data"]["addresses"]) for r in results] == [(True, ["192.0.2.77"])] * 2, results


def test_cancelled_run_asks_nothing(context: ProbeContext) -> None:
    """When the scheduler has abandoned the run, no query is sent and each lookup reads as a timeout."""
    context.cancelled.set()
    with DnsServer({"ok.test": Zone(addresses=("192.0.2.1",))}) as server:
        results = dns.run(settings((server.address,), ("ok.test", "ok2.test")), context)
        assert server.queries == []
    assert [(r.ok, r.reason) for r in results] == [(False, "timeout")] * 2


def test_config_rejects_bad_resolvers_with_key_path() -> None:
    """Resolvers that are not system/ADDRESS/ADDRESS:PORT/[v6]:PORT are config errors naming the key."""
    resolvers = "[system, dns.google, '1.1.1.1:99999', '[::1]', 127.0.0.1:0, 8.8.8.8]"
    text = SITE_YAML + f"probes:\n  dns:\n    resolvers: {resolvers}\n"
    with pytest.raises(ConfigError) as err:
        loads(text)
    problems = err.value.problems
    assert [p.split(":")[0] for p in problems] == [
        "probes.dns.resolvers[1]",
        "probes.dns.resolvers[2]",
        "probes.dns.resolvers[3]",
        "probes.dns.resolvers[4]",
    ]
    assert problems[0].startswith("probes.dns.resolvers[1]: not an address")
    assert problems[1] == "probes.dns.resolvers[2]: port out of range: a resolver's port is 1-65535"


def test_config_accepts_every_resolver_form() -> None:
    """system, bare IPv4/IPv6, ADDRESS:PORT and [IPv6]:PORT are all valid resolvers."""
    forms = ["system", "9.9.9.9", "2001:db8::53", "127.0.0.1:5353", "[::1]:5353"]
    config = loads(SITE_YAML + f"probes:\n  dns:\n    resolvers: {forms}\n")
    assert config.probes.dns.resolvers == tuple(forms)
    assert [dns.parse_resolver(f) for f in forms] == [
        None,
        ("9.9.9.9", 53),
        ("2001:db8::53", 53),
        ("127.0.0.1", 5353),
        ("::1", 5353),
    ]


def test_config_checks_query_timeout() -> None:
    """A query timeout that is not positive, or not below the run's timeout, is a config error."""
    text = SITE_YAML + "probes:\n  dns:\n    timeout_s: 5\n    query_timeout_s: 5\n    names: ['bad name']\n"
    with pytest.raises(ConfigError) as err:
        loads(text)
    assert err.value.problems == [
        "probes.dns.names[0]: not a host name or address",
        "probes.dns.query_timeout_s: must be less than timeout_s (the whole run's limit)",
    ]
