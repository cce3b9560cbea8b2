"""A shaped network lab in namespaces: client ⇄ router ⇄ server, with a known rate, delay and loss.

Root is required. Tests take it from the `lab` fixture (tests/conftest.py); bench scripts, run as
`python -m bench.NAME` from the repository root, use it directly:

    from tests.support.netlab import Lab, unavailable_reason

    if (why := unavailable_reason()) is not None:
        pytest.skip(why)
    with Lab(rate_mbit=50, rtt_ms=30, loss=0.0) as lab:
        server = lab.popen(lab.server_ns, ["iperf3", "-s", "-1"])
        out = lab.run(lab.client_ns, ["iperf3", "-c", lab.server_ip, "-J"], timeout=30)
        lab.goodput_limit_bps        # 1448/1514 × rate ≈ 0.956 × rate: the most TCP can carry
        lab.hosts(lab.client_ns, {"www.speedtest.net": lab.server_ip})  # names for `ip netns exec`
        with lab.inside(lab.client_ns):  # this thread (and threads it starts) now use the client ns
            measure(...)

Topology (the addresses are the same in every lab: each lab has its own namespaces):

    client_ns  c0 10.77.1.2 ──veth── rc 10.77.1.1  router_ns  10.77.2.1 rs ──veth── s0 10.77.2.2  server_ns

- Rate: `tc tbf` on the router's two egress interfaces, so download (rs→rc→c0) and upload are each
  shaped to `rate_mbit`. burst = max(15,140 B (ten frames), 1 ms at the rate): large enough that the
  hrtimer granularity never starves the bucket, small enough that a test's average is the rate.
  latency (the queue) = max(20 ms, the configured RTT), so the queue holds at least a
  bandwidth-delay product and a few TCP streams keep the link full; it is also the most queueing
  delay a test can add (bufferbloat).
- Delay and loss (the kernel has no netem): when `rtt_ms` or `loss` is set, the router sends all
  forwarded traffic into a TUN device `dl0` (policy routing: `ip rule iif rc|rs lookup 100`, table 100
  = `default dev dl0`); bench/lab/delayline.c (compiled with gcc on first use into bench/lab/delayline)
  writes each packet back after rtt_ms / 2 and drops it with probability `loss`. Each direction
  crosses it once, so the RTT gains rtt_ms, and a ping round trip is lost with 1 - (1 - loss)².
  The delay happens before the shaper, so queueing happens at the bottleneck, as on a real line.
  Without loss the TUN device takes TCP segmentation offload, so a sender's 64 KB super-packet
  crosses the delay line in one read and one write (one packet per read/write held a 900 Mbit/s
  link at 0.95 of its goodput limit, for iperf3 as for the built-in engine); with loss each segment
  crosses alone, so that each can be dropped.
  The delay line runs at real-time priority (SCHED_FIFO; it sleeps in ppoll between packets, so it
  never spins): a path of user-space packet copies shares the machine's cores with the test's client
  and server, and at 900 Mbit/s 30 ms with a 1-minute load of 6-13 it starved, so the link carried
  0.40-0.59 of its limit for iperf3 and the built-in engine alike (0.90-0.93 with the priority, same
  load). A real line does not slow down because the endpoints are busy. Without the privilege it
  runs at normal priority (`delayline_realtime` says which).
- Names: namespaces are `{prefix}{pid}x{n}c|r|s` (prefix "hmlab" unless given). `ip netns exec`
  bind-mounts /etc/netns/NAME/*: every lab namespace gets a resolv.conf pointing at its own loopback
  (no lab process ever queries the machine's resolvers), and `hosts()` adds names.
- Teardown (on exit, also after a failed setup): processes started with popen() are terminated, any
  process left inside the namespaces is killed, the namespaces and /etc/netns/NAME are removed.
  A lab whose creating process was SIGKILLed is swept when the next lab with that prefix starts.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import os
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from agent.digits import ascii_uint
from tests.support.paths import ROOT

CLIENT_IP = "10.77.1.2"
ROUTER_CLIENT_IP = "10.77.1.1"
ROUTER_SERVER_IP = "10.77.2.1"
SERVER_IP = "10.77.2.2"
GOODPUT_RATIO = 1448 / 1514  # TCP payload per Ethernet frame with timestamps: ≈ 0.956

LAB_DIR = ROOT / "bench" / "lab"
DELAYLINE_SRC = LAB_DIR / "delayline.c"
DELAYLINE_BIN = LAB_DIR / "delayline"
DELAYLINE_PRIORITY = 20  # SCHED_FIFO, 1-99: above every normal process, below the kernel's own threads

_counter = itertools.count()
_CLONE_NEWNET = 0x40000000


class LabUnavailable(RuntimeError):
    """The lab cannot be built here (not root, no `ip netns`, no gcc)."""


def unavailable_reason() -> str | None:
    """Why a lab cannot be built on this machine, or None when it can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"{tool} (iproute2) is not installed"
    name = f"hmlab{os.getpid()}probe{next(_counter)}"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if made.returncode != 0:
        return f"ip netns add failed: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return None


