"""Compare the three bandwidth engines on the same shaped lab link, in the same run (root needed).

For each link condition (rate × RTT, plus loss at 100 Mbit/s 30 ms) one lab (tests/support/netlab.py) is
built; its server namespace runs the collector's speedtest server (built-in engine),
tests/support/ookla_server.py on ports 80/443 with speedtest.net's names in the client's /etc/netns hosts
(speedtest-cli), and `iperf3 -s`. Each engine runs in its own process in the client namespace;
CPU seconds are that process's and its children's (os.wait4), wall time is the whole run. With
--runs N each condition's lab runs the engines N times (alternating), and a second table gives each
condition's median and spread (min–max) per engine, with the load average next to each run.

    .venv/bin/python -m bench.bandwidth_compare [--quick | --only 100/30,900/0] [--runs 3]
        [--engines http,iperf3] [--max-bytes 500e6] [--prefix hml] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tests.support.netlab import Lab, unavailable_reason
from tests.support.ookla_server import make_tls
from tests.support.paths import ROOT

HTTP_PORT = 8989
# speedtest-cli as it ships: 10 s per direction, no byte cap. The built-in engine: its defaults.
LIMITS: dict[str, dict[str, Any]] = {
    "http": {},
    "speedtest": {"max_duration_s": 10.0, "max_bytes": 10**11},
    "iperf3": {"max_duration_s": 6.0},  # -O 1 -t 5, 4 streams
}
GRID = [(rate, rtt, 0.0) for rate in (10, 50, 100, 300, 900) for rtt in (0, 30, 100)]
GRID += [(100, 30, 0.005), (100, 30, 0.01)]
QUICK_GRID = [(100, 30, 0.0)]
NOTES = "## Notes"


@dataclass
class Run:
    rate_mbit: float
    rtt_ms: float
    loss: float
    engine: str
    ok: bool
    reason: str
    down_bps: float | None
    up_bps: float | None
    down_bytes: int
    up_bytes: int
    cpu_s: float
    wall_s: float
    loadavg: float
    limit_bps: float
    run: int = 1
    lower_bound: str = ""  # directions reported as "at least X": "down", "up", "down+up"


def run_engine(
    lab: Lab, engine: str, server: str, env: dict[str, str]
) -> tuple[dict[str, Any], float, float]:
    """One engine, in its own process in the client namespace: (its JSON, CPU seconds, wall seconds)."""
    argv = ["ip", "netns", "exec", lab.client_ns, "env", *(f"{k}={v}" for k, v in env.items())]
    argv += [sys.executable, "-m", "bench.bandwidth_compare", "--engine", engine, "--server", server]
    argv += ["--limits", json.dumps(LIMITS[engine])]
    started = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    killer = threading.Timer(180, proc.kill)  # bounded whatever an engine does
    killer.start()
    assert proc.stdout is not None and proc.stderr is not None
    out, err = proc.stdout.read(), proc.stderr.read()
    # `ip netns exec` and `env` exec the command: this pid is the engine's Python process.
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    killer.cancel()
    wall = time.monotonic() - started
    try:
        return json.loads(out.strip().splitlines()[-1]), usage.ru_utime + usage.ru_stime, wall
    except (IndexError, json.JSONDecodeError):
        return (
            {"ok": False, "reason": "crash", "detail": err.strip()[-300:]},
            usage.ru_utime + usage.ru_stime,
            wall,
        )


def engine_main(engine: str, server: str, limits: dict[str, Any]) -> None:
    """Inside the client namespace: run one engine once and print its result as one JSON line."""
    from agent.bandwidth.engine import EngineError, Limits

    if engine == "http":
        from agent.bandwidth.http_engine import measure
    elif engine == "speedtest":
        from agent.bandwidth.speedtest_engine import measure
    else:
        from agent.bandwidth.iperf3_engine import measure
    try:
        result = measure(server, Limits(**limits), threading.Event())
        print(json.dumps({"ok": True, **asdict(result)}))
    except EngineError as exc:
        partial = asdict(exc.partial) if exc.partial else {}
        print(json.dumps({"ok": False, "reason": exc.reason, "detail": exc.detail, **partial}))


def wait_listening(lab: Lab, port: int) -> None:
    for _ in range(200):
        if lab.run(lab.server_ns, ["ss", "-Hltn", f"sport = :{port}"]).stdout.strip():
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port} in the server namespace")


def measure_condition(
    rate: float,
    rtt: float,
    loss: float,
    tls_dir: Path,
    prefix: str = "hmlab",
    repeat: int = 1,
    engines: tuple[str, ...] = ("http", "speedtest", "iperf3"),
) -> tuple[list[Run], dict[str, int]]:
    runs = []
    with Lab(rate_mbit=rate, rtt_ms=rtt, loss=loss, prefix=prefix) as lab:
        quiet: dict[str, Any] = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "cwd": ROOT}
        py = sys.executable
        lab.popen(
            lab.server_ns,
            [py, "-m", "collector.speedtest_server", "--listen", f"0.0.0.0:{HTTP_PORT}"],
            **quiet,
        )
        url = f"http://{lab.server_ip}/speedtest/upload.php"
        ookla = [py, "-m", "tests.support.ookla_server", "--listen", "0.0.0.0:80"]
        ookla += ["--tls-listen", "0.0.0.0:443"]
        lab.popen(lab.server_ns, [*ookla, "--tls-dir", str(tls_dir), "--server-url", url], **quiet)
        lab.popen(lab.server_ns, ["iperf3", "-s"], **quiet)
        for port in (HTTP_PORT, 80, 443, 5201):
            wait_listening(lab, port)
        lab.hosts(lab.client_ns, {"www.speedtest.net": lab.server_ip, "c.speedtest.net": lab.server_ip})
        servers = {
            "http": (f"http://{lab.server_ip}:{HTTP_PORT}/", {}),
            "speedtest": ("", {"SSL_CERT_FILE": str(tls_dir / "ca.pem")}),
            "iperf3": (lab.server_ip, {}),
        }
        for n, engine in ((n, e) for n in range(1, repeat + 1) for e in engines):
            server, env = servers[engine]
            load = os.getloadavg()[0]
            out, cpu, wall = run_engine(lab, engine, server, env)
            lower = "+".join(
                d for d in ("down", "up") if out.get(f"{'download' if d == 'down' else 'upload'}_lower_bound")
            )
            runs.append(
                Run(
                    rate, rtt, loss, engine, bool(out.get("ok")), str(out.get("reason") or ""),
                    out.get("download_bps"), out.get("upload_bps"), int(out.get("download_bytes") or 0),
                    int(out.get("upload_bytes") or 0), cpu, wall, load, lab.goodput_limit_bps, n, lower,
                )
            )  # fmt: skip
            r = runs[-1]
            print(
                f"{rate:>5} Mbit {rtt:>3} ms {loss * 100:.1f}% #{n} {engine:<9} "
                f"down {_ratio(r.down_bps, r.limit_bps)} up {_ratio(r.up_bps, r.limit_bps)} "
                f"{(r.down_bytes + r.up_bytes) / 1e6:7.1f} MB cpu {cpu:5.2f} s wall {wall:5.1f} s "
                f"load {load:.2f} {'at least: ' + lower if lower else ''} "
                f"{'' if r.ok else r.reason + ': ' + str(out.get('detail'))[:120]}",
                flush=True,
            )
    return runs, lab.delayline_counters


def delayline_ceiling(prefix: str = "hmlab") -> list[Run]:
    """iperf3 at 900 Mbit/s through the delay line with ~0 delay: what the user-space path can carry."""
    runs, counters = [], {}
    with Lab(rate_mbit=900, rtt_ms=0.002, prefix=prefix) as lab:
        lab.popen(lab.server_ns, ["iperf3", "-s"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_listening(lab, 5201)
        load = os.getloadavg()[0]
        out, cpu, wall = run_engine(lab, "iperf3", lab.server_ip, {})
        runs.append(
            Run(
                900, 0.0, 0.0, "iperf3 via delay line", bool(out.get("ok")), str(out.get("reason") or ""),
                out.get("download_bps"), out.get("upload_bps"), int(out.get("download_bytes") or 0),
                int(out.get("upload_bytes") or 0), cpu, wall, load, lab.goodput_limit_bps,
            )
        )  # fmt: skip
    counters = lab.delayline_counters
    print(f"delay line at 900 Mbit/s: down {_ratio(runs[0].down_bps, runs[0].limit_bps)} counters {counters}")
    return runs


def _condition(text: str) -> tuple[float, float, float]:
    """ "100/30" or "100/30/0.5" (loss in %) -> (rate, rtt, loss fraction)."""
    parts = [float(p) for p in text.split("/")]
    return parts[0], parts[1], (parts[2] / 100 if len(parts) > 2 else 0.0)


def _ratio(bps: float | None, limit: float) -> str:
    return "  —  " if bps is None else f"{bps / limit:.3f}"


def _mbit(bps: float | None) -> str:
    return "—" if bps is None else f"{bps / 1e6:.1f}"


def report(runs: list[Run], ceiling: list[Run], started: float, loads: tuple[float, float], cmd: str) -> str:
    lines = [
        "# Bandwidth engines compared on the lab link",
        "",
        f"Command (root, from the repository root): `{cmd}`",
        "",
        f"Run: {time.strftime('%Y-%m-%d %H:%M', time.localtime(started))}, "
        f"{time.time() - started:.0f} s in all; machine: {os.cpu_count()} cores, load average (1 min) "
        f"{loads[0]:.2f} at the start, {loads[1]:.2f} at the end (other test suites may have run on this "
        "machine at the same time: CPU figures can be contended).",
        "",
        "Limit = 1448/1514 × rate (TCP goodput over a 1500-byte MTU). Ratios are measured ÷ limit. "
        "MB = bytes both directions moved (what the data budget pays), 10⁶ bytes. CPU = user+system seconds "
        "of the engine's process and its children (client side only; servers not counted), including "
        "Python start-up (~0.1 s; speedtest-cli starts two interpreters). Engines ran one after another "
        f"on the same lab: built-in ({_http_limits()}, adaptive), speedtest-cli "
        "(10 s per direction, as shipped), iperf3 (4 streams, -O 1 -t 5). Load = the 1-minute load "
        "average just before that run. \"at least\": the built-in engine flagged that direction as a "
        "lower bound (a limit stopped it before its full measurement).",
        "",
    ]  # fmt: skip
    if any(r.run > 1 for r in runs):
        lines += [*spread(runs), ""]
    lines += [
        "| rate Mbit/s | RTT ms | loss | run | engine | down ÷ limit | up ÷ limit | down / up Mbit/s | MB "
        "| CPU s | µs CPU/MB | wall s | load | at least | failure | iperf3 same run down / up ÷ limit |",
        "|---:|---:|---:|---:|---|---:|---:|---|---:|---:|---:|---:|---:|---|---|---|",
    ]  # fmt: skip
    for r in [*runs, *ceiling]:
        mb = (r.down_bytes + r.up_bytes) / 1e6
        per_mb = f"{r.cpu_s / mb * 1e6:.0f}" if mb else "—"
        twin = _iperf3_twin(runs, r) if r.engine == "http" else None
        beside = (
            ""
            if twin is None
            else f"{_ratio(twin.down_bps, r.limit_bps)} / {_ratio(twin.up_bps, r.limit_bps)}"
        )
        lines.append(
            f"| {r.rate_mbit:g} | {r.rtt_ms:g} | {r.loss * 100:g}% | {r.run} | {r.engine} "
            f"| {_ratio(r.down_bps, r.limit_bps)} | {_ratio(r.up_bps, r.limit_bps)} "
            f"| {_mbit(r.down_bps)} / {_mbit(r.up_bps)} | {mb:.0f} "
            f"| {r.cpu_s:.2f} | {per_mb} | {r.wall_s:.1f} | {r.loadavg:.2f} | {r.lower_bound} | {r.reason} "
            f"| {beside} |"
        )
    lines += ["", "## Targets (computed from the table)", "", *targets(runs), ""]
    return "\n".join(lines)


def _http_limits() -> str:
    from agent.bandwidth.engine import Limits
    from agent.bandwidth.estimator import BASE_CAP_BYTES, WINDOW_BUDGET_S

    limits = {**asdict(Limits()), **LIMITS["http"]}
    return (
        f"{limits['max_duration_s']:g} s per direction; byte cap {BASE_CAP_BYTES / 1e6:g} MB or "
        f"{WINDOW_BUDGET_S:g} s of measuring at the line's rate, at most {limits['max_bytes'] / 1e6:g} MB"
    )


def _iperf3_twin(runs: list[Run], r: Run) -> Run | None:
    """iperf3's run with the same number in the same lab as the built-in run `r` (run right after it)."""
    key = (r.rate_mbit, r.rtt_ms, r.loss, r.run)
    return next(
        (o for o in runs if o.engine == "iperf3" and (o.rate_mbit, o.rtt_ms, o.loss, o.run) == key), None
    )


