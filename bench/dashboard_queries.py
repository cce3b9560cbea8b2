"""Latency of every dashboard panel's query against a Prometheus on a backfilled province: p50 and
p95 over N runs of each query, sent as Grafana sends it (instant panels at now, graphs over the
dashboard's 7 days at a 10-minute step, or the panel's minimum interval, aligned to itself).

    python -m bench.dashboard_queries --data DATA_DIR --province "Tỉnh Nam Định" \
        [--dashboards site fleet] [--runs 5]

starts Prometheus on DATA_DIR (a `hotspot-collector backfill` directory; Prometheus compacts it in
place) with the shipped rules at their production intervals and DATA_DIR/inventory.yaml's
inventory rules, waits for the 7-day verdicts, and measures; `--prometheus URL` measures a running
one instead. Variables: $province as given, the others "All" (.*), $site the first site the
variable lists that an agent reported in the last day, and on the commune dashboard (no "All")
$commune that site's commune. Prints one line per query (p50, p95, series returned) and each
dashboard's p50/p95 over all its runs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from collector import inventory, targets
from tests.support.dashboards import DASHBOARDS, RULES_DIR, graph_step, load, substitute
from tests.support.dashboards import targets as panel_targets
from tests.support.prometheus import Prometheus

RANGE_S, STEP_S = 7 * 86400, 600  # the dashboards' default range; Grafana's step on ~1,000 points
SEVEN_DAYS = (
    "site:hotspot_verdict:state_7d",
    "site:hotspot_requirement_met:bool",
    "site:hotspot_bandwidth_tests_meeting:ratio_7d",
    "site:hotspot_latency_tests_within_limit:ratio_7d",
    "site:hotspot_availability:ratio_7d",
)
GRAFANA = {"__range": "7d", "__interval": "10m", "__rate_interval": "630s"}


def api(url: str, path: str, **params: str) -> Any:
    data = urllib.parse.urlencode(params).encode()
    with urllib.request.urlopen(f"{url}/api/v1/{path}", data=data, timeout=300) as resp:
        return json.loads(resp.read())["data"]


def timed(url: str, expr: str, step: int | None, now: float) -> tuple[float, int]:
    """Seconds the query took and the number of series it returned (`step` None: instant)."""
    t0 = time.perf_counter()
    if step is None:
        got = api(url, "query", query=expr, time=f"{now:.3f}")
    else:
        end = now // step * step  # Grafana aligns a graph's range to its step
        got = api(
            url, "query_range", query=expr, start=f"{end - RANGE_S:.0f}", end=f"{end:.0f}", step=str(step)
        )
    return time.perf_counter() - t0, len(got["result"])


def start_prometheus(data: Path, work: Path, flags: list[str]) -> Prometheus:
    """Prometheus on `data` with the shipped rules and the backfilled inventory's rules."""
    rules = work / "rules"
    rules.mkdir(parents=True)
    for path in RULES_DIR.glob("*.yml"):
        shutil.copy(path, rules / path.name)
    used = inventory.load(data / "inventory.yaml")
    (rules / "inventory.yml").write_text(targets.rules_file(used), encoding="utf-8")
    (work / "prom").mkdir()
    (work / "prom" / "data").symlink_to(data.resolve())
    config = yaml.safe_dump({"rule_files": [str(rules / "*.yml")]})
    prom = Prometheus(config, work / "prom", ("--storage.tsdb.retention.time=3650d", *flags))
    deadline = time.monotonic() + 600
    # Every group at its own offset in its interval: wait for the last of the 7-day series read.
    while not all(prom.query(f"count({name})") for name in SEVEN_DAYS):
        if time.monotonic() > deadline:
            prom.stop()
            raise SystemExit("the verdict rules did not run within 10 minutes")
        time.sleep(5)
    return prom


def p95(times: list[float]) -> float:
    return sorted(times)[max(0, round(0.95 * len(times)) - 1)]


def measure(url: str, province: str, names: list[str], runs: int) -> None:
    now = time.time()
    listed = api(url, "query", query=f'site:hotspot_inventory:info{{province="{province}"}}')["result"]
    recent = {
        r["metric"]["site"]
        for r in api(url, "query", query="last_over_time(hotspot_agent_info[1d])")["result"]
    }
    sites = sorted(r["metric"]["site"] for r in listed if r["metric"]["site"] in recent)
    commune = next((r["metric"]["commune"] for r in listed if sites and r["metric"]["site"] == sites[0]), "")
    values = {
        **GRAFANA,
        "province": province,
        "commune": ".*",
        "site_type": ".*",
        "site": sites[0] if sites else "",
    }
    with urllib.request.urlopen(f"{url}/metrics", timeout=30) as resp:  # its own metrics, not scraped
        own = resp.read().decode()
    blocks = next(
        line.split()[1] for line in own.splitlines() if line.startswith("prometheus_tsdb_blocks_loaded ")
    )
    print(f"site: {values['site']}; blocks loaded: {blocks}")
    for name in names:
        board: list[float] = []
        empty = 0
        for panel, target in panel_targets(load(DASHBOARDS / f"en/{name}.json")):
            # The commune dashboard offers no "All": the chosen site's commune.
            expr = substitute(target["expr"], {**values, "commune": commune} if name == "commune" else values)
            times, n = [], 0
            for _ in range(runs):
                t, n = timed(url, expr, None if target.get("instant") else graph_step(panel, STEP_S), now)
                times.append(t)
            board += times
            empty += n == 0
            kind = "instant" if target.get("instant") else "graph"
            print(
                f"{name:9} {statistics.median(times) * 1000:8.1f} ms p50 {p95(times) * 1000:8.1f} ms p95 "
                f"{n:5} series  {kind:7}  {panel['title']}"
            )
        print(
            f"{name}: {len(board) // runs} queries, {len(board)} runs: "
            f"p50 {statistics.median(board) * 1000:.1f} ms, p95 {p95(board) * 1000:.1f} ms; "
            f"{empty} returned nothing"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    where = ap.add_mutually_exclusive_group(required=True)
    where.add_argument("--data", type=Path, help="a backfilled data directory to start Prometheus on")
    where.add_argument("--prometheus", help="URL of a running Prometheus")
    ap.add_argument("--province", required=True)
    ap.add_argument("--dashboards", nargs="+", default=["overview", "commune", "site", "fleet"])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument(
        "--flag",
        action="append",
        default=[],
        help="a Prometheus flag for --data, e.g. --flag=--storage.tsdb.max-block-duration=54h",
    )
    args = ap.parse_args()
    if args.prometheus:
        measure(args.prometheus, args.province, args.dashboards, args.runs)
        return
    with tempfile.TemporaryDirectory(prefix="dashboard-queries-") as tmp:
        t0 = time.monotonic()
        prom = start_prometheus(args.data, Path(tmp), args.flag)
        print(f"Prometheus ready and verdicts recorded in {time.monotonic() - t0:.0f} s")
        try:
            measure(prom.url, args.province, args.dashboards, args.runs)
        finally:
            prom.stop()


if __name__ == "__main__":
    main()
