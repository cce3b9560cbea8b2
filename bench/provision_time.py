"""Time `hotspot-collector provision` for the Nam Định example (785 sites) and a 5,000-site inventory.

The 5,000-site inventory repeats the Nam Định sites with new ids (and scrape addresses). Each size is
provisioned from nothing (every credential and file new), then again unchanged (no file written);
the command runs as a subprocess, as an operator would run it.

    .venv/bin/python bench/provision_time.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "collector" / "examples" / "nam-dinh.yaml"


def inventory(n: int) -> str:
    base = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))["sites"]
    sites = []
    for i in range(n):
        site = dict(base[i % len(base)])
        copy = i // len(base)
        if copy:
            site["id"] = f"{site['id']}-{copy}"
            if "scrape" in site:
                site["scrape"] = f"10.{100 + copy}.{i // 250 % 250}.{i % 250 + 1}:9591"
        sites.append(site)
    return yaml.safe_dump({"sites": sites}, allow_unicode=True, sort_keys=False, width=200)


def timed(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    exe = [sys.executable, "-m", "collector.cli", "provision"]
    print("| sites | from nothing (s, median) | unchanged re-run (s, median) |")
    print("| --- | --- | --- |")
    for n in (785, 5000):
        cold, warm = [], []
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory() as tmp:
                inv = Path(tmp) / "inventory.yaml"
                inv.write_text(inventory(n), encoding="utf-8")
                argv = [
                    *exe,
                    "--inventory",
                    str(inv),
                    "--out",
                    f"{tmp}/out",
                    "--push-url",
                    "https://c:8427/api/v1/write",
                ]
                cold.append(timed(argv))
                warm.append(timed(argv))
        print(f"| {n} | {statistics.median(cold):.2f} | {statistics.median(warm):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
