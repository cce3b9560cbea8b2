"""`check-config` refuses what `run` would refuse: one validation path, real agent processes.

Each bad config goes through both commands of the real entry point (`python -m agent.cli`): both
exit 2 and name the same key with the same reason, one line per problem.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from agent import config
from tests.support.agentproc import LOOPBACK_PROBES, start_agent
from tests.support.paths import ROOT
from tests.support.ports import free_port
from tests.support.tls import openssl

SITE = "site: {id: nd-1, commune: Xã A, province: Ninh Bình}\n"
QUIET = SITE + LOOPBACK_PROBES


def cli(*argv: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LANGUAGE", "LC_ALL", "LC_MESSAGES")}
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=env | {"LANG": "C.UTF-8"},
        check=False,
    )


def problem_lines(stderr: str) -> list[str]:
    return [line.strip() for line in stderr.splitlines() if line.startswith("  ")]


def cert_pair(tmp_path: Path, name: str) -> tuple[Path, Path]:
    cert, key = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
    openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
        "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(cert),
    )  # fmt: skip
    return cert, key


def _not_pem(tmp: Path) -> tuple[str, str]:
    (tmp / "bad.pem").write_text("this is no certificate\n")
    key = tmp / "bad.pem"
    return (
        f'exposition: {{listen: "127.0.0.1:0", tls_cert_file: "{tmp / "bad.pem"}", tls_key_file: "{key}"}}\n',
        ("exposition.tls_cert_file: " + str(tmp / "bad.pem") + " is not a PEM certificate"),
    )


def _wrong_key(tmp: Path) -> tuple[str, str]:
    cert, _key = cert_pair(tmp, "one")
    _cert, other = cert_pair(tmp, "two")
    text = f'exposition: {{listen: "127.0.0.1:0", tls_cert_file: "{cert}", tls_key_file: "{other}"}}\n'
    return text, f"exposition.tls_key_file: {other} is not a PEM private key for tls_cert_file"


def _ca_not_pem(tmp: Path) -> tuple[str, str]:
    cert, key = cert_pair(tmp, "srv")
    (tmp / "ca.pem").write_bytes(b"\x30\x82garbage")
    text = (
        f'exposition: {{listen: "127.0.0.1:0", tls_cert_file: "{cert}", tls_key_file: "{key}", '
        f'client_ca_file: "{tmp / "ca.pem"}"}}\n'
    )
    return text, f"exposition.client_ca_file: {tmp / 'ca.pem'} is not a PEM certificate"


def _foreign_address(tmp: Path) -> tuple[str, str]:
    # 192.0.2.0/24 is TEST-NET-1: never an address of this host
    return (
        'exposition: {listen: "192.0.2.1:9591"}\n',
        "exposition.listen: 192.0.2.1 is not an address of this host",
    )


def _state_dir_is_a_file(tmp: Path) -> tuple[str, str]:
    (tmp / "state").write_text("")
    return f'exposition: {{listen: "127.0.0.1:0"}}\nstate_dir: "{tmp / "state"}"\n', (
        f"state_dir: {tmp / 'state'} is not a directory"
    )


def _state_dir_under_a_file(tmp: Path) -> tuple[str, str]:
    (tmp / "plain").write_text("")
    return f'exposition: {{listen: "127.0.0.1:0"}}\nstate_dir: "{tmp / "plain" / "state"}"\n', (
        f"state_dir: {tmp / 'plain' / 'state'} cannot be created: {tmp / 'plain'} is not a directory"
    )


def _empty_basic_auth(tmp: Path) -> tuple[str, str]:
    return (
        'exposition: {listen: "127.0.0.1:0", basic_auth: {username: "", password: "x1-Long-secret"}}\n',
        "exposition.basic_auth.username: must not be empty",
    )


def _empty_password(tmp: Path) -> tuple[str, str]:
    return (
        'push: {enabled: true, url: "http://127.0.0.1:9/api/v1/write",\n'
        '       basic_auth: {username: nd-1, password: ""}}\n',
        "push.basic_auth.password: must not be empty",
    )


CASES: dict[str, Callable[[Path], tuple[str, str]]] = {
    "cert not PEM": _not_pem,
    "key of another cert": _wrong_key,
    "client CA not PEM": _ca_not_pem,
    "listen address not on this host": _foreign_address,
    "state_dir is a file": _state_dir_is_a_file,
    "state_dir under a file": _state_dir_under_a_file,
    "empty basic_auth user": _empty_basic_auth,
    "empty push password": _empty_password,
}


@pytest.mark.parametrize("case", CASES)
def test_check_config_refuses_what_run_refuses(tmp_path: Path, case: str) -> None:
    extra, expected = CASES[case](tmp_path)
    path = tmp_path / "c.yaml"
    path.write_text(QUIET + extra, encoding="utf-8")
    checked = cli("check-config", str(path))
    ran = cli("run", "--config", str(path))
    for done in (checked, ran):
        assert done.returncode == 2, done.stderr
        lines = problem_lines(done.stderr)
        assert len(lines) == 1 and lines[0].startswith(expected), lines
        assert "Traceback" not in done.stderr
    assert "ok —" not in checked.stdout


def test_a_port_in_use_by_another_program_is_refused(tmp_path: Path) -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen(1)
        port = other.getsockname()[1]
        path = tmp_path / "c.yaml"
        path.write_text(QUIET + f'exposition: {{listen: "127.0.0.1:{port}"}}\nstate_dir: "{tmp_path}"\n')
        done = cli("check-config", str(path))
    assert done.returncode == 2
    assert problem_lines(done.stderr) == [f"exposition.listen: port {port} is in use by another program"]


def test_the_running_agents_own_port_and_queue_are_a_note_for_check_but_refuse_a_second_run(
    tmp_path: Path,
) -> None:
    """The usual edit-check-reload round: the check does not fail because the agent is running."""
    port = free_port()
    auth = "basic_auth: {username: prometheus, password: k3Jx-long-scrape-secret}"  # answers 401
    text = QUIET + f'exposition: {{listen: "127.0.0.1:{port}", {auth}}}\n'
    text += 'push: {enabled: true, url: "http://127.0.0.1:9/api/v1/write"}\n'
    agent = start_agent(text, tmp_path, listen=None)
    try:
        checked = cli("check-config", str(agent.config_path))
        second = cli("run", "--config", str(agent.config_path))
    finally:
        agent.stop()
    assert checked.returncode == 0, checked.stderr
    assert f"note: exposition.listen: port {port} is in use by a running hotspot-agent" in checked.stderr
    assert second.returncode == 2
    lines = problem_lines(second.stderr)
    assert f"exposition.listen: port {port} is in use by a running hotspot-agent (a reload keeps it)" in lines
    assert any(line.startswith("state_dir:") and "push-queue.sqlite is in use" in line for line in lines)


def test_a_good_tls_config_passes_and_names_no_problem(tmp_path: Path) -> None:
    cert, key = cert_pair(tmp_path, "srv")
    loaded = config.loads(
        QUIET + f'exposition: {{listen: "127.0.0.1:0", tls_cert_file: "{cert}", tls_key_file: "{key}", '
        f'client_ca_file: "{cert}"}}\nstate_dir: "{tmp_path / "new" / "state"}"\n'
    )
    found = config.check_host(loaded, starting=True)
    assert found.problems == []
    assert not (tmp_path / "new").exists()  # the check leaves nothing behind


def test_weak_secrets_are_a_warning_line_each_not_an_error(tmp_path: Path) -> None:
    """Redaction masks a secret wherever it appears: "admin" as a password masks the word in every
    log line. check-config says so, one line per secret with its key, and still exits 0."""
    path = tmp_path / "c.yaml"
    path.write_text(
        QUIET.replace("bandwidth: {enabled: false}", "bandwidth: {enabled: false, token: gT4vK9pLq2ZmW8xR}")
        + f'state_dir: "{tmp_path}"\n'
        + 'exposition: {listen: "127.0.0.1:0", basic_auth: {username: prometheus, password: Hotspot2024}}\n'
        + 'push: {url: "https://127.0.0.1:9/api/v1/write", bearer_token: "x7#Qp"}\n'
    )
    done = cli("check-config", str(path))
    assert done.returncode == 0, done.stderr
    notes = [line for line in done.stderr.splitlines() if line.startswith("note: ")]
    assert len(notes) == 2, done.stderr
    assert notes[0].startswith("note: exposition.basic_auth.password: the secret is an ordinary word")
    assert notes[1].startswith("note: push.bearer_token: the secret has only 5 characters (fewer than 12)")
    assert "Hotspot2024" not in done.stderr and "x7#Qp" not in done.stderr  # never the secret itself


def test_an_agent_that_requires_client_certificates_is_known_by_its_certificate(tmp_path: Path) -> None:
    """With mutual TLS nothing answers a check without a client certificate: the served certificate
    being the configured one is what tells the running agent from another program."""
    cert, key = cert_pair(tmp_path, "srv")
    port = free_port()
    text = QUIET + (
        f'exposition: {{listen: "127.0.0.1:{port}", tls_cert_file: "{cert}", tls_key_file: "{key}", '
        f'client_ca_file: "{cert}"}}\n'
    )
    agent = start_agent(text, tmp_path, listen=None)
    try:
        checked = cli("check-config", str(agent.config_path))
    finally:
        agent.stop()
    assert checked.returncode == 0, checked.stderr
    assert f"note: exposition.listen: port {port} is in use by a running hotspot-agent" in checked.stderr


def test_a_damaged_push_queue_is_moved_aside_not_a_reason_to_stay_down(tmp_path: Path) -> None:
    """A queue file damaged by a power cut (here: garbage) is a note for check-config; the agent
    moves it to .corrupt, says so once in its log, and runs with an empty queue."""
    state = tmp_path / "state"
    state.mkdir()
    queue = state / "push-queue.sqlite"
    queue.write_bytes(b"not sqlite " * 100)
    text = QUIET + f'push: {{enabled: true, url: "http://127.0.0.1:9/api/v1/write"}}\nstate_dir: "{state}"\n'
    path = tmp_path / "c.yaml"
    path.write_text(text, encoding="utf-8")
    checked = cli("check-config", str(path))
    assert checked.returncode == 0, checked.stderr
    assert f"note: state_dir: {queue} is damaged" in checked.stderr
    agent = start_agent(text, tmp_path)
    try:
        assert "hotspot_push_queue" in agent.metrics()
    finally:
        agent.stop()
    assert (state / "push-queue.sqlite.corrupt").read_bytes() == b"not sqlite " * 100
    assert agent.log().count("push queue was damaged") == 1
