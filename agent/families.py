"""Metric families as plain data, declared by the module that owns them and rendered by agent/metrics.py.

A probe declares its families as `Family(...)` constants and writes samples through the two small
interfaces below, keyed by label name; it never imports prometheus_client. Every family
a probe can produce is listed in its `ProbeMetrics.families`, so the agent's collector can describe
them all before any result exists (and a registry refuses a second registration of the same names).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, TypeVar

if TYPE_CHECKING:
    from agent.result import Result
    from agent.site import Site

Kind = Literal["gauge", "counter", "histogram"]
LabelValues = tuple[str, ...]  # in the family's declared label order


@dataclass(frozen=True)
class Family:
    """One metric family: its full name (counters end in _total), kind, help text and label names.

    The site's identity labels come first on every series and are not listed here. `buckets` are a
    histogram's upper bounds in the base unit (+Inf is implied).
    """

    name: str
    kind: Kind
    doc: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if (self.kind == "counter") != self.name.endswith("_total"):
            raise ValueError(f"{self.name}: a counter's name ends in _total, and only a counter's")
        if (self.kind == "histogram") != bool(self.buckets):
            raise ValueError(f"{self.name}: a histogram has buckets, and only a histogram")

    def values(self, labels: Mapping[str, str]) -> LabelValues:
        """The label values in declared order; ValueError when the names are not exactly the declared ones.

        Keyed by name, so a call that gives the same labels in another order can never swap values.
        """
        if set(labels) != set(self.labels):
            raise ValueError(f"{self.name}: labels {sorted(labels)} given, {sorted(self.labels)} declared")
        return tuple(labels[name] for name in self.labels)


class Samples(Protocol):
    """Where a probe writes the gauges (and counters read from the system) of its latest results."""

    def add(self, family: Family, value: float | None, /, **labels: str) -> None:
        """One sample; None means "not measured": no sample at all, never a 0 that looks like one."""


class Tally(Protocol):
    """The counters and histograms a probe accumulates from every result."""

    def declare(self, family: Family, /, **labels: str) -> None:
        """Make the series exist at 0, so that increase() counts the first event after a start."""

    def add(self, family: Family, value: float, /, **labels: str) -> None:
        """Add `value` to a counter."""

    def observe(self, family: Family, value: float, /, **labels: str) -> None:
        """Observe one value in a histogram."""


S = TypeVar("S")
D = TypeVar("D")


def _none(*_: Any) -> None:
    return None


def _latest(_before: Sequence[Result[Any]], new: Sequence[Result[Any]]) -> Sequence[Result[Any]]:
    return new


@dataclass(frozen=True)
class ProbeMetrics(Generic[S, D]):
    """How one probe's results become series; every function is optional.

    - `families`: every family the probe can produce (the collector's describe()).
    - `start(settings, tally)`: declare the counter and histogram series its settings imply, at 0.
    - `count(result, site, tally)`: add what one new result counts.
    - `show(results, samples)`: the gauges of the results standing for the probe now.
    - `standing(before, new)`: which results stand after a run (default: the new run's), e.g. a
      deferred bandwidth run leaves the last measured one standing.
    """

    families: tuple[Family, ...] = ()
    start: Callable[[S, Tally], None] = _none
    count: Callable[[Result[D], Site, Tally], None] = _none
    show: Callable[[Sequence[Result[D]], Samples], None] = _none
    standing: Callable[[Sequence[Result[D]], Sequence[Result[D]]], Sequence[Result[D]]] = field(
        default=_latest
    )


def per_result(
    show_one: Callable[[Result[D], Samples], None],
) -> Callable[[Sequence[Result[D]], Samples], None]:
    """A `show` that shows each standing result on its own."""

    def show(results: Sequence[Result[D]], samples: Samples) -> None:
        for result in results:
            show_one(result, samples)

    return show
