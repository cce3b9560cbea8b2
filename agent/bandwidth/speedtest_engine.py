"""The speedtest-cli engine: Ookla's speedtest.net servers through the speedtest-cli 2.1.3 library.

The library can block for a long time (a read with no timeout of its own, a server that trickles
bytes), so it runs in a child process (`python -m agent.bandwidth.speedtest_engine`) that reports
JSON lines on a pipe; the parent kills it when the time is up or the test is cancelled, and keeps
what it had already reported. `server` is "" (the library picks the lowest-latency of the 5 nearest),
"1234" or "1234,5678" (speedtest.net server ids). `secure=True`: speedtest.net answers plain HTTP
with 403. The library's own method is kept (8 download and, after a fast download, 8 upload
connections; ramp-up included), but its test length is set to `limits.max_duration_s`, and its list
of transfer sizes is cut so one direction can move at most `limits.max_bytes`.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
from pathlib import Path
from typing import IO, Any

from agent.bandwidth.engine import BandwidthTest, EngineError, Limits, Progress
from agent.digits import ascii_uint
from agent.result import REASONS, Reason, reason_for

# Time for the configuration, the server list and 15 latency requests: twice the test length,
# at least 4 s and at most 15 s (enough on a slow rural line).
SETUP_MIN_S, SETUP_MAX_S = 4.0, 15.0
CHILD_START_S = 2.0  # the child imports the library
LIBRARY_TIMEOUT_S = 10  # each socket operation inside the library
# Sizes of speedtest.net's random{N}x{N}.jpg files, to cut the download list to the byte limit.
JPG_BYTES = {
    350: 245_388,
    500: 505_544,
    750: 1_118_012,
    1000: 1_986_284,
    1500: 4_468_241,
    2000: 7_907_740,
    2500: 12_407_926,
    3000: 17_816_816,
    3500: 24_262_167,
    4000: 31_625_365,
}


def parse_server_ids(server: str) -> list[int]:
    """ "" → [] (automatic choice); "1234,5678" → [1234, 5678]; anything else is a ValueError."""
    parts = [p.strip() for p in server.split(",")] if server.strip() else []
    if any(ascii_uint(p) is None for p in parts):
        raise ValueError(
            f'speedtest server must be "" or speedtest.net server ids like "1234,5678", got {server!r}'
        )
    return [int(p) for p in parts]


def measure(
    server: str, limits: Limits, cancelled: threading.Event, progress: Progress | None = None
) -> BandwidthTest:
    """Run one speedtest.net test (latency, download, upload) within a hard time limit."""
    try:
        ids = parse_server_ids(server)
    except ValueError as exc:
        raise EngineError("error", str(exc)) from None
    setup_s = min(SETUP_MAX_S, max(SETUP_MIN_S, 2 * limits.max_duration_s))
    hard_limit_s = CHILD_START_S + setup_s + 2 * limits.max_duration_s
    request = {"ids": ids, "max_duration_s": limits.max_duration_s, "max_bytes": limits.max_bytes}
    started = time.monotonic()
    events: dict[str, dict[str, Any]] = {}
    env = dict(os.environ)
    # The child imports this package from where the parent found it, installed or not.
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.bandwidth.speedtest_engine", json.dumps(request)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        start_new_session=True,  # so the library's threads die with it
    )
    stderr_tail = bytearray()
    try:
        failure = _follow(proc, events, started + hard_limit_s, cancelled, progress, stderr_tail)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
    stderr = stderr_tail.decode(errors="replace").strip()
    test = _test(events, time.monotonic() - started)
    if failure is None and "error" in events:
        reason = events["error"].get("reason")
        failure = (reason if reason in REASONS else "error", str(events["error"].get("detail")))
    if failure is None and "upload" not in events:
        last = stderr.splitlines()[-1] if stderr else f"exit status {proc.returncode}"
        failure = ("error", f"speedtest-cli stopped without a result: {last}")
    if failure is not None:
        partial = test if test.download_bps is not None else None
        raise EngineError(failure[0], failure[1], partial)
    return test


def _follow(
    proc: subprocess.Popen[bytes],
    events: dict[str, dict[str, Any]],
    deadline: float,
    cancelled: threading.Event,
    progress: Progress | None,
    stderr_tail: bytearray,
) -> tuple[Reason, str] | None:
    """Collect the child's events until it ends; a failure of our own (time, cancel) or None."""
    assert proc.stdout is not None and proc.stderr is not None
    limit_s = deadline - time.monotonic()
    buffered = b""
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        sel.register(proc.stderr, selectors.EVENT_READ)  # drained too, so the child never blocks on it
        while True:
            if cancelled.is_set():
                return ("timeout", "the test was cancelled" + _during(events))
            left = deadline - time.monotonic()
            if left <= 0:
                return ("timeout", f"speedtest-cli did not finish within {limit_s:.0f} s" + _during(events))
            for key, _ in sel.select(timeout=min(left, 0.1)):
                chunk = os.read(key.fd, 65536)
                if key.fileobj is proc.stderr:
                    if not chunk:
                        sel.unregister(proc.stderr)
                    stderr_tail[:] = (stderr_tail + chunk)[-4096:]
                    continue
                if not chunk:
                    return None
                buffered += chunk
                *lines, buffered = buffered.split(b"\n")
                for line in lines:
                    event = json.loads(line)
                    events[event["event"]] = event
                    if progress is not None and event["event"] in ("download", "upload"):
                        progress(event["event"], float(event["bps"]))


