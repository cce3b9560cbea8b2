"""One redaction path for text from the other side of a connection before it is logged or shown.

A receiver or test server may echo what we sent it (vmauth quotes the whole Authorization header in
its 400 answer; a broken server may put it into a status line) and may send control characters
that forge log lines or repaint a terminal. `Redactor(secrets)(text)` removes every secret in each
encoding it can come back in, then escapes control characters, so the result is one printable line:

    >>> Redactor(["s3cr:t"])('echo "s3cr%3At"\\x1b[2J\\n')
    'echo "<secret>"\\\\x1b[2J\\\\n'

Encodings covered, for each secret: as is; base64 with and without padding (a Basic credential is
passed as its base64 `user:password`, as sent); URL-escaped (`%3A` and `+` forms); JSON-escaped.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import unicodedata
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

MASK = "<secret>"
_SHORTEST = 3  # shorter "secrets" would mask ordinary text; config validation asks for more anyway


def basic_credential(username: str, password: str) -> str:
    """The base64 `user:password` of an `Authorization: Basic` header."""
    return base64.b64encode(f"{username}:{password}".encode()).decode()


def forms(secret: str) -> set[str]:
    """The ways `secret` can appear in text that echoes it."""
    out = {secret, secret.rstrip("=")}
    out.add(base64.b64encode(secret.encode()).decode())
    out.add(base64.b64encode(secret.encode()).decode().rstrip("="))
    for s in list(out):
        out |= {quote(s, safe=""), quote_plus(s), quote(s)}
        out |= {json.dumps(s)[1:-1], json.dumps(s, ensure_ascii=False)[1:-1]}
    return {f for f in out if len(f) >= _SHORTEST}


def escape_controls(text: str) -> str:
    """Control, format and line/paragraph-separator characters as `\\xNN` / `\\uNNNN` escapes."""
    return "".join(
        (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}")
        if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp")
        else c
        for c in text
    )


class Redactor:
    """Callable: text -> the same text with every form of every secret masked, controls escaped."""

    def __init__(self, secrets: Iterable[str]) -> None:
        every = {f for s in secrets if s for f in forms(s)}
        # Longest first, so a secret inside a longer form (its base64...) is not half-masked.
        self._pattern = (
            re.compile("|".join(re.escape(f) for f in sorted(every, key=len, reverse=True)))
            if every
            else None
        )

    def mask(self, text: str) -> str:
        """`text` with every form of every secret masked; line breaks and other controls kept."""
        return self._pattern.sub(MASK, text) if self._pattern is not None else text

    def __call__(self, text: str) -> str:
        return escape_controls(self.mask(text))


class RedactingFormatter(logging.Formatter):
    """The log's one redaction path: every record's string arguments (where text from the other side
    goes: answers, bodies, names, errors) are masked and have their controls escaped, so no argument
    can forge a line; then the whole line, traceback included, is masked again.

    `secrets` is replaced when the config is (re)loaded: `RedactingFormatter.install(secrets)`.
    """

    redactor = Redactor(())

    def format(self, record: logging.LogRecord) -> str:
        if isinstance(record.args, tuple) and record.args:
            record.args = tuple(self.redactor(a) if isinstance(a, str) else a for a in record.args)
        return self.redactor.mask(super().format(record))

    @classmethod
    def install(cls, secrets: Iterable[str]) -> None:
        """Mask these secrets from now on, in every handler formatted by this class."""
        cls.redactor = Redactor(secrets)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Redactor(secrets)(text), for a single use."""
    return Redactor(secrets)(text)
