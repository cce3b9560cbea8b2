"""Latency of every dashboard panel's query against a Prometheus (e.g. one started on a backfilled
province): p50 and p95 over N runs of each instant query, as Grafana would send it.

    python bench/dashboard_queries.py --prometheus http://127.0.0.1:9090 --province "Tỉnh Nam Định" \
        [--runs 5] [--at UNIX_TIME]

Variables: $province as given, the rest "All" (.*), $site the first site of the province,
$__range 7d, $__rate_interval 2m, $__interval 30s. Prints one line per query and the overall p50/p95.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

DASHBOARDS = Path(__file__).resolve().parent.parent / "grafana" / "dashboards" / "en"


def exprs(board: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    for panel in board.get("panels", []):
        for target in panel.get("targets", []):
            if "expr" in target:
                out.append((panel.get("title", ""), target["expr"]))
    return out


def query(url: str, expr: str, at: float) -> tuple[float, int]:
    data = urllib.parse.urlencode({"query": expr, "time": f"{at:.3f}"}).encode()
    t0 = time.perf_counter()
    with urllib.request.urlopen(f"{url}/api/v1/query", data=data, timeout=300) as resp:
        body = json.loads(resp.read())
    return time.perf_counter() - t0, len(body.get("data", {}).get("result", []))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prometheus", default="http://127.0.0.1:9090")
    ap.add_argument("--province", required=True)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--at", type=float, default=0.0, help="evaluation time (default: now)")
    args = ap.parse_args()
    at = args.at or time.time()
    sites = json.loads(
        urllib.request.urlopen(
            f"{args.prometheus}/api/v1/query?"
            + urllib.parse.urlencode(
                {"query": f'site:hotspot_inventory:info{{province="{args.province}"}}', "time": f"{at:.3f}"}
            )
        ).read()
    )["data"]["result"]
    values = {
        "province": args.province,
        "commune": ".*",
        "site_type": ".*",
        "site": sites[0]["metric"]["site"] if sites else "",
        "__range": "7d",
        "__rate_interval": "2m",
        "__interval": "30s",
    }
    all_times: list[float] = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        for title, expr in exprs(json.loads(path.read_text(encoding="utf-8"))):
            text = re.sub(r"\$\{?(\w+)\}?", lambda m: values.get(m.group(1), m.group(0)), expr)
            times, n = [], 0
            for _ in range(args.runs):
                t, n = query(args.prometheus, text, at)
                times.append(t)
            all_times += times
            p95 = sorted(times)[max(0, round(0.95 * len(times)) - 1)]
            print(
                f"{path.stem:9} {statistics.median(times) * 1000:8.1f} ms p50 {p95 * 1000:8.1f} ms p95 "
                f"{n:5} series  {title}"
            )
    all_times.sort()
    print(
        f"all {len(all_times)} runs: p50 {statistics.median(all_times) * 1000:.1f} ms, "
        f"p95 {all_times[round(0.95 * len(all_times)) - 1] * 1000:.1f} ms"
    )


if __name__ == "__main__":
    main()
