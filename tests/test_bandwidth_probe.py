"""The bandwidth probe: engine choice, data budget across restarts, broken state dirs, deferral."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import time_machine

from agent.bandwidth.budget import FILE_NAME, Budget
from agent.probes import bandwidth
from agent.probes.base import ProbeContext
from agent.schema import SchemaError, Secret, parse
from agent.site import Site
from collector.speedtest_server import ServerSettings, SpeedtestServer, serve

ROOT = Path(__file__).resolve().parent.parent
SITE = Site(id="t-1", commune="Xã Thử", province="Nam Định")
GB = 1_000_000_000


@pytest.fixture
def server() -> Iterator[SpeedtestServer]:
    s = serve("127.0.0.1", 0, ServerSettings(test_only_pace_bps=40e6, token="tok"))
    threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    yield s
    s.shutdown()
    s.server_close()


def settings(url: str, **kw: object) -> bandwidth.Settings:
    base: dict[str, object] = {
        "server": url,
        "token": Secret("tok"),
        "max_duration_s": 10.0,
        "defer_threshold_bytes_per_s": 0,
    }
    return bandwidth.Settings(**{**base, **kw})  # type: ignore[arg-type]


def run_once(s: bandwidth.Settings, state_dir: Path) -> bandwidth.Result:
    (result,) = bandwidth.run(s, ProbeContext(SITE, state_dir))
    return result


def test_measures_and_pays_the_budget_across_restarts(server: SpeedtestServer, tmp_path: Path) -> None:
    """Two runs with one state dir: both measured, the second sees the first's bytes in the budget."""
    first = run_once(settings(server.url), tmp_path)
    assert first.ok and first.reason is None, first.detail
    assert first.data.outcome == "measured"
    paid = first.data.test.download_bytes + first.data.test.upload_bytes
    assert first.data.budget.used_bytes == paid > 0
    assert first.data.budget.remaining_bytes == 30_000_000_000 - paid
    second = run_once(settings(server.url), tmp_path)  # a new run reads the file afresh
    assert (
        second.data.budget.used_bytes
        == paid + second.data.test.download_bytes + second.data.test.upload_bytes
    )
    saved = json.loads((tmp_path / FILE_NAME).read_text())
    assert saved["used_bytes"] == second.data.budget.used_bytes and saved["used_known"] is True
    assert json.dumps(second.to_json())  # the CLI's --json output works


def test_exhausted_budget_skips_without_traffic(server: SpeedtestServer, tmp_path: Path) -> None:
    """When the budget cannot pay a test's worst case, the run is skipped and counted, no bytes move."""
    result = run_once(settings(server.url, monthly_budget_bytes=100_000_000, max_bytes=60_000_000), tmp_path)
    assert not result.ok and result.reason == "limit"
    assert result.data.outcome == "skipped" and result.data.test is None
    assert result.data.budget.remaining_bytes == 100_000_000
    assert "budget" in result.detail
    assert server.metrics.registry.get_sample_value("hotspot_speedtest_server_sent_bytes_total") == 0


def test_zero_budget_is_unlimited(server: SpeedtestServer, tmp_path: Path) -> None:
    """monthly_budget_bytes 0 never skips and reports no remaining figure."""
    result = run_once(settings(server.url, monthly_budget_bytes=0, max_duration_s=3.0), tmp_path)
    assert result.data.outcome in ("measured", "failed")
    assert result.data.budget.remaining_bytes is None and result.data.budget.used_bytes > 0


def test_corrupt_budget_file_is_reported_and_testing_goes_on(server: SpeedtestServer, tmp_path: Path) -> None:
    """A corrupt budget file is moved aside, reported, and the month's count restarts marked unknown."""
    (tmp_path / FILE_NAME).write_text("{not json")
    result = run_once(settings(server.url), tmp_path)
    assert result.ok, result.detail
    assert result.data.budget.used_known is False
    assert "unreadable" in result.data.budget.problem
    assert (tmp_path / f"{FILE_NAME}.corrupt").read_text() == "{not json"
    assert json.loads((tmp_path / FILE_NAME).read_text())["used_known"] is False


@pytest.mark.parametrize(
    "content", ['{"month": "2025-13x", "used_bytes": 1}', '{"month": "2025-01", "used_bytes": -5}', "[]"]
)
def test_budget_file_with_wrong_fields_counts_as_corrupt(tmp_path: Path, content: str) -> None:
    """Valid JSON with wrong fields is corrupt too, not a silently wrong budget."""
    (tmp_path / FILE_NAME).write_text(content)
    status = Budget(tmp_path, 1000).status()
    assert status.used_known is False and status.used_bytes == 0 and status.problem


