"""Remote-write encoding, series validation and push settings."""

from __future__ import annotations

import math
import struct

import pytest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import CollectorRegistry

from agent.config import ConfigError, loads
from agent.push.decoding import decode_write_request
from agent.push.encoding import (
    STALE_NAN,
    InvalidSeries,
    compress,
    encode_labels,
    encode_write_request,
    varint,
)
from agent.push.pusher import snapshot_samples
from agent.push.remote_write import parse_retry_after


def d(x: float) -> bytes:
    return struct.pack("<d", x)


def test_write_request_round_trips_labels_values_and_timestamps():
    """A WriteRequest decodes back to the same labels, timestamps and values (NaN bits kept)."""
    a = encode_labels({"__name__": "m", "site": "s1", "x": "ü"})
    b = encode_labels({"__name__": "n"})
    body = compress(
        encode_write_request([(a, [(1, d(0.5)), (1795000000000, d(-2.0))]), (b, [(5, STALE_NAN)])])
    )
    (la, sa), (lb, sb) = decode_write_request(body)
    assert la == {"__name__": "m", "site": "s1", "x": "ü"}
    assert sa == [(1, 0.5), (1795000000000, -2.0)]
    assert lb == {"__name__": "n"}
    assert math.isnan(sb[0][1])


def test_labels_are_sorted_by_name_and_empty_values_dropped():
    """Labels go out sorted by name, and a label with an empty value is not sent at all."""
    enc = encode_labels({"z": "1", "__name__": "m", "a": "", "b": "2"})
    ((labels, _),) = decode_write_request(compress(encode_write_request([(enc, [(1, d(1))])])))
    assert list(labels) == ["__name__", "b", "z"]


@pytest.mark.parametrize(
    "labels",
    [
        {"__name__": "1bad"},
        {"__name__": "bad-name"},
        {"__name__": ""},
        {"__name__": "ok", "bad-label": "x"},
        {"__name__": "ok", "__reserved": "x"},
        {"__name__": "ok", "x": "\udcff"},
    ],
)
def test_invalid_names_are_refused(labels):
    """Metric and label names Prometheus does not allow are refused before anything is sent."""
    with pytest.raises(InvalidSeries):
        encode_labels(labels)


def test_varint_matches_protobuf_for_edge_values():
    """Varints match protobuf's encoding, including int64 negatives as ten bytes."""
    assert varint(0) == b"\x00"
    assert varint(300) == b"\xac\x02"
    assert len(varint(-1)) == 10


def test_snapshot_labels_look_like_a_scrape():
    """Pushed series get job/instance like a scrape; a series' own job becomes exported_job."""
    registry = CollectorRegistry()

    class C:
        def collect(self):
            g = GaugeMetricFamily("hotspot_x", "x", labels=["site", "job"])
            g.add_metric(["s1", "theirs"], 2.0)
            yield g
            c = CounterMetricFamily("hotspot_runs", "runs", labels=["site"])
            c.add_metric(["s1"], 3.0)
            yield c
            bad = GaugeMetricFamily("hotspot_bad", "bad", labels=["bad-label"])
            bad.add_metric(["v"], 1.0)
            yield bad

    registry.register(C())
    samples, refused = snapshot_samples(registry, "s1")
    decoded = decode_write_request(
        compress(encode_write_request([(k, [(1, v)]) for k, v in samples.items()]))
    )
    by_name = {labels["__name__"]: labels for labels, _ in decoded}
    assert by_name["hotspot_x"] == {
        "__name__": "hotspot_x",
        "exported_job": "theirs",
        "instance": "s1",
        "job": "hotspot-agent",
        "site": "s1",
    }
    assert by_name["hotspot_runs_total"]["job"] == "hotspot-agent"
    assert "hotspot_bad" not in by_name
    assert len(refused) == 1 and "bad-label" in refused[0]


def test_retry_after_reads_seconds_and_dates():
    """Retry-After is understood as seconds and as an HTTP date; junk is ignored."""
    assert parse_retry_after("7", 0) == 7
    assert parse_retry_after("Thu, 01 Jan 1970 00:00:30 GMT", 10) == pytest.approx(20)
    assert parse_retry_after("soon", 0) is None
    assert parse_retry_after(None, 0) is None


def test_push_settings_report_every_problem_with_key_paths(tmp_path):
    """Bad push settings are reported with their key paths, all at once."""
    text = """
site: {id: s1, commune: C, province: P}
push:
  enabled: true
  url: ftp://x
  max_queue_bytes: 1000
  interval_s: 60
  max_sample_age_s: 30
  basic_auth: {username: u, password: p}
  bearer_token: t
  tls_ca_file: /nonexistent/ca.pem
"""
    with pytest.raises(ConfigError) as exc:
        loads(text)
    problems = "\n".join(exc.value.problems)
    for key in (
        "push.url",
        "push.max_queue_bytes",
        "push.max_sample_age_s",
        "push.bearer_token",
        "push.tls_ca_file",
    ):
        assert key in problems


def test_push_secrets_come_from_files_and_are_not_printed(tmp_path):
    """A push password read from a file is used but never shown in the settings' repr."""
    secret = tmp_path / "pw"
    secret.write_text("hunter2\n")
    text = f"""
site: {{id: s1, commune: C, province: P}}
push:
  enabled: true
  url: https://collector.example/api/v1/write
  basic_auth: {{username: s1, password: {{file: {secret}}}}}
"""
    config = loads(text)
    assert config.push.basic_auth is not None
    assert config.push.basic_auth.password.reveal() == "hunter2"
    assert "hunter2" not in repr(config.push)
    assert config.push.max_sample_age_s < 6 * 3600
