"""Pushing into real receivers: Prometheus 2.42, VictoriaMetrics 1.79 (and vmauth), and a tiny server.

Outages are scaled down (interval 0.5 s, outage PUSH_OUTAGE_S seconds, default 20); the slow variant
runs only when PUSH_LONG_OUTAGE_S is set (e.g. 300).
"""

from __future__ import annotations

import itertools
import os
import signal
import sqlite3
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import CollectorRegistry

from agent.push.encoding import encode_labels
from agent.push.pusher import DROP_REASONS, QUEUE_FILE, Pusher
from agent.push.queue import SampleQueue
from tests.support.receivers import (
    Receiver,
    TinyReceiver,
    have,
    push_settings,
    push_until,
    seq_registry,
    start_vmauth,
    wait_until,
)

OUTAGE_S = float(os.environ.get("PUSH_OUTAGE_S", "20"))
LONG_OUTAGE_S = float(os.environ.get("PUSH_LONG_OUTAGE_S", "0"))
INTERVAL_S = 0.5
ROOT = Path(__file__).resolve().parent.parent

needs_prometheus = pytest.mark.skipif(not have("prometheus"), reason="prometheus not installed")
needs_victoria = pytest.mark.skipif(not have("victoria-metrics"), reason="victoria-metrics not installed")


@pytest.fixture
def receiver(request, tmp_path):
    kind = request.param
    if not have("prometheus" if kind == "prometheus" else "victoria-metrics"):
        pytest.skip(f"{kind} not installed")
    r = Receiver(kind, tmp_path)
    r.start()
    try:
        yield r
    finally:
        r.stop()


def queued(state_dir: Path) -> int:
    """Unsent samples in a queue file, read by a separate connection (as another process would)."""
    db = sqlite3.connect(state_dir / QUEUE_FILE, timeout=10)
    try:
        (n,) = db.execute("SELECT COALESCE(SUM(samples - sent), 0) FROM blocks").fetchone()
        return int(n)
    finally:
        db.close()


def seq_values(r: Receiver, gen: int = 0) -> dict[str, list[tuple[int, float]]]:
    got = r.samples(f'pushtest_seq{{gen="{gen}"}}')
    return {dict(k)["k"]: v for k, v in got.items()}


def assert_complete(points: list[tuple[int, float]], first: float = 1.0) -> None:
    """Values first, first+1, ... with none missing, none twice, timestamps strictly increasing."""
    values = [v for _, v in points]
    assert values == [first + i for i in range(len(values))], values
    stamps = [t for t, _ in points]
    assert stamps == sorted(set(stamps))


@pytest.mark.parametrize("receiver", ["prometheus", "victoria"], indirect=True)
def test_samples_arrive_with_scrape_labels_and_snapshot_times(receiver, tmp_path):
    """Every snapshot arrives once, labelled like a scrape, at the snapshot's timestamp."""
    registry, seq = seq_registry()
    pusher = Pusher(
        push_settings(receiver.write_url), registry, tmp_path / "state", {"site": "s1", "province": "P"}
    )
    registry.register(pusher.metrics)
    started = time.time()
    pusher.start()
    try:
        wait_until(lambda: seq.n >= 6 and queued(tmp_path / "state") == 0, 30, "five snapshots sent")
    finally:
        pusher.stop()
    got = receiver.samples("pushtest_seq")
    assert {frozenset(dict(k).items()) for k in got} == {
        frozenset(
            {
                "__name__": "pushtest_seq",
                "job": "hotspot-agent",
                "instance": "s1",
                "site": "s1",
                "k": str(k),
                "gen": "0",
            }.items()
        )
        for k in range(3)
    }
    for points in got.values():
        assert len(points) >= 5
        assert_complete(points)
        assert started * 1000 - 1 <= points[0][0] <= points[-1][0] <= time.time() * 1000
        gaps = [b - a for (a, _), (b, _) in itertools.pairwise(points)]
        assert all(0.5 * INTERVAL_S * 1000 < g < 2 * INTERVAL_S * 1000 for g in gaps), gaps
    own = receiver.samples("hotspot_push_samples_dropped_total")
    assert {dict(k)["reason"] for k in own} == set(DROP_REASONS)
    assert all(dict(k)["province"] == "P" for k in own)


