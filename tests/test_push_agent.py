"""The agent process with push on: one pusher, valid /metrics, every snapshot exactly once in a real receiver.

Catches the double-pusher kind of fault (two pushers on one registry and queue): duplicate metric
families on /metrics, twice as many snapshots, a second writer on the queue.
"""

from __future__ import annotations

import itertools
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from prometheus_client.registry import CollectorRegistry

from agent.push.pusher import THREAD_NAMES, Pusher
from agent.push.queue import QueueError
from agent.push.settings import PushSettings
from tests.support.agentproc import LOOPBACK_PROBES, AgentProcess, site_yaml, start_agent
from tests.support.receivers import Receiver, start_vmauth, wait_until

INTERVAL_S = 0.5
SITE = "nd-14161-tyt"


def thread_names(pid: int) -> list[str]:
    return [p.read_text().strip() for p in Path(f"/proc/{pid}/task").glob("*/comm")]


def queue_samples(agent: AgentProcess) -> float | None:
    m = re.search(r"^hotspot_push_queue_samples\{[^}]*\} (\S+)$", agent.metrics(), re.M)
    return float(m.group(1)) if m else None


def test_second_pusher_or_second_start_is_refused(tmp_path: Path) -> None:
    """Twice the push metrics in one registry, a second start, or a second pusher on one queue all fail."""
    settings = PushSettings(enabled=True, url="http://127.0.0.1:9/api/v1/write")
    registry = CollectorRegistry(auto_describe=False)  # as the agent's
    pusher = Pusher(settings, registry, tmp_path, {"site": "s1"})
    registry.register(pusher.metrics)
    try:
        other = Pusher(settings, registry, tmp_path / "other", {"site": "s1"})
        with pytest.raises(ValueError, match="Duplicated timeseries"):
            registry.register(other.metrics)
        other.queue.close()
        with pytest.raises(QueueError, match="already used by another pusher"):
            Pusher(settings, registry, tmp_path, {"site": "s1"})
        pusher.start()
        with pytest.raises(RuntimeError, match="already started"):
            pusher.start()
    finally:
        pusher.stop()
    Pusher(settings, registry, tmp_path, {"site": "s1"}).queue.close()  # stopped: the queue is free again


