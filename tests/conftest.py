"""Fixtures every test module may use: free ports and real servers that stop when the test ends.

The servers themselves are in tests/support (bench/ uses them too); these fixtures only tie their
lives to a test's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.support.agentproc import AgentProcess, start_agent
from tests.support.alertmanager import Alertmanager
from tests.support.netlab import Lab
from tests.support.ports import free_port
from tests.support.prometheus import Prometheus
from tests.support.receivers import Receiver


@pytest.fixture
def port() -> int:
    """A loopback TCP port nothing listens on (free when asked; a test binding it later may race)."""
    return free_port()


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Callable[..., Prometheus]]:
    """Start a Prometheus with a given configuration (YAML text) and extra flags: `prometheus(config)`."""
    started: list[Prometheus] = []

    def start(config: str, *extra_args: str) -> Prometheus:
        prom = Prometheus(config, tmp_path / f"prometheus-{len(started)}", extra_args)
        started.append(prom)
        return prom

    yield start
    for prom in started:
        prom.stop()


@pytest.fixture
def victoria(tmp_path: Path) -> Iterator[Receiver]:
    """A running VictoriaMetrics single node (a remote-write receiver) with its own data directory."""
    vm = Receiver("victoria", tmp_path)
    vm.start()
    yield vm
    vm.stop()


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[Callable[[Path], Alertmanager]]:
    """Start an Alertmanager with a given configuration file: `alertmanager(config_path)`."""
    started: list[Alertmanager] = []

    def start(config: Path) -> Alertmanager:
        am = Alertmanager(config, tmp_path / f"alertmanager-{len(started)}")
        started.append(am)
        return am

    yield start
    for am in started:
        am.stop()


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Callable[..., AgentProcess]]:
    """Start an agent process from config text (see tests/support/agentproc.py); stopped at the end."""
    started: list[AgentProcess] = []

    def start(config_text: str, name: str = "agent", listen: str = "127.0.0.1:0") -> AgentProcess:
        process = start_agent(config_text, tmp_path / name, listen=listen, name=name)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


@pytest.fixture
def lab() -> Iterator[Callable[..., Lab]]:
    """Build a shaped lab link (root and namespaces; see tests/support/netlab.py): `lab(rate_mbit=50)`."""
    with ExitStack() as stack:

        def build(**options: float | str | None) -> Lab:
            return stack.enter_context(Lab(**options))  # type: ignore[arg-type]

        yield build