def _span(values: list[float | None], limit: float) -> str:
    """Median [min–max] of measured ÷ limit; failures (None) counted apart."""
    got = sorted(v / limit for v in values if v is not None)
    failed = len(values) - len(got)
    if not got:
        return "failed"
    text = f"{statistics.median(got):.3f} [{got[0]:.3f}–{got[-1]:.3f}]"
    return text + (f", {failed} failed" if failed else "")


def spread(runs: list[Run]) -> list[str]:
    """Each condition and engine over its runs: median [min–max] of ÷ limit, bytes, load."""
    lines = [
        "Per condition and engine over its runs: median [min–max] of measured ÷ limit; for the "
        "built-in engine also its median ÷ iperf3's median in the same lab (what the lab itself could "
        "carry at that moment).",
        "",
        "| rate Mbit/s | RTT ms | loss | engine | runs | down ÷ limit | up ÷ limit | ÷ iperf3 down / up "
        "| MB median | at least (runs) | load min–max |",
        "|---:|---:|---:|---|---:|---|---|---|---:|---:|---|",
    ]  # fmt: skip
    keys = list(dict.fromkeys((r.rate_mbit, r.rtt_ms, r.loss, r.engine) for r in runs))
    for rate, rtt, loss, engine in keys:
        same = [r for r in runs if (r.rate_mbit, r.rtt_ms, r.loss, r.engine) == (rate, rtt, loss, engine)]
        limit = same[0].limit_bps
        vs = "—"
        ref = [r for r in runs if (r.rate_mbit, r.rtt_ms, r.loss, r.engine) == (rate, rtt, loss, "iperf3")]
        if engine == "http" and ref:
            pairs = []
            for attr in ("down_bps", "up_bps"):
                mine = [getattr(r, attr) for r in same if getattr(r, attr) is not None]
                theirs = [getattr(r, attr) for r in ref if getattr(r, attr) is not None]
                ok = mine and theirs
                pairs.append(f"{statistics.median(mine) / statistics.median(theirs):.3f}" if ok else "—")
            vs = " / ".join(pairs)
        mb = statistics.median((r.down_bytes + r.up_bytes) / 1e6 for r in same)
        loads = [r.loadavg for r in same]
        lines.append(
            f"| {rate:g} | {rtt:g} | {loss * 100:g}% | {engine} | {len(same)} "
            f"| {_span([r.down_bps for r in same], limit)} | {_span([r.up_bps for r in same], limit)} "
            f"| {vs} | {mb:.0f} | {sum(bool(r.lower_bound) for r in same)} "
            f"| {min(loads):.2f}–{max(loads):.2f} |"
        )
    return lines


