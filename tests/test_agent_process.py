"""The agent as a process: SIGHUP reloads (refusing a broken config), SIGTERM stops cleanly."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.support.agentproc import LOOPBACK_PROBES, AgentProcess, site_yaml, start_agent
from tests.support.legacy_text import cp1258
from tests.support.ports import free_port


def sample(agent: AgentProcess, name: str, **labels: str) -> float | None:
    for line in agent.metrics().splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def wait_until(check, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return False


def test_sighup_with_broken_config_keeps_old_one(tmp_path: Path) -> None:
    """A broken config on SIGHUP is refused with a log line and a metric; the old config keeps running."""
    agent = start_agent(site_yaml("nd-1") + LOOPBACK_PROBES, tmp_path)
    try:
        assert sample(agent, "hotspot_config_last_reload_successful", site="nd-1") == 1
        good = agent.config_path.read_text()
        agent.config_path.write_text(good.replace("count: 3", "count: three"))
        agent.signal(signal.SIGHUP)
        assert wait_until(lambda: sample(agent, "hotspot_config_reloads_total", result="failure") == 1)
        assert sample(agent, "hotspot_config_last_reload_successful", site="nd-1") == 0
        assert "probes.ping.count: must be a whole number" in agent.log()
        runs = sample(agent, "hotspot_probe_runs_total", probe="ping") or 0
        assert wait_until(lambda: (sample(agent, "hotspot_probe_runs_total", probe="ping") or 0) > runs, 15)
        # a valid config with a new identity is taken
        agent.config_path.write_text(good.replace("nd-1", "nd-2"))
        agent.signal(signal.SIGHUP)
        assert wait_until(
            lambda: sample(agent, "hotspot_config_reloads_total", site="nd-2", result="success") == 1
        )
        assert sample(agent, "hotspot_config_last_reload_successful", site="nd-2") == 1
        assert agent.proc.poll() is None
    finally:
        code = agent.stop()
    assert code == 0


def test_sighup_with_cp1258_or_binary_config_keeps_serving(tmp_path: Path) -> None:
    """A config saved as cp1258, then random binary, on SIGHUP: refused and logged, /metrics stays."""
    agent = start_agent(site_yaml("nd-1") + LOOPBACK_PROBES, tmp_path)
    try:
        good = agent.config_path.read_text(encoding="utf-8")
        cases = [
            (cp1258(good), "not UTF-8 text: byte 0xf2 at line 1, column 28"),
            (bytes(range(256)), "binary content"),
        ]
        for n, (content, said) in enumerate(cases, 1):
            agent.config_path.write_bytes(content)
            agent.signal(signal.SIGHUP)
            assert wait_until(
                lambda n=n: sample(agent, "hotspot_config_reloads_total", result="failure") == n
            )
            assert said in agent.log()
            assert sample(agent, "hotspot_config_last_reload_successful", site="nd-1") == 0
        runs = sample(agent, "hotspot_probe_runs_total", probe="ping") or 0
        assert wait_until(lambda: (sample(agent, "hotspot_probe_runs_total", probe="ping") or 0) > runs, 15)
        assert agent.proc.poll() is None
    finally:
        code = agent.stop()
    assert code == 0
    assert "Traceback" not in agent.log()


def test_sighup_to_a_listen_address_the_host_refuses_keeps_serving(tmp_path: Path) -> None:
    """A valid config whose new /metrics address is taken: the reload is refused, the old listener
    serves again and the agent keeps running (it used to exit)."""
    first = free_port()
    config = site_yaml("nd-1") + LOOPBACK_PROBES
    agent = start_agent(config + f"exposition: {{listen: '127.0.0.1:{first}'}}\n", tmp_path, listen=None)
    taken = socket.socket()
    try:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        agent.config_path.write_text(
            config + f"exposition: {{listen: '127.0.0.1:{busy}'}}\nstate_dir: {tmp_path / 'agent-state'}\n",
            encoding="utf-8",
        )
        agent.signal(signal.SIGHUP)
        assert wait_until(lambda: "cannot serve /metrics" in agent.log(), 10), agent.log()
        assert agent.proc.poll() is None
        assert wait_until(lambda: sample(agent, "hotspot_config_reloads_total", result="failure") == 1)
        assert f"127.0.0.1:{first}" in agent.url
        assert "Traceback" not in agent.log()
    finally:
        taken.close()
        assert agent.stop() == 0


def test_sigterm_stops_cleanly_and_healthz(tmp_path: Path) -> None:
    """/healthz reports the schedule; SIGTERM ends the agent with exit code 0 and a log line."""
    agent = start_agent(site_yaml("nd-3") + LOOPBACK_PROBES, tmp_path)
    try:
        with urllib.request.urlopen(agent.url + "/healthz", timeout=5) as resp:
            body = resp.read().decode()
        assert resp.status == 200 and '"site": "nd-3"' in body and '"ping"' in body
    finally:
        code = agent.stop()
    assert code == 0
    assert "agent stopped" in agent.log()
    assert "Traceback" not in agent.log()


@pytest.mark.parametrize(
    ("listen", "message"), [("nonsense", "not HOST:PORT"), ("127.0.0.1:70000", "port out of range")]
)
def test_run_with_a_bad_listen_argument_exits_2(tmp_path: Path, listen: str, message: str) -> None:
    """`run --listen` that is no HOST:PORT is a usage error with its reason, not a traceback."""
    good = tmp_path / "agent.yaml"
    good.write_text(site_yaml("nd-1") + f"state_dir: {tmp_path / 'state'}\n", encoding="utf-8")
    res = subprocess.run(
        [sys.executable, "-m", "agent.cli", "run", "--config", str(good), "--listen", listen],
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert res.returncode == 2
    assert f"--listen {listen}: {message}" in res.stderr and "Traceback" not in res.stderr


def test_run_with_invalid_config_exits_2(tmp_path: Path) -> None:
    """`run` with a broken config prints every problem and exits 2, no traceback."""
    import subprocess
    import sys

    bad = tmp_path / "bad.yaml"
    bad.write_text("site: {id: BAD}\n")
    res = subprocess.run(
        [sys.executable, "-m", "agent.cli", "run", "--config", str(bad)],
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert res.returncode == 2
    assert re.search(r"site\.id: must be", res.stderr) and "site.province: required" in res.stderr
    assert "Traceback" not in res.stderr


def test_unusable_push_queue_stops_start_with_clear_error(tmp_path: Path) -> None:
    """A push queue that cannot be opened ends the start before anything runs: exit 2 (check-config
    says the same), the key and a plain message, no traceback."""
    import subprocess
    import sys

    state = tmp_path / "state"
    (state / "push-queue.sqlite").mkdir(parents=True)  # a directory where the database should be
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        site_yaml("nd-4")
        + LOOPBACK_PROBES
        + f"state_dir: {state}\npush: {{enabled: true, url: 'http://127.0.0.1:9/api/v1/write'}}\n"
    )
    res = subprocess.run(
        [sys.executable, "-m", "agent.cli", "run", "--config", str(cfg), "--listen", "127.0.0.1:0"],
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert res.returncode == 2
    assert f"  state_dir: {state / 'push-queue.sqlite'} is not a file" in res.stderr
    assert "Traceback" not in res.stderr


def test_sighup_names_what_needs_a_restart_and_applies_the_rest(tmp_path: Path) -> None:
    """A reload that moves state_dir: applied where it can be (log level, basic auth under --listen),
    one log line names state_dir, hotspot_config_restart_required says so until the file agrees again."""
    port = free_port()
    base = site_yaml("nd-1") + LOOPBACK_PROBES
    first = f"state_dir: {tmp_path / 'state-a'}\n"
    agent = start_agent(base + first, tmp_path, listen=f"127.0.0.1:{port}")
    try:
        assert sample(agent, "hotspot_config_restart_required", site="nd-1") == 0
        agent.config_path.write_text(
            base
            + f"state_dir: {tmp_path / 'state-b'}\nlog_level: debug\n"
            + "exposition: {basic_auth: {username: prometheus, password: a-long-scrape-secret}}\n",
            encoding="utf-8",
        )
        agent.signal(signal.SIGHUP)
        assert wait_until(lambda: "needs a restart" in agent.log()), agent.log()
        line = next(x for x in agent.log().splitlines() if "needs a restart" in x)
        assert f"state_dir (running: {tmp_path / 'state-a'}, file: {tmp_path / 'state-b'})" in line
        with pytest.raises(urllib.error.HTTPError) as refused:  # basic auth now, on the same --listen port
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5)
        assert refused.value.code == 401
        assert "DEBUG" in agent.log()  # the scrape just refused is logged at the new level
        agent.config_path.write_text(base + first, encoding="utf-8")
        agent.signal(signal.SIGHUP)
        assert wait_until(lambda: "config reloaded" in agent.log().rsplit("needs a restart", 1)[1])
        assert sample(agent, "hotspot_config_reloads_total", result="success") == 2
        assert sample(agent, "hotspot_config_restart_required", site="nd-1") == 0
        assert sample(agent, "hotspot_config_last_reload_successful", site="nd-1") == 1
        assert not (tmp_path / "state-b").exists()
    finally:
        assert agent.stop() == 0
