"""Fixtures every test module may use: free ports and real servers that stop when the test ends.

The servers themselves are in tests/support (bench/ uses them too); these fixtures only tie their
lives to a test's.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.support.agentproc import AgentProcess, start_agent
from tests.support.alertmanager import Alertmanager
from tests.support.netlab import Lab, unavailable_reason
from tests.support.ports import free_port
from tests.support.prometheus import Prometheus
from tests.support.receivers import Receiver


@pytest.fixture
def port() -> int:
    """A loopback TCP port nothing listens on (free when asked; a test binding it later may race)."""
    return free_port()


@pytest.fixture
def servers() -> Iterator[ExitStack]:
    """What a test's servers register to be stopped at its end, last started first."""
    with ExitStack() as stack:
        yield stack


@pytest.fixture
def prometheus(tmp_path: Path, servers: ExitStack) -> Callable[..., Prometheus]:
    """Start a Prometheus with a given configuration (YAML text) and extra flags: `prometheus(config)`."""
    count = itertools.count()

    def start(config: str, *extra_args: str) -> Prometheus:
        prom = Prometheus(config, tmp_path / f"prometheus-{next(count)}", extra_args)
        servers.callback(prom.stop)
        return prom

    return start


@pytest.fixture
def victoria(tmp_path: Path, servers: ExitStack) -> Receiver:
    """A running VictoriaMetrics single node (a remote-write receiver) with its own data directory."""
    vm = Receiver("victoria", tmp_path)
    vm.start()
    servers.callback(vm.stop)
    return vm


@pytest.fixture
def alertmanager(tmp_path: Path, servers: ExitStack) -> Callable[[Path], Alertmanager]:
    """Start an Alertmanager with a given configuration file: `alertmanager(config_path)`."""
    count = itertools.count()

    def start(config: Path) -> Alertmanager:
        am = Alertmanager(config, tmp_path / f"alertmanager-{next(count)}")
        servers.callback(am.stop)
        return am

    return start


@pytest.fixture
def agent(tmp_path: Path, servers: ExitStack) -> Callable[..., AgentProcess]:
    """Start an agent process from config text (see tests/support/agentproc.py); stopped at the end."""

    def start(config_text: str, name: str = "agent", listen: str = "127.0.0.1:0") -> AgentProcess:
        process = start_agent(config_text, tmp_path / name, listen=listen, name=name)
        servers.callback(process.stop)
        return process

    return start


@pytest.fixture
def lab(servers: ExitStack) -> Callable[..., Lab]:
    """Build a shaped lab link (see tests/support/netlab.py): `lab(rate_mbit=50)`; skips the test
    where labs cannot be built (not root, no network namespaces, no compiler for the delay line)."""
    if (why := unavailable_reason()) is not None:
        pytest.skip(why)

    def build(**options: float | str | None) -> Lab:
        return servers.enter_context(Lab(**options))  # type: ignore[arg-type]

    return build
