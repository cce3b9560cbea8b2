"""Push benchmark: disk bytes per queued sample, draining a week's backlog, CPU at the normal rate.

    .venv/bin/python -m bench.push_backlog [--series 250] [--days 7] [--interval 30]

1. Fills a queue with DAYS of one site's snapshots (SERIES series every INTERVAL s; values move like
   the agent's: constants, counters, per-probe-run gauges, per-snapshot system gauges).
2. Drains it into a real VictoriaMetrics, timing it and sampling this process' RSS; checks the count.
3. Drains a 5 h backlog into a real Prometheus (its 6 h out-of-order window cannot take 7 days).
4. Pushes at the normal rate and reports the CPU it costs.
Results go to stdout as Markdown rows; bench/RESULTS-push.md keeps them.
"""

from __future__ import annotations

import argparse
import random
import struct
import tempfile
import threading
import time
from pathlib import Path

import psutil
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import CollectorRegistry

from agent.push.encoding import encode_labels
from agent.push.pusher import QUEUE_FILE, Pusher
from agent.push.queue import SampleQueue
from agent.push.settings import PushSettings
from tests.support.receivers import Receiver

SITE = {
    "site": "nd-13636-ubnd",
    "site_type": "health_station",
    "commune": "Xã Giao Minh",
    "province": "Nam Định",
}


class SiteModel:
    """Values that move like a site's series: what share changes how often decides compression."""

    def __init__(self, series: int, seed: int = 7) -> None:
        self.rng = random.Random(seed)
        kinds = ["const"] * 16 + ["probe_ts"] * 3 + ["counter"] * 6 + ["bytes"] * 2 + ["probe_gauge"] * 8
        kinds += ["system"] * 2 + ["flag"] * 3
        self.kinds = [kinds[i % len(kinds)] for i in range(series)]
        self.every = [self.rng.choice([60, 60, 60, 300, 3600]) for _ in range(series)]  # probe intervals
        self.values = [float(self.rng.randrange(1, 10**6)) for _ in range(series)]
        self.labels = [
            encode_labels({"__name__": f"hotspot_bench_{k}", "i": str(i), "job": "hotspot-agent", **SITE})
            for i, k in enumerate(self.kinds)
        ]

    def step(self, t_s: float) -> list[bytes]:
        rng, out = self.rng, []
        for i, kind in enumerate(self.kinds):
            v = self.values[i]
            ran = int(t_s) % self.every[i] < 30  # the probe ran since the last snapshot
            if kind == "probe_ts" and ran:
                v = round(t_s - rng.uniform(0, 20), 3)
            elif kind == "counter" and ran:
                v += rng.randrange(1, 5)
            elif kind == "bytes":
                v += rng.randrange(10**4, 10**7)
            elif kind == "probe_gauge" and ran:
                v = round(rng.lognormvariate(-4, 0.5), 6)
            elif kind == "system":
                v = round(rng.uniform(0, 1), 4)
            elif kind == "flag" and ran:
                v = 0.0 if rng.random() < 0.02 else 1.0
            self.values[i] = v
            out.append(struct.pack("<d", v))
        return out


def fill(queue: SampleQueue, model: SiteModel, start_ms: int, snapshots: int, interval_s: float) -> int:
    total = 0
    for n in range(snapshots):
        ts = start_ms + int(n * interval_s * 1000)
        values = model.step(ts / 1000)
        queue.append(ts, list(zip(model.labels, values, strict=True)))
        total += len(values)
    return total


def rss() -> int:
    return int(psutil.Process().memory_info().rss)


def drain(receiver: Receiver, state: Path, max_age_s: float, batch: int) -> tuple[float, int, float, int]:
    """Send the queue in `state` to the receiver; (seconds, peak RSS, CPU seconds, samples sent)."""
    settings = PushSettings(
        enabled=True,
        url=receiver.write_url,
        interval_s=3600,
        max_sample_age_s=max_age_s,
        max_queue_bytes=1 << 34,
        max_samples_per_request=batch,
    )
    pusher = Pusher(settings, CollectorRegistry(), state, SITE)  # empty registry: only the backlog moves
    peak = rss()
    done = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not done.wait(0.2):
            peak = max(peak, rss())

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    cpu0, t0 = time.process_time(), time.monotonic()
    pusher.start()
    while pusher.queue.stats().samples > 0 and time.monotonic() - t0 < 1800:
        time.sleep(0.2)
    elapsed, cpu = time.monotonic() - t0, time.process_time() - cpu0
    done.set()
    pusher.stop()
    return elapsed, peak, cpu, pusher.metrics.sent


