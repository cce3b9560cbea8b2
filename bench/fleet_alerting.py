"""The alerting at province and region scale: Prometheus's cost and the time to a notification.

Simulates every site of the Nam Định inventory (785 sites) or a region of 5,000 (the inventory
copied into more provinces) with collector/fleet.py, runs Prometheus 2.42 + Alertmanager 0.25
with the repository's rules and routes, and reports:

- Prometheus RSS and CPU over a steady period, every rule group's evaluation time against its
  interval (the largest of the period), samples ingested per second, remote-write requests;
- the scenarios' notifications (one silent scraped site, one silent pushing site, a commune dark,
  one ISP down in a province) and the time from each cut to its notification.

    .venv/bin/python bench/fleet_alerting.py --sites 785                 # production intervals
    .venv/bin/python bench/fleet_alerting.py --sites 5000
    .venv/bin/python bench/fleet_alerting.py --flaky-hour --sites 293 --speedup 10
                                        # an hour of lost scrapes and pushes: false messages

Results go to bench/RESULTS-rules.md by hand.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

from collector import inventory
from collector.fleet import Collector, FakeTelegram, Fleet, Recorder
from collector.inventory import Inventory
from collector.localstack import wait_until

ROOT = Path(__file__).resolve().parent.parent
TICK_S = os.sysconf("SC_CLK_TCK")


def region(sites: int) -> Inventory:
    """Nam Định's sites, copied into further provinces until there are `sites`; in each province
    one district's sites are on "VNPT" (the ISP the scenario takes down)."""
    base = inventory.load(ROOT / "collector" / "examples" / "nam-dinh.yaml").sites
    out = []
    k = 0
    while len(out) < sites:
        for s in base:
            if len(out) == sites:
                break
            province = s.province if k == 0 else f"{s.province} {k + 1}"
            isp = "VNPT" if s.district == "Huyện Giao Thủy" else s.isp
            out.append(dataclasses.replace(s, id=f"r{k}-{s.id}" if k else s.id, province=province, isp=isp))
        k += 1
    return Inventory(sites=tuple(out))


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK_S


