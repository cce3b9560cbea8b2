"""Numbers in text from outside (HTTP headers, query strings, config, command output): ASCII only.

`str.isdigit()` is true for "²" and "١", which `int()` then refuses or reads as 1; a number we
parse from someone else's text is written in the digits 0-9 and nothing else.
"""

from __future__ import annotations

import re

_HEX = re.compile(r"[0-9A-Fa-f]+")


def ascii_uint(text: str, max_digits: int = 18) -> int | None:
    """`text` as a whole number in ASCII digits 0-9 only; None for anything else.

    Refuses "", "²", "١٢", "+1", " 1", "1_0", "0x1" and more than `max_digits` digits (so no
    huge-integer parsing either). Callers strip surrounding whitespace where the format allows it.
    """
    if not 0 < len(text) <= max_digits or not text.isascii() or not text.isdigit():
        return None
    return int(text)


def ascii_hex(text: str, max_digits: int = 15) -> int | None:
    """`text` as a whole number in ASCII hex digits only (no sign, "0x" or "_"); None for anything else."""
    if len(text) > max_digits or not _HEX.fullmatch(text):
        return None
    return int(text, 16)
