"""The probe interface: settings in, Results out. Probes know nothing of Prometheus or scheduling."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar, cast

from agent.families import ProbeMetrics
from agent.result import Result
from agent.schema import check, checks_pass, non_negative, positive
from agent.site import Site


@dataclass(frozen=True)
class ProbeSettings:
    """Scheduling keys every probe has; each probe's Settings subclasses this and adds its own."""

    enabled: bool = True
    interval_s: float = check(positive, default=60.0)
    # each run starts up to this much later, at random, so sites do not align
    jitter_s: float = check(non_negative, default=5.0)
    # a run still going after this is abandoned and counted as a timeout
    timeout_s: float = check(positive, default=30.0)

    # Fields that time one part of a run (a request, a query, a sample): each must be shorter than
    # the whole run's timeout_s, or the scheduler would abandon every run.
    within_run: ClassVar[tuple[str, ...]] = ()

    def validate(self) -> list[str]:
        """Rules between fields (each field's own range is checked on the field)."""
        return [
            f"{key}: must be less than timeout_s (the whole run's limit)"
            for key in self.within_run
            if checks_pass(self, key, "timeout_s") and getattr(self, key) >= self.timeout_s
        ]


@dataclass(frozen=True)
class ProbeContext:
    """What a run may need beyond its settings."""

    site: Site
    state_dir: Path  # where a probe keeps state across restarts (the bandwidth data budget)
    # Set by the scheduler when the run has been abandoned: long probes check it and stop early.
    cancelled: threading.Event = field(default_factory=threading.Event)
    # For a person watching on a terminal: (phase, value so far), e.g. ("download", bits/s).
    progress: Callable[[str, float], None] | None = None


S = TypeVar("S", bound=ProbeSettings)
D = TypeVar("D")
T = TypeVar("T")


def call_within(deadline: float, fn: Callable[[], T], late: Callable[[T], None] | None = None) -> T:
    """fn() in its own thread, waited for until `deadline` (time.monotonic()); its exception is raised.

    For what no socket timeout bounds as a whole (a name lookup, TCP connect to several addresses,
    a TLS handshake dripped a byte at a time). Raises TimeoutError at the deadline; fn then runs on
    to its own end and `late(value)` gets what it returned (to close a connection made too late).
    """
    lock = threading.Lock()
    outcome: list[Any] = []  # [value] or [None, exception]
    finished = threading.Event()
    gave_up = False

    def work() -> None:
        try:
            got: list[Any] = [fn()]
        except BaseException as exc:  # handed to the waiting thread
            got = [None, exc]
        with lock:
            outcome.extend(got)
            finished.set()
            cleanup = gave_up and late is not None and len(got) == 1
        if cleanup:
            late(got[0])  # type: ignore[misc]

    threading.Thread(target=work, name="within", daemon=True).start()
    finished.wait(max(0.0, deadline - time.monotonic()))
    with lock:
        if not finished.is_set():
            gave_up = True
            raise TimeoutError("out of time")
    if len(outcome) == 2:
        raise outcome[1]
    return outcome[0]  # type: ignore[no-any-return]


@dataclass(frozen=True)
class ProbeSpec(Generic[S, D]):
    """How the agent knows a probe: its config key, settings class, run function and metrics.

    `run` returns Results whose data is the probe's own type D; `metrics` turns them into series.
    """

    name: str
    settings: type[S]
    run: Callable[[S, ProbeContext], list[Result[D]]]
    bandwidth_class: bool = False  # bandwidth-class probes never run at the same time as each other
    metrics: ProbeMetrics[S, D] = field(default_factory=ProbeMetrics)

    def of(self, results: Iterable[Result[Any]]) -> list[Result[D]]:
        """This probe's Results among `results` (picked by probe name), typed with its data."""
        return [cast("Result[D]", r) for r in results if r.probe == self.name]
