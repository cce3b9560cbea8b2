"""What backfilling a province costs: samples, OpenMetrics text, generation and promtool time,
TSDB size, blocks, and promtool's peak memory.

    /usr/bin/time -v .venv/bin/python -m bench.backfill_cost \
        --inventory collector/examples/nam-dinh.yaml --start 2026-10-29 --end 2026-11-29 \
        --out /tmp/nd [--block-hours 162]

Prints the figures `collector.backfill.backfill` returns (and the blocks it made). `/usr/bin/time -v`
reports the largest peak RSS of the process and its children: promtool's. Results by hand in
bench/RESULTS-verdicts.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import inspect
import json
import shutil
import sys
from pathlib import Path

from collector import backfill


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--inventory", type=Path, required=True)
    ap.add_argument("--start", required=True, help="YYYY-MM-DD (UTC+7)")
    ap.add_argument("--end", required=True, help="YYYY-MM-DD (UTC+7), not after today")
    ap.add_argument("--out", type=Path, required=True, help="emptied first")
    ap.add_argument("--block-hours", type=int, default=0, help="promtool block length, hours")
    args = ap.parse_args()
    day = lambda s: dt.datetime.strptime(s, "%Y-%m-%d").replace(tzinfo=backfill.TZ)  # noqa: E731
    shutil.rmtree(args.out, ignore_errors=True)
    extra = {}
    if args.block_hours:
        if "block_hours" not in inspect.signature(backfill.backfill).parameters:
            sys.exit("this version of the backfill has no block length to choose")
        extra["block_hours"] = args.block_hours
    stats = backfill.backfill(args.inventory, day(args.start), day(args.end), args.out, **extra)
    stats["blocks"] = len(list(args.out.glob("*/meta.json")))
    print(json.dumps(stats, indent=1))


if __name__ == "__main__":
    main()
