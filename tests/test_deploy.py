"""The systemd unit and sysusers file in deploy/: valid for systemd, hardened, and saying what the
install guide promises."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
UNIT = DEPLOY / "hotspot-agent.service"
EXEC = "/opt/hotspot-agent/venv/bin/hotspot-agent"
MAX_EXPOSURE = 2.5

needs_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing")


def directives(text: str) -> dict[str, list[str]]:
    """Key -> every value assigned to it, in order (systemd allows repeats)."""
    out: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def verify(unit_text: str, tmp_path: Path) -> str:
    """Run `systemd-analyze verify` on a copy whose ExecStart points at a stub that exists here.

    verify refuses a unit whose binary is missing, and /opt/hotspot-agent is not installed on a test
    machine; everything else in the unit is checked as written.
    """
    stub = tmp_path / "hotspot-agent"
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(stub.stat().st_mode | stat.S_IXUSR)
    copy = tmp_path / "hotspot-agent.service"
    copy.write_text(unit_text.replace(EXEC, str(stub)))
    done = subprocess.run(
        ["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60, check=False
    )
    return (done.stdout + done.stderr).strip() + ("" if done.returncode == 0 else f"\nexit {done.returncode}")


@needs_analyze
def test_systemd_analyze_verify_is_clean(tmp_path):
    """`systemd-analyze verify` reports nothing at all about the unit."""
    assert verify(UNIT.read_text(), tmp_path) == ""


@needs_analyze
def test_verify_would_catch_a_bad_directive(tmp_path):
    """The verify check is not vacuous: a misspelt value in the same unit produces a complaint."""
    broken = UNIT.read_text().replace("ProtectSystem=strict", "ProtectSystem=strictest")
    assert "strictest" in verify(broken, tmp_path)


@needs_analyze
def test_security_exposure_is_at_most_2_5():
    """`systemd-analyze security --offline=true` rates the unit's overall exposure 2.5 or lower."""
    done = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    match = re.search(r"Overall exposure level for hotspot-agent\.service: (\d+\.\d+)", done.stdout)
    assert match, done.stdout + done.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, done.stdout


def test_unit_runs_the_agent_as_its_own_user_without_capabilities():
    """The unit runs the documented command as hotspot-agent, with no capabilities and no way to gain any."""
    d = directives(UNIT.read_text())
    assert d["ExecStart"] == [f"{EXEC} run --config /etc/hotspot-agent/config.yaml"]
    assert d["User"] == ["hotspot-agent"] and d["Group"] == ["hotspot-agent"]
    assert d["CapabilityBoundingSet"] == [""] and d["AmbientCapabilities"] == [""]
    assert d["NoNewPrivileges"] == ["yes"]
    assert d["StateDirectory"] == ["hotspot-agent"]
    assert d["ProtectSystem"] == ["strict"] and d["PrivateTmp"] == ["yes"]
    assert d["RestrictAddressFamilies"] == ["AF_INET AF_INET6 AF_UNIX AF_NETLINK"]
    assert d["SystemCallFilter"][0] == "@system-service"


def test_unit_restarts_on_failure_reloads_with_sighup_and_logs_to_the_journal():
    """Restart=on-failure, reload = SIGHUP to the main process, output to the journal."""
    d = directives(UNIT.read_text())
    assert d["Restart"] == ["on-failure"]
    assert d["ExecReload"] == ["/bin/sh -c 'kill -HUP \"$MAINPID\"'"]
    assert d["StandardOutput"] == ["journal"] and d["StandardError"] == ["journal"]
    assert d["WantedBy"] == ["multi-user.target"]


@pytest.mark.skipif(shutil.which("systemd-sysusers") is None, reason="systemd-sysusers missing")
def test_sysusers_file_creates_a_system_user_without_login(tmp_path):
    """systemd-sysusers, run on an empty root, creates hotspot-agent as a system user with no shell."""
    conf = tmp_path / "usr" / "lib" / "sysusers.d"
    conf.mkdir(parents=True)
    (tmp_path / "etc").mkdir()
    shutil.copy(DEPLOY / "hotspot-agent.sysusers.conf", conf / "hotspot-agent.conf")
    subprocess.run(["systemd-sysusers", f"--root={tmp_path}"], capture_output=True, timeout=60, check=True)
    (entry,) = [
        line
        for line in (tmp_path / "etc" / "passwd").read_text().splitlines()
        if line.startswith("hotspot-agent:")
    ]
    _, _, uid, _, _, home, shell = entry.split(":")
    assert int(uid) < 1000  # a system user
    assert (home, shell) == ("/var/lib/hotspot-agent", "/usr/sbin/nologin")
    assert "hotspot-agent:" in (tmp_path / "etc" / "group").read_text()


def _elf_machines(root: Path) -> set[int]:
    """e_machine of every ELF file under root (62 = x86-64, 183 = AArch64)."""
    machines = set()
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            with path.open("rb") as f:
                head = f.read(20)
            if head[:4] == b"\x7fELF":
                machines.add(int.from_bytes(head[18:20], "little"))
    return machines


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="dpkg-deb missing")
def test_arm64_package_is_built_here_from_arm64_wheels(tmp_path):
    """build-deb.sh arm64 (needs PyPI): an arm64 package whose compiled modules are all AArch64, with
    the unit, sysusers, sysctl drop-in and the config as its only conffile."""
    done = subprocess.run(
        [str(DEPLOY / "debian" / "build-deb.sh"), "arm64", "1.2.3", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    deb = tmp_path / "hotspot-agent_1.2.3_arm64.deb"
    info = subprocess.run(
        ["dpkg-deb", "-f", str(deb), "Architecture", "Version"], capture_output=True, text=True
    )
    assert info.stdout.split() == ["Architecture:", "arm64", "Version:", "1.2.3"]
    tree = tmp_path / "tree"
    subprocess.run(["dpkg-deb", "-R", str(deb), str(tree)], check=True)
    assert _elf_machines(tree / "opt") == {183}
    assert (tree / "DEBIAN/conffiles").read_text().split() == ["/etc/hotspot-agent/config.yaml"]
    for path in (
        "lib/systemd/system/hotspot-agent.service",
        "usr/lib/sysusers.d/hotspot-agent.conf",
        "usr/lib/sysctl.d/60-hotspot-agent-ping.conf",
        "opt/hotspot-agent/venv/lib/python3.11/site-packages/agent/locale/vi/LC_MESSAGES/hotspot-agent.mo",
    ):
        assert (tree / path).is_file(), path
    assert os.readlink(tree / "opt/hotspot-agent/venv/bin/python") == "/usr/bin/python3.11"
