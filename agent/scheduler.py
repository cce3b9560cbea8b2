"""Runs the probes on their schedules: one APScheduler job per probe, interval plus random jitter.

A run is abandoned (and counted as a timeout) when it exceeds its probe's timeout, so a hung probe
never blocks the others; at most one run of a probe at a time; bandwidth-class probes never overlap
each other, because they would measure each other's traffic.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from agent.probes.base import ProbeContext, ProbeSettings, ProbeSpec
from agent.result import Result, failure
from agent.site import Site

log = logging.getLogger(__name__)

STEP_S = 1.0  # the wall clock moving this much more or less than the monotonic one is a step


class _SteadyScheduler(BackgroundScheduler):  # type: ignore[misc]  # APScheduler 3 is untyped
    """A BackgroundScheduler whose jobs keep their places when the wall clock is stepped.

    APScheduler 3 sleeps on the monotonic clock but compares job times with datetime.now(): a Pi
    without a real-time clock whose time NTP sets back an hour would run nothing for that hour, and
    one set forward would run every job at once. At each wakeup (before any job is looked at) the
    wall clock's step since the last wakeup is measured against time.monotonic(), and every job's
    next run moves by the same step, so its delay on the monotonic clock is what it was.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._offset = time.time() - time.monotonic()

    def pending_step(self) -> float:
        """How far the wall clock moved since the last wakeup (seconds; the jobs move at the next)."""
        return time.time() - time.monotonic() - self._offset

    def _process_jobs(self) -> Any:
        offset = time.time() - time.monotonic()
        step, self._offset = offset - self._offset, offset
        if abs(step) > STEP_S:
            log.warning("wall clock stepped %+.0f s: every probe's next run moved with it", step)
            for job in self.get_jobs():
                if job.next_run_time is not None:
                    self.modify_job(job.id, next_run_time=job.next_run_time + timedelta(seconds=step))
        return super()._process_jobs()


class ResultSink(Protocol):
    def record_run(
        self, probe: str, results: list[Result[Any]], finished_at: float, duration_s: float
    ) -> None: ...


@dataclass
class _Running:
    """A probe run in its own thread, which may outlive the wait for it when abandoned."""

    context: ProbeContext
    done: threading.Event = field(default_factory=threading.Event)
    results: list[Result[Any]] = field(default_factory=list)


class ProbeScheduler:
    """Owns the job schedule; `apply()` replaces it (at start and on reload)."""

    def __init__(
        self,
        specs: Mapping[str, ProbeSpec[Any, Any]],
        sink: ResultSink,
        state_dir: Path,
        progress: Callable[[str, float], None] | None = None,
    ) -> None:
        self._specs = specs
        self._progress = progress
        self._sink = sink
        self._state_dir = state_dir
        self._scheduler = _SteadyScheduler(
            executors={"default": ThreadPoolExecutor(max_workers=len(specs) + 2)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 60},
            timezone="UTC",
        )
        self._bandwidth_lock = threading.Lock()
        self._running: dict[str, _Running] = {}  # runs abandoned or in progress, by probe
        self._site: Site | None = None
        self._stopping = threading.Event()

    def apply(self, site: Site, probes: Mapping[str, ProbeSettings]) -> None:
        """Schedule exactly these probes (enabled ones), replacing any earlier schedule."""
        self._site = site
        self._scheduler.remove_all_jobs()
        now = datetime.now().astimezone()
        for name, settings in probes.items():
            spec = self._specs[name]
            # The first run comes within the jitter window, not a whole interval later.
            first = now + timedelta(seconds=random.uniform(0, min(settings.jitter_s, settings.interval_s)))
            self._scheduler.add_job(
                self.run_once,
                IntervalTrigger(seconds=settings.interval_s, jitter=settings.jitter_s or None),
                args=[spec, settings],
                id=name,
                name=name,
                next_run_time=first,
                replace_existing=True,
            )
        log.info("scheduled probes: %s", ", ".join(sorted(probes)) or "none")

    def start(self) -> None:
        self._scheduler.start()

    def stop(self) -> None:
        """Stop scheduling; tell running probes to stop early; do not wait for hung ones."""
        self._stopping.set()  # wakes run_once, so that no scheduler thread holds up the exit
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        for running in list(self._running.values()):
            running.context.cancelled.set()

    def next_run_times(self) -> dict[str, datetime]:
        """Each job's next run on the wall clock as it reads now, a step not yet applied included."""
        step = self._scheduler.pending_step()
        shift = timedelta(seconds=step if abs(step) > STEP_S else 0)
        return {job.id: job.next_run_time + shift for job in self._scheduler.get_jobs() if job.next_run_time}

    def run_once(self, spec: ProbeSpec[Any, Any], settings: ProbeSettings) -> list[Result[Any]]:
        """Run one probe now with its hard timeout, record and return its results."""
        assert self._site is not None, "apply() first"
        started = time.monotonic()  # durations on the monotonic clock: a wall-clock step is no run time
        previous = self._running.get(spec.name)
        if previous is not None and not previous.done.is_set():
            results = [
                failure(
                    spec.name,
                    "",
                    "timeout",
                    f"{spec.name}: skipped, an earlier run is still hung after being abandoned",
                )
            ]
            return self._record(spec.name, results, started)
        if spec.bandwidth_class and not self._bandwidth_lock.acquire(timeout=settings.timeout_s):
            results = [
                failure(spec.name, "", "timeout", f"{spec.name}: another bandwidth test is still running")
            ]
            return self._record(spec.name, results, started)
        context = ProbeContext(site=self._site, state_dir=self._state_dir, progress=self._progress)
        running = _Running(context)
        self._running[spec.name] = running
        threading.Thread(
            target=self._work, args=(spec, settings, running), name=f"probe-{spec.name}", daemon=True
        ).start()
        deadline = time.monotonic() + settings.timeout_s
        while not running.done.wait(min(0.2, max(0.0, deadline - time.monotonic()))):
            if self._stopping.is_set():
                context.cancelled.set()
                return []  # the agent is stopping: nothing to record
            if time.monotonic() >= deadline:
                break
        if not running.done.is_set():
            context.cancelled.set()
            log.warning("%s: run abandoned after %.0f s", spec.name, settings.timeout_s)
            results = [
                failure(spec.name, "", "timeout", f"{spec.name}: no result within {settings.timeout_s:g} s")
            ]
        else:
            results = running.results
        return self._record(spec.name, results, started)

    def _work(self, spec: ProbeSpec[Any, Any], settings: ProbeSettings, running: _Running) -> None:
        try:
            running.results = spec.run(settings, running.context)
        except Exception as exc:  # a probe bug must not kill the agent: report it as a failed run
            log.exception("%s: probe raised", spec.name)
            running.results = [failure(spec.name, "", "error", f"{spec.name}: internal error: {exc!r}")]
        finally:
            if spec.bandwidth_class:
                self._bandwidth_lock.release()  # only when the run really ended, abandoned or not
            running.done.set()

    def _record(self, probe: str, results: list[Result[Any]], started: float) -> list[Result[Any]]:
        """`started` is time.monotonic() at the start of the run."""
        for r in results:
            if not r.ok:
                log.info("%s: %s", probe, r.said() or r.reason)
        self._sink.record_run(probe, results, time.time(), time.monotonic() - started)
        return results
