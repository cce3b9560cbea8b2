"""The iperf3 engine: runs the `iperf3` binary (-J) against an iperf3 server, download (-R) then upload.

iperf3 is the reference measurement where a site can reach an iperf3 server. The first second of each
direction is a warm-up (`-O 1`) excluded from the rate but counted in the bytes moved. iperf3 stops
by time only (`-n` would replace `-t`), so `limits.max_bytes` is not enforced here: choose
`max_duration_s` for the line's speed. iperf3 measures no idle latency; the RTT under load is the
upload's mean smoothed RTT from the client's TCP_INFO (with -R the client is not the sender and
iperf3 reports zeros).
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Any

from agent.bandwidth.engine import BandwidthTest, EngineError, Limits, Progress
from agent.digits import ascii_uint
from agent.result import Reason

DEFAULT_PORT = 5201
DEFAULT_STREAMS = 4
CONNECT_TIMEOUT_MS = 5000


@dataclass(frozen=True)
class _Direction:
    bps: float
    bytes_moved: int
    streams: int
    mean_rtt_s: float | None


def parse_server(server: str) -> tuple[str, int]:
    """Split "HOST[:PORT]" (IPv6 as "[ADDR]:PORT" or a bare address) into host and port."""
    text = server.strip()
    host, port = text, str(DEFAULT_PORT)
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"iperf3 server must be HOST[:PORT], got {server!r}")
            port = rest[1:]
    elif text.count(":") == 1:
        host, port = text.split(":")
    number = ascii_uint(port)
    if not host or number is None or not 0 < number < 65536:
        raise ValueError(f"iperf3 server must be HOST[:PORT] with a port in 1–65535, got {server!r}")
    return host, number


def measure(
    server: str, limits: Limits, cancelled: threading.Event, progress: Progress | None = None
) -> BandwidthTest:
    """Measure download then upload against an iperf3 server "HOST[:PORT]"."""
    binary = shutil.which("iperf3")
    if binary is None:
        raise EngineError("unsupported", "the iperf3 binary is not installed")
    try:
        host, port = parse_server(server)
    except ValueError as exc:
        raise EngineError("error", str(exc)) from None
    streams = limits.streams or DEFAULT_STREAMS
    omit_s = 1 if limits.max_duration_s >= 3 else 0
    seconds = max(1, math.floor(limits.max_duration_s - omit_s))
    argv = [binary, "-c", host, "-p", str(port), "-J", "-P", str(streams), "-t", str(seconds)]
    argv += ["-O", str(omit_s), "--connect-timeout", str(CONNECT_TIMEOUT_MS)]
    started = time.monotonic()

    def partial(down: _Direction | None) -> BandwidthTest | None:
        return None if down is None else _test(server, down, None, time.monotonic() - started)

    down: _Direction | None = None
    for phase in ("download", "upload"):
        if progress is not None:
            progress(phase, 0.0)
        try:
            result = _run(argv + (["-R"] if phase == "download" else []), seconds + omit_s, cancelled)
        except EngineError as exc:
            raise EngineError(exc.reason, f"{phase}: {exc.detail}", partial(down)) from None
        if progress is not None:
            progress(phase, result.bps)
        if phase == "download":
            down = result
        else:
            assert down is not None
            return _test(server, down, result, time.monotonic() - started)
    raise AssertionError("unreachable")


def _test(server: str, down: _Direction, up: _Direction | None, duration_s: float) -> BandwidthTest:
    return BandwidthTest(
        engine="iperf3",
        server=server,
        download_bps=down.bps,
        upload_bps=up.bps if up else None,
        download_bytes=down.bytes_moved,
        upload_bytes=up.bytes_moved if up else 0,
        latency_idle_s=None,
        latency_loaded_s=down.mean_rtt_s or (up.mean_rtt_s if up else None),
        download_streams=down.streams,
        upload_streams=up.streams if up else 0,
        duration_s=duration_s,
    )


def _run(argv: list[str], test_s: int, cancelled: threading.Event) -> _Direction:
    # Connection set-up, the test, and iperf3's own exchange of results afterwards.
    deadline = time.monotonic() + test_s + CONNECT_TIMEOUT_MS / 1000 + 10
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while True:
            if cancelled.is_set():
                raise EngineError("timeout", "the test was cancelled")
            if time.monotonic() > deadline:
                raise EngineError("timeout", f"iperf3 did not finish within {test_s} s plus set-up")
            try:
                # communicate() keeps reading the pipes, so a long report never blocks iperf3.
                stdout, stderr = proc.communicate(timeout=0.1)
                break
            except subprocess.TimeoutExpired:
                continue
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return parse_report(stdout, stderr)


def parse_report(stdout: str, stderr: str = "") -> _Direction:
    """Read one direction out of `iperf3 -J` output; an "error" field becomes an EngineError."""
    try:
        report: dict[str, Any] = json.loads(stdout)
    except json.JSONDecodeError:
        detail = (stderr or stdout).strip()[:200] or "no output"
        raise EngineError("protocol", f"iperf3 printed no JSON report: {detail}") from None
    if "error" in report:
        error = str(report["error"])
        raise EngineError(_reason(error), f"iperf3: {error}")
    try:
        received = report["end"]["sum_received"]
        bps = float(received["bits_per_second"])
        # Warm-up (omitted) intervals moved bytes too: the data budget pays for them.
        moved = sum(int(i["sum"]["bytes"]) for i in report["intervals"])
        senders = [s["sender"] for s in report["end"]["streams"] if "sender" in s]
        streams = int(report["start"]["test_start"]["num_streams"])
    except (KeyError, TypeError, ValueError) as exc:
        raise EngineError("protocol", f"iperf3 report lacks {exc}") from None
    if bps <= 0 or received.get("bytes", 0) <= 0:
        raise EngineError("error", "iperf3 moved no data")
    mean_rtts = [s["mean_rtt"] for s in senders if s.get("mean_rtt")]
    return _Direction(
        bps=bps,
        bytes_moved=max(moved, int(received["bytes"])),
        streams=streams,
        mean_rtt_s=sum(mean_rtts) / len(mean_rtts) / 1e6 if mean_rtts else None,  # from microseconds
    )


def _reason(error: str) -> Reason:
    text = error.lower()
    if "busy" in text or "connection refused" in text or "reset by peer" in text:
        return "refused"  # "the server is busy running a test. try again later"
    if "no route" in text or "unreachable" in text:
        return "unreachable"
    if "name or service not known" in text or "resolve" in text or "temporary failure in name" in text:
        return "dns"
    if "timed out" in text or "timeout" in text:
        return "timeout"
    return "error"
