"""Where the repository and the shared data live, for tests and benchmarks."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Data kept beside the repository (inventories, captures), not in it.
SHARED = ROOT.parent / "shared"


def in_ci() -> bool:
    """True when the CI variable is set to a true value: there, missing shared data is a failure."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")