@pytest.mark.slow
@pytest.mark.skipif(
    not (shutil.which("promtool") and shutil.which("victoria-metrics")), reason="needs promtool and VM"
)
def test_agent_pushes_each_snapshot_once_across_outage_and_sigkill(tmp_path: Path) -> None:
    """/metrics passes promtool, one pusher thread pair runs, and after an outage with a SIGKILL in it
    the receiver holds every snapshot exactly once, stamped with the wall clock at snapshot time."""
    vm = Receiver("victoria", tmp_path)
    vm.start()
    config = (
        site_yaml(SITE)
        + LOOPBACK_PROBES
        + f"push: {{enabled: true, url: '{vm.write_url}', interval_s: {INTERVAL_S}, min_backoff_s: 0.2,"
        " max_backoff_s: 0.5, timeout_s: 2}\n"
    )
    selector = f'hotspot_agent_clock_seconds{{site="{SITE}"}}'
    agents: list[AgentProcess] = []
    try:
        agents.append(start_agent(config, tmp_path / "agent"))
        first = agents[0]
        wait_until(lambda: len(next(iter(vm.samples(selector).values()), [])) >= 4, 20, "first pushes")
        check = subprocess.run(
            ["promtool", "check", "metrics"], input=first.metrics(), capture_output=True, text=True
        )
        assert check.returncode == 0, check.stdout + check.stderr
        names = thread_names(first.proc.pid)
        assert [names.count(n) for n in THREAD_NAMES] == [1, 1], names

        vm.stop()
        time.sleep(3)
        first.signal(signal.SIGKILL)
        first.proc.wait(10)
        killed_at = time.time()
        agents.append(start_agent(config, tmp_path / "agent"))
        second = agents[1]
        assert [thread_names(second.proc.pid).count(n) for n in THREAD_NAMES] == [1, 1]
        time.sleep(2)
        vm.start()
        wait_until(lambda: queue_samples(second) == 0, 60, "the backlog to drain")
        assert second.stop() == 0
        assert "UNIQUE constraint" not in first.log() + second.log()

        (points,) = vm.samples(selector).values()
        stamps = [t for t, _ in points]
        assert stamps == sorted(set(stamps))  # no snapshot twice
        for ts, value in points:  # stamped with the wall clock of the snapshot that read the value
            assert abs(value - ts / 1000) < 0.25, (ts, value)
        gaps = [(b - a) / 1000 for a, b in itertools.pairwise(stamps)]
        restart = [g for g in gaps if g > 1.5 * INTERVAL_S]
        # One pusher: snapshots 0.5 s apart (two would interleave, making every other gap short); a
        # snapshot late on a loaded machine makes one short gap after it, so a few are allowed.
        assert sum(g < 0.6 * INTERVAL_S for g in gaps) <= max(1, len(gaps) // 10), gaps
        assert len(restart) <= 1 and max(gaps) < 3.0, restart  # the restart's gap only
        before_kill = [t for t in stamps if t < killed_at * 1000]
        assert len(before_kill) >= 2 * (3 + 2) - 2  # the outage's snapshots were kept and delivered
    finally:
        for a in agents:
            a.stop()
        vm.stop()


@pytest.mark.slow
@pytest.mark.skipif(
    not (shutil.which("vmauth") and shutil.which("victoria-metrics")), reason="needs VM and vmauth"
)
def test_agent_with_a_wrong_password_loses_nothing_once_reloaded_with_the_right_one(tmp_path: Path) -> None:
    """The agent pushes through vmauth with a wrong password (refused, kept, metric raised); the file is
    corrected and the agent reloaded (SIGHUP): every snapshot since the start arrives exactly once."""
    vm = Receiver("victoria", tmp_path)
    vm.start()
    vmauth, url = start_vmauth(vm, tmp_path)
    password = tmp_path / "push-password"
    password.write_text("wr0ng-pass-4321\n")
    config = (
        site_yaml(SITE)
        + LOOPBACK_PROBES
        + f"push: {{enabled: true, url: '{url}', interval_s: {INTERVAL_S}, min_backoff_s: 0.2,"
        f" max_backoff_s: 0.5, timeout_s: 2, basic_auth: {{username: nd-13636-ubnd,"
        f" password: {{file: '{password}'}}}}}}\n"
    )
    agent = None
    try:
        agent = start_agent(config, tmp_path / "agent")
        started = time.time()
        wait_until(lambda: "hotspot_push_auth_failing{" in agent.metrics(), 10, "the metric")
        wait_until(
            lambda: (
                re.search(r"^hotspot_push_auth_failing\{[^}]*\} 1\.0$", agent.metrics(), re.M) is not None
            ),
            10,
            "refused pushes",
        )
        time.sleep(2)
        assert vm.samples("hotspot_agent_clock_seconds") == {}
        password.write_text("change-me-13636\n")
        agent.signal(signal.SIGHUP)
        wait_until(lambda: queue_samples(agent) == 0, 30, "the backlog to drain after the reload")
        assert "config reloaded" in agent.log() and "refuses the push credentials" in agent.log()
        assert "wr0ng-pass" not in agent.log() and "change-me" not in agent.log()
        assert agent.stop() == 0
        (points,) = vm.samples("hotspot_agent_clock_seconds").values()
        stamps = [t for t, _ in points]
        assert stamps == sorted(set(stamps))
        assert stamps[0] < (started + 1.5) * 1000  # the snapshots taken while refused are there
        gaps = [(b - a) / 1000 for a, b in itertools.pairwise(stamps)]
        assert max(gaps) < 1.5 * INTERVAL_S + 1.0, max(gaps)  # none lost (the reload's pause at most)
        # one pusher at a time: only the restarted pusher's first snapshot may come early
        assert sum(g < 0.6 * INTERVAL_S for g in gaps) <= 1, gaps
    finally:
        if agent is not None:
            agent.stop()
        vmauth.terminate()
        vmauth.wait(10)
        vm.stop()