def _during(events: dict[str, dict[str, Any]]) -> str:
    if "download" in events:
        return " (during the upload)"
    if "server" in events:
        return " (during the download)"
    return " (while contacting speedtest.net)"


def _test(events: dict[str, dict[str, Any]], duration_s: float) -> BandwidthTest:
    server = events.get("server", {})
    down = events.get("download", {})
    up = events.get("upload", {})
    return BandwidthTest(
        engine="speedtest",
        server=str(server.get("id", "")),
        download_bps=down.get("bps"),
        upload_bps=up.get("bps"),
        download_bytes=int(down.get("bytes", 0)),
        upload_bytes=int(up.get("bytes", 0)),
        latency_idle_s=server["latency_ms"] / 1000 if "latency_ms" in server else None,
        latency_loaded_s=None,  # speedtest-cli measures no latency under load
        download_streams=int(down.get("streams", 0)),
        upload_streams=int(up.get("streams", 0)),
        duration_s=duration_s,
    )


# --- the child process ------------------------------------------------------------------------------


class _Failed(Exception):
    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason: Reason = reason
        self.detail = detail


def _child(request: dict[str, Any], out: IO[str]) -> None:
    """Run the library and print one JSON line per event: server, download, upload, or error."""

    def emit(event: str, **fields: Any) -> None:
        out.write(json.dumps({"event": event, **fields}) + "\n")
        out.flush()

    try:
        _run_library(request, emit)
    except _Failed as exc:
        emit("error", reason=exc.reason, detail=exc.detail)


