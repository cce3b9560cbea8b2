"""Numbers from other people's text are read in ASCII digits only."""

from __future__ import annotations

import pytest

from agent.digits import ascii_hex, ascii_uint


@pytest.mark.parametrize("text", ["", "²", "١٢", "+1", "-1", " 1", "1 ", "1_0", "0x1", "1.0", "9" * 19])
def test_ascii_uint_refuses_what_is_not_plain_digits(text: str) -> None:
    """isdigit() is true for '²' and '١'; none of these is a number we accept."""
    assert ascii_uint(text) is None


def test_ascii_uint_reads_digits() -> None:
    assert ascii_uint("0") == 0
    assert ascii_uint("007") == 7
    assert ascii_uint("9" * 18) == 10**18 - 1


@pytest.mark.parametrize(("text", "value"), [("0", 0), ("ff", 255), ("1A", 26)])
def test_ascii_hex_reads_hex(text: str, value: int) -> None:
    assert ascii_hex(text) == value


@pytest.mark.parametrize("text", ["", "0x1", "+1", "1_0", "²", "g", "f" * 16])
def test_ascii_hex_refuses_the_rest(text: str) -> None:
    assert ascii_hex(text) is None
