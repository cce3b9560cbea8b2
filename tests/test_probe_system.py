"""The system probe: real values from this machine, and interface counters counted for real in a
network namespace the test creates."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.probes import system
from agent.probes.base import ProbeContext
from agent.schema import SchemaError, parse
from agent.site import Site

ROOT = Path(__file__).resolve().parent.parent


def context(tmp_path: Path) -> ProbeContext:
    return ProbeContext(site=Site(id="lab", commune="Xã Thử", province="Nam Định"), state_dir=tmp_path)


def test_real_values_from_this_machine(tmp_path):
    """CPU, memory, boot time and the agent's own footprint are plausible values, not zeros."""
    (result,) = system.run(system.Settings(cpu_sample_s=0.2), context(tmp_path))
    assert result.ok, result.detail
    assert (result.probe, result.target) == ("system", "")
    s = result.data
    assert 0.0 <= s.cpu_ratio <= 1.0
    assert s.load1 >= 0.0
    assert s.memory_total_bytes > s.memory_available_bytes > 0
    assert 0 < s.boot_time_s < time.time()
    assert s.agent_rss_bytes > 0
    assert s.agent_cpu_s > 0
    ((path, total, free),) = s.disks
    assert path == "/" and total >= free > 0
    assert all(isinstance(name, str) and isinstance(c, float) for name, c in s.temperatures_c)
    json.dumps(result.to_json())


def test_loopback_and_container_interfaces_are_left_out(tmp_path):
    """Interfaces matching the ignore prefixes are absent; with no prefixes, loopback is present."""
    (default,) = system.run(system.Settings(cpu_sample_s=0.1), context(tmp_path))
    assert all(not i.interface.startswith(("lo", "docker", "veth", "br-")) for i in default.data.interfaces)
    (everything,) = system.run(system.Settings(cpu_sample_s=0.1, ignore_interfaces=()), context(tmp_path))
    lo = {i.interface: i for i in everything.data.interfaces}["lo"]
    assert lo.speed_bps is None  # the driver reports no speed: unknown, not 0


def test_a_missing_disk_path_is_left_out_and_named(tmp_path):
    """A disk path that does not exist is skipped and named in the detail; the run still succeeds."""
    missing = str(tmp_path / "no-such-mount")
    (result,) = system.run(system.Settings(cpu_sample_s=0.1, disk_paths=("/", missing)), context(tmp_path))
    assert result.ok
    assert [d[0] for d in result.data.disks] == ["/"]
    assert missing in result.detail


def test_cpu_sample_must_fit_in_the_timeout():
    """A CPU sample window longer than the run's timeout is a config error with its key."""
    with pytest.raises(SchemaError) as err:
        parse(system.Settings, {"cpu_sample_s": 20, "timeout_s": 10})
    assert any(p.startswith("cpu_sample_s") for p in err.value.problems)


# --- interface counters in a network namespace ---------------------------------------------------

PROBE_IN_NS = """
import json
from pathlib import Path
from agent.probes import system
from agent.probes.base import ProbeContext
from agent.site import Site
ctx = ProbeContext(site=Site(id="lab", commune="c", province="p"), state_dir=Path("/tmp"))
(r,) = system.run(system.Settings(cpu_sample_s=0.05), ctx)
print(json.dumps(r.to_json()))
"""


def sh(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=30, check=True)


@pytest.fixture
def veth_pair() -> Iterator[tuple[str, str, str]]:
    """Two namespaces joined by a veth pair (10.201.77.1 <-> .2); yields (ns_a, ns_b, if_a)."""
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    tag = f"hmw{os.getpid()}"
    ns_a, ns_b = f"{tag}a", f"{tag}b"
    # Not "veth..." names: the probe ignores those by default.
    if_a, if_b = f"hmwa{os.getpid()}"[:15], f"hmwb{os.getpid()}"[:15]
    created: list[str] = []
    try:
        for ns in (ns_a, ns_b):
            try:
                sh("ip", "netns", "add", ns)
            except (subprocess.CalledProcessError, FileNotFoundError) as exc:
                pytest.skip(f"ip netns unavailable: {exc}")
            created.append(ns)
        sh("ip", "link", "add", if_a, "netns", ns_a, "type", "veth", "peer", "name", if_b, "netns", ns_b)
        for ns, ifname, addr in ((ns_a, if_a, "10.201.77.1/30"), (ns_b, if_b, "10.201.77.2/30")):
            sh("ip", "-n", ns, "addr", "add", addr, "dev", ifname)
            sh("ip", "-n", ns, "link", "set", ifname, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        yield ns_a, ns_b, if_a
    finally:
        for ns in created:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)


