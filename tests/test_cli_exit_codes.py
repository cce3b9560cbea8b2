"""Exit codes of every subcommand through the real entry point (`python -m agent.cli`), as
docs/agent.md lists them: 2 for a usage or config mistake (before anything is measured), 1 for a
measurement that failed, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.agentproc import LOOPBACK_PROBES, site_yaml
from tests.support.paths import ROOT
from tests.support.ports import free_port

GOOD = site_yaml("nd-1") + LOOPBACK_PROBES
NO_SERVER = site_yaml("nd-1") + LOOPBACK_PROBES.replace("bandwidth: {enabled: false}", "bandwidth: {}")

# (arguments, with {cfg} for a good config, {nos} for one without a bandwidth server and {sfile}
# for one whose state_dir is a file; a text the error names)
USAGE = [
    ([], "COMMAND"),
    (["nothing"], "invalid choice"),
    (["run", "--config", "{missing}"], "cannot read"),
    (["run", "--config", "{cfg}", "--listen", "nohostport"], "--listen nohostport: not HOST:PORT"),
    (["run", "--config", "{cfg}", "--listen", "192.0.2.1:9591"], "--listen: 192.0.2.1 is not an address"),
    (["check-config"], "path"),
    (["check-config", "{missing}"], "cannot read"),
    (["measure"], "probe"),
    (["measure", "nothing"], "invalid choice"),
    (["measure", "ping", "--config", "{missing}"], "cannot read"),
    (["measure", "ping", "--server", "http://127.0.0.1:1/"], "are for `measure bandwidth`"),
    (["measure", "bandwidth", "--engine", "nope"], "invalid choice"),
    (["measure", "bandwidth", "--server", "notaurl"], "--server notaurl: not an http:// or https:// URL"),
    (["measure", "bandwidth", "--server", "https://127.0.0.1:1/"], "speaks plain http:// only"),
    (["measure", "bandwidth", "--engine", "iperf3", "--server", "a:b:c"], "--server a:b:c: not HOST:PORT"),
    (["measure", "bandwidth"], "no test server for the http engine"),
    (["measure", "bandwidth", "--config", "{nos}", "--engine", "iperf3"], "no test server for the iperf3"),
    (
        ["measure", "bandwidth", "--config", "{sfile}", "--server", "http://127.0.0.1:1/"],
        "is not a directory",
    ),
    (["version", "extra"], "unrecognized arguments"),
]


def cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(("argv", "says"), USAGE, ids=[" ".join(a) or "(none)" for a, _ in USAGE])
def test_usage_and_config_mistakes_exit_2(tmp_path: Path, argv: list[str], says: str) -> None:
    (tmp_path / "good.yaml").write_text(GOOD + f"state_dir: {tmp_path / 'state'}\n", encoding="utf-8")
    (tmp_path / "nos.yaml").write_text(NO_SERVER + f"state_dir: {tmp_path / 'state'}\n", encoding="utf-8")
    paths = {
        "{cfg}": tmp_path / "good.yaml",
        "{nos}": tmp_path / "nos.yaml",
        "{missing}": tmp_path / "x.yaml",
        "{sfile}": tmp_path / "sfile.yaml",
    }
    (tmp_path / "plain").write_text("")
    (tmp_path / "sfile.yaml").write_text(GOOD + f"state_dir: {tmp_path / 'plain'}\n", encoding="utf-8")
    done = cli(*(str(paths.get(a, a)) for a in argv))
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert says in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""  # nothing was measured, nothing looks like a result


def test_a_failed_measurement_exits_1() -> None:
    """Nothing listens on the server's port: a measurement was tried and failed."""
    done = cli("measure", "bandwidth", "--server", f"http://127.0.0.1:{free_port()}/", "--json")
    assert done.returncode == 1, done.stderr
    assert '"ok": false' in done.stdout


def test_version_exits_0() -> None:
    done = cli("version")
    assert done.returncode == 0 and done.stdout.startswith("hotspot-agent ")
