"""call_within: one deadline for what no socket timeout bounds as a whole (name lookups, connects)."""

from __future__ import annotations

import threading
import time

import pytest

from agent.probes.base import call_within


def test_returns_the_value_or_raises_the_error_in_time() -> None:
    assert call_within(time.monotonic() + 1, lambda: 42) == 42
    with pytest.raises(ConnectionRefusedError):
        call_within(time.monotonic() + 1, lambda: (_ for _ in ()).throw(ConnectionRefusedError()))


def test_a_late_call_raises_at_the_deadline_and_its_value_is_cleaned_up() -> None:
    release, cleaned = threading.Event(), threading.Event()
    got: list[str] = []

    def slow() -> str:
        release.wait(5)
        return "connection"

    def late(value: str) -> None:
        got.append(value)
        cleaned.set()

    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        call_within(t0 + 0.3, slow, late=late)
    assert 0.3 <= time.monotonic() - t0 < 1.0
    release.set()
    assert cleaned.wait(5) and got == ["connection"]
