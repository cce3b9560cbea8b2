"""The push loop: snapshot the registry every interval into the disk queue; drain it to the receiver.

Two threads. The snapshot thread only reads the registry and appends to the local queue, so a dead
link never delays measurements. The sender thread sends the oldest samples first, retries network
errors, timeouts, 5xx, 429, authentication failures and redirects with jittered exponential backoff
(Retry-After can only lengthen it), drops a batch the receiver refuses for good (other 4xx) and
splits a batch the receiver calls too old, so one stale sample cannot block the queue.

Pushed series look like scraped ones: {__name__, job="hotspot-agent", instance=<site id>, ...}.
"""

from __future__ import annotations

import logging
import random
import struct
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from urllib.parse import urlsplit

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import CollectorRegistry

from agent.clock import is_set
from agent.push.encoding import STALE_NAN, InvalidSeries, compress, encode_labels, encode_write_request
from agent.push.queue import Batch, Drops, QueueClosed, SampleQueue
from agent.push.remote_write import Answer, RemoteWriteClient, name_os_thread
from agent.push.settings import PushSettings

log = logging.getLogger(__name__)

JOB = "hotspot-agent"
QUEUE_FILE = "push-queue.sqlite"
DROP_REASONS = ("queue_full", "too_old", "rejected", "disk_full", "clock")
# Samples stamped further ahead of a set clock were stamped by a clock that was ahead (then stepped).
FUTURE_TOLERANCE_S = 600.0
_STOP_TIMEOUT_S = 3.0
THREAD_NAMES = ("push-snapshot", "push-send")  # also the OS thread names (ps -L, /proc/PID/task/*/comm)


def _named(target: Callable[[], None], name: str) -> Callable[[], None]:
    def run() -> None:
        name_os_thread(name)
        target()

    return run


