"""Record the built-in engine's estimator inputs and decisions on shaped lab links (root needed).

For each condition (rate Mbit/s / RTT ms) a lab (tests/support/netlab.py) runs our speedtest server; the
engine measures it from the client namespace with its defaults, and every sample the socket loop
hands the estimator (seconds, bytes counted, bytes moved, median RTT) is written with the decision
taken, per direction, as JSON: tests/test_bandwidth_estimator.py replays them.

    .venv/bin/python -m bench.bandwidth_trace [--only 50/0,100/30/0.01,300/10] [--max-bytes 20e6]
        [--out tests/fixtures/bandwidth]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any
from unittest import mock

from agent.bandwidth import estimator, http_engine
from agent.bandwidth.engine import Limits
from tests.support.netlab import Lab
from tests.support.paths import ROOT

CONDITIONS = [(50.0, 0.0, 0.0), (100.0, 30.0, 0.0), (300.0, 10.0, 0.0)]  # Mbit/s, RTT ms, loss


def record(rate_mbit: float, rtt_ms: float, loss: float, limits: Limits, out: Path) -> None:
    traces: list[dict[str, Any]] = []

    class Recording(estimator.Estimator):
        def __init__(self, **kw: Any) -> None:
            super().__init__(**kw)
            self.trace: dict[str, Any] = {"settings": kw, "samples": []}
            traces.append(self.trace)

        def sample(self, t: float, count: int, moved: int, rtt_s: float) -> estimator.Decision:
            decision = super().sample(t, count, moved, rtt_s)
            self.trace["samples"].append([t, count, moved, rtt_s, decision.add_streams, decision.stable])
            return decision

        def stopped(self, t: float, count: int) -> estimator.Stopped:
            self.trace["stop"] = [t, count]  # a bound came first: where
            return super().stopped(t, count)

    with Lab(rate_mbit=rate_mbit, rtt_ms=rtt_ms, loss=loss, prefix="hrtr") as lab:
        srv = lab.popen(
            lab.server_ns,
            [sys.executable, "-m", "collector.speedtest_server", "--listen", f"{lab.server_ip}:8989"],
            cwd=str(ROOT),
            stdout=subprocess.PIPE,
            text=True,
        )
        assert srv.stdout is not None and "listening" in srv.stdout.readline()
        with mock.patch.object(http_engine, "Estimator", Recording), lab.inside(lab.client_ns):
            test = http_engine.measure(f"http://{lab.server_ip}:8989/", limits, threading.Event())
        limit = lab.goodput_limit_bps
    for direction, trace, bps, lower in zip(
        ("download", "upload"),
        traces,
        (test.download_bps, test.upload_bps),
        (test.download_lower_bound, test.upload_lower_bound),
        strict=True,
    ):
        trace.update(
            rate_mbit=rate_mbit,
            rtt_ms=rtt_ms,
            loss=loss,
            direction=direction,
            goodput_limit_bps=limit,
            result_bps=bps,
            lower_bound=lower,
        )
        tags = (f"-loss{loss:g}" if loss else "") + (
            f"-{limits.max_bytes / 1e6:g}MB" if limits != Limits() else ""
        )
        name = out / f"{rate_mbit:g}mbit-{rtt_ms:g}ms{tags}-{direction}.json"
        name.write_text(json.dumps(trace, indent=None) + "\n")
        print(f"{name}: {len(trace['samples'])} samples, {bps and bps / limit:.4f} of the limit")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only", help="conditions RATE/RTT[/LOSS], comma-separated (default 50/0,100/30,300/10)"
    )
    parser.add_argument("--max-bytes", type=float, help="byte limit per direction (default the engine's)")
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "fixtures" / "bandwidth")
    args = parser.parse_args()
    conditions = CONDITIONS
    if args.only:
        conditions = [(*map(float, c.split("/")), 0.0)[:3] for c in args.only.split(",")]  # type: ignore[misc]
    args.out.mkdir(parents=True, exist_ok=True)
    limits = Limits() if args.max_bytes is None else Limits(max_bytes=int(args.max_bytes))
    for rate_mbit, rtt_ms, loss in conditions:
        record(rate_mbit, rtt_ms, loss, limits, args.out)


if __name__ == "__main__":
    main()