def run_in(ns: str, script: str) -> dict:
    """Run a Python script in namespace `ns`; what it printed, as JSON."""
    out = subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=ROOT,
    )
    return dict(json.loads(out.stdout))


def probe_in(ns: str) -> dict:
    result = run_in(ns, PROBE_IN_NS)
    assert result["ok"], result["detail"]
    return {i["interface"]: i for i in result["data"]["interfaces"]}


def wait_for(ns: str, ifname: str, up: bool) -> dict:
    """Poll (bounded) until the probe sees the link in the wanted state; the last reading."""
    for _ in range(50):
        seen = probe_in(ns)[ifname]
        if seen["up"] is up:
            return seen
        time.sleep(0.1)
    return seen


@pytest.mark.netns
def test_counters_grow_by_the_traffic_sent(veth_pair):
    """After 50 pings of 1400 bytes across the veth, rx and tx bytes grow by at least 70 000 each."""
    ns_a, _, if_a = veth_pair
    before = wait_for(ns_a, if_a, up=True)
    assert before["up"] is True
    assert set(probe_in(ns_a)) == {if_a}  # loopback in the namespace is ignored
    count, size = 50, 1400
    ping = ["ping", "-q", "-c", str(count), "-s", str(size), "-i", "0.01", "-w", "10", "10.201.77.2"]
    sh("ip", "netns", "exec", ns_a, *ping)
    after = probe_in(ns_a)[if_a]
    assert after["tx_bytes"] - before["tx_bytes"] >= count * size
    assert after["rx_bytes"] - before["rx_bytes"] >= count * size
    assert after["tx_packets"] - before["tx_packets"] >= count
    assert after["rx_packets"] - before["rx_packets"] >= count


@pytest.mark.netns
def test_link_state_follows_ip_link_set(veth_pair):
    """Setting the link down shows up=False; setting it up again shows up=True."""
    ns_a, _, if_a = veth_pair
    assert wait_for(ns_a, if_a, up=True)["up"] is True
    sh("ip", "-n", ns_a, "link", "set", if_a, "down")
    assert wait_for(ns_a, if_a, up=False)["up"] is False
    sh("ip", "-n", ns_a, "link", "set", if_a, "up")
    assert wait_for(ns_a, if_a, up=True)["up"] is True


ODD_NAMES_IN_NS = """
import json
from pathlib import Path
from prometheus_client import CollectorRegistry, generate_latest
from agent.metrics import AgentMetrics
from agent.probes import system
from agent.probes.base import ProbeContext
from agent.site import Site
site = Site(id="lab", commune="c", province="p")
(r,) = system.run(system.Settings(cpu_sample_s=0.05), ProbeContext(site=site, state_dir=Path("/tmp")))
metrics = AgentMetrics(site)
metrics.set_probes({"system": system.Settings()})
metrics.record_run("system", [r], 0.0, 0.1)
registry = CollectorRegistry(auto_describe=False)
registry.register(metrics)
print(json.dumps({"result": r.to_json(), "metrics": generate_latest(registry).decode()}))
"""


@pytest.mark.netns
def test_odd_interface_names_spoil_nothing() -> None:
    """The kernel allows any bytes in a name: names that are not UTF-8 are shown with U+FFFD, and
    every interface (and /metrics) is still there; psutil alone failed the whole probe on one."""
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    ns = f"hmo{os.getpid()}"
    try:
        try:
            sh("ip", "netns", "add", ns)
        except (subprocess.CalledProcessError, FileNotFoundError) as exc:
            pytest.skip(f"ip netns unavailable: {exc}")
        for a, b in ((b"w\xe4n0", "v\u00ebth1"), (b"odd\xff", "plain0")):
            ip = [b"ip", b"-n", ns.encode(), b"link"]
            add = [*ip, b"add", a, b"type", b"veth", b"peer", b"name", b.encode()]
            subprocess.run(add, check=True, capture_output=True, timeout=30)
            subprocess.run([*ip, b"set", a, b"up"], check=True, timeout=30)
        sh("ip", "-n", ns, "link", "set", "plain0", "up")
        deadline = time.monotonic() + 5
        while True:
            got = run_in(ns, ODD_NAMES_IN_NS)
            seen = {i["interface"]: i["up"] for i in got["result"]["data"]["interfaces"]}
            if seen.get("odd\ufffd") or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
    assert got["result"]["ok"], got["result"]["detail"]
    assert seen == {"plain0": True, "odd\ufffd": True, "v\u00ebth1": False, "w\ufffdn0": False}
    assert 'interface="odd\ufffd"' in got["metrics"] and 'interface="plain0"' in got["metrics"]
