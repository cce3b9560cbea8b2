"""What a probe run returns: one Result per target, with typed data or a failure reason."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar, get_args

# Why a run failed, from a small fixed set so that failure counters have few, stable series.
Reason = Literal[
    "timeout",  # no answer within the time allowed (including a probe run abandoned by the scheduler)
    "unreachable",  # no route, host or network unreachable, 100% loss
    "refused",  # connection refused or reset
    "dns",  # a name did not resolve
    "protocol",  # the peer answered, but not with what the protocol requires (garbage, short body)
    "http_status",  # an HTTP answer with an unexpected status
    "captive_portal",  # a page or redirect where a 204 was expected
    "limit",  # the run hit a configured limit (bytes, duration) before it had a valid result
    "unsupported",  # the probe cannot run here (no wifi interface, binary missing)
    "error",  # anything else: the detail says what
]
REASONS: tuple[Reason, ...] = get_args(Reason)
D = TypeVar("D")  # a probe's own measurement type (PingStats, DnsLookup, ...)


@dataclass(frozen=True)
class Result(Generic[D]):
    """The outcome of measuring one target once.

    `data` holds the probe's own typed measurements (a frozen dataclass of type D, declared by the
    probe's ProbeSpec), or None. It may be present on a
    failure too when the failure itself is measured (e.g. ping with 100% loss); consumers must check
    `ok` before treating values as measurements.
    """

    probe: str
    target: str
    ok: bool
    reason: Reason | None = None
    detail: str = ""  # plain words for logs and the terminal
    data: D | None = None
    started_at: float = field(default_factory=time.time)
    duration_s: float = 0.0

    def __post_init__(self) -> None:
        if self.ok == (self.reason is not None):
            raise ValueError(f"{self.probe}: a result has a reason exactly when it failed")

    def said(self) -> str:
        """The detail for a line that already names the probe: without the probe's name in front
        (many details start with it, for the log lines and JSON that show them alone)."""
        head = f"{self.probe}: "
        return self.detail[len(head) :] if self.detail.startswith(head) else self.detail

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        if self.data is not None and dataclasses.is_dataclass(self.data) and not isinstance(self.data, type):
            out["data"] = dataclasses.asdict(self.data)
        return out


def failure(probe: str, target: str, reason: Reason, detail: str, **kw: Any) -> Result[Any]:
    """A failed Result; `detail` says in plain words what went wrong."""
    return Result(probe=probe, target=target, ok=False, reason=reason, detail=detail, **kw)


def reason_for(exc: BaseException) -> Reason:
    """Map a network exception to a failure reason."""
    import socket

    if isinstance(exc, TimeoutError | socket.timeout):
        return "timeout"
    if isinstance(exc, ConnectionRefusedError | ConnectionResetError):
        return "refused"
    if isinstance(exc, socket.gaierror):
        return "dns"
    if isinstance(exc, OSError) and exc.errno in (101, 113, 110):  # ENETUNREACH, EHOSTUNREACH, ETIMEDOUT
        return "unreachable" if exc.errno != 110 else "timeout"
    return "error"
