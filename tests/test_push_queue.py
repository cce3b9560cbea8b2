"""The on-disk push queue: durable, ordered, bounded by size and age, compact."""

from __future__ import annotations

import fcntl
import random
import sqlite3
import struct

from agent.push.encoding import encode_labels
from agent.push.queue import ABSENT, SampleQueue, block_entries, decode_block, encode_block

NOW = 1_800_000_000_000


def d(x: float) -> bytes:
    return struct.pack("<d", x)


def labels(i: int) -> bytes:
    return encode_labels({"__name__": "m", "i": str(i)})


def drain(q: SampleQueue, max_samples: int, now: int = NOW) -> list[tuple[int, int, bytes]]:
    out = []
    while (batch := q.peek(max_samples, now)) is not None:
        assert len(batch.entries) <= max_samples
        out.extend(batch.entries)
        q.consume(batch)
    return out


def test_block_codec_round_trips_values_bit_for_bit():
    """A block decodes to exactly the values written, NaNs and absent cells included."""
    rng = random.Random(1)
    times = [NOW + 30_000 * t for t in range(7)]
    sids = [1, 2, 5, 9]
    rows = []
    for t in range(7):
        cells = [
            d(rng.random()),
            d(float(t)),
            struct.pack("<Q", 0x7FF8000000000001),
            ABSENT if t % 2 else d(1.0),
        ]
        rows.append(b"".join(cells))
    assert decode_block(encode_block(times, sids, rows)) == (times, sids, rows)
    entries = block_entries(times, sids, rows)
    assert len(entries) == 4 * 7 - 3
    assert [ts for sid, ts, _ in entries if sid == 1] == times  # series by series, in time order


def test_queue_keeps_every_sample_in_order_across_merges_and_restarts(tmp_path):
    """Samples come out once each, per series in time order, after merging and reopening the file."""
    path = tmp_path / "q.sqlite"
    q = SampleQueue(path, 10**9, 10**9, merge_samples=100)
    expected = set()
    for t in range(60):
        snap = [(labels(i), d(t * 10 + i)) for i in range(7) if (t + i) % 5]
        q.append(NOW + t * 1000, snap)
        expected |= {(i, NOW + t * 1000, t * 10 + i) for i in range(7) if (t + i) % 5}
    first = q.peek(33, NOW)
    assert first is not None
    q.consume(first)
    q.close()  # as if the process died here: the rest must still be on disk

    q = SampleQueue(path, 10**9, 10**9, merge_samples=100)
    rest = drain(q, 40)
    got = [(sid, ts, struct.unpack("<d", v)[0]) for sid, ts, v in first.entries + rest]
    sid_to_i = {
        sid: int(sid_labels[-1:].decode()) for sid, sid_labels in ((s, q.labels(s)) for s, _, _ in got)
    }
    assert len(got) == len(expected)
    assert {(sid_to_i[sid], ts, v) for sid, ts, v in got} == expected
    for sid in set(sid_to_i):
        times = [ts for s, ts, _ in got if s == sid]
        assert times == sorted(times)
    assert q.stats().samples == 0
    blocks = sqlite3.connect(path).execute("SELECT COUNT(*) FROM blocks").fetchone()[0]
    assert blocks == 0
    q.close()