def delayline_binary() -> Path:
    """The compiled delay line, built from bench/lab/delayline.c when missing or older than its source."""
    if DELAYLINE_BIN.exists() and DELAYLINE_BIN.stat().st_mtime >= DELAYLINE_SRC.stat().st_mtime:
        return DELAYLINE_BIN
    if shutil.which("gcc") is None:
        raise LabUnavailable("gcc is needed to build bench/lab/delayline.c (delay and loss)")
    # Build to a private name and rename: parallel labs may build at the same time.
    tmp = DELAYLINE_BIN.with_name(f".delayline.{os.getpid()}")
    built = subprocess.run(
        ["gcc", "-O2", "-Wall", "-o", str(tmp), str(DELAYLINE_SRC)], capture_output=True, text=True
    )
    if built.returncode != 0:
        raise LabUnavailable(f"building the delay line failed: {built.stderr.strip()}")
    os.replace(tmp, DELAYLINE_BIN)
    return DELAYLINE_BIN


def sweep_stale(prefix: str) -> None:
    """Remove labs left by a process of ours that was killed before its teardown could run.

    A namespace named `{prefix}{pid}x…` whose pid no longer exists cannot be in use by anyone.
    """
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    for line in listed.splitlines():
        name = line.split(" ", 1)[0]
        m = re.fullmatch(rf"{re.escape(prefix)}(\d+)x\d+[crs]", name)
        if m is None or Path(f"/proc/{m.group(1)}").exists():
            continue
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
        shutil.rmtree(Path("/etc/netns") / name, ignore_errors=True)


