"""Decoding a snappy-compressed WriteRequest back into series: the inverse of agent/push/encoding.py,
for receivers written in tests and for debugging what an agent sends. The agent itself never decodes.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

import cramjam


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7


def _fields(data: bytes) -> Iterable[tuple[int, int | bytes]]:
    pos = 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        wire = key & 7
        if wire == 0:
            value, pos = _read_varint(data, pos)
            yield key >> 3, value
        elif wire == 1:
            yield key >> 3, data[pos : pos + 8]
            pos += 8
        elif wire == 2:
            n, pos = _read_varint(data, pos)
            yield key >> 3, data[pos : pos + n]
            pos += n
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")


def decode_write_request(payload: bytes) -> list[tuple[dict[str, str], list[tuple[int, float]]]]:
    """The inverse of compress(encode_write_request(...)): for receivers in tests and for debugging."""
    out = []
    for _, ts_raw in _fields(bytes(cramjam.snappy.decompress_raw(payload))):
        labels: dict[str, str] = {}
        samples: list[tuple[int, float]] = []
        assert isinstance(ts_raw, bytes)
        for num, part in _fields(ts_raw):
            assert isinstance(part, bytes)
            inner = dict(_fields(part))
            if num == 1:
                labels[bytes(inner.get(1, b"")).decode()] = bytes(inner.get(2, b"")).decode()
            else:
                raw_ts = inner.get(2, 0)
                assert isinstance(raw_ts, int)
                ts = raw_ts - (1 << 64) if raw_ts >= 1 << 63 else raw_ts
                value = struct.unpack("<d", inner.get(1, bytes(8)))[0]  # type: ignore[arg-type]
                samples.append((ts, value))
        out.append((labels, samples))
    return out