def targets(runs: list[Run]) -> list[str]:
    out = []
    http = [r for r in runs if r.engine == "http"]
    # By what iperf3 read in the same run: it reached the limit (the engine's miss), it read below
    # -3% too (the lab's ceiling then), or it gave no figure.
    misses: dict[str, list[str]] = {"reached": [], "below": [], "none": []}
    for r in http:
        twin = _iperf3_twin(runs, r)
        for name, bps in (("down", r.down_bps), ("up", r.up_bps)):
            if bps is None or abs(bps / r.limit_bps - 1) > 0.03:
                got = "failed" if bps is None else f"{(bps / r.limit_bps - 1) * 100:+.1f}%"
                theirs = None if twin is None else getattr(twin, f"{name}_bps")
                what = f"{r.rate_mbit:g} Mbit/s {r.rtt_ms:g} ms {r.loss * 100:g}% #{r.run} {name} {got}"
                if theirs is None:
                    misses["none"].append(what)
                    continue
                what += f" (iperf3 {theirs / r.limit_bps:.3f})"
                misses["below" if theirs / r.limit_bps < 0.97 else "reached"].append(what)
    count = sum(len(m) for m in misses.values())
    words = {
        "reached": "misses where iperf3 reached ±3% in the same run",
        "below": "misses where iperf3 itself read below -3% in the same run (the lab's ceiling then)",
        "none": "misses where iperf3 gave no figure in the same run",
    }
    out.append(
        f"- Built-in engine within ±3% of the limit, both directions: {len(http) * 2 - count} of "
        f"{len(http) * 2} pass" + "".join(f"; {words[k]}: {'; '.join(m)}" for k, m in misses.items() if m)
    )
    at = [r for r in runs if (r.rate_mbit, r.rtt_ms, r.loss) == (100, 30, 0.0)]
    h_mb = [r.down_bytes + r.up_bytes for r in at if r.engine == "http"]
    s_mb = [r.down_bytes + r.up_bytes for r in at if r.engine == "speedtest"]
    if h_mb and s_mb:
        share = statistics.median(h_mb) / max(1, statistics.median(s_mb))
        out.append(
            f"- Bytes at 100 Mbit/s 30 ms, built-in ÷ speedtest-cli (medians): {share:.0%} (target ≤ 40%)"
        )
    worse = []
    for h in http:
        same = [r for r in runs if (r.rate_mbit, r.rtt_ms, r.loss) == (h.rate_mbit, h.rtt_ms, h.loss)]
        s = next((r for r in same if r.engine == "speedtest" and r.run == h.run), None)
        if s is None or not (h.down_bytes + h.up_bytes) or not (s.down_bytes + s.up_bytes):
            continue
        hp = h.cpu_s / (h.down_bytes + h.up_bytes)
        sp = s.cpu_s / (s.down_bytes + s.up_bytes)
        if hp > sp:
            worse.append(f"{h.rate_mbit:g}/{h.rtt_ms:g}/{h.loss * 100:g}%: {hp / sp:.2f}×")
    if not any(r.engine == "speedtest" for r in runs):
        out.append("- CPU per byte: no speedtest-cli runs, not compared")
    else:
        out.append(
            "- CPU per byte, built-in vs speedtest-cli: "
            + ("no worse in every condition" if not worse else "worse in " + ", ".join(worse))
        )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one condition (100 Mbit/s, 30 ms) only")
    parser.add_argument("--out", type=Path, help="write the Markdown table here")
    parser.add_argument(
        "--only", help="only these conditions, RATE/RTT[/LOSS%%] comma-separated, e.g. 100/30,100/30/1"
    )
    parser.add_argument("--prefix", default="hmlab", help="namespace name prefix (default %(default)s)")
    parser.add_argument("--runs", type=int, default=1, help="runs of each engine per condition (default 1)")
    parser.add_argument(
        "--engines", default="http,speedtest,iperf3", help="which engines, comma-separated (default all)"
    )
    parser.add_argument("--max-bytes", type=float, help="the built-in engine's byte cap per direction")
    parser.add_argument("--engine", help=argparse.SUPPRESS)
    parser.add_argument("--server", help=argparse.SUPPRESS)
    parser.add_argument("--limits", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.engine:
        engine_main(args.engine, args.server, json.loads(args.limits or "{}"))
        return 0
    engines = tuple(e for e in args.engines.split(",") if e)
    if not engines or set(engines) - set(LIMITS):
        print(f"--engines: choose from {', '.join(LIMITS)}", file=sys.stderr)
        return 2
    if args.max_bytes:
        LIMITS["http"]["max_bytes"] = int(args.max_bytes)
    if (why := unavailable_reason()) is not None:
        print(f"cannot build the lab: {why}", file=sys.stderr)
        return 2
    started = time.time()
    load_start = os.getloadavg()[0]
    runs: list[Run] = []
    with tempfile.TemporaryDirectory() as tmp:
        tls_dir = Path(tmp)
        make_tls(tls_dir)
        grid = QUICK_GRID if args.quick else GRID
        if args.only:
            grid = [_condition(c) for c in args.only.split(",")]
        for rate, rtt, loss in grid:
            done, _ = measure_condition(rate, rtt, loss, tls_dir, args.prefix, args.runs, engines)
            runs += done
        ceiling = [] if args.quick or args.only else delayline_ceiling(args.prefix)
    cmd = "sudo .venv/bin/python -m bench.bandwidth_compare" + (" --quick" if args.quick else "")
    cmd += f" --only {args.only}" if args.only else ""
    cmd += f" --runs {args.runs}" if args.runs > 1 else ""
    cmd += f" --engines {args.engines}" if engines != tuple(LIMITS) else ""
    cmd += f" --max-bytes {args.max_bytes:g}" if args.max_bytes else ""
    cmd += f" --out {args.out}" if args.out else ""
    text = report(runs, ceiling, started, (load_start, os.getloadavg()[0]), cmd)
    print(text)
    if args.out:
        # Hand-written notes (from "## Notes" on) survive a re-run.
        old = args.out.read_text() if args.out.exists() else ""
        notes = old[old.index(NOTES) :] if NOTES in old else ""
        args.out.write_text(text + "\n" + notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
