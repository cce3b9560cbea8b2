"""The durable, bounded on-disk queue of samples waiting to be pushed (SQLite in WAL mode).

Storage: each series' encoded labels are kept once (table `series`); samples live in compressed
blocks (table `blocks`), one per snapshot when written. A block is a matrix of snapshots x series
of 8-byte doubles: each row XORed with the row before (unchanged values become zeros), bytes
shuffled into planes, then zlib. While the link is down, runs of small blocks at the tail are merged
into bigger ones, which is what makes a week-long backlog fit in a few tens of megabytes.

A block's samples are read in a fixed order (series by series, each in time order); `sent` counts
how many of them the receiver has already settled, so a restart resumes exactly where it stopped.
Everything the queue accepted is committed before `append` returns (it survives kill -9).
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
import sqlite3
import struct
import threading
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

# A NaN payload that no float arithmetic produces: marks "series absent in this snapshot".
ABSENT = struct.pack("<Q", 0x7FF4AB5E00000001)
_VERSION = 1
_HEADER = struct.Struct("<BII")  # version, series, snapshots
_DISK_RESERVE = 640 * 1024  # left free on the file system: the WAL (wal_autocheckpoint) and one block
_ROOM_ATTEMPTS = 12  # deleting 1, 2, 4 ... 2048 of the oldest blocks to fit a snapshot on a full disk


def _disk_full(exc: sqlite3.Error) -> bool:
    """SQLITE_FULL ("database or disk is full"), also as an extended code."""
    return (getattr(exc, "sqlite_errorcode", 0) & 0xFF) == sqlite3.SQLITE_FULL or "disk is full" in str(exc)


@dataclass
class Drops:
    """Samples the queue threw away, by reason."""

    queue_full: int = 0
    too_old: int = 0
    disk_full: int = 0

    def __iadd__(self, other: Drops) -> Drops:
        self.queue_full += other.queue_full
        self.too_old += other.too_old
        self.disk_full += other.disk_full
        return self


@dataclass
class Batch:
    """The next samples to send, in queue order, and where they end in the queue."""

    entries: list[tuple[int, int, bytes]]  # (series id, timestamp ms, 8-byte value)
    too_old: int  # samples in the range that were too old to send (dropped when consumed)
    ends: list[tuple[int, int | None]] = field(default_factory=list)  # (block id, new sent or None: delete)
    future: int = 0  # samples stamped later than the caller's latest_ms (a clock that was ahead)


@dataclass(frozen=True)
class QueueStats:
    """The queue now: samples still to send, bytes on disk (database plus its WAL) and the
    timestamp (ms since the epoch) of the oldest queued sample, None when empty.
    """

    samples: int
    bytes: int
    oldest_ms: int | None


def encode_block(times: Sequence[int], sids: Sequence[int], rows: Sequence[bytes]) -> bytes:
    """rows[t] holds one 8-byte value per series (ABSENT where missing) for snapshot times[t]."""
    n = len(sids)
    xored = [rows[0]]
    for prev, row in itertools.pairwise(rows):
        x = int.from_bytes(row, "little") ^ int.from_bytes(prev, "little")
        xored.append(x.to_bytes(8 * n, "little"))
    matrix = memoryview(b"".join(xored))
    planes = b"".join(bytes(matrix[i::8]) for i in range(8))
    time_deltas = [times[0]] + [b - a for a, b in itertools.pairwise(times)]
    sid_deltas = [sids[0]] + [b - a for a, b in itertools.pairwise(sids)]
    raw = b"".join(
        (
            _HEADER.pack(_VERSION, n, len(times)),
            struct.pack(f"<{n}q", *sid_deltas),
            struct.pack(f"<{len(times)}q", *time_deltas),
            planes,
        )
    )
    return zlib.compress(raw, 6)


def decode_block(body: bytes) -> tuple[list[int], list[int], list[bytes]]:
    """The inverse of encode_block: (times, series ids, rows)."""
    raw = zlib.decompress(body)
    version, n, nt = _HEADER.unpack_from(raw)
    if version != _VERSION:
        raise ValueError(f"unknown queue block version {version}")
    pos = _HEADER.size
    sids, times = [], []
    acc = 0
    for d in struct.unpack_from(f"<{n}q", raw, pos):
        acc += d
        sids.append(acc)
    pos += 8 * n
    acc = 0
    for d in struct.unpack_from(f"<{nt}q", raw, pos):
        acc += d
        times.append(acc)
    pos += 8 * nt
    size = 8 * n * nt
    planes = memoryview(raw)[pos : pos + size]
    matrix = bytearray(size)
    step = n * nt
    for i in range(8):
        matrix[i::8] = planes[i * step : (i + 1) * step]
    rows = []
    prev = 0
    width = 8 * n
    for t in range(nt):
        prev ^= int.from_bytes(matrix[t * width : (t + 1) * width], "little")
        rows.append(prev.to_bytes(width, "little"))
    return times, sids, rows


def block_entries(times: list[int], sids: list[int], rows: list[bytes]) -> list[tuple[int, int, bytes]]:
    """A block's samples in queue order: series by series, each in time order."""
    out = []
    for j, sid in enumerate(sids):
        lo = 8 * j
        for t, ts in enumerate(times):
            value = rows[t][lo : lo + 8]
            if value != ABSENT:
                out.append((sid, ts, value))
    return out


