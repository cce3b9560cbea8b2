"""The lab itself: shaped rate, added delay and loss, name resolution and complete teardown."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.netlab import Lab, unavailable_reason

pytestmark = pytest.mark.netns


@pytest.fixture(scope="module", autouse=True)
def _need_lab() -> None:
    if (why := unavailable_reason()) is not None:
        pytest.skip(why)


def _netns_names() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def _iperf3(lab: Lab, reverse: bool) -> float:
    server = lab.popen(lab.server_ns, ["iperf3", "-s", "-1"], stdout=subprocess.DEVNULL)
    argv = ["iperf3", "-c", lab.server_ip, "-J", "-P", "4", "-t", "3", "-O", "1"]
    for _ in range(50):  # the server needs a moment to listen
        done = lab.run(lab.client_ns, [*argv, *(["-R"] if reverse else [])], timeout=30)
        if "Connection refused" not in done.stdout:
            break
        time.sleep(0.05)
    server.wait(timeout=10)
    return float(json.loads(done.stdout)["end"]["sum_received"]["bits_per_second"])


def _ping(lab: Lab, count: int, interval: str) -> tuple[int, int, float | None]:
    out = lab.run(
        lab.client_ns, ["ping", "-n", "-q", "-c", str(count), "-i", interval, "-W", "1", lab.server_ip]
    ).stdout
    sent, received = map(int, re.search(r"(\d+) packets transmitted, (\d+) received", out).groups())
    avg = re.search(r"= [\d.]+/([\d.]+)/", out)
    return sent, received, float(avg.group(1)) if avg else None


def test_iperf3_reaches_the_goodput_limit_both_ways() -> None:
    """iperf3 across a 50 Mbit/s lab link reads 0.95–0.96 × rate in each direction."""
    with Lab(rate_mbit=50) as lab:
        for reverse in (False, True):
            bps = _iperf3(lab, reverse)
            assert 0.95 * 50e6 <= bps <= 0.962 * 50e6, (reverse, bps)
        assert lab.goodput_limit_bps == pytest.approx(0.956 * 50e6, rel=1e-3)


def test_delay_line_adds_the_configured_round_trip_time() -> None:
    """With rtt_ms=40 a ping's round trip takes 40 ms (plus well under 5 ms of lab overhead), through a
    delay line at real-time priority (a busy machine must not slow the lab's link)."""
    with Lab(rate_mbit=50, rtt_ms=40) as lab:
        sent, received, avg_ms = _ping(lab, 5, "0.1")
        assert lab._delayline is not None and lab.delayline_realtime
        assert os.sched_getscheduler(lab._delayline.pid) == os.SCHED_FIFO
    assert received == sent == 5
    assert avg_ms is not None and 40.0 <= avg_ms <= 45.0


def test_delay_line_drops_packets_with_the_configured_probability() -> None:
    """loss=0.2 drops each crossing with p=0.2, so 1-(0.8)² = 36% of 300 pings are lost (±4.5σ)."""
    with Lab(rate_mbit=50, loss=0.2) as lab:
        sent, received, _ = _ping(lab, 300, "0.005")
        counters = lab.delayline_counters
    lost = sent - received
    assert sent == 300
    assert 108 - 38 <= lost <= 108 + 38  # σ = √(300·0.36·0.64) ≈ 8.3
    # The delay line's own counters agree: it forwarded what was not lost.
    assert counters["lost"] > 0 and counters["forwarded"] >= received * 2


def test_no_delay_line_without_delay_or_loss() -> None:
    """A lab without delay or loss forwards in the kernel only: ping stays far below 1 ms."""
    with Lab(rate_mbit=50) as lab:
        _, received, avg_ms = _ping(lab, 3, "0.05")
        assert lab.delayline_counters == {}
    assert received == 3 and avg_ms is not None and avg_ms < 1.0


def test_hosts_resolve_inside_the_namespace_only() -> None:
    """hosts() makes a name resolve to the lab server for commands run in that namespace."""
    with Lab(rate_mbit=50) as lab:
        lab.hosts(lab.client_ns, {"www.speedtest.net": lab.server_ip})
        inside = lab.run(lab.client_ns, ["getent", "hosts", "www.speedtest.net"]).stdout
        server_side = lab.run(lab.server_ns, ["getent", "hosts", "www.speedtest.net"])
    assert inside.split()[0] == lab.server_ip
    # The server namespace has no such entry and its resolver is its own (empty) loopback.
    assert server_side.returncode != 0


def test_inside_moves_this_thread_into_the_client_namespace() -> None:
    """lab.inside(client_ns) lets in-process code connect to a server in the server namespace."""
    home = os.readlink("/proc/thread-self/ns/net")
    with Lab(rate_mbit=50) as lab:
        server = lab.popen(
            lab.server_ns,
            [
                "python3",
                "-c",
                "import socket,time; s=socket.create_server(('0.0.0.0', 8099)); "
                "c,_=s.accept(); c.sendall(b'hello'); time.sleep(1)",
            ],
        )
        with lab.inside(lab.client_ns):
            for _ in range(100):
                try:
                    conn = socket.create_connection((lab.server_ip, 8099), timeout=2)
                    break
                except ConnectionRefusedError:
                    time.sleep(0.05)
            assert conn.recv(5) == b"hello"
            conn.close()
        server.wait(timeout=5)
        # Back home: compared by namespace identity, never by sending traffic from the host namespace.
        assert os.readlink("/proc/thread-self/ns/net") == home


def test_teardown_removes_everything_even_after_an_error() -> None:
    """Leaving the lab by an exception kills its processes and removes namespaces and /etc/netns."""
    # The block builds the lab and raises inside it: that whole path is what is tested.
    with pytest.raises(RuntimeError, match="boom"), Lab(rate_mbit=10, rtt_ms=10) as lab:  # noqa: PT012
        lab.hosts(lab.client_ns, {"example.test": lab.server_ip})
        sleeper = lab.popen(lab.server_ns, ["sleep", "60"])
        names = set(lab.namespaces)
        assert names <= _netns_names()
        raise RuntimeError("boom")
    assert not names & _netns_names()
    assert sleeper.poll() is not None
    assert not any((Path("/etc/netns") / ns).exists() for ns in names)


def test_bad_parameters_are_refused_before_anything_is_built() -> None:
    """A non-positive rate or a loss outside [0, 1) is a ValueError, and no namespace is made."""
    before = _netns_names()
    with pytest.raises(ValueError, match="rate_mbit"):
        Lab(rate_mbit=0)
    with pytest.raises(ValueError, match="loss"):
        Lab(loss=1.5)
    assert _netns_names() == before


def test_a_killed_runs_leftovers_are_swept() -> None:
    """A namespace named after a process that no longer exists is removed when a new lab starts."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = f"hmlab{dead.pid}x0c"
    subprocess.run(["ip", "netns", "add", stale], check=True)
    try:
        with Lab(rate_mbit=10):
            assert stale not in _netns_names()
    finally:
        subprocess.run(["ip", "netns", "del", stale], capture_output=True)