class PushMetrics:
    """The pipeline's own metrics, a prometheus_client collector the agent registers.

    hotspot_push_queue_samples{site="nd-1",...} 0.0
    hotspot_push_samples_dropped_total{reason="too_old",site="nd-1",...} 12.0
    """

    def __init__(self, identity_labels: Mapping[str, str]) -> None:
        self._identity = dict(identity_labels)
        self._lock = threading.Lock()
        self.sent = 0
        self.retried = 0
        self.dropped = dict.fromkeys(DROP_REASONS, 0)
        self.last_success: float | None = None
        self.auth_failures = 0
        self.auth_failing = False
        self.queue: SampleQueue | None = None
        self.clock: Callable[[], float] = time.time

    def count(self, sent: int = 0, retried: int = 0, **dropped: int) -> None:
        """Add to the running totals: samples accepted (`sent`), sent again (`retried`) and dropped by
        reason (`dropped`, keyword per DROP_REASONS; an unknown reason raises KeyError). Any sample
        accepted stamps the last-success time (wall clock, seconds).
        """
        with self._lock:
            self.sent += sent
            self.retried += retried
            for reason, n in dropped.items():
                self.dropped[reason] += n
            if sent:
                self.last_success = time.time()

    def note_answer(self, answer: Answer) -> None:
        """Count authentication failures; any answer that is not one ends the failing state."""
        with self._lock:
            if answer.auth_failed:
                self.auth_failures += 1
            if answer.status:
                self.auth_failing = answer.auth_failed

    def count_drops(self, drops: Drops) -> None:
        """Count what the queue dropped on its own (full, too old, disk full) as dropped samples."""
        self.count(queue_full=drops.queue_full, too_old=drops.too_old, disk_full=drops.disk_full)

    def _gauge(self, name: str, doc: str, value: float) -> GaugeMetricFamily:
        g = GaugeMetricFamily(name, doc, labels=list(self._identity))
        g.add_metric(list(self._identity.values()), value)
        return g

    def describe(self) -> Iterable[Metric]:
        """The families `collect()` yields, by name, so that registering a second pusher in the same
        registry raises ValueError (duplicated timeseries) instead of exporting two.
        """
        # Real names, so a registry refuses a second registration (two pushers) loudly.
        g, c = GaugeMetricFamily, CounterMetricFamily
        return [
            g("hotspot_push_queue_samples", ""),
            g("hotspot_push_queue_bytes", ""),
            g("hotspot_push_oldest_sample_age_seconds", ""),
            c("hotspot_push_samples_sent", ""),
            c("hotspot_push_samples_retried", ""),
            c("hotspot_push_samples_dropped", ""),
            c("hotspot_push_auth_failures", ""),
            g("hotspot_push_auth_failing", ""),
            g("hotspot_push_last_success_timestamp_seconds", ""),
        ]

    def collect(self) -> Iterable[Metric]:
        """The push families at scrape time, each labelled with the site's identity, e.g.

            hotspot_push_queue_samples{site="nd-13636-ubnd",...} 120.0
            hotspot_push_samples_sent_total{site="nd-13636-ubnd",...} 5.4e+06

        Queue gauges are left out once the queue is closed (docs/metrics.md lists every family).
        """
        keys, values = list(self._identity), list(self._identity.values())
        if self.queue is not None:
            try:
                stats = self.queue.stats()
            except QueueClosed:
                stats = None
            if stats is not None:
                age = 0.0 if stats.oldest_ms is None else max(0.0, self.clock() - stats.oldest_ms / 1000)
                yield self._gauge("hotspot_push_queue_samples", "Samples waiting to be sent.", stats.samples)
                yield self._gauge("hotspot_push_queue_bytes", "Disk used by the push queue.", stats.bytes)
                yield self._gauge(
                    "hotspot_push_oldest_sample_age_seconds",
                    "Age of the oldest unsent sample (0 when the queue is empty).",
                    age,
                )
        with self._lock:
            sent, retried, dropped, last = self.sent, self.retried, dict(self.dropped), self.last_success
            auth_failures, auth_failing = self.auth_failures, self.auth_failing
        c = CounterMetricFamily("hotspot_push_samples_sent", "Samples the receiver accepted.", labels=keys)
        c.add_metric(values, sent)
        yield c
        c = CounterMetricFamily(
            "hotspot_push_samples_retried", "Samples sent again after an error.", labels=keys
        )
        c.add_metric(values, retried)
        yield c
        c = CounterMetricFamily(
            "hotspot_push_samples_dropped", "Samples given up, by reason.", labels=[*keys, "reason"]
        )
        for reason in DROP_REASONS:
            c.add_metric([*values, reason], dropped[reason])
        yield c
        c = CounterMetricFamily(
            "hotspot_push_auth_failures",
            "Requests the receiver answered with an authentication failure (401, 403, vmauth's 400).",
            labels=keys,
        )
        c.add_metric(values, auth_failures)
        yield c
        yield self._gauge(
            "hotspot_push_auth_failing",
            "1 while the receiver's latest answer refused the credentials (samples stay queued).",
            float(auth_failing),
        )
        if last is not None:
            yield self._gauge(
                "hotspot_push_last_success_timestamp_seconds",
                "When the receiver last accepted a batch.",
                last,
            )


def snapshot_samples(registry: CollectorRegistry, instance: str) -> tuple[dict[bytes, bytes], list[str]]:
    """Every sample of the registry as {encoded labels: 8-byte value}, plus why any were refused."""
    out: dict[bytes, bytes] = {}
    refused: list[str] = []
    for family in registry.collect():
        for sample in family.samples:
            labels = {"__name__": sample.name, "job": JOB, "instance": instance}
            for key, value in sample.labels.items():
                # As a scrape without honor_labels does: the target's own job/instance win.
                labels[f"exported_{key}" if key in ("job", "instance") else key] = value
            try:
                encoded = encode_labels(labels)
            except InvalidSeries as exc:
                refused.append(str(exc))
                continue
            if encoded in out:
                refused.append(f"duplicate series {sample.name}{sample.labels}")
                continue
            out[encoded] = struct.pack("<d", float(sample.value))
    return out, refused