_SCHEMA = """
CREATE TABLE IF NOT EXISTS series (id INTEGER PRIMARY KEY AUTOINCREMENT, labels BLOB NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS blocks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: id order is time order
    first_ms INTEGER NOT NULL,
    last_ms INTEGER NOT NULL,
    snapshots INTEGER NOT NULL,
    samples INTEGER NOT NULL,
    sent INTEGER NOT NULL DEFAULT 0,
    body BLOB NOT NULL
);
"""


class SampleQueue:
    """Thread-safe: the snapshot thread appends, the sender thread peeks and consumes."""

    def __init__(self, path: Path, max_bytes: int, max_age_s: float, merge_samples: int = 16384) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.max_age_ms = int(max_age_s * 1000)
        self.merge_samples = merge_samples
        self._lock = threading.Lock()
        self.damaged: str | None = None  # why the file found at start was moved aside, if it was
        lockfile: IO[bytes] | None = None
        db: sqlite3.Connection | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            lockfile = _lock_exclusively(Path(f"{path}.lock"))
            try:
                db = self._connect(path)
            except sqlite3.DatabaseError as exc:
                if type(exc) is not sqlite3.DatabaseError:  # locked, no permission...: not damage
                    raise
                # A damaged file (a power cut on a card that lies about flushing) must not keep the
                # agent from pushing for good: keep it for a post-mortem and start empty.
                for suffix in ("", "-wal", "-shm"):
                    damaged = Path(f"{path}{suffix}")
                    if damaged.exists():
                        damaged.replace(f"{path}.corrupt{suffix}")
                self.damaged = f"{exc}; moved to {path}.corrupt"
                db = self._connect(path)
            rows = db.execute("SELECT id, labels FROM series").fetchall()
        except BaseException as exc:
            # Closed now, not when the garbage collector finds them: the held lock would refuse a retry.
            if db is not None:
                db.close()
            if lockfile is not None:
                lockfile.close()
            if isinstance(exc, OSError | sqlite3.Error) and not isinstance(exc, QueueError):
                raise QueueError(f"cannot open the push queue {path}: {exc}") from None
            raise
        self._lockfile, self._db = lockfile, db
        self._sids = {bytes(lb): sid for sid, lb in rows}
        self._labels = {sid: lb for lb, sid in self._sids.items()}
        self._inflight: set[int] = set()
        self._recent: set[int] = set()  # series of the latest snapshot, kept when unused ones go
        self._cache: tuple[int, list[tuple[int, int, bytes]]] | None = None
        self._closed = False
        self.disk_error: str | None = None  # why the disk is full, while it is

    def _connect(self, path: Path) -> sqlite3.Connection:
        db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=10)
        try:
            db.execute("PRAGMA auto_vacuum=INCREMENTAL")  # only takes effect on a new file
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")  # a committed snapshot survives power loss too
            db.execute("PRAGMA journal_size_limit=4194304")
            db.execute("PRAGMA wal_autocheckpoint=128")  # a WAL of at most ~0.5 MiB: room for a full disk
            db.executescript(_SCHEMA)
            db.execute("SELECT id, labels FROM series").fetchone()  # a damaged file fails here at the latest
            self._page_size = int(db.execute("PRAGMA page_size").fetchone()[0])
        except BaseException:
            db.close()
            raise
        return db

    # -- writing -------------------------------------------------------------------------------

    def append(self, ts_ms: int, samples: Sequence[tuple[bytes, bytes]]) -> Drops:
        """Queue one snapshot: (encoded labels, 8-byte value) pairs sharing one timestamp.

        When the disk is full, the oldest blocks are deleted (1, 2, 4... at a time) until the
        snapshot fits; if nothing more can go, the snapshot itself is lost. Either way the loss is
        returned as Drops.disk_full, and `disk_error` holds the error until there is room again.
        """
        if not samples:
            return Drops()
        with self._lock:
            self._check_open()
            drops = Drops()
            for attempt in range(_ROOM_ATTEMPTS):
                try:
                    drops += self._write(ts_ms, samples)
                    # room again only with a margin, so an episode at the limit does not flap
                    roomy = not drops.disk_full and self._disk_cap() - self._used_bytes() > _DISK_RESERVE
                    if self.disk_error is not None and roomy:
                        self.disk_error = None
                    return drops
                except sqlite3.OperationalError as exc:
                    if not _disk_full(exc):
                        raise
                    self.disk_error = str(exc)
                if attempt:  # first try emptying the WAL alone: that loses nothing
                    freed = self._drop_oldest(2 ** (attempt - 1))
                    if freed is None:
                        break
                    drops.disk_full += freed
                self._checkpoint()
            drops.disk_full += len(samples)
            return drops

    def _write(self, ts_ms: int, samples: Sequence[tuple[bytes, bytes]]) -> Drops:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            values: dict[int, bytes] = {}
            new: list[bytes] = []
            for labels, value in samples:
                sid = self._sids.get(labels)
                if sid is None:
                    cur = self._db.execute("INSERT INTO series (labels) VALUES (?)", (labels,))
                    sid = int(cur.lastrowid or 0)
                    new.append(labels)
                    self._sids[labels] = sid
                    self._labels[sid] = labels
                values[sid] = value
            sids = sorted(values)
            body = encode_block([ts_ms], sids, [b"".join(values[s] for s in sids)])
            self._db.execute(
                "INSERT INTO blocks (first_ms, last_ms, snapshots, samples, body) VALUES (?, ?, 1, ?, ?)",
                (ts_ms, ts_ms, len(sids), body),
            )
            self._merge_tail()
            drops = self._enforce_limits(ts_ms)
            self._db.execute("COMMIT")
        except BaseException:
            self._rollback()
            for labels in new:  # the rows went with the transaction: forget their ids too
                del self._labels[self._sids.pop(labels)]
            raise
        self._recent = set(sids)
        if drops.queue_full:
            self._db.execute("PRAGMA incremental_vacuum")
        return drops

    def _drop_oldest(self, blocks: int) -> int | None:
        """Delete up to `blocks` oldest blocks to make room: their unsent samples, None if none could go."""
        rows = [
            r
            for r in self._db.execute(
                "SELECT id, samples, sent FROM blocks ORDER BY id LIMIT ?", (blocks + 200,)
            )
            if r[0] not in self._inflight
        ][:blocks]
        if not rows:
            return None
        try:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("DELETE FROM blocks WHERE id = ?", [(bid,) for bid, _, _ in rows])
            self._db.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            self._rollback()
            if not _disk_full(exc):
                raise
            return None
        if self._cache is not None and self._cache[0] in {bid for bid, _, _ in rows}:
            self._cache = None
        return int(sum(samples - sent for _, samples, sent in rows))

    def _checkpoint(self) -> None:
        """Copy the WAL into the database and start it again from its beginning: pages freed by
        deleted blocks become reusable, and the WAL's space is reused instead of grown."""
        with contextlib.suppress(sqlite3.OperationalError):
            self._db.execute("PRAGMA wal_checkpoint(RESTART)")

    def _rollback(self) -> None:
        # SQLite has already rolled back after some errors (a full disk): a second ROLLBACK would
        # replace the real error with "cannot rollback - no transaction is active".
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")

    def _merge_tail(self) -> None:
        """Merge the run of small, unsent blocks at the tail once it holds enough samples."""
        run: list[int] = []
        total = 0
        for bid, samples, sent in self._db.execute(
            "SELECT id, samples, sent FROM blocks ORDER BY id DESC LIMIT 1000"
        ):
            if sent or bid in self._inflight or samples >= self.merge_samples:
                break
            run.append(bid)
            total += samples
        if len(run) < 2 or total < self.merge_samples:
            return
        run.reverse()
        snapshots: dict[int, dict[int, bytes]] = {}
        for (body,) in self._db.execute(
            f"SELECT body FROM blocks WHERE id IN ({','.join('?' * len(run))}) ORDER BY id", run
        ):
            times, sids, rows = decode_block(body)
            for ts, row in zip(times, rows, strict=True):
                snap = snapshots.setdefault(ts, {})
                for j, sid in enumerate(sids):
                    value = row[8 * j : 8 * j + 8]
                    if value != ABSENT:
                        snap[sid] = value
        times = sorted(snapshots)
        all_sids = sorted({sid for snap in snapshots.values() for sid in snap})
        rows = [b"".join(snapshots[ts].get(sid, ABSENT) for sid in all_sids) for ts in times]
        body = encode_block(times, all_sids, rows)
        self._db.execute(f"DELETE FROM blocks WHERE id IN ({','.join('?' * len(run))})", run)
        self._db.execute(
            "INSERT INTO blocks (first_ms, last_ms, snapshots, samples, body) VALUES (?, ?, ?, ?, ?)",
            (times[0], times[-1], len(times), total, body),
        )

    def _used_bytes(self) -> int:
        pages = self._db.execute("PRAGMA page_count").fetchone()[0]
        free = self._db.execute("PRAGMA freelist_count").fetchone()[0]
        return int(pages - free) * self._page_size

    def _enforce_limits(self, now_ms: int) -> Drops:
        """Drop whole blocks past the age limit, then the oldest blocks while over the size cap."""
        drops = Drops()
        cutoff = now_ms - self.max_age_ms
        for bid, samples, sent in self._db.execute(
            "SELECT id, samples, sent FROM blocks WHERE last_ms < ? ORDER BY id", (cutoff,)
        ).fetchall():
            if bid not in self._inflight:
                self._db.execute("DELETE FROM blocks WHERE id = ?", (bid,))
                drops.too_old += samples - sent
        cap, by_disk = self.max_bytes, False
        disk_cap = self._disk_cap()
        if disk_cap < cap:
            cap, by_disk = disk_cap, True
        if self._used_bytes() > cap:
            if by_disk:
                self.disk_error = f"{self.path.parent} has {disk_cap // 1024} KiB left for the queue"
            for bid, samples, sent in self._db.execute(  # the newest block stays: it is what the room is for
                "SELECT id, samples, sent FROM blocks WHERE id < (SELECT MAX(id) FROM blocks) ORDER BY id"
            ).fetchall():
                if bid in self._inflight:
                    continue
                self._db.execute("DELETE FROM blocks WHERE id = ?", (bid,))
                if by_disk:
                    drops.disk_full += samples - sent
                else:
                    drops.queue_full += samples - sent
                if self._used_bytes() <= cap:
                    break
        return drops

    def _disk_cap(self) -> int:
        """Bytes the queue's pages may use before the file system runs out (keeping room for the WAL).

        Deleted blocks leave free pages in the file that later blocks reuse, so the queue stops
        growing before SQLite ever meets a full disk (which WAL mode cannot always recover from:
        a checkpoint needs to grow the file, and freeing space needs the WAL).
        """
        try:
            st = os.statvfs(self.path.parent)
        except OSError:
            return self.max_bytes
        allocated = int(self._db.execute("PRAGMA page_count").fetchone()[0]) * self._page_size
        return allocated + st.f_bavail * st.f_frsize - _DISK_RESERVE

    def expire(self, now_ms: int) -> Drops:
        """Apply the age and size limits now (the sender calls it while the queue is idle)."""
        with self._lock:
            self._check_open()
            self._db.execute("BEGIN IMMEDIATE")
            try:
                drops = self._enforce_limits(now_ms)
                self._db.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
            return drops

    # -- reading -------------------------------------------------------------------------------

    def peek(self, max_samples: int, now_ms: int, latest_ms: int | None = None) -> Batch | None:
        """The oldest samples, up to max_samples to send; too old ones (and ones stamped after
        latest_ms) are counted, not returned."""
        with self._lock:
            self._check_open()
            cutoff = now_ms - self.max_age_ms
            batch = Batch([], 0)
            taken = 0
            for bid, samples, sent in self._db.execute(
                "SELECT id, samples, sent FROM blocks ORDER BY id LIMIT 200"
            ).fetchall():
                entries = self._entries(bid)
                end = min(samples, sent + max_samples - taken)
                for entry in entries[sent:end]:
                    if entry[1] < cutoff:
                        batch.too_old += 1
                    elif latest_ms is not None and entry[1] > latest_ms:
                        batch.future += 1
                    else:
                        batch.entries.append(entry)
                taken += end - sent
                batch.ends.append((bid, None if end >= samples else end))
                self._inflight.add(bid)
                if taken >= max_samples:
                    break
            return batch if batch.ends else None

    def _entries(self, bid: int) -> list[tuple[int, int, bytes]]:
        if self._cache is not None and self._cache[0] == bid:
            return self._cache[1]
        (body,) = self._db.execute("SELECT body FROM blocks WHERE id = ?", (bid,)).fetchone()
        entries = block_entries(*decode_block(body))
        self._cache = (bid, entries)
        return entries

    def labels(self, sid: int) -> bytes:
        """The encoded Label fields (agent/push/encoding.py) of series `sid`; KeyError when unknown."""
        return self._labels[sid]

    def consume(self, batch: Batch) -> None:
        """The batch is settled (accepted, or dropped for good): remove it from the queue."""
        with self._lock:
            self._check_open()
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for bid, sent in batch.ends:
                    if sent is None:
                        self._db.execute("DELETE FROM blocks WHERE id = ?", (bid,))
                    else:
                        self._db.execute("UPDATE blocks SET sent = ? WHERE id = ?", (sent, bid))
                self._forget_unused_series()
                self._db.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
            finally:
                self._inflight.clear()

    def release(self, batch: Batch) -> None:
        """The batch was not settled (stopping): it stays queued and is sent again later."""
        with self._lock:
            self._inflight.clear()

    def _forget_unused_series(self) -> None:
        """With nothing queued, series that are gone from the snapshots need no label row."""
        if len(self._sids) <= 2 * len(self._recent) + 100:
            return
        if self._db.execute("SELECT 1 FROM blocks LIMIT 1").fetchone():
            return
        gone = [sid for sid in self._labels if sid not in self._recent]
        self._db.executemany("DELETE FROM series WHERE id = ?", [(s,) for s in gone])
        for sid in gone:
            del self._sids[self._labels.pop(sid)]

    # -- state ---------------------------------------------------------------------------------

    def stats(self) -> QueueStats:
        """Samples waiting, bytes on disk and the oldest timestamp; raises QueueClosed after close()."""
        with self._lock:
            self._check_open()
            samples, oldest = self._db.execute(
                "SELECT SUM(samples - sent), MIN(first_ms) FROM blocks"
            ).fetchone()
            size = sum(p.stat().st_size for p in (self.path, Path(f"{self.path}-wal")) if p.exists())
            return QueueStats(int(samples or 0), size, None if oldest is None else int(oldest))

    def close(self) -> None:
        """Close the database and release the queue's lock file, so another process may open it;
        idempotent. Later calls raise QueueClosed.
        """
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()
                self._lockfile.close()  # releases the lock

    def _check_open(self) -> None:
        if self._closed:
            raise QueueClosed("the push queue is closed")


def _lock_exclusively(path: Path) -> IO[bytes]:
    """One writer per queue file: a second pusher (in this process or another) is refused, not run."""
    f = path.open("ab")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        raise QueueError(f"the push queue {path.with_suffix('')} is already used by another pusher") from None
    return f


class QueueError(OSError):
    """The queue file cannot be used (state_dir not writable, not a database...)."""


class QueueClosed(RuntimeError):
    """The queue was closed (the pusher is stopping)."""