def backlog(kind: str, args: argparse.Namespace, days: float, work: Path) -> None:
    model = SiteModel(args.series)
    snapshots = int(days * 86400 / args.interval)
    state = work / f"state-{kind}"
    queue = SampleQueue(state / QUEUE_FILE, 1 << 34, 30 * 86400)
    start_ms = int(time.time() * 1000) - int(snapshots * args.interval * 1000)
    t0 = time.monotonic()
    total = fill(queue, model, start_ms, snapshots, args.interval)
    fill_s = time.monotonic() - t0
    queue.close()  # checkpoints the WAL: the file is the queue
    size = (state / QUEUE_FILE).stat().st_size
    print(f"| {kind} backlog | {days:g} d, {args.series} series, {snapshots} snapshots = {total:,} samples |")
    print(
        f"| queue on disk | {size / 1e6:.1f} MB = {size / total:.2f} bytes/sample "
        f"(filled in {fill_s:.0f} s) |"
    )
    receiver = Receiver(kind, work)
    receiver.start()
    try:
        elapsed, peak, cpu, sent = drain(receiver, state, 8 * 86400, args.batch)
        time.sleep(1)
        stored = sum(len(v) for v in receiver.samples('{__name__=~"hotspot_bench_.*"}').values())
        if stored != total:  # a loaded receiver may still be flushing: read once more, say so
            time.sleep(10)
            again = sum(len(v) for v in receiver.samples('{__name__=~"hotspot_bench_.*"}').values())
            print(f"| read back again after 10 s | {again:,} (first read {stored:,}) |")
            stored = again
        print(
            f"| drain into {kind} | {elapsed:.0f} s ({sent / elapsed:,.0f} samples/s), "
            f"agent CPU {cpu:.0f} s, "
            f"agent peak RSS {peak / 1e6:.0f} MB, receiver RSS {receiver.rss_bytes() / 1e6:.0f} MB |"
        )
        print(f"| check | sent {sent:,}, stored {stored:,}, expected {total:,} |")
    finally:
        receiver.stop()


def normal_rate(args: argparse.Namespace, work: Path) -> None:
    """CPU for pushing at the normal rate: SERIES series snapshotted and sent every second for a while."""
    model = SiteModel(args.series)
    names = [f"hotspot_bench_{k}" for k in model.kinds]

    class Site:
        def collect(self):  # type: ignore[no-untyped-def]
            values = model.step(time.time())
            for i, name in enumerate(names):
                fam = (CounterMetricFamily if "counter" in name else GaugeMetricFamily)(
                    name.removesuffix("_total"), "bench", labels=[*SITE, "i"]
                )
                fam.add_metric([*SITE.values(), str(i)], struct.unpack("<d", values[i])[0])
                yield fam

    receiver = Receiver("victoria", work)
    receiver.start()
    try:
        registry = CollectorRegistry()
        registry.register(Site())
        settings = PushSettings(enabled=True, url=receiver.write_url, interval_s=1.0)
        pusher = Pusher(settings, registry, work / "state-rate", SITE)
        registry.register(pusher.metrics)
        seconds = args.rate_seconds
        cpu0 = time.process_time()
        pusher.start()
        time.sleep(seconds)
        pusher.stop()
        cpu = time.process_time() - cpu0
        per_snapshot = cpu / seconds
        print(
            f"| normal rate | {args.series} series: {per_snapshot * 1000:.1f} ms CPU per snapshot+send "
            f"-> {per_snapshot / 30 * 100:.3f}% of one core at a 30 s interval |"
        )
    finally:
        receiver.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=250)
    parser.add_argument("--days", type=float, default=7)
    parser.add_argument("--interval", type=float, default=30)
    parser.add_argument("--batch", type=int, default=5000, help="max samples per request")
    parser.add_argument("--prometheus-hours", type=float, default=5)
    parser.add_argument("--rate-seconds", type=float, default=60)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="push-bench-") as tmp:
        work = Path(tmp)
        print("| what | result |\n| --- | --- |")
        backlog("victoria", args, args.days, work)
        backlog("prometheus", args, args.prometheus_hours / 24, work)
        normal_rate(args, work)


if __name__ == "__main__":
    main()