def test_new_month_resets_the_count(tmp_path: Path) -> None:
    """Bytes counted in an earlier month do not count against this one."""
    (tmp_path / FILE_NAME).write_text('{"month": "2025-06", "used_bytes": 999, "used_known": true}')
    assert Budget(tmp_path, 1000).status().used_bytes == 0


def test_a_budget_month_never_moves_backwards(tmp_path: Path) -> None:
    """A clock stepped back (or reading 1970) keeps the stored month's count; a later month resets it."""
    november, december = 1795_000_000.0, 1797_000_000.0  # 2026-11-18 and 2026-12-11 (UTC)
    Budget(tmp_path, 100 * GB, clock=lambda: november).spend(25 * GB)
    for wrong in (0.0, november - 40 * 86400):  # 1970, and one month back
        status = Budget(tmp_path, 100 * GB, clock=lambda wrong=wrong: wrong).spend(1)
        assert (status.month, status.used_bytes) == ("2026-11", 25 * GB + (1 if wrong == 0.0 else 2))
    status = Budget(tmp_path, 100 * GB, clock=lambda: december).status()
    assert (status.month, status.used_bytes) == ("2026-12", 0)
    # a first test before the clock was ever set: its bytes count in the first real month
    fresh = tmp_path / "fresh"
    Budget(fresh, 100 * GB, clock=lambda: 0.0).spend(3 * GB)
    status = Budget(fresh, 100 * GB, clock=lambda: december).spend(1)
    assert (status.month, status.used_bytes) == ("2026-12", 3 * GB + 1)


@pytest.mark.slow
def test_one_test_in_1970_does_not_reset_the_month(server: SpeedtestServer, tmp_path: Path) -> None:
    """The issue's case: 25 GB used this month, then a real test while the wall clock reads 1970."""
    (tmp_path / FILE_NAME).write_text(json.dumps({"month": "2026-11", "used_bytes": 25 * GB}))
    with time_machine.travel(0.0, tick=True):
        result = run_once(settings(server.url), tmp_path)
    assert result.data.outcome == "measured", result.detail
    paid = result.data.test.download_bytes + result.data.test.upload_bytes
    assert (result.data.budget.month, result.data.budget.used_bytes) == ("2026-11", 25 * GB + paid)
    assert json.loads((tmp_path / FILE_NAME).read_text())["used_bytes"] == 25 * GB + paid


def test_server_down_is_a_failure_not_an_exception(tmp_path: Path) -> None:
    """Nothing listening: a refused Result with the budget status, run() does not raise."""
    result = run_once(settings("http://127.0.0.1:9/"), tmp_path)
    assert not result.ok and result.reason == "refused"
    assert result.data.outcome == "failed" and result.data.test.download_bps is None


def test_defaults_plus_server_work_with_a_fresh_state_dir(server: SpeedtestServer, tmp_path: Path) -> None:
    """The CLI's case: default settings plus a server URL, in an empty temporary state dir."""
    s = bandwidth.Settings(server=server.url, token=Secret("tok"), defer_sample_s=0.5)
    result = run_once(s, tmp_path / "fresh")
    assert result.data.outcome in ("measured", "deferred"), result.detail  # deferral looks at real interfaces
    assert result.ok == (result.data.outcome == "measured")


def test_missing_server_is_unsupported(tmp_path: Path) -> None:
    """The default (unconfigured) settings give a clear failure, not a crash."""
    result = run_once(bandwidth.Settings(), tmp_path)
    assert result.reason == "unsupported" and "server" in result.detail


def test_settings_validation() -> None:
    """Config errors name the key: bad URL, a timeout too short for the worst case; no server is no error."""
    assert parse(bandwidth.Settings, {"interval_s": 3600}).server == ""  # the minimal config must load
    with pytest.raises(SchemaError) as err:
        parse(bandwidth.Settings, {"server": "ftp://x", "timeout_s": 60})
    text = "\n".join(err.value.problems)
    assert "server: not an http:// or https:// URL" in text and "timeout_s:" in text
    ok = parse(bandwidth.Settings, {"server": "http://x/", "engine": "http", "token": "t"})
    assert ok.token == Secret("t")


def test_meets() -> None:
    """80% of the contracted speed meets; just under does not."""
    site = Site(id="x", commune="c", province="p", contracted_download_mbps=100)  # the one pass rule
    assert site.meets("download", 80e6)
    assert not site.meets("download", 79.9e6)


def _root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (tmpfs mount)")


@pytest.fixture
def tiny_tmpfs(tmp_path: Path) -> Iterator[Path]:
    _root()
    mnt = tmp_path / "state"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)]).returncode:
        pytest.skip("cannot mount tmpfs")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)])


