"""One redaction path: secrets in every encoding we send them in, and control characters, never reach
a log line or a user-visible message. Real servers on loopback port 0 echo what they were sent."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest

from agent.push.pusher import Pusher
from agent.push.settings import PushSettings
from agent.redact import MASK, Redactor, basic_credential
from agent.schema import BasicAuth, Secret
from tests.support.agentproc import site_yaml
from tests.support.receivers import seq_registry

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = 'pa"ss/wörd%20+:x'  # differs in every encoding: JSON, URL (both forms), base64
TOKEN = "tok+en/with=chars"


def every_form(secret: str) -> list[str]:
    return [secret, quote(secret, safe=""), quote_plus(secret), json.dumps(secret)[1:-1]]


def test_redactor_masks_each_encoding_and_escapes_controls() -> None:
    credential = basic_credential("nd-1", PASSWORD)
    redact = Redactor([PASSWORD, credential])
    for form in [*every_form(PASSWORD), credential, credential.rstrip("="), quote(credential, safe="")]:
        out = redact(f"before {form} after")
        assert out == f"before {MASK} after", (form, out)
    assert redact("a\x1b[2Jb\r\nFAKE\x00\u2028\u202e") == "a\\x1b[2Jb\\x0d\\x0aFAKE\\x00\\u2028\\u202e"
    assert redact("Xã Giao Minh, 100 Mbit/s") == "Xã Giao Minh, 100 Mbit/s"  # ordinary text untouched


class EchoServer:
    """Answers each request with `answer(request headers)` and closes the connection."""

    def __init__(self, answer: Callable[[dict[str, str]], bytes]) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.answer = answer
        self.requests = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                data = b""
                try:
                    while b"\r\n\r\n" not in data:
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        data += chunk
                    head = data.split(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")[1:]
                    headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in head)}
                    self.requests += 1
                    conn.sendall(self.answer(headers))
                except OSError:
                    pass

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def echo() -> Iterator[Callable[[Callable[[dict[str, str]], bytes]], EchoServer]]:
    servers: list[EchoServer] = []

    def make(answer: Callable[[dict[str, str]], bytes]) -> EchoServer:
        servers.append(EchoServer(answer))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def push_log(
    url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture, until: int, server: EchoServer
) -> str:
    caplog.set_level(logging.DEBUG)
    registry, _ = seq_registry()
    settings = PushSettings(
        enabled=True,
        url=url + "/api/v1/write",
        interval_s=0.5,
        min_backoff_s=0.1,
        max_backoff_s=0.2,
        timeout_s=2,
        basic_auth=BasicAuth("nd-1", Secret(PASSWORD)),
    )
    pusher = Pusher(settings, registry, tmp_path / "s", {"site": "nd-1"})
    pusher.start()
    try:
        deadline = time.monotonic() + 10
        while server.requests < until and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        pusher.stop()
    assert server.requests >= until
    return caplog.text


def assert_clean(text: str) -> None:
    credential = basic_credential("nd-1", PASSWORD)
    for form in [*every_form(PASSWORD), credential, credential.rstrip("="), TOKEN, *every_form(TOKEN)]:
        assert form not in text, form
    assert "\x1b" not in text and "\x07" not in text and "\r" not in text


def test_malformed_status_line_echoing_the_authorization_header_is_redacted(
    echo, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A status line carrying the Basic credential and control characters: logged without either."""
    server = echo(lambda h: f"HTTP/1.1 2OO {h['authorization']}\x1b[2J\x07\r\n\r\n".encode("latin-1"))
    text = push_log(server.url, tmp_path, caplog, 2, server)
    assert "BadStatusLine" in text or "failing" in text
    assert_clean(text)


def test_answer_echoing_the_password_json_and_url_escaped_is_redacted(
    echo, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A 400 whose first line echoes the password JSON- and URL-escaped is logged (once) without it."""
    body = f'{{"error": "bad pass {json.dumps(PASSWORD)[1:-1]}", "q": "{quote_plus(PASSWORD)}"}}\x1b[31m\n'
    payload = body.encode()
    answer = (
        b"HTTP/1.1 400 Bad Request\r\nContent-Length: " + str(len(payload)).encode() + b"\r\n\r\n" + payload
    )
    server = echo(lambda h: answer)
    text = push_log(server.url, tmp_path, caplog, 2, server)
    assert "rejected" in text and MASK in text
    assert_clean(text)


def test_measure_bandwidth_json_never_shows_the_token(echo, tmp_path: Path) -> None:
    """A test server that echoes the token in a 403 body: not in `measure bandwidth --json` output."""

    def answer(h: dict[str, str]) -> bytes:
        sent = h.get("authorization", "").removeprefix("Bearer ")
        body = f"denied {sent} {quote(sent, safe='')} {json.dumps(sent)}\x1b]0;pwned\x07".encode()
        return b"HTTP/1.1 403 Forbidden\r\nContent-Length: %d\r\n\r\n" % len(body) + body

    server = echo(answer)
    config = tmp_path / "agent.yaml"
    config.write_text(
        site_yaml("nd-1")
        + f"state_dir: {tmp_path / 'state'}\n"
        + f"probes:\n  bandwidth: {{engine: http, server: '{server.url}/', token: '{TOKEN}'}}\n",
        encoding="utf-8",
    )
    res = subprocess.run(
        [sys.executable, "-m", "agent.cli", "measure", "bandwidth", "--config", str(config), "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert server.requests >= 1
    out = json.loads(res.stdout)
    assert out["ok"] is False and "403" in json.dumps(out), out
    assert MASK in json.dumps(out)
    assert_clean(res.stdout + res.stderr)


def test_every_log_line_of_the_agent_is_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    """The daemon's log handler masks configured secrets and escapes controls in every argument, for
    any module's record (not only push's), and a traceback carrying a secret is masked too."""
    from agent.cli import _setup_logging
    from agent.redact import RedactingFormatter

    root = logging.getLogger()
    saved = root.handlers[:], root.level
    root.handlers.clear()
    try:
        _setup_logging("info")
        from agent.schema import secrets_in

        settings = {"push": BasicAuth("site", Secret(PASSWORD)), "bandwidth": Secret(TOKEN)}
        RedactingFormatter.install(secrets_in(settings))
        echoed = f"HTTP/1.1 2\x1b[2J00 {basic_credential('site', PASSWORD)}\nERROR forged line {quote(TOKEN)}"
        logging.getLogger("agent.probes.http").info("http: %s", echoed)
        try:
            raise OSError(f"server said {json.dumps(PASSWORD)}")
        except OSError:
            logging.getLogger("agent.scheduler").exception("probe failed")
    finally:
        root.handlers[:], _ = saved[0], root.setLevel(saved[1])
        RedactingFormatter.install(())
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\\x1b[2J" in err
    assert not any(line.startswith("ERROR forged") for line in err.splitlines())
    for secret in (PASSWORD, TOKEN, basic_credential("site", PASSWORD), quote(TOKEN), json.dumps(PASSWORD)):
        assert secret not in err
    assert err.count(MASK) >= 3