class Lab:
    """client ⇄ router ⇄ server namespaces; see the module docstring."""

    client_ip = CLIENT_IP
    server_ip = SERVER_IP

    def __init__(
        self, rate_mbit: float | None = 100.0, rtt_ms: float = 0.0, loss: float = 0.0, prefix: str = "hmlab"
    ) -> None:
        if rate_mbit is not None and rate_mbit <= 0:
            raise ValueError("rate_mbit must be positive (or None for an unshaped link)")
        if rtt_ms < 0 or not 0.0 <= loss < 1.0:
            raise ValueError("rtt_ms must be ≥ 0 and loss in [0, 1)")
        self.rate_mbit = rate_mbit
        self.rtt_ms = rtt_ms
        self.loss = loss
        self.prefix = prefix
        base = f"{prefix}{os.getpid()}x{next(_counter)}"
        self.client_ns = base + "c"
        self.router_ns = base + "r"
        self.server_ns = base + "s"
        self.namespaces = (self.client_ns, self.router_ns, self.server_ns)
        self.delayline_counters: dict[str, int] = {}
        self.delayline_realtime = False  # the delay line got real-time priority (module doc)
        self._procs: list[subprocess.Popen[Any]] = []
        self._delayline: subprocess.Popen[str] | None = None
        self._tmp: Path | None = None

    @property
    def goodput_limit_bps(self) -> float:
        """The most TCP goodput the shaped link can carry, bits per second (≈ 0.956 × rate)."""
        if self.rate_mbit is None:
            raise ValueError("an unshaped lab has no goodput limit")
        return self.rate_mbit * 1e6 * GOODPUT_RATIO

    # --- life cycle -------------------------------------------------------------------------------

    def __enter__(self) -> Lab:
        if os.geteuid() != 0:
            raise LabUnavailable("network namespaces need root")
        sweep_stale(self.prefix)
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _build(self) -> None:
        self._tmp = Path(tempfile.mkdtemp(prefix="netlab-"))
        c, r, s = self.namespaces
        for ns in self.namespaces:
            _ip("netns", "add", ns)
            self.etc_file(ns, "resolv.conf", "nameserver 127.0.0.1\n")
            _ip("-n", ns, "link", "set", "lo", "up")
        # Created inside the namespaces directly, so no name ever appears in the root namespace.
        _ip("-n", c, "link", "add", "c0", "type", "veth", "peer", "name", "rc", "netns", r)
        _ip("-n", s, "link", "add", "s0", "type", "veth", "peer", "name", "rs", "netns", r)
        for ns, dev, addr in (
            (c, "c0", CLIENT_IP),
            (r, "rc", ROUTER_CLIENT_IP),
            (r, "rs", ROUTER_SERVER_IP),
            (s, "s0", SERVER_IP),
        ):
            _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            _ip("-n", ns, "link", "set", dev, "up")
        _ip("-n", c, "route", "add", "default", "via", ROUTER_CLIENT_IP)
        _ip("-n", s, "route", "add", "default", "via", ROUTER_SERVER_IP)
        self._sysctl(
            r, "net.ipv4.ip_forward=1", "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0"
        )
        if self.rate_mbit is not None:
            for dev in ("rc", "rs"):
                _run(["tc", "-n", r, "qdisc", "replace", "dev", dev, "root", "tbf", *self._tbf_params()])
        if self.rtt_ms > 0 or self.loss > 0:
            self._start_delayline()

    def _tbf_params(self) -> list[str]:
        assert self.rate_mbit is not None
        rate_bytes_per_s = self.rate_mbit * 1e6 / 8
        burst = max(15_140, int(rate_bytes_per_s * 0.001))
        latency_ms = max(20.0, self.rtt_ms)
        return ["rate", f"{self.rate_mbit}mbit", "burst", str(burst), "latency", f"{latency_ms}ms"]

    def _start_delayline(self) -> None:
        binary = delayline_binary()
        assert self._tmp is not None
        delay_us = int(self.rtt_ms * 1000 / 2)
        loss_ppm = round(self.loss * 1_000_000)
        self._delayline_log = self._tmp / "delayline.log"
        with self._delayline_log.open("w") as log:  # the child keeps its own copy of the descriptor
            self._delayline = subprocess.Popen(
                ["ip", "netns", "exec", self.router_ns, str(binary), "dl0", str(delay_us), str(loss_ppm)],
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                start_new_session=True,
            )
        assert self._delayline.stdout is not None
        if self._delayline.stdout.readline().strip() != "ready":
            self._delayline.wait(timeout=5)
            raise LabUnavailable(f"delay line did not start: {self._delayline_log.read_text().strip()}")
        # `ip netns exec` execs the delay line: this pid is the delay line itself.
        with contextlib.suppress(OSError):
            os.sched_setscheduler(self._delayline.pid, os.SCHED_FIFO, os.sched_param(DELAYLINE_PRIORITY))
            self.delayline_realtime = True
        r = self.router_ns
        _ip("-n", r, "link", "set", "dl0", "txqueuelen", "10000", "up")
        self._sysctl(r, "net.ipv4.conf.dl0.rp_filter=0")
        _ip("-n", r, "route", "add", "default", "dev", "dl0", "table", "100")
        _ip("-n", r, "rule", "add", "iif", "rc", "lookup", "100", "pref", "100")
        _ip("-n", r, "rule", "add", "iif", "rs", "lookup", "100", "pref", "101")

    def close(self) -> None:
        """Stop every process of the lab and remove its namespaces and /etc/netns files."""
        for proc in self._procs:
            _stop(proc)
        if self._delayline is not None:
            _stop(self._delayline)
            with contextlib.suppress(OSError):
                for field in self._delayline_log.read_text().split():
                    key, _, value = field.partition("=")
                    number = ascii_uint(value)
                    if number is not None:
                        self.delayline_counters[key] = number
            self._delayline = None
        for ns in self.namespaces:
            # Whatever is still inside is ours (it was started in a namespace this lab made).
            pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
            shutil.rmtree(Path("/etc/netns") / ns, ignore_errors=True)
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    # --- using the lab ----------------------------------------------------------------------------

    def run(
        self, ns: str, argv: Sequence[str], timeout: float = 60.0, check: bool = False, **kw: Any
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside `ns` to completion; stdout/stderr captured as text."""
        kw.setdefault("capture_output", True)
        return subprocess.run(
            ["ip", "netns", "exec", ns, *argv], timeout=timeout, check=check, text=True, **kw
        )

    def popen(self, ns: str, argv: Sequence[str], **kw: Any) -> subprocess.Popen[Any]:
        """Start a command inside `ns`; it is terminated when the lab closes."""
        kw.setdefault("start_new_session", True)
        proc = subprocess.Popen(["ip", "netns", "exec", ns, *argv], **kw)
        self._procs.append(proc)
        return proc

    def etc_file(self, ns: str, name: str, text: str) -> None:
        """Write /etc/netns/NS/NAME: `ip netns exec NS` shows it as /etc/NAME."""
        path = Path("/etc/netns") / ns / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def hosts(self, ns: str, names: dict[str, str]) -> None:
        """Make `names` (name → address) resolve inside `ns` for commands started with run/popen."""
        lines = ["127.0.0.1 localhost", *(f"{addr} {name}" for name, addr in names.items())]
        self.etc_file(ns, "hosts", "\n".join(lines) + "\n")

    @contextlib.contextmanager
    def inside(self, ns: str) -> Iterator[None]:
        """Move the calling thread into `ns` (network namespace only) for the duration of the block.

        Threads and subprocesses started inside the block inherit it. /etc/netns files do not apply
        (that needs `ip netns exec`): connect by address.
        """
        libc = ctypes.CDLL(None, use_errno=True)
        with open("/proc/thread-self/ns/net") as home, open(f"/run/netns/{ns}") as target:
            if libc.setns(target.fileno(), _CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"setns into {ns} failed")
            try:
                yield
            finally:
                if libc.setns(home.fileno(), _CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns back to the original namespace failed")

    def _sysctl(self, ns: str, *settings: str) -> None:
        _run(["ip", "netns", "exec", ns, "sysctl", "-qw", *settings])


def _ip(*args: str) -> None:
    _run(["ip", *args])


def _run(argv: Sequence[str]) -> None:
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip() or done.returncode}")


def _stop(proc: subprocess.Popen[Any]) -> None:
    for stream in (proc.stdin, proc.stdout, proc.stderr):  # our ends of its pipes, if any
        if stream is not None:
            stream.close()
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM) if _own_group(proc) else proc.terminate()
    try:
        proc.wait(timeout=3)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL) if _own_group(proc) else proc.kill()
        proc.wait(timeout=3)


def _own_group(proc: subprocess.Popen[Any]) -> bool:
    try:
        return os.getpgid(proc.pid) == proc.pid
    except ProcessLookupError:
        return False
