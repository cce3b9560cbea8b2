"""`hotspot-agent measure`: one probe now, JSON on stdout or a plain-words verdict."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.agentproc import LOOPBACK_PROBES, site_yaml
from tests.support.ports import free_port

ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def speedtest_server() -> Iterator[str]:
    """The project's test server on loopback, paced to 40 Mbit/s; yields its URL."""
    argv = ["--listen", "127.0.0.1:0", "--test-only-pace-mbps", "40"]
    server = subprocess.Popen(
        [sys.executable, "-m", "collector.speedtest_server", *argv],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert server.stdout is not None
        m = None
        for _ in range(5):  # a warning about the test-only pacing comes first
            m = m or re.search(r"listening on (\S+)", server.stdout.readline())
        assert m, "the speedtest server did not start"
        yield m.group(1)
    finally:
        server.terminate()
        server.wait(10)
        server.stdout.close()


def measure(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", "measure", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_measure_ping_json(tmp_path: Path) -> None:
    """--json prints exactly one JSON object with the probe's results, and exits 0 when all went well."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(site_yaml("nd-1") + LOOPBACK_PROBES + f"state_dir: {tmp_path}\n")
    res = measure("ping", "--config", str(cfg), "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)  # the whole of stdout is one object
    assert out["probe"] == "ping" and out["ok"] is True
    (result,) = out["results"]
    assert result["target"] == "127.0.0.1"
    assert result["data"]["received"] == 3 and result["data"]["rtt_avg_s"] > 0


def test_measure_plain_words_and_failure_exit(tmp_path: Path) -> None:
    """Without --json a verdict in words; a failed measurement exits 1 and says what failed."""
    cfg = tmp_path / "c.yaml"
    # TCP to a closed port on 127.0.0.1: a refused connect still means the host answered
    cfg.write_text(
        site_yaml("nd-1")
        + LOOPBACK_PROBES.replace(
            'targets: ["127.0.0.1"]', 'targets: ["127.0.0.1"], method: tcp, tcp_port: 9'
        )
        + f"state_dir: {tmp_path}\n"
    )
    res = measure("ping", "--config", str(cfg))
    assert res.returncode == 0, res.stderr
    assert "127.0.0.1" in res.stdout and "3/3 replies" in res.stdout and "all 1 checks fine" in res.stdout
    # a resolver on a closed loopback port: the lookup fails, the verdict says so, exit 1
    cfg.write_text(
        site_yaml("nd-1")
        + LOOPBACK_PROBES.replace("dns: {enabled: false}", 'dns: {resolvers: ["127.0.0.1:9"], names: [a.vn]}')
        + f"state_dir: {tmp_path}\n"
    )
    res = measure("dns", "--config", str(cfg))
    assert res.returncode == 1, res.stdout + res.stderr
    assert "PROBLEM: a.vn via 127.0.0.1:9" in res.stdout and "1 of 1 failed" in res.stdout


def test_measure_with_bad_config_exits_2(tmp_path: Path) -> None:
    """A broken config is reported with key paths and exit 2."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text("site: {id: x}\n")
    res = measure("dns", "--config", str(cfg), "--json")
    assert res.returncode == 2 and res.stdout == ""
    assert "site.commune: required" in res.stderr


def test_server_option_only_for_bandwidth() -> None:
    """--server with another probe is a usage error, not a silent no-op."""
    res = measure("ping", "--server", "http://127.0.0.1:1/")
    assert res.returncode == 2 and "measure bandwidth" in res.stderr


def test_measure_bandwidth_json_without_config(tmp_path: Path) -> None:
    """`measure bandwidth --server URL --json` works with no config and prints the contract's fields."""
    with speedtest_server() as url:
        res = measure("bandwidth", "--server", url, "--json")
        words = measure("bandwidth", "--server", url)
        # 3 MB per direction is ~0.6 s at 40 Mbit/s: the byte limit comes before the rate settles
        cfg = tmp_path / "c.yaml"
        cfg.write_text(
            site_yaml("nd-1") + f"probes:\n  bandwidth: {{max_bytes: 3000000}}\nstate_dir: {tmp_path}\n"
        )
        capped = measure("bandwidth", "--config", str(cfg), "--server", url, "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    out = json.loads(res.stdout)
    for key in ("download_bps", "upload_bps", "download_bytes", "upload_bytes", "latency_ms", "duration_s"):
        assert isinstance(out[key], int | float) and out[key] > 0, key
    assert out["engine"] == "http" and out["server"].startswith("http://127.0.0.1:")
    # paced to 40 Mbit/s: the goodput is measured, not invented
    assert 36e6 < out["download_bps"] < 41e6 and 36e6 < out["upload_bps"] < 41e6
    assert out["download_lower_bound"] is False and out["upload_lower_bound"] is False  # settled
    # in words: below 80% of the default 100 Mbit/s in both directions
    assert words.returncode == 0, words.stderr
    assert "Verdict: this test is BELOW the requirement (download and upload)." in words.stdout
    assert "A 100 Mbit/s line carries at most 95.6 Mbit/s" in words.stdout
    # cut short by the byte limit: a figure flagged "at least", not null
    assert capped.returncode == 0, capped.stdout + capped.stderr
    out = json.loads(capped.stdout)
    assert out["download_lower_bound"] is True and out["upload_lower_bound"] is True, out
    assert 10e6 < out["download_bps"] < 41e6 and out["upload_bps"] > 0, out
    assert out["download_bytes"] <= 3_000_000 and out["upload_bytes"] <= 3_000_000


def test_measure_bandwidth_unreachable_server_fails_clearly() -> None:
    """A server that refuses gives exit 1, a reason and no throughput value."""
    res = measure("bandwidth", "--server", "http://127.0.0.1:9/", "--json")
    assert res.returncode == 1
    out = json.loads(res.stdout)
    assert out["ok"] is False and out["reason"] == "refused"
    assert out["download_bps"] is None and out["upload_bps"] is None


def test_verdict_words_for_a_lower_bound() -> None:
    """A figure a limit cut short reads "at least X": it meets when X does, else it cannot tell."""
    from agent.bandwidth.engine import BandwidthTest
    from agent.site import Site
    from agent.verdict import bandwidth_verdict

    site = Site(
        id="nd-1",
        commune="Xã Giao Minh",
        province="Nam Định",
        contracted_download_mbps=900.0,
        contracted_upload_mbps=900.0,
    )
    test = BandwidthTest("http", "s", 855e6, 500e6, 1, 1, None, None, 4, 4, 5.0, True, True)
    down, up = bandwidth_verdict(test, site)[:2]
    assert down.startswith("Download: at least 855.0 Mbit/s") and "MEETS the requirement" in down
    # 500 is below 80% of 900 but only a lower bound: no verdict either way
    assert up.startswith("Upload: at least 500.0 Mbit/s") and "cannot tell" in up and "BELOW" not in up


def test_dns_words_give_no_time_for_no_answer() -> None:
    """A resolver that never answered has no lookup time: the words say "no answer", not "in -"."""
    from agent.probes.dns import DnsLookup
    from agent.result import Result
    from agent.site import Site
    from agent.verdict import describe_results

    site = Site(id="nd-1", commune="Xã Giao Minh", province="Nam Định")
    silent = DnsLookup("127.0.0.1:5353", "127.0.0.1:5353", "example.vn", "", (), None)
    answered = DnsLookup("system", "127.0.0.53", "example.vn", "NOERROR", ("192.0.2.1",), 0.012)
    words = describe_results(
        "dns",
        [
            Result("dns", "example.vn", False, "timeout", "nothing answers", silent),
            Result("dns", "example.vn", True, None, "", answered),
        ],
        site,
    )
    assert "via 127.0.0.1:5353: no answer — nothing answers" in words
    assert "in -" not in words and "192.0.2.1 in 12.0 ms" in words


def test_no_probe_names_itself_twice(tmp_path: Path) -> None:
    """Each `measure <probe>` line names the probe once: a failed wifi run said "wifi: wifi: ...",
    dns and http repeated "dns:"/"http:" after the dash. Every probe fails here on loopback."""
    closed = free_port()
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        site_yaml("nd-1")
        + "probes:\n"
        + f"  ping: {{targets: ['127.0.0.1'], gateway: false, count: 2, method: tcp, tcp_port: {closed}}}\n"
        + f"  dns: {{resolvers: ['127.0.0.1:{closed}'], names: [a.test], query_timeout_s: 0.5}}\n"
        + f"  http: {{urls: ['http://127.0.0.1:{closed}/'], portal_check_url: ''}}\n"
        + "  wifi: {iw_path: /nonexistent/iw}\n"
        + "  system: {disk_paths: ['/']}\n"
        + f"  bandwidth: {{server: 'http://127.0.0.1:{closed}/', defer_threshold_bytes_per_s: 0}}\n"
        + f"state_dir: {tmp_path / 'state'}\n"
    )
    said = {}
    for probe in ("ping", "dns", "http", "wifi", "system", "bandwidth"):
        res = measure(probe, "--config", str(cfg))
        assert "Traceback" not in res.stderr, res.stderr
        said[probe] = res.stdout
        for line in res.stdout.splitlines():
            assert f"{probe}: {probe}:" not in line and f"— {probe}: " not in line, line
    assert "PROBLEM: wifi: the iw program was not found" in said["wifi"]
    assert "nothing answers DNS at 127.0.0.1" in said["dns"]
    assert f"— connection refused by 127.0.0.1 for http://127.0.0.1:{closed}/" in said["http"]


@pytest.mark.slow
def test_measure_bandwidth_with_a_config_books_its_bytes_and_keeps_the_owner(tmp_path: Path) -> None:
    """The test used the site's line, so its bytes go into that site's monthly budget, the words say
    so, and run as root the budget file stays the service user's (its state dir's owner)."""
    state = tmp_path / "state"
    state.mkdir()
    os.chown(state, 65534, 65534)  # the service user's state dir (nobody, for the test)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(site_yaml("nd-1") + f"probes:\n  bandwidth: {{max_bytes: 2000000}}\nstate_dir: {state}\n")
    with speedtest_server() as url:
        first = measure("bandwidth", "--config", str(cfg), "--server", url, "--json")
        words = measure("bandwidth", "--config", str(cfg), "--server", url)
        adhoc = measure("bandwidth", "--server", url)
    out = json.loads(first.stdout)
    budget = state / "bandwidth-budget.json"
    saved = json.loads(budget.read_text())
    assert saved["used_bytes"] > out["download_bytes"] + out["upload_bytes"] > 0  # both runs booked
    assert (budget.stat().st_uid, budget.stat().st_gid) == (65534, 65534)
    line = words.stdout.splitlines()[-1]
    assert line.startswith("Data budget: booked ") and f"({budget})" in line, words.stdout
    assert f"for {saved['month']}" in line and f"{saved['used_bytes'] / 1e6:.0f} MB used this month" in line
    assert adhoc.stdout.splitlines()[-1] == "Data budget: not booked (no --config: no site's budget)."