def proc_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def flaky_hour(fleet: Fleet, recorder: Recorder, speedup: float, share: float) -> None:
    """One production hour in which, every push interval, `share` of the sites lose one scrape or
    push (never the same site twice within a minute): every message but the watchdog is false."""
    rng = random.Random(1)
    ids = [sid for sid, sim in fleet.sites.items() if sim.listed]
    last: dict[str, float] = {}
    before = len(recorder.received)
    start = time.monotonic()
    lost = 0
    while time.monotonic() < start + 3600 / speedup:
        now = time.monotonic()
        for sid in rng.sample(ids, max(1, round(share * len(ids)))):
            if now - last.get(sid, -1e9) < 60 / speedup:
                continue
            last[sid] = now
            reach = fleet.sites[sid].site.reach
            fleet.inject([sid], "silent", duration_s=(20 if reach == "pull" else 15) / speedup)
            lost += 1
        time.sleep(15 / speedup)
    false = [
        a["labels"]
        for n in recorder.received[before:]
        for a in n.payload["alerts"]
        if a["labels"]["alertname"] != "HotspotWatchdog"
    ]
    print(f"flaky hour: {lost} lost scrapes/pushes over {len(ids)} sites; false messages: {len(false)}")
    for labels in false:
        print("  ", labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sites", type=int, default=785)
    parser.add_argument("--speedup", type=float, default=1.0, help="divide every interval by this")
    parser.add_argument("--steady-min", type=float, default=3.0, help="minutes measured before the faults")
    parser.add_argument("--flaky-hour", action="store_true", help="only the hour of lost scrapes and pushes")
    parser.add_argument("--push-bytes", action="store_true", help="only the bytes one site pushes a day")
    args = parser.parse_args()
    inv = region(args.sites)
    if args.push_bytes:
        one = Fleet(Inventory(sites=(next(s for s in inv.sites if s.push),)), 1.0)
        body, n = one.write_request(time.time())
        print(f"one request: {n} series, {len(body)} bytes after snappy ({len(body) / n:.1f} per series)")
        for interval in (30.0, 15.0):
            per_series = 86400 / interval * len(body) / n / 1e6  # MB a day
            print(
                f"push every {interval:g} s: {per_series * n:.1f} MB/day; 150 series: {per_series * 150:.1f}"
            )
        return
    fleet = Fleet(inv, args.speedup)
    recorder = Recorder()
    telegram = FakeTelegram(minute_s=60.0 / args.speedup)
    workdir = Path(tempfile.mkdtemp(prefix="fleet-bench-"))
    pushing = sum(1 for s in inv.sites if s.push)
    print(
        f"{len(inv.sites)} sites ({len(inv.sites) - pushing} scraped, {pushing} pushing), "
        f"intervals ÷ {args.speedup:g}"
    )
    with Collector(workdir, fleet, recorder, telegram) as c:
        prom_pid = c.procs[1].pid

        def all_heard() -> bool:
            got = c.query("count(site:hotspot_heard:bool)")
            return bool(got) and int(got[0]["value"][1]) == len(inv.sites)

        wait_until(all_heard, 600, "every site heard")
        if args.flaky_hour:
            time.sleep(120 / args.speedup)
            flaky_hour(fleet, recorder, args.speedup, share=0.02)
            return
        cpu0, t0 = proc_cpu_s(prom_pid), time.monotonic()
        samples0 = fleet.pushed_samples
        rss: list[float] = []
        while time.monotonic() < t0 + args.steady_min * 60:
            rss.append(proc_rss_mb(prom_pid))
            time.sleep(5)
        elapsed = time.monotonic() - t0
        cpu = (proc_cpu_s(prom_pid) - cpu0) / elapsed
        window = f"{max(1, round(elapsed))}s"
        durations = {
            r["metric"]["rule_group"].split(";")[1]: float(r["value"][1])
            for r in c.query(f"max_over_time(prometheus_rule_group_last_duration_seconds[{window}])")
        }
        typical = {
            r["metric"]["rule_group"].split(";")[1]: float(r["value"][1])
            for r in c.query(f"avg_over_time(prometheus_rule_group_last_duration_seconds[{window}])")
        }
        intervals = {
            r["metric"]["rule_group"].split(";")[1]: float(r["value"][1])
            for r in c.query("prometheus_rule_group_interval_seconds")
        }
        ingest = c.query(f"rate(prometheus_tsdb_head_samples_appended_total[{window}])")
        series = c.query("prometheus_tsdb_head_series")
        print(
            f"\nPrometheus: RSS median {statistics.median(rss):.0f} MB, max {max(rss):.0f} MB; "
            f"CPU {cpu:.2f} cores"
        )
        print(f"head series {series[0]['value'][1]}; samples appended {float(ingest[0]['value'][1]):.0f}/s")
        print(
            f"remote write: {(fleet.pushed_samples - samples0) / elapsed:.0f} samples/s, "
            f"failures {fleet.push_failures}"
        )
        print(
            "\n| rule group | interval (s) | mean evaluation (s) | slowest (s) | slowest / interval |"
            "\n| --- | --- | --- | --- | --- |"
        )
        for name in sorted(durations):
            iv = intervals.get(name, 0.0) or float("nan")
            slowest = durations[name]
            print(f"| {name} | {iv:g} | {typical[name]:.3f} | {slowest:.3f} | {slowest / iv:.1%} |")

        # --- scenarios -------------------------------------------------------------------------
        sites = inv.sites
        first = sites[0].province
        # three different communes, none on the ISP that goes down
        others = [s for s in sites if s.isp != "VNPT" and s.province == first]
        communes = list(dict.fromkeys(s.commune for s in others))
        scraped = next(s.id for s in others if s.commune == communes[0] and s.reach == "pull")
        pushed = next(s.id for s in others if s.commune == communes[1] and s.push)
        commune = communes[2]
        dark = [s.id for s in others if s.commune == commune]
        isp = [s.id for s in sites if s.isp == "VNPT" and s.province == first]
        before = len(recorder.received)
        cut = time.monotonic()
        fleet.inject([scraped, pushed, *dark, *isp], "silent")
        wait_s = 180 / args.speedup
        while time.monotonic() < cut + wait_s:
            time.sleep(1)
        notes = recorder.received[before:]

        def delay(alertname: str, **labels: str) -> str:
            for n in notes:
                for a in n.payload["alerts"]:
                    if (
                        a["status"] == "firing"
                        and a["labels"]["alertname"] == alertname
                        and all(a["labels"].get(k) == v for k, v in labels.items())
                    ):
                        return f"{(n.at - cut) * args.speedup:.0f} s"
            return "none"

        print("\n| scenario | notification (production-time s after the cut) |\n| --- | --- |")
        print(f"| one scraped site silent | {delay('HotspotSiteDown', site=scraped)} |")
        print(f"| one pushing site silent | {delay('HotspotSiteDown', site=pushed)} |")
        print(f"| commune dark ({len(dark)} sites) | {delay('HotspotCommuneOutage', commune=commune)} |")
        print(f"| ISP down ({len(isp)} sites) | {delay('HotspotIspOutage', isp='VNPT', province=first)} |")
        firing = [
            (n.receiver, a["labels"]["alertname"], a["labels"].get("site", a["labels"].get("commune", "")))
            for n in notes
            for a in n.payload["alerts"]
            if a["status"] == "firing" and a["labels"]["alertname"] != "HotspotWatchdog"
        ]
        messages = [n for n in notes if n.receiver != "watchdog"]
        print(f"\nnotifications (webhook messages, all receivers, watchdog excluded): {len(messages)}")
        for item in sorted(set(firing)):
            print("  ", *item)
        print(f"Telegram: accepted {len(telegram.accepted)}, refused {len(telegram.refused)}")
    recorder.close()
    telegram.close()


if __name__ == "__main__":
    main()
