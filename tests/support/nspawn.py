"""A Debian 12 container with systemd as PID 1 (debootstrap + systemd-nspawn), for testing the unit
and the package under a real systemd.

The root filesystem is made once by debootstrap from the configured Debian archive and kept under
CACHE (a warm machine boots in seconds); each container is an overlay on top of it, so a test never
changes the cached copy. The container has its own network namespace with only loopback.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

CACHE = Path(os.environ.get("HOTSPOT_TEST_CACHE", "/var/cache/hotspot-monitor-test"))
# What a site device has besides a minimal Debian (ssh for the playbook): no procps, no venv, no pip.
PACKAGES = "systemd,systemd-sysv,dbus,python3,iputils-ping,iproute2,iw,curl,openssh-server"
ROOTFS = CACHE / "bookworm-minbase-2"


def available() -> str | None:
    """Why containers cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "needs root"
    for tool in ("systemd-nspawn", "debootstrap", "nsenter"):
        if shutil.which(tool) is None:
            return f"{tool} missing (scripts/install-debian-deps installs it)"
    return None


def mirror() -> str:
    """The Debian archive this machine's apt uses."""
    for path in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        m = re.search(r"^URIs:\s*(\S+)", path.read_text(), re.M)
        if m and "security" not in m.group(1):
            return m.group(1)
    text = Path("/etc/apt/sources.list").read_text() if Path("/etc/apt/sources.list").exists() else ""
    m = re.search(r"^deb\s+(\S+)\s+bookworm\s", text, re.M)
    return m.group(1) if m else "http://deb.debian.org/debian"


def rootfs() -> Path:
    """The cached Debian 12 root filesystem, made by debootstrap when missing (about a minute)."""
    if (ROOTFS / "usr/lib/systemd/systemd").exists():
        return ROOTFS
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = CACHE / f"{ROOTFS.name}.tmp{os.getpid()}"  # two test runs at once must not share one
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        subprocess.run(
            ["debootstrap", "--variant=minbase", f"--include={PACKAGES}", "bookworm", str(tmp), mirror()],
            check=True,
            capture_output=True,
            timeout=900,
        )
        tmp.rename(ROOTFS)
    except OSError:
        if not (ROOTFS / "usr/lib/systemd/systemd").exists():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # the other run's copy won; or debootstrap failed
    return ROOTFS


class Container:
    """A booted container: `run()` executes a command inside it, in all its namespaces."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.root = workdir / "root"
        self.proc: subprocess.Popen[bytes] | None = None
        self.leader = 0
        self.log = workdir / "console.log"

    def boot(self, timeout_s: float = 120) -> float:
        """Mount an overlay on the cached root, boot it, wait until systemd is up; returns seconds."""
        lower = rootfs()
        upper, work = self.workdir / "upper", self.workdir / "work"
        for d in (self.root, upper, work):
            d.mkdir(parents=True, exist_ok=True)
        opts = f"lowerdir={lower},upperdir={upper},workdir={work}"
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, str(self.root)], check=True)
        start = time.monotonic()
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [
                    "systemd-nspawn",
                    "-b",
                    "-D",
                    str(self.root),
                    "--private-network",
                    "--register=no",
                    "--keep-unit",
                    "--console=pipe",
                    f"--machine=hotspot-test-{os.getpid()}",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = start + timeout_s
        self.leader = self._find_leader()
        # /run is the container's own tmpfs: look for systemd's socket from inside.
        while self.run("test", "-e", "/run/systemd/private", check=False).returncode != 0:
            self._alive(deadline)
        while True:
            self._alive(deadline)
            state = self.run("systemctl", "is-system-running", check=False).stdout.strip()
            if state in ("running", "degraded"):
                return time.monotonic() - start
            time.sleep(0.5)

    def _alive(self, deadline: float) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"the container exited: {self.log.read_text(errors='replace')[-3000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the container did not boot: {self.log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.2)

    def _find_leader(self) -> int:
        """The container's PID 1 as the host sees it: nspawn's child running systemd."""
        assert self.proc is not None
        for _ in range(300):
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
            for pid in children:
                try:
                    if Path(f"/proc/{pid}/comm").read_text().strip() == "systemd":
                        return int(pid)
                except OSError:
                    continue
            time.sleep(0.1)
        raise RuntimeError("cannot find the container's systemd")

    def run(
        self, *argv: str, check: bool = True, timeout: float = 120, **kw: object
    ) -> subprocess.CompletedProcess[str]:
        """Run argv inside the container (all namespaces, its root); output as text."""
        cmd = [
            "nsenter",
            "-t",
            str(self.leader),
            "-a",
            "env",
            "-i",
            "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG=C.UTF-8",
            *argv,
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, **kw)  # type: ignore[call-overload]
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(argv)}: exit {done.returncode}\n{done.stdout}\n{done.stderr}")
        return done

    def net(self, *argv: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run a host program in the container's network namespace only (e.g. curl)."""
        cmd = ["nsenter", "-t", str(self.leader), "-n", *argv]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)

    def shutdown(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)  # nspawn asks the container's systemd to power off
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        subprocess.run(["umount", "-l", str(self.root)], check=False, capture_output=True)
