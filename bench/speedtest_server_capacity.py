"""What one core of the speedtest server serves on loopback: download and upload, N connections.

The server runs in its own process pinned to CPU 0 (taskset); the load comes from client processes
pinned to CPU 1 that read (or write) as fast as they can with 1 MiB buffers. Run as:

    .venv/bin/python bench/speedtest_server_capacity.py [--seconds 5] [--connections 1 4 16] \
        [--root . OTHER_CHECKOUT] [--repeat 3]

and copy the printed table into bench/RESULTS-speedtest-server.md. Each --root (default: this
tree) runs the server from that checkout, in turn, so versions compare on the same machine in the
same minutes, each cell measured in turn across them (e.g. `git archive OLD | tar -x -C
/tmp/old`, then `--root /tmp/old . --repeat 3`: medians, min–max and the ratio of the second
to the first).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MIB = 1 << 20


def _download(port: int, seconds: float, out: mp.Queue) -> None:  # type: ignore[type-arg]
    os.sched_setaffinity(0, {1})
    sock = socket.create_connection(("127.0.0.1", port))
    buf = bytearray(MIB)
    view = memoryview(buf)
    got, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        sock.sendall(b"GET /garbage?ckSize=100 HTTP/1.1\r\nHost: x\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(4096)
        left = 100 * MIB - len(head.split(b"\r\n\r\n", 1)[1])
        got += 100 * MIB - left
        while left > 0 and time.monotonic() < end:
            n = sock.recv_into(view[: min(MIB, left)])
            left -= n
            got += n
        if left:
            break
    out.put(got)
    sock.close()


def _upload(port: int, seconds: float, out: mp.Queue) -> None:  # type: ignore[type-arg]
    os.sched_setaffinity(0, {1})
    sock = socket.create_connection(("127.0.0.1", port))
    body = memoryview(os.urandom(MIB))
    sent, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        sock.sendall(b"POST /empty HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (64 * MIB))
        for _ in range(64):
            sock.sendall(body)
        sent += 64 * MIB
        resp = b""
        while b"\r\n\r\n" not in resp:
            resp += sock.recv(4096)
    out.put(sent)
    sock.close()


def measure(kind: str, port: int, connections: int, seconds: float) -> float:
    out: mp.Queue = mp.Queue()  # type: ignore[type-arg]
    target = _download if kind == "download" else _upload
    procs = [mp.Process(target=target, args=(port, seconds, out)) for _ in range(connections)]
    start = time.monotonic()
    for p in procs:
        p.start()
    total = sum(out.get(timeout=seconds + 60) for _ in procs)
    for p in procs:
        p.join()
    return float(total * 8 / (time.monotonic() - start))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--root", type=Path, nargs="+", default=[ROOT], help="checkouts to serve from")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each cell, in turn across --root")
    args = parser.parse_args()
    servers = [start_server(root) for root in args.root]
    try:
        ports = [port for _proc, port in servers]
        names = " | ".join(f"Gbit/s, {root} (median of {args.repeat})" for root in args.root)
        ratio = " | ratio second/first" if len(ports) > 1 else ""
        print(f"| direction | connections | {names}{ratio} |")
        print("| --- " * (2 + len(ports) + (len(ports) > 1)) + "|")
        for kind in ("download", "upload"):
            for n in args.connections:
                runs: list[list[float]] = [[] for _ in ports]
                for _ in range(args.repeat):  # in turn, so a drifting machine load hits all alike
                    for i, port in enumerate(ports):
                        runs[i].append(measure(kind, port, n, args.seconds) / 1e9)
                medians = [statistics.median(r) for r in runs]
                cells = " | ".join(
                    f"{m:.2f} ({min(r):.1f}–{max(r):.1f})" for m, r in zip(medians, runs, strict=True)
                )
                ratios = "".join(f" | {m / medians[0]:.2f}" for m in medians[1:2])
                print(f"| {kind} | {n} | {cells}{ratios} |", flush=True)
    finally:
        for proc, _port in servers:
            proc.terminate()
            proc.wait(timeout=10)
    return 0


def start_server(root: Path) -> tuple[subprocess.Popen[str], int]:
    """The test server from the checkout at `root`, pinned to CPU 0; (process, port)."""
    server = subprocess.Popen(
        ["taskset", "-c", "0", sys.executable, "-m", "collector.speedtest_server", "--listen", "127.0.0.1:0"],
        cwd=root,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    return server, int(server.stdout.readline().rsplit(":", 1)[1].strip("/\n"))


if __name__ == "__main__":
    sys.exit(main())