def run_outage(receiver: Receiver, tmp_path: Path, outage_s: float) -> None:
    registry, seq = seq_registry()
    state = tmp_path / "state"
    pusher = Pusher(push_settings(receiver.write_url), registry, state, {"site": "s1"})
    pusher.start()
    try:
        wait_until(lambda: seq.n >= 3 and queued(state) == 0, 30, "pushing before the outage")
        receiver.stop()
        down_from, n_before = time.time(), seq.n
        time.sleep(outage_s)
        assert queued(state) > 0
        n_during = seq.n - n_before
        receiver.start()
        up_at = time.time()
        wait_until(lambda: queued(state) == 0, 60 + outage_s, "the backlog to drain")
    finally:
        pusher.stop()
    left = SampleQueue(state / QUEUE_FILE, 10**9, 10**9)
    unsent = left.stats().samples
    left.close()
    got = seq_values(receiver)
    assert set(got) == {"0", "1", "2"}
    for points in got.values():
        assert_complete(points)
        assert len(points) * 3 + unsent == seq.n * 3  # everything taken is either stored or still queued
        during = [t for t, _ in points if down_from * 1000 <= t <= up_at * 1000]
        assert len(during) >= n_during - 1
    assert n_during >= outage_s / INTERVAL_S * 0.8  # snapshots went on while the link was down
    assert pusher.metrics.retried > 0
    assert pusher.metrics.dropped == dict.fromkeys(DROP_REASONS, 0)


@pytest.mark.parametrize("receiver", ["prometheus", "victoria"], indirect=True)
def test_outage_loses_and_duplicates_nothing(receiver, tmp_path):
    """After the receiver was down for a while, every snapshot taken meanwhile is stored exactly once."""
    run_outage(receiver, tmp_path, OUTAGE_S)


@pytest.mark.slow
@pytest.mark.skipif(not LONG_OUTAGE_S, reason="set PUSH_LONG_OUTAGE_S (e.g. 300) to run the long outage")
@pytest.mark.parametrize("receiver", ["prometheus", "victoria"], indirect=True)
def test_long_outage_loses_and_duplicates_nothing(receiver, tmp_path):
    """An outage of several minutes loses nothing either."""
    run_outage(receiver, tmp_path, LONG_OUTAGE_S)


@needs_victoria
def test_sigkill_during_outage_loses_nothing(tmp_path):
    """A pushing process killed with SIGKILL during an outage resends its backlog after a restart."""
    vm = Receiver("victoria", tmp_path)
    vm.start()
    state = tmp_path / "state"
    children: list[subprocess.Popen[bytes]] = []

    def child(gen: int) -> subprocess.Popen[bytes]:
        argv = [sys.executable, "-m", "tests.support.receivers", vm.write_url, str(state)]
        argv += [str(INTERVAL_S), str(gen)]
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE)
        children.append(proc)
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"started"
        return proc

    try:
        first = child(1)
        started = time.time()
        wait_until(lambda: len(seq_values(vm, 1)) == 3, 20, "the first child pushing")
        vm.stop()
        down_at = time.time()
        time.sleep(4)
        first.send_signal(signal.SIGKILL)
        first.wait()
        killed_at = time.time()
        second = child(2)
        time.sleep(3)
        vm.start()
        vm_up_at = time.time()
        wait_until(lambda: queued(state) == 0, 60, "both children's backlog to drain")
        second.send_signal(signal.SIGTERM)
        assert second.wait(10) == 0
        unsent = queued(state)
        gen1, gen2 = seq_values(vm, 1), seq_values(vm, 2)
        for points in gen1.values():
            assert_complete(points)
            assert points[-1][0] > down_at * 1000  # taken during the outage, sent by the second process
            # at most the snapshot being taken at the kill is missing
            assert len(points) >= (killed_at - started) / INTERVAL_S - 2
        assert len(gen2) == 3
        for points in gen2.values():
            assert_complete(points)
            assert points[0][0] < vm_up_at * 1000  # queued by the second process while still down
        assert unsent <= 3  # at most the snapshot taken as it was stopped
    finally:
        for proc in children:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            assert proc.stdout is not None
            proc.stdout.close()
        vm.stop()


