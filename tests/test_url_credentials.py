"""No URL option of either command line takes a user name or password inside the URL.

`https://user:pass@host/` would be copied into every generated config, the logs and error lines:
each URL option refuses it with exit 2, a line naming the setting that takes credentials, the
password never echoed and nothing written.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.cli import main as agent_main
from collector.cli import main as collector_main

ROOT = Path(__file__).resolve().parent.parent
INVENTORY = ROOT / "collector" / "examples" / "nam-dinh.yaml"
SECRET = "s3cret-pw"
WITH_CREDENTIALS = f"https://nd-1:{SECRET}@collector.example.vn:8427/api/v1/write"

SITE = 'site: {id: nd-1, name: x, commune: "Xã A", province: "Nam Định"}\n'


@pytest.mark.parametrize(
    ("option", "hint"),
    [
        ("--push-url", "sites/ID/push-password"),
        ("--vm-url", "vmauth reaches VictoriaMetrics without one"),
        ("--speedtest-server", "probes.bandwidth.token"),
    ],
)
def test_provision_refuses_credentials_in_each_url(
    option: str, hint: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    args = ["provision", "--inventory", str(INVENTORY), "--out", str(out)]
    if option != "--push-url":
        args += ["--push-url", "https://collector.example.vn:8427/api/v1/write"]
    assert collector_main([*args, option, WITH_CREDENTIALS]) == 2
    captured = capsys.readouterr()
    assert f"{option}: has a user name or password in it" in captured.err and hint in captured.err
    assert SECRET not in captured.err + captured.out
    assert not out.exists()  # nothing generated with the password in it


def test_report_refuses_credentials_in_prometheus_url(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://admin:{SECRET}@127.0.0.1:9090"
    assert collector_main(["report", "--month", "2026-11", "--prometheus", url, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--prometheus: has a user name or password in it" in err and "without authentication" in err
    assert SECRET not in err and not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("config", "line"),
    [
        (
            f'push: {{enabled: true, url: "{WITH_CREDENTIALS}"}}\n',
            "push.url: has a user name or password in it (USER:PASSWORD@HOST): give credentials in their "
            "own setting (push: basic_auth or bearer_token",
        ),
        (
            f'probes: {{bandwidth: {{server: "http://u:{SECRET}@127.0.0.1:8989/"}}}}\n',
            "probes.bandwidth.server: has a user name or password in it",
        ),
        (
            f'probes: {{http: {{urls: ["https://u:{SECRET}@dichvucong.gov.vn/"]}}}}\n',
            "has a user name or password in it",
        ),
    ],
)
def test_agent_config_refuses_credentials_in_each_url(
    config: str, line: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(SITE + config, encoding="utf-8")
    assert agent_main(["check-config", str(path)]) == 2
    captured = capsys.readouterr()
    assert line in captured.err + captured.out
    assert "Traceback" not in captured.err


def test_measure_refuses_a_server_url_with_credentials_without_echoing_them(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert agent_main(["measure", "bandwidth", "--server", f"http://u:{SECRET}@127.0.0.1:9/"]) == 2
    captured = capsys.readouterr()
    assert "--server http://***@127.0.0.1:9/: has a user name or password in it" in captured.err
    assert SECRET not in captured.out + captured.err