class Pusher:
    """Pushes the registry's samples to a remote-write receiver through a durable disk queue."""

    def __init__(
        self,
        settings: PushSettings,
        registry: CollectorRegistry,
        state_dir: Path,
        identity_labels: Mapping[str, str],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self._clock = clock  # the wall clock, Unix seconds: snapshot stamps and sample ages
        self._registry = registry
        self._instance = identity_labels.get("site", "")
        # The client first: a CA file it cannot load must not leave the queue (and its lock) open.
        self._client = RemoteWriteClient(settings)
        self.queue = SampleQueue(
            Path(state_dir) / QUEUE_FILE, settings.max_queue_bytes, settings.max_sample_age_s
        )
        if self.queue.damaged:
            log.error("push queue was damaged (%s): started empty, its samples are lost", self.queue.damaged)
        self.metrics = PushMetrics(identity_labels)
        self.metrics.queue = self.queue
        self.metrics.clock = clock
        parts = urlsplit(settings.url)
        self._where = f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)  # no secrets
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self._previous: set[bytes] = set()
        self._last_ts = 0
        self._failing_since: float | None = None
        self._failing_kind = ""
        self._disk_full = False
        self._sender_error = ""
        self._logged: set[str] = set()

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the two threads; raises RuntimeError if this pusher was started before."""
        if self._threads:
            raise RuntimeError(
                "push: this pusher is already started; a second one would duplicate every sample"
            )
        self._threads = [
            threading.Thread(
                target=_named(self._snapshot_loop, THREAD_NAMES[0]), name=THREAD_NAMES[0], daemon=True
            ),
            threading.Thread(
                target=_named(self._send_loop, THREAD_NAMES[1]), name=THREAD_NAMES[1], daemon=True
            ),
        ]
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        """Stop both threads; whatever is unsent stays on disk for the next start."""
        self._stop.set()
        self._wake.set()
        deadline = time.monotonic() + _STOP_TIMEOUT_S
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        self._client.close()
        self.queue.close()  # a sender still stuck in a request finds it closed and ends

    # -- snapshots -----------------------------------------------------------------------------

    def snapshot(self) -> int:
        """Queue one snapshot of the registry now; returns the number of samples queued."""
        now = self._clock()
        samples, refused = snapshot_samples(self._registry, self._instance)
        if not is_set(now):  # stamps from an unset clock would be refused or misplaced
            self.metrics.count(clock=len(samples))
            self._log_once(
                "clock-unset",
                "push: the clock reads %s, so it has not been set: snapshots are not queued until it is"
                ' (NTP); counted in hotspot_push_samples_dropped_total{reason="clock"}',
                time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(now)),
            )
            return 0
        # Stamped with the wall clock at snapshot time. Stamps of one series must increase, so the
        # same millisecond (or a sub-second step back) gets the previous stamp + 1 ms; after a
        # larger step back the wall clock is followed again rather than stamping into the future.
        ts = int(now * 1000)
        if 0 <= self._last_ts - ts < 1000:
            ts = self._last_ts + 1
        elif ts < self._last_ts:
            self._log_once(
                f"clock-back:{self._last_ts}",
                "push: the clock stepped back %.0f s; snapshots follow it",
                (self._last_ts - ts) / 1000,
            )
        if refused:
            self.metrics.count(rejected=len(refused))
            self._log_once(
                f"refused:{refused[0]}", "push: not sending %d samples: %s", len(refused), refused[0]
            )
        # A series that disappeared gets a staleness marker, as a scraping Prometheus writes.
        current = set(samples)
        for gone in self._previous - current:
            samples[gone] = STALE_NAN
        self._previous = current
        self.metrics.count_drops(self.queue.append(ts, list(samples.items())))
        self._note_disk()
        self._last_ts = ts
        self._wake.set()
        return len(samples)

    def _note_disk(self) -> None:
        """The real error of a full disk, once when it starts; one line when there is room again."""
        error = self.queue.disk_error
        if error is not None and not self._disk_full:
            log.error(
                "push: the disk under the queue %s is full (%s): the oldest queued samples are dropped to"
                ' make room, counted in hotspot_push_samples_dropped_total{reason="disk_full"}',
                self.queue.path,
                error,
            )
        elif error is None and self._disk_full:
            log.info("push: the disk under the queue has room again")
        self._disk_full = error is not None

    def _snapshot_loop(self) -> None:
        interval = self.settings.interval_s
        due = time.monotonic()
        while not self._stop.is_set():
            try:
                self.snapshot()
            except QueueClosed:
                return
            except Exception as exc:  # a broken collector or a full disk must not end pushing
                log.error("push: snapshot not queued: %s", exc)
            due += interval
            now = time.monotonic()
            if due < now:  # fell behind (suspend, slow disk): skip, do not burst
                due = now + interval
            self._stop.wait(due - now)

    # -- sending -------------------------------------------------------------------------------

    def _send_loop(self) -> None:
        last_expire = 0.0
        while not self._stop.is_set():
            try:
                now = self._clock()
                if abs(now - last_expire) >= 10:
                    self.metrics.count_drops(self.queue.expire(int(now * 1000)))
                    last_expire = now
                # With a set clock, samples stamped far ahead of it were stamped by a clock that was
                # ahead: a receiver taking them would move its head into the future. Never sent.
                latest = int((now + FUTURE_TOLERANCE_S) * 1000) if is_set(now) else None
                batch = self.queue.peek(self.settings.max_samples_per_request, int(now * 1000), latest)
                if batch is None:
                    self._wake.wait(1.0)
                    self._wake.clear()
                    continue
                if self._deliver(batch):
                    self.queue.consume(batch)
                else:
                    self.queue.release(batch)
                self._sender_error = ""
            except QueueClosed:
                return
            except Exception as exc:  # e.g. a disk error: keep the thread, try again shortly
                if str(exc) != self._sender_error:  # once, not every 5 s
                    log.error("push: sender error (retrying every 5 s): %s", exc)
                    self._sender_error = str(exc)
                self._stop.wait(5.0)

    def _deliver(self, batch: Batch) -> bool:
        """Settle a batch: True when it may leave the queue, False to leave it queued (stopping, aged)."""
        if batch.too_old or batch.future:
            self.metrics.count(too_old=batch.too_old, clock=batch.future)
            if batch.future:
                self._log_once(
                    "clock-future",
                    "push: not sending %d samples stamped over %.0f s ahead of the clock (it was ahead"
                    " when they were taken)",
                    batch.future,
                    FUTURE_TOLERANCE_S,
                )
            batch.too_old = batch.future = 0  # counted once even if the batch is released and peeked again
        if not batch.entries:
            return True
        answer = self._post(batch.entries)
        if answer is None:
            return False
        if answer.ok:
            self.metrics.count(sent=len(batch.entries))
        elif answer.too_old:
            return self._split_by_time(batch.entries)
        else:
            self._reject(batch.entries, answer)
        return True

    def _split_by_time(self, entries: list[tuple[int, int, bytes]]) -> bool:
        """Find the receiver's time limit by bisection: send what it takes, drop what is older."""
        times = sorted({ts for _, ts, _ in entries})
        lo, hi = 0, len(times)  # times[:lo] are refused as too old, times[hi:] are settled
        while lo < hi:
            mid = (lo + hi) // 2
            upper = times[hi] if hi < len(times) else None
            part = [e for e in entries if e[1] >= times[mid] and (upper is None or e[1] < upper)]
            answer = self._post(part)
            if answer is None:
                return False
            if answer.ok:
                self.metrics.count(sent=len(part))
                hi = mid
            elif answer.too_old:
                lo = mid + 1
            else:
                self._reject(part, answer)
                hi = mid
        if lo:
            old = sum(1 for e in entries if e[1] <= times[lo - 1])
            self.metrics.count(too_old=old)
            self._log_once(
                "too_old", "push: receiver refused %d samples as too old: lower max_sample_age_s", old
            )
        return True

    def _reject(self, entries: list[tuple[int, int, bytes]], answer: Answer) -> None:
        self.metrics.count(rejected=len(entries))
        self._log_once(
            f"rejected:{answer.status}:{answer.reason}",
            "push: receiver rejected %d samples for good (HTTP %d): %s",
            len(entries),
            answer.status,
            answer.reason,
        )

    def _post(self, entries: list[tuple[int, int, bytes]]) -> Answer | None:
        """POST until the answer is final (2xx, 4xx or too old); None when stopping or aged out meanwhile."""
        groups: dict[int, list[tuple[int, bytes]]] = {}
        for sid, ts, value in entries:
            groups.setdefault(sid, []).append((ts, value))
        body = compress(encode_write_request((self.queue.labels(sid), s) for sid, s in groups.items()))
        attempt = 0
        while True:
            answer = self._client.post(body)
            self.metrics.note_answer(answer)
            if not answer.retryable or answer.too_old:
                if self._failing_since is not None and answer.status:
                    log.info(
                        "push: %s answers again after %.0f s", self._where, time.time() - self._failing_since
                    )
                    self._failing_since = None
                    self._failing_kind = ""
                return answer
            self._log_failure(answer)
            if self._stop.wait(self._backoff(attempt, answer.retry_after_s)):
                return None
            if entries[0][1] < (self._clock() - self.settings.max_sample_age_s) * 1000:
                return None  # aged out while retrying: give the batch back so the age limit applies
            attempt += 1
            self.metrics.count(retried=len(entries))

    def _log_failure(self, answer: Answer) -> None:
        """One line per failure episode and kind, saying what to do; samples always stay queued."""
        kind = "auth" if answer.auth_failed else "redirect" if answer.redirect else "unavailable"
        if self._failing_since is None:
            self._failing_since = time.time()
        if kind == self._failing_kind:
            return
        self._failing_kind = kind
        if kind == "auth":
            log.error(
                "push: %s refuses the push credentials (HTTP %d: %s); samples stay queued on disk and are"
                " retried: check push.basic_auth / push.bearer_token and this site's user on the receiver",
                self._where,
                answer.status,
                answer.reason,
            )
        elif kind == "redirect":
            log.error(
                "push: %s answers HTTP %d, %s; redirects are not followed (the credentials would go with"
                " them): set push.url to the final address. Samples stay queued on disk",
                self._where,
                answer.status,
                answer.reason,
            )
        else:
            log.warning("push: %s failing (%s); samples stay queued on disk", self._where, answer.reason)

    def _backoff(self, attempt: int, retry_after_s: float | None) -> float:
        """Seconds to wait: jittered exponential backoff from min_backoff_s to max_backoff_s.

        Retry-After may lengthen the wait (up to 10 min) but never shorten it: a receiver answering
        `Retry-After: 0` or a past date must not turn backoff off.
        """
        low, high = self.settings.min_backoff_s, self.settings.max_backoff_s
        ceiling = min(high, low * 2 ** min(attempt, 30))
        wait = random.uniform(max(low, ceiling / 2), ceiling)  # jitter: a fleet back online is not in step
        if retry_after_s is not None:
            wait = max(wait, min(retry_after_s, 600.0))
        return wait

    def _log_once(self, key: str, msg: str, *args: object) -> None:
        if key in self._logged or len(self._logged) > 1000:
            return
        self._logged.add(key)
        log.warning(msg, *args)