@pytest.mark.parametrize("receiver", ["victoria"], indirect=True)
def test_disk_cap_drops_oldest_and_receiver_gets_exactly_the_rest(receiver, tmp_path):
    """With the disk cap reached, the oldest samples are dropped, counted, and the rest all arrive."""
    import random

    rng = random.Random(5)
    pusher = Pusher(
        push_settings(receiver.write_url, max_queue_bytes=256 * 1024),
        CollectorRegistry(),
        tmp_path / "s",
        {"site": "s1"},
    )
    series = [encode_labels({"__name__": "pushtest_cap", "i": str(i), "job": "j"}) for i in range(40)]
    now = int(time.time() * 1000) - 2500 * 1000
    for t in range(2500):  # the receiver is not being sent to yet: the queue fills up
        drops = pusher.queue.append(now + t * 1000, [(s, struct.pack("<d", rng.random())) for s in series])
        pusher.metrics.count_drops(drops)
    dropped = pusher.metrics.dropped["queue_full"]
    assert dropped > 0
    pusher.start()
    try:
        wait_until(lambda: queued(tmp_path / "s") == 0, 60, "the capped queue to drain")
    finally:
        pusher.stop()
    got = receiver.samples("pushtest_cap")
    stored = sum(len(v) for v in got.values())
    assert stored + dropped == 2500 * 40
    assert pusher.metrics.sent == stored
    first_kept = min(p[0][0] for p in got.values())
    assert first_kept == now + (dropped // 40) * 1000  # the oldest snapshots are the ones dropped


@needs_prometheus
def test_too_old_samples_are_dropped_and_do_not_block_the_queue(tmp_path):
    """Prometheus' 'too old' answer drops only the samples outside its window; the rest are stored."""
    prom = Receiver("prometheus", tmp_path)
    prom.start()
    try:
        pusher = Pusher(
            push_settings(prom.write_url, max_sample_age_s=9 * 3600),
            CollectorRegistry(),
            tmp_path / "s",
            {"site": "s1"},
        )
        series = [encode_labels({"__name__": "pushtest_old", "i": str(i)}) for i in range(3)]
        now = int(time.time() * 1000)
        pusher.queue.append(now, [(s, struct.pack("<d", 0.0)) for s in series])
        pusher.start()
        wait_until(lambda: pusher.metrics.sent == 3, 20, "a recent sample to set the receiver's head")
        hours = [8, 7.5, 7, 6.5, 5.5, 5, 4.5]
        for h in hours:  # an old backlog, as a queue would hold it after a long outage
            pusher.queue.append(now - int(h * 3600_000), [(s, struct.pack("<d", h)) for s in series])
        # one more append in the present; the queue sorts by arrival, the old block goes first
        wait_until(lambda: queued(tmp_path / "s") == 0, 30, "the old backlog to settle")
        pusher.stop()
        got = prom.samples("pushtest_old")
        for points in got.values():
            assert [v for _, v in points] == [5.5, 5.0, 4.5, 0.0]
        assert pusher.metrics.dropped["too_old"] == 4 * 3
        assert pusher.metrics.sent == 3 + 3 * 3
    finally:
        prom.stop()


def test_rejected_batch_is_dropped_and_later_batches_flow(tmp_path):
    """A 400 answer drops that batch for good (counted as rejected); the next batches are sent."""
    rx = TinyReceiver([(400, "invalid sample: something the receiver dislikes\n")])
    try:
        pusher = push_until(
            push_settings(rx.write_url), tmp_path, lambda: len(rx.requests) >= 4, "four requests"
        )
    finally:
        rx.close()
    first = sum(len(s) for _, s in rx.requests[0])
    assert rx.answers[:4] == [400, 204, 204, 204]
    assert pusher.metrics.dropped["rejected"] == first
    assert pusher.metrics.retried == 0
    values = [v for req in rx.requests[1:4] for labels, s in req if labels["k"] == "0" for _, v in s]
    refused = [v for labels, s in rx.requests[0] if labels["k"] == "0" for _, v in s]
    assert values == [refused[-1] + 1 + i for i in range(len(values))]  # nothing resent, nothing skipped


def test_5xx_and_429_are_retried_with_retry_after_and_then_delivered(tmp_path):
    """503 and 429 (with Retry-After) are retried until accepted; the same samples then arrive once."""
    rx = TinyReceiver([(503, "overloaded"), (429, "slow down")])
    try:
        pusher = push_until(
            push_settings(rx.write_url), tmp_path, lambda: 204 in rx.answers, "an accepted one"
        )
    finally:
        rx.close()
    assert rx.answers[:3] == [503, 429, 204]
    assert rx.requests[0] == rx.requests[1] == rx.requests[2]
    assert pusher.metrics.retried == 2 * sum(len(s) for _, s in rx.requests[0])
    assert pusher.metrics.dropped["rejected"] == 0


def test_invalid_series_are_never_sent_and_counted_as_rejected(tmp_path):
    """A series with a name Prometheus forbids is counted as rejected and never reaches the receiver."""
    rx = TinyReceiver([])
    registry = CollectorRegistry()

    class Bad:
        def collect(self):
            g = GaugeMetricFamily("pushtest_ok", "ok", labels=["bad-label"])
            g.add_metric(["x"], 1.0)
            yield g
            g = GaugeMetricFamily("pushtest_fine", "fine")
            g.add_metric([], 2.0)
            yield g

    registry.register(Bad())
    pusher = Pusher(push_settings(rx.write_url), registry, tmp_path / "s", {"site": "s1"})
    pusher.start()
    try:
        wait_until(lambda: len(rx.requests) >= 2, 20, "two requests")
    finally:
        pusher.stop()
        rx.close()
    names = {labels["__name__"] for req in rx.requests for labels, _ in req}
    assert names == {"pushtest_fine"}
    assert pusher.metrics.dropped["rejected"] >= 2


@needs_victoria
def test_vmauth_pins_each_site_to_its_own_label(tmp_path, caplog):
    """Behind the documented vmauth config, a site's pushes carry its own site, commune and province
    labels whatever it sends."""
    vm = Receiver("victoria", tmp_path)
    vm.start()
    proc, url = start_vmauth(vm, tmp_path)
    try:
        from agent.schema import BasicAuth, Secret

        registry = CollectorRegistry()

        class Liar:
            def collect(self):
                g = GaugeMetricFamily("pushtest_site", "x", labels=["site", "commune", "province"])
                g.add_metric(["nd-99999-other", "Xã Khác", "Tỉnh Khác"], 1.0)
                yield g

        registry.register(Liar())
        good = Pusher(
            push_settings(url, basic_auth=BasicAuth("nd-13636-ubnd", Secret("change-me-13636"))),
            registry,
            tmp_path / "a",
            {"site": "nd-13636-ubnd"},
        )
        bad = Pusher(
            push_settings(url, basic_auth=BasicAuth("nd-13636-ubnd", Secret("wrong"))),
            registry,
            tmp_path / "b",
            {"site": "nd-13636-ubnd"},
        )
        good.start()
        bad.start()
        try:
            wait_until(lambda: good.metrics.sent >= 2 and bad.metrics.auth_failures >= 2, 20, "pushes")
        finally:
            good.stop()
            bad.stop()
        got = vm.samples("pushtest_site")
        pinned = {(dict(k)["site"], dict(k)["commune"], dict(k)["province"]) for k in got}
        assert pinned == {("nd-13636-ubnd", "Phường Vị Xuyên", "Tỉnh Nam Định")}
        assert bad.metrics.sent == 0 and bad.metrics.dropped["rejected"] == 0
        assert "change-me" not in caplog.text and "wrong" not in caplog.text
        assert "bmQtMTM2MzYtdWJuZDp3cm9uZw" not in caplog.text  # base64 of the credentials vmauth echoes
    finally:
        proc.terminate()
        proc.wait(10)
        vm.stop()


@needs_victoria
def test_wrong_then_corrected_password_loses_nothing(tmp_path):
    """Pushing through vmauth with a wrong password keeps every snapshot; once corrected, all arrive once."""
    from agent.schema import BasicAuth, Secret

    vm = Receiver("victoria", tmp_path)
    vm.start()
    proc, url = start_vmauth(vm, tmp_path)
    registry, seq = seq_registry()
    state = tmp_path / "s"
    try:
        wrong = Pusher(
            push_settings(url, basic_auth=BasicAuth("nd-13636-ubnd", Secret("wrong"))), registry, state, {}
        )
        wrong.start()
        wait_until(lambda: seq.n >= 6 and wrong.metrics.auth_failures >= 3, 20, "refused pushes")
        wrong.stop()
        assert wrong.metrics.auth_failing and wrong.metrics.sent == 0
        assert wrong.metrics.dropped == dict.fromkeys(DROP_REASONS, 0)
        taken_while_wrong = seq.n
        fixed = Pusher(  # as after a reload with the corrected password: same queue
            push_settings(url, basic_auth=BasicAuth("nd-13636-ubnd", Secret("change-me-13636"))),
            registry,
            state,
            {},
        )
        fixed.start()
        wait_until(lambda: seq.n >= taken_while_wrong + 2 and queued(state) <= 3, 20, "the backlog to drain")
        fixed.stop()
        assert not fixed.metrics.auth_failing
        got = seq_values(vm)
        assert len(got) == 3
        for points in got.values():
            assert_complete(points)  # 1, 2, 3, ... none missing, none twice
            assert len(points) >= taken_while_wrong
    finally:
        proc.terminate()
        proc.wait(10)
        vm.stop()
