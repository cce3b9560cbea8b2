"""Generate the Grafana dashboards (Vietnamese and English) from one source.

Run `python grafana/build.py` from the repository root to rewrite grafana/dashboards/{vi,en}/*.json;
`python grafana/build.py --check` exits 1 when the committed JSON differs from what the source
generates. The source is the package grafana/dashboards_src/ (one module per dashboard). Every text
exists once there in both languages (`T`); the two variants differ only in words and in which
language's dashboards their links open.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere
from grafana.dashboards_src import render
from grafana.dashboards_src.panels import SPEED_STEPS

__all__ = ["SPEED_STEPS", "main", "render"]

DASHBOARDS_DIR = Path(__file__).resolve().parent / "dashboards"


def main(argv: Sequence[str] | None = None) -> int:
    """Write the dashboards under `--out` (default grafana/dashboards/), or with `--check` only
    compare; returns 1 when `--check` finds a file that differs or is missing, else 0.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed JSON is not up to date")
    parser.add_argument(
        "--out", type=Path, default=DASHBOARDS_DIR, help="where to write (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    stale = []
    for rel, text in render().items():
        path = args.out / rel
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        stale.append(str(rel))
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    if args.check and stale:
        print("out of date (run python grafana/build.py): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
