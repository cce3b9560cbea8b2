"""Prometheus remote-write 1.0 WriteRequest encoding: series validation, protobuf by hand, snappy.

The message is tiny, so it is written directly (no protobuf runtime):
WriteRequest{1: repeated TimeSeries}, TimeSeries{1: repeated Label, 2: repeated Sample},
Label{1: name, 2: value}, Sample{1: double value, 2: int64 timestamp_ms}
(prometheus/prompb/types.proto and remote.proto of Prometheus 2.42).
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable, Mapping, Sequence

import cramjam

# The names Prometheus' data model allows (the 2.42 receiver does not check them: the client must).
METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
STALE_NAN = struct.pack("<Q", 0x7FF0000000000002)  # Prometheus' staleness marker


class InvalidSeries(ValueError):
    """A series the receiver must not get (bad name, reserved label, duplicate...)."""


def varint(n: int) -> bytes:
    """Protobuf base-128 varint; negative int64 values take ten bytes, as the spec says."""
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(tag: int, payload: bytes) -> bytes:
    return bytes([tag]) + varint(len(payload)) + payload


def encode_labels(labels: Mapping[str, str]) -> bytes:
    """The repeated Label fields of one TimeSeries: validated, empty values dropped, sorted by name."""
    name = labels.get("__name__", "")
    if not METRIC_NAME.fullmatch(name):
        raise InvalidSeries(f"invalid metric name {name!r}")
    out = []
    for key in sorted(labels):
        value = labels[key]
        if value == "":
            continue  # Prometheus treats an empty label as an absent one; the receiver wants none
        if key != "__name__" and (not LABEL_NAME.fullmatch(key) or key.startswith("__")):
            raise InvalidSeries(f"invalid label name {key!r} on {name}")
        try:
            pair = _field(0x0A, key.encode()) + _field(0x12, value.encode("utf-8"))
        except UnicodeEncodeError:
            raise InvalidSeries(f"label {key} of {name} is not valid UTF-8") from None
        out.append(_field(0x0A, pair))
    return b"".join(out)


class SampleEncoder:
    """Builds Sample fields; the varint of a timestamp is cached since a batch has few distinct ones."""

    def __init__(self) -> None:
        self._parts: dict[int, tuple[bytes, bytes]] = {}

    def sample(self, ts_ms: int, value: bytes) -> bytes:
        """One Sample field for `ts_ms` (milliseconds since the epoch) and `value` (8 bytes, a
        little-endian IEEE 754 double, as `struct.pack("<d", x)` or STALE_NAN gives).
        """
        parts = self._parts.get(ts_ms)
        if parts is None:
            ts = varint(ts_ms)
            parts = (b"\x12" + varint(10 + len(ts)) + b"\x09", b"\x10" + ts)
            if len(self._parts) > 10000:
                self._parts.clear()
            self._parts[ts_ms] = parts
        return parts[0] + value + parts[1]


def encode_write_request(series: Iterable[tuple[bytes, Sequence[tuple[int, bytes]]]]) -> bytes:
    """WriteRequest from (encoded labels, [(timestamp ms, 8-byte little-endian double)...]) pairs."""
    enc = SampleEncoder()
    out = []
    for labels, samples in series:
        body = labels + b"".join(enc.sample(ts, value) for ts, value in samples)
        out.append(_field(0x0A, body))
    return b"".join(out)


def compress(body: bytes) -> bytes:
    """Snappy block format (not framed), as remote write requires."""
    return bytes(cramjam.snappy.compress_raw(body))