def test_full_disk_keeps_counting_in_memory(tiny_tmpfs: Path) -> None:
    """With the state dir full, spending does not raise; the count survives in memory and says why."""
    filler = tiny_tmpfs / "filler"
    # Filling the disk is the setup, not the behaviour under test: whichever step says ENOSPC will do.
    with open(filler, "wb") as f, pytest.raises(OSError):  # noqa: PT011, PT012
        f.write(b"x" * 200_000)
        f.flush()
        os.fsync(f.fileno())
    budget = Budget(tiny_tmpfs, 10_000)
    status = budget.spend(1234)
    assert "cannot save budget file" in status.problem
    assert budget.spend(1000).used_bytes == 2234
    assert Budget(tiny_tmpfs, 10_000).status().used_bytes == 2234  # another run in this process
    filler.unlink()
    assert budget.spend(1).problem == ""  # the disk has room again: saved
    assert json.loads((tiny_tmpfs / FILE_NAME).read_text())["used_bytes"] == 2235


def test_read_only_state_dir_does_not_stop_the_probe(server: SpeedtestServer, tiny_tmpfs: Path) -> None:
    """A read-only state dir: the test still runs and the Result says the budget was not saved."""
    subprocess.run(["mount", "-o", "remount,ro", str(tiny_tmpfs)], check=True)
    result = run_once(settings(server.url, max_duration_s=3.0), tiny_tmpfs)
    assert result.data.outcome in ("measured", "failed")
    assert "cannot save budget file" in result.data.budget.problem


# --- deferral on a real interface, in namespaces this test creates ----------------------------------

INSIDE = r"""
import json, socket, sys, threading, time
sys.path.insert(0, {root!r})
from pathlib import Path
from agent.probes import bandwidth
from agent.probes.base import ProbeContext
from agent.site import Site
blast = {blast}
stop = threading.Event()
def send():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    payload = b"x" * 1400
    end = time.monotonic() + 20
    while blast and not stop.is_set() and time.monotonic() < end:
        for _ in range(100):
            s.sendto(payload, ("10.78.0.2", 9))
        time.sleep(0.05)  # about 2.8 MB/s
threading.Thread(target=send, daemon=True).start()
time.sleep(0.3)
s = bandwidth.Settings(server="http://127.0.0.1:9/", defer_threshold_bytes_per_s=500_000,
                       defer_sample_s=0.5, defer_wait_s=0.5, defer_tries=3)
(r,) = bandwidth.run(s, ProbeContext(Site(id="t", commune="c", province="p"), Path({state!r})))
stop.set()
print(json.dumps(r.to_json()))
"""


@pytest.mark.netns
def test_cross_traffic_defers_the_test(tmp_path: Path) -> None:
    """Traffic on a namespace's veth above the threshold defers the test after 3 checks; quiet lets it run."""
    _root()
    a, b = f"hmb{os.getpid()}a", f"hmb{os.getpid()}b"
    try:
        for ns in (a, b):
            if subprocess.run(["ip", "netns", "add", ns], capture_output=True).returncode:
                pytest.skip("ip netns add failed")
        cmds = [
            ["ip", "-n", a, "link", "add", "v0", "type", "veth", "peer", "name", "v1", "netns", b],
            ["ip", "-n", a, "addr", "add", "10.78.0.1/24", "dev", "v0"],
            ["ip", "-n", b, "addr", "add", "10.78.0.2/24", "dev", "v1"],
            ["ip", "-n", a, "link", "set", "v0", "up"],
            ["ip", "-n", b, "link", "set", "v1", "up"],
            ["ip", "-n", a, "link", "set", "lo", "up"],
        ]
        for cmd in cmds:
            subprocess.run(cmd, check=True, capture_output=True)

        def probe(blast: bool) -> dict[str, object]:
            code = INSIDE.format(root=str(ROOT), blast=blast, state=str(tmp_path / str(blast)))
            done = subprocess.run(
                ["ip", "netns", "exec", a, sys.executable, "-c", code],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert done.returncode == 0, done.stderr
            return json.loads(done.stdout.strip().splitlines()[-1])

        busy = probe(True)
        assert busy["reason"] == "limit" and busy["data"]["outcome"] == "deferred"
        assert busy["data"]["deferral"]["checks"] == 3 and busy["data"]["deferral"]["deferred"] is True
        assert busy["data"]["deferral"]["last_bytes_per_s"] > 500_000
        quiet = probe(False)
        assert quiet["data"]["deferral"]["deferred"] is False and quiet["data"]["deferral"]["checks"] == 1
        assert quiet["reason"] == "refused"  # it went on to test (nothing listens on port 9)
    finally:
        for ns in (a, b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