def test_disk_cap_drops_oldest_and_counts_exactly(tmp_path):
    """Over the size cap the oldest samples go first, and every dropped sample is counted."""
    rng = random.Random(2)
    q = SampleQueue(tmp_path / "q.sqlite", 256 * 1024, 10**9, merge_samples=4000)
    total = dropped = 0
    for t in range(2000):
        dropped += q.append(NOW + t * 1000, [(labels(i), d(rng.random())) for i in range(40)]).queue_full
        total += 40
    left = drain(q, 5000)
    assert dropped > 0
    assert dropped + len(left) == total
    oldest_kept = min(ts for _, ts, _ in left)
    assert oldest_kept == NOW + (dropped // 40) * 1000  # exactly the oldest snapshots are gone
    assert (tmp_path / "q.sqlite").stat().st_size <= 256 * 1024 + 64 * 1024
    q.close()


def test_too_old_samples_are_dropped_and_counted_not_sent(tmp_path):
    """Samples older than the age limit are counted as too old and never returned for sending."""
    q = SampleQueue(tmp_path / "q.sqlite", 10**9, 3600)
    q.append(NOW - 7200_000, [(labels(1), d(1)), (labels(2), d(2))])
    drops = q.append(NOW, [(labels(1), d(3))])  # appending applies the limit at the new snapshot's time
    assert drops.too_old == 2
    q.append(NOW + 1000, [(labels(1), d(4))])
    batch = q.peek(100, NOW + 3600_500)  # by now the first remaining sample has aged out too
    assert batch is not None
    assert batch.too_old == 1
    assert [struct.unpack("<d", v)[0] for _, _, v in batch.entries] == [4.0]
    q.release(batch)
    assert q.expire(NOW + 7200_000).too_old == 2  # whole blocks past the limit leave the disk
    assert q.stats().samples == 0
    q.close()


def test_week_of_snapshots_fits_the_disk_budget(tmp_path):
    """A day of a site's realistic snapshots stays well under 50 MB / 7 per day on disk."""
    rng = random.Random(3)
    q = SampleQueue(tmp_path / "q.sqlite", 10**9, 10**9)
    series = [labels(i) for i in range(250)]
    state = [float(rng.randrange(10**6)) for _ in series]
    snapshots = 2880  # one day at 30 s
    for t in range(snapshots):
        for i in range(0, 250, 4):
            state[i] += rng.randrange(1, 10**5)  # counters that grow
        for i in range(1, 250, 10):
            state[i] = round(rng.uniform(0.001, 0.2), 6)  # RTTs and ratios that change each time
        q.append(NOW + t * 30_000, list(zip(series, map(d, state), strict=True)))
    q.close()
    size = (tmp_path / "q.sqlite").stat().st_size
    per_sample = size / (snapshots * 250)
    assert per_sample * 7 * 2880 * 300 < 50 * 1024 * 1024, per_sample


def test_unusable_queue_path_gives_a_clear_error(tmp_path):
    """A queue path that cannot be opened (a directory) is reported with its path, not as a traceback
    from SQLite."""
    import pytest

    from agent.push.queue import QueueError

    bad = tmp_path / "q.sqlite"
    bad.mkdir()
    message = ""
    try:
        SampleQueue(bad, 10**6, 3600)
    except QueueError as exc:
        message = str(exc)
        # while the error is still in hand (its traceback holds the half-made queue), the lock file
        # is already let go: a retry or another process may take it
        with open(f"{bad}.lock", "rb") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    else:
        pytest.fail("a directory was opened as a queue")
    assert str(bad) in message


def test_a_damaged_queue_file_is_moved_aside_and_the_queue_starts_empty(tmp_path):
    """Garbage where the queue was (a power cut on a card that lies about flushing) is kept as
    .corrupt for a post-mortem; the queue opens empty and takes snapshots again."""
    bad = tmp_path / "q.sqlite"
    bad.write_bytes(b"this is not a database" * 100)
    q = SampleQueue(bad, 10**6, 3600)
    try:
        assert q.damaged is not None and "q.sqlite.corrupt" in q.damaged
        assert (tmp_path / "q.sqlite.corrupt").read_bytes() == b"this is not a database" * 100
        assert q.stats().samples == 0
    finally:
        q.close()


def test_a_pusher_that_cannot_start_leaves_the_queue_free(tmp_path):
    """A CA file that is no certificate stops the pusher before it takes the queue, so a reload that
    fixes the file can open the queue again (a held lock refused it as "used by another pusher")."""
    import ssl

    import pytest
    from prometheus_client import CollectorRegistry

    from agent.push.pusher import QUEUE_FILE, Pusher
    from agent.push.settings import PushSettings

    ca = tmp_path / "ca.pem"
    ca.write_text("not a certificate\n")
    settings = PushSettings(enabled=True, url="https://127.0.0.1:9/api/v1/write", tls_ca_file=str(ca))
    try:
        Pusher(settings, CollectorRegistry(), tmp_path, {"site": "nd-1"})
    except ssl.SSLError:
        SampleQueue(tmp_path / QUEUE_FILE, 10**6, 3600).close()  # while the failed pusher is in hand
    else:
        pytest.fail("a CA file that is no certificate was accepted")