def _run_library(request: dict[str, Any], emit: Any) -> None:
    import speedtest  # imported here: only the child needs it

    try:
        st = speedtest.Speedtest(secure=True, timeout=LIBRARY_TIMEOUT_S)
    except speedtest.ConfigRetrievalError as exc:
        raise _describe(exc.args[0] if exc.args else exc, "the configuration request") from None
    except speedtest.SpeedtestConfigError as exc:
        raise _Failed(
            "protocol", f"speedtest.net sent a configuration speedtest-cli cannot read: {exc}"
        ) from None
    _apply_limits(st.config, float(request["max_duration_s"]), int(request["max_bytes"]))
    ids: list[int] = request["ids"]
    try:
        st.get_servers(list(ids))
    except speedtest.NoMatchedServers:
        listed = ",".join(map(str, ids))
        raise _Failed("error", f"speedtest.net lists no server with id {listed}") from None
    if not st.servers:
        raise _Failed("error", "speedtest.net returned no servers (the server list was empty or unavailable)")
    try:
        candidates = (
            st.get_closest_servers() if not ids else [s for group in st.servers.values() for s in group]
        )
        best = st.get_best_server(candidates)
    except speedtest.SpeedtestBestServerFailure as exc:
        raise _Failed("unreachable", f"no speedtest.net server answered the latency test: {exc}") from None
    # The library scores a failed latency request as 3600 s: every attempt failed.
    if best["latency"] >= 3600 * 3 / 6 * 1000:
        raise _Failed(
            "unreachable", f"none of {len(candidates)} speedtest.net servers answered the latency test"
        )
    emit(
        "server",
        id=int(best["id"]),
        host=best.get("host", ""),
        sponsor=best.get("sponsor", ""),
        latency_ms=float(best["latency"]),
    )
    bps = st.download()
    if st.results.bytes_received <= 0:
        raise _Failed("unreachable", f"the download from {best.get('host')} moved no data")
    emit("download", bps=bps, bytes=st.results.bytes_received, streams=st.config["threads"]["download"])
    bps = st.upload()
    if st.results.bytes_sent <= 0:
        raise _Failed("unreachable", f"the upload to {best.get('host')} moved no data")
    emit("upload", bps=bps, bytes=st.results.bytes_sent, streams=st.config["threads"]["upload"])


def _apply_limits(config: dict[str, Any], max_duration_s: float, max_bytes: int) -> None:
    """Set the test length and cut the size lists so each direction moves at most max_bytes."""
    config["length"] = {"download": max_duration_s, "upload": max_duration_s}
    count = int(config["counts"]["download"])
    jpg = [JPG_BYTES.get(n, round(n * n * 1.977)) for n in config["sizes"]["download"]]
    config["sizes"]["download"] = config["sizes"]["download"][: _fitting(jpg, count, max_bytes)]
    count = int(config["counts"]["upload"])
    keep = _fitting(config["sizes"]["upload"], count, max_bytes)
    config["sizes"]["upload"] = config["sizes"]["upload"][:keep]
    config["upload_max"] = min(int(config["upload_max"]), count * keep)


def _fitting(size_bytes: list[int], count: int, max_bytes: int) -> int:
    """How many of the sizes (each requested `count` times) fit in max_bytes; at least one."""
    total = 0
    for i, size in enumerate(size_bytes):
        total += count * size
        if total > max_bytes:
            return max(1, i)
    return len(size_bytes)


def _describe(exc: BaseException, what: str) -> _Failed:
    """A failed request to speedtest.net in plain words, with the matching reason."""
    if isinstance(exc, urllib.error.HTTPError):
        return _Failed("http_status", f"speedtest.net refused {what}: HTTP {exc.code} {exc.reason}")
    cause: Any = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(cause, ssl.SSLCertVerificationError):
        return _Failed(
            "protocol", f"speedtest.net's TLS certificate was not accepted: {cause.verify_message}"
        )
    if isinstance(cause, socket.gaierror):
        return _Failed("dns", f"www.speedtest.net did not resolve: {cause.strerror}")
    if isinstance(cause, BaseException):
        reason = reason_for(cause)
        if reason == "error" and isinstance(cause, OSError) and cause.errno in (101, 113):
            reason = "unreachable"
        return _Failed(reason, f"speedtest.net could not be reached for {what}: {cause}")
    return _Failed("error", f"speedtest.net could not be reached for {what}: {cause}")


def main() -> None:
    # stdout carries the events only: anything the library prints goes to stderr.
    out = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    sys.stdout = sys.stderr
    try:
        _child(json.loads(sys.argv[1]), out)
    except Exception as exc:  # the parent reports it; a traceback in a log helps nobody here
        out.write(
            json.dumps({"event": "error", "reason": "error", "detail": f"speedtest-cli failed: {exc!r}"})
        )
        out.write("\n")
        out.flush()


if __name__ == "__main__":
    main()
