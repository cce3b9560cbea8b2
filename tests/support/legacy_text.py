"""Vietnamese text as a Windows office saves it: cp1258, tone marks as separate combining bytes."""

from __future__ import annotations

import unicodedata

_TONES = {"\u0300", "\u0301", "\u0303", "\u0309", "\u0323"}  # the five tone marks cp1258 encodes apart


def cp1258(text: str) -> bytes:
    """Encode like Windows does: the vowel (with its hat, breve or horn) then its tone mark."""
    out = []
    for ch in unicodedata.normalize("NFC", text):
        parts = unicodedata.normalize("NFD", ch)
        letter = unicodedata.normalize("NFC", "".join(c for c in parts if c not in _TONES))
        out.append(letter + "".join(c for c in parts if c in _TONES))
    return "".join(out).encode("cp1258")
