"""Where the repository and the shared data live, for tests and benchmarks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Data kept beside the repository, not in it (../shared/data: the communes' lists the example
# inventories are generated from; see its SOURCES.md).
SHARED_DATA = ROOT.parent / "shared" / "data"


def in_ci() -> bool:
    """True when the CI variable is set to a true value (CI=true, as CI services set it)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def shared_data(name: str) -> Path:
    """The path of ../shared/data/NAME. Missing, it skips the test on a developer's machine and
    fails it in CI, where a skip would hide that the check never ran."""
    path = SHARED_DATA / name
    if not path.exists():
        message = f"{path} not present (../shared beside the repository)"
        if in_ci():
            pytest.fail(message + ": CI must provide it")
        pytest.skip(message)
    return path
