"""An incremental parser of one HTTP/1.x response, fed with raw socket bytes as they arrive.

Enough of HTTP/1.x for the LibreSpeed protocol: the status line, Connection, Content-Length and
chunked Transfer-Encoding (bodies until close too); errors are EngineError("protocol") with the
request named in the message (`what`).
"""

from __future__ import annotations

import re

from agent.bandwidth.engine import EngineError
from agent.digits import ascii_hex, ascii_uint

MAX_HEAD_BYTES = 64 * 1024


class Response:
    """Incremental parser of one HTTP/1.x response fed with raw socket bytes.

    Raises EngineError("protocol") for anything that is not HTTP, bytes past the end of the
    response, and a body cut short at end of stream.
    """

    def __init__(self, what: str) -> None:
        self.what = what
        self.head = bytearray()
        self.status = 0
        self.keep_alive = True
        self.length: int | None = None  # Content-Length; None: chunked or until close
        self.chunked = False
        self.body_bytes = 0
        self.snippet = b""  # the body's first bytes, for error messages
        self.done = False
        self._state = "head"  # head, body, size, data, data_end, trailer
        self._line = bytearray()
        self._left = 0

    @property
    def headers_done(self) -> bool:
        return self._state != "head"

    def feed(self, data: memoryview, rest_ok: bool = False) -> memoryview:
        """Parse `data`; returns what lies past the end of the response (only with `rest_ok`)."""
        while len(data):
            if self.done:
                if rest_ok:  # the next pipelined response
                    return data
                raise EngineError("protocol", f"{self.what}: bytes after the end of the response")
            if self._state == "head":
                data = self._feed_head(data)
            elif self._state == "body":
                take = len(data) if self.length is None else min(len(data), self.length - self.body_bytes)
                self._body(data[:take])
                data = data[take:]
                if self.length is not None and self.body_bytes == self.length:
                    self.done = True
            elif self._state == "data":
                take = min(len(data), self._left)
                self._body(data[:take])
                self._left -= take
                data = data[take:]
                if self._left == 0:
                    self._state = "data_end"
            else:  # size, data_end, trailer: small lines
                data = self._feed_line(data)
        return data

    def eof(self) -> None:
        """The peer closed the connection: fine only when the body runs until close."""
        if self.done:
            return
        if self._state == "body" and self.length is None:
            self.done = True
            self.keep_alive = False
            return
        if self._state == "head":
            got = f"after {len(self.head)} header bytes" if self.head else "without answering"
            raise EngineError("protocol", f"{self.what}: server closed the connection {got}")
        expected = f" of {self.length}" if self.length is not None else ""
        raise EngineError(
            "protocol",
            f"{self.what}: body cut short: connection closed after {self.body_bytes}{expected} bytes",
        )

    def _body(self, data: memoryview) -> None:
        if len(self.snippet) < 200:
            self.snippet += bytes(data[: 200 - len(self.snippet)])
        self.body_bytes += len(data)

    def _feed_head(self, data: memoryview) -> memoryview:
        before = len(self.head)
        self.head += data[:MAX_HEAD_BYTES]
        end = self.head.find(b"\r\n\r\n", max(0, before - 3))
        if end < 0:
            if not re.match(rb"HTTP/1\.[01] ", self.head[:9]) and len(self.head) >= 9:
                raise EngineError("protocol", f"{self.what}: not an HTTP response: {bytes(self.head[:40])!r}")
            if len(self.head) >= MAX_HEAD_BYTES:
                raise EngineError("protocol", f"{self.what}: response headers longer than 64 KiB")
            return data[len(data) :]
        rest = data[end + 4 - before :]
        del self.head[end + 4 :]
        self._parse_head(bytes(self.head[:end]).decode("latin-1"))
        return rest

    def _parse_head(self, head: str) -> None:
        lines = head.split("\r\n")
        m = re.fullmatch(r"HTTP/1\.([01]) ([0-9]{3})(?: .*)?", lines[0])
        if not m:
            raise EngineError("protocol", f"{self.what}: not an HTTP status line: {lines[0][:60]!r}")
        self.status = int(m.group(2))
        fields: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                raise EngineError("protocol", f"{self.what}: malformed header line {line[:60]!r}")
            fields[name.strip().lower()] = value.strip()
        connection = fields.get("connection", "").lower()
        self.keep_alive = "close" not in connection and (m.group(1) == "1" or "keep-alive" in connection)
        if "chunked" in fields.get("transfer-encoding", "").lower():
            self.chunked = True
            self._state = "size"
        elif "content-length" in fields:
            length = ascii_uint(fields["content-length"])
            if length is None:
                raise EngineError("protocol", f"{self.what}: bad Content-Length")
            self.length = length
            self._state = "body"
            self.done = self.length == 0
        else:
            self._state = "body"
            self.keep_alive = False  # the body runs until the server closes

    def _feed_line(self, data: memoryview) -> memoryview:
        piece = bytes(data[: 1024 - len(self._line)])
        nl = piece.find(b"\n")
        if nl < 0:
            self._line += piece
            if len(self._line) >= 1024:
                raise EngineError("protocol", f"{self.what}: malformed chunked encoding")
            return data[len(piece) :]
        line = bytes(self._line + piece[:nl]).rstrip(b"\r")
        self._line.clear()
        if self._state == "size":
            size = ascii_hex(line.split(b";")[0].strip().decode("latin-1"))
            if size is None:
                raise EngineError("protocol", f"{self.what}: bad chunk size {line[:20]!r}")
            self._left = size
            self._state = "data" if self._left else "trailer"
        elif self._state == "data_end":
            if line:
                raise EngineError("protocol", f"{self.what}: chunk longer than its declared size")
            self._state = "size"
        elif not line:  # trailer: ends at an empty line
            self.done = True
        return data[nl + 1 :]


def check_status(resp: Response) -> None:
    """Raise for a non-200 answer once its body (which says why) is in, or enough of it."""
    if resp.headers_done and resp.status != 200 and (resp.done or len(resp.snippet) >= 120):
        body = resp.snippet.decode("utf-8", "replace").strip()[:120]
        raise EngineError("http_status", f"{resp.what}: HTTP {resp.status} {body}".rstrip())
