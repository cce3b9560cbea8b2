"""Rule evaluation cost for a whole province: the former Nam Định (175 communes, 785 sites).

Backfills synthetic series for every site of collector/examples/nam-dinh.yaml with
`promtool tsdb create-blocks-from openmetrics`, starts Prometheus on loopback with the repository's
rules (production intervals) and the generated inventory rules, waits until every group has run,
and reads Prometheus's own prometheus_rule_group_last_duration_seconds and
process_resident_memory_bytes.

What is backfilled (per site): the counters the verdict rules read (latency tests and tests within
the limit for 2 internet targets, bandwidth tests and tests meeting the threshold for 2 directions)
and site:hotspot_internet_up:bool, every 30 s for --days days, and the hourly tiles the 30d ratios
add up, one an hour, for --days days; the gauges the alerts read (up or the pushed heartbeat, ping
up/RTT/loss, diagnosis, clock) for the last 2 hours. The 7d and 30d windows therefore read --days
of data: their cost is reported as measured and scaled to a full
window (evaluation time grows with the samples read).

    .venv/bin/python bench/rules_eval.py            # results go to bench/RESULTS-rules.md by hand
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from collector import inventory, targets
from collector.localstack import PROMETHEUS_BIN, free_port, http_ok, wait_until

ROOT = Path(__file__).resolve().parent.parent

STEP_S = 30
GAUGE_HISTORY_S = 2 * 3600


def labels_text(labels: dict[str, str]) -> str:
    return ",".join(f'{k}="{v}"' for k, v in labels.items())


def write_openmetrics(path: Path, sites: list[inventory.InventorySite], days: float, now: int) -> int:
    """Write the backfill; returns the number of samples."""
    start = now - int(days * 86400)
    start -= start % STEP_S
    long_ts = list(range(start, now, STEP_S))
    short_ts = [t for t in long_ts if t >= now - GAUGE_HISTORY_S]
    count = 0
    with path.open("w", encoding="utf-8") as out:

        def family(
            name: str, series: list[tuple[dict[str, str], list[int], str]], counter: bool = False
        ) -> None:
            nonlocal count
            # OpenMetrics: a counter family is named without _total, its samples with it.
            out.write(f"# TYPE {name} {'counter' if counter else 'gauge'}\n")
            sample = f"{name}_total" if counter else name
            for labels, stamps, kind in series:
                head = f"{sample}{{{labels_text(labels)}}} "
                out.writelines(f"{head}{_value(kind, i, t)} {t}\n" for i, t in enumerate(stamps))
                count += len(stamps)

        def ident(s: inventory.InventorySite) -> dict[str, str]:
            return {**s.labels(), "job": "hotspot-agent", "instance": s.id}

        targets_ = ("1.1.1.1", "8.8.8.8")
        for name, kind in (
            ("hotspot_ping_tests", "per_minute"),
            ("hotspot_ping_tests_within_limit", "per_minute"),
        ):
            family(
                name,
                [
                    ({**ident(s), "target": t, "role": "internet", "method": "icmp"}, long_ts, kind)
                    for s in sites
                    for t in targets_
                ],
                counter=True,
            )
        for name, kind in (
            ("hotspot_bandwidth_tests", "per_6h"),
            ("hotspot_bandwidth_tests_meeting_threshold", "per_6h"),
        ):
            family(
                name,
                [
                    ({**ident(s), "direction": d, "engine": "http"}, long_ts, kind)
                    for s in sites
                    for d in ("download", "upload")
                ],
                counter=True,
            )
        family("site:hotspot_internet_up:bool", [(s.labels(), long_ts, "one") for s in sites])
        # The hourly tiles the 30d ratios add up, one an hour. (Not 30 days of them: promtool 2.42
        # re-reads the whole input for every 2-hour block, so a 30-day span takes hours to import.)
        tile_ts = list(range(now - int(days * 86400), now, 3600))
        for name, kind in (
            ("site:hotspot_bandwidth_tests:increase_1h", "sixth"),
            ("site:hotspot_bandwidth_tests_meeting:increase_1h", "sixth"),
        ):
            family(
                name,
                [
                    ({**s.labels(), "direction": d}, tile_ts, kind)
                    for s in sites
                    for d in ("download", "upload")
                ],
            )
        for name, kind in (
            ("site:hotspot_latency_tests:increase_1h", "sixty"),
            ("site:hotspot_latency_tests_within_limit:increase_1h", "sixty"),
            ("site:hotspot_availability:ratio_1h", "one"),
        ):
            family(name, [(s.labels(), tile_ts, kind) for s in sites])
        family("up", [(ident(s), short_ts, "one") for s in sites if s.scrape])
        family("hotspot_agent_clock_seconds", [(ident(s), short_ts, "clock") for s in sites])
        for name, kind in (
            ("hotspot_ping_up", "one"),
            ("hotspot_ping_rtt_seconds", "rtt"),
            ("hotspot_ping_loss_ratio", "zero"),
        ):
            extra = {"stat": "avg"} if name == "hotspot_ping_rtt_seconds" else {}
            family(
                name,
                [
                    ({**ident(s), "target": t, "role": "internet", "method": "icmp", **extra}, short_ts, kind)
                    for s in sites
                    for t in targets_
                ],
            )
        family(
            "hotspot_diagnosis",
            [
                ({**ident(s), "cause": c}, short_ts, "one" if c == "healthy" else "zero")
                for s in sites
                for c in ("healthy", "uplink_fault")
            ],
        )
        out.write("# EOF\n")
    return count


def _value(kind: str, i: int, t: int) -> str:
    if kind == "per_minute":  # one latency test a minute
        return str(i // 2)
    if kind == "per_6h":  # one bandwidth test every 6 hours
        return str(i // 720)
    if kind == "sixth":
        return "0.1667"
    if kind == "sixty":
        return "120"
    if kind == "clock":
        return str(t)
    if kind == "rtt":
        return "0.02"
    if kind == "zero":
        return "0"
    return "1"


def scrape_self(url: str) -> str:
    with urllib.request.urlopen(url + "/metrics", timeout=10) as resp:
        return str(resp.read().decode())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=float, default=1.0, help="history of the counters (default 1)")
    parser.add_argument("--inventory", type=Path, default=ROOT / "collector" / "examples" / "nam-dinh.yaml")
    parser.add_argument(
        "--settle", type=float, default=300, help="seconds to let every group run (default 300)"
    )
    args = parser.parse_args()
    if not Path(PROMETHEUS_BIN).exists() or shutil.which("promtool") is None:
        print("needs Prometheus and promtool (apt-get install prometheus)", file=sys.stderr)
        return 1
    inv = inventory.load(args.inventory)
    communes = len({(s.province, s.district, s.commune) for s in inv.sites})
    with tempfile.TemporaryDirectory(prefix="hotspot-bench-") as tmp:
        work = Path(tmp)
        targets.write(inv, work / "inventory")
        now = int(time.time()) - 60
        om = work / "backfill.om"
        t0 = time.monotonic()
        samples = write_openmetrics(om, list(inv.sites), args.days, now)
        t1 = time.monotonic()
        data = work / "data"
        subprocess.run(
            ["promtool", "tsdb", "create-blocks-from", "openmetrics", str(om), str(data)],
            check=True,
            capture_output=True,
        )
        t2 = time.monotonic()
        om.unlink()
        print(
            f"{len(inv.sites)} sites, {communes} communes; {samples:,} samples written in {t1 - t0:.0f} s, "
            f"imported in {t2 - t1:.0f} s"
        )
        rules_dir = ROOT / "collector" / "prometheus" / "rules"
        port = free_port()
        config = work / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 30s, evaluation_interval: 30s}\n"
            f"rule_files: ['{rules_dir}/*.yml', '{work}/inventory/*.rules.yml']\n",
            encoding="utf-8",
        )
        log = (work / "prometheus.log").open("w")
        proc = subprocess.Popen(
            [
                PROMETHEUS_BIN,
                f"--config.file={config}",
                f"--storage.tsdb.path={data}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--storage.tsdb.retention.time=400d",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until(lambda: http_ok(url + "/-/ready"), 120, "prometheus")
            time.sleep(args.settle)
            text = scrape_self(url)
        finally:
            proc.terminate()
            proc.wait(30)
    durations = {
        m.group(1): float(m.group(2))
        for m in re.finditer(
            r'prometheus_rule_group_last_duration_seconds\{rule_group="[^"]*;([^"]+)"\} (\S+)', text
        )
    }
    failures = sum(
        float(v) for v in re.findall(r"prometheus_rule_evaluation_failures_total\{[^}]*\} (\S+)", text)
    )
    rss = float(re.search(r"^process_resident_memory_bytes (\S+)", text, re.M).group(1))  # type: ignore[union-attr]
    series = float(re.search(r"^prometheus_tsdb_head_series (\S+)", text, re.M).group(1))  # type: ignore[union-attr]
    print("\n| rule group | last evaluation (s) | scaled to a full window (s) |\n| --- | --- | --- |")
    for group, seconds in sorted(durations.items()):
        window = {"hotspot-requirement-7d": 7, "hotspot-requirement-30d": 30}.get(group, 0)
        scaled = f"{seconds * window / args.days:.2f}" if window else "-"
        print(f"| {group} | {seconds:.3f} | {scaled} |")
    print(
        f"\nrule evaluation failures: {failures:.0f}; head series: {series:.0f}; RSS: {rss / 2**20:.0f} MiB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
