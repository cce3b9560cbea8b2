"""The push client against receivers that misbehave: real servers on loopback port 0.

A receiver that drips its answer is cut at timeout_s; Retry-After never turns backoff off; 3xx and
authentication failures keep the samples queued, are retried with backoff and say why in the log.
"""

from __future__ import annotations

import itertools
import logging
import socket
import threading
import time
from pathlib import Path

import pytest

from agent.push.pusher import Pusher
from agent.push.remote_write import RemoteWriteClient
from agent.schema import BasicAuth, Secret
from tests.support.receivers import TinyReceiver, push_settings, push_until, seq_registry, wait_until


class DripServer:
    """Reads a request, then sends `answer` one byte every `every_s` seconds."""

    def __init__(self, answer: bytes, every_s: float) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.answer, self.every_s = answer, every_s
        self.stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                for byte in self.answer:
                    if self.stop.wait(self.every_s):
                        return
                    try:
                        conn.sendall(bytes([byte]))
                    except OSError:
                        break

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


def test_a_dripping_receiver_is_cut_at_timeout_s() -> None:
    """A 200 sent one byte at a time (each byte well within the socket timeout) ends at timeout_s."""
    drip = DripServer(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", every_s=0.3)
    client = RemoteWriteClient(push_settings(f"http://127.0.0.1:{drip.port}/api/v1/write", timeout_s=1.0))
    try:
        started = time.monotonic()
        answer = client.post(b"x")
        took = time.monotonic() - started
    finally:
        client.close()
        drip.close()
    assert answer.status == 0 and "timeout_s" in answer.reason, answer
    assert 0.9 < took < 1.6, took  # the whole answer would take 38 x 0.3 s = 11 s


@pytest.mark.parametrize("retry_after", ["0", "Wed, 21 Oct 2015 07:28:00 GMT"])
def test_retry_after_never_shortens_the_backoff(tmp_path: Path, retry_after: str) -> None:
    """`Retry-After: 0` or a past date: requests stay under 1/min_backoff_s a second, then delivery."""
    rx = TinyReceiver([(503, "busy", {"Retry-After": retry_after})] * 10000)
    registry, _ = seq_registry()
    pusher = Pusher(push_settings(rx.write_url), registry, tmp_path / "s", {"site": "s1"})
    pusher.start()
    try:
        time.sleep(3.0)
        in_3s = len(rx.requests)
        rx.statuses.clear()
        wait_until(lambda: 204 in rx.answers, 10, "delivery once the receiver accepts")
    finally:
        pusher.stop()
        rx.close()
    assert 3 <= in_3s <= 3 / 0.2 + 1, in_3s
    busy = rx.times[:in_3s]
    assert min(b - a for a, b in itertools.pairwise(busy)) >= 0.2 * 0.99
    assert pusher.metrics.dropped["rejected"] == 0


def test_redirect_keeps_the_samples_and_says_to_fix_the_url(tmp_path: Path, caplog) -> None:
    """A 308 is not followed (it would carry the credentials): kept, retried, logged once plainly."""
    caplog.set_level(logging.INFO)
    where = "https://u:p4ss@elsewhere.example:8427/api/v1/write?token=t0k"
    rx = TinyReceiver([(308, "", {"Location": where})] * 3)
    try:
        pusher = push_until(push_settings(rx.write_url), tmp_path, lambda: 204 in rx.answers, "delivery")
    finally:
        rx.close()
    assert rx.answers[:4] == [308, 308, 308, 204]
    assert rx.requests[0] == rx.requests[3]  # the same samples, delivered after all
    assert pusher.metrics.dropped["rejected"] == 0
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "redirects are not followed" in errors[0], errors
    assert "https://elsewhere.example:8427/api/v1/write" in errors[0]
    assert "p4ss" not in caplog.text and "t0k" not in caplog.text


def test_auth_failures_keep_the_queue_and_raise_the_metric(tmp_path: Path, caplog) -> None:
    """401, 403 and vmauth's authentication 400 keep the batch; the metric counts them; then delivery."""
    caplog.set_level(logging.INFO)
    vmauth_400 = 'cannot find the provided auth token "Basic czE6d3Jvbmc=" in config'
    rx = TinyReceiver([(401, "Unauthorized"), (403, "Forbidden"), (400, vmauth_400)])
    registry, _ = seq_registry()
    auth = BasicAuth("s1", Secret("wrong"))
    pusher = Pusher(push_settings(rx.write_url, basic_auth=auth), registry, tmp_path / "s", {"site": "s1"})
    pusher.start()
    try:
        wait_until(lambda: len(rx.answers) >= 3, 10, "three refusals")
        failing = pusher.metrics.auth_failing
        wait_until(lambda: 204 in rx.answers, 10, "delivery")
    finally:
        pusher.stop()
        rx.close()
    assert rx.answers[:4] == [401, 403, 400, 204]
    assert rx.requests[0] == rx.requests[3]
    assert failing and not pusher.metrics.auth_failing
    assert pusher.metrics.auth_failures == 3
    assert pusher.metrics.dropped["rejected"] == 0
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "refuses the push credentials" in errors[0], errors
    assert "czE6d3Jvbmc" not in caplog.text and "wrong" not in caplog.text
    assert any("answers again" in r.getMessage() for r in caplog.records)
