"""Backfill never writes samples after now: Prometheus would refuse every live sample behind them."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from collector import backfill, cli

SITE = (
    "sites:\n  - {id: nd-1-ubnd, commune: 'Xã Giao Minh', province: 'Tỉnh Nam Định', "
    "latitude: 20.2, longitude: 106.4, push: true}\n"
)


@pytest.mark.skipif(shutil.which("promtool") is None, reason="needs promtool (Debian package prometheus)")
def test_an_end_after_now_is_clipped_to_now(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--end` in the future (this month, not over yet) fills up to now and says so."""
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(SITE, encoding="utf-8")
    today = dt.datetime.now(dt.UTC).date()
    out = tmp_path / "data"
    args = ["backfill", "--inventory", str(inventory), "--out", str(out)]
    args += ["--start", str(today - dt.timedelta(days=1)), "--end", str(today + dt.timedelta(days=3))]
    assert cli.main(args) == 0
    assert "the history ends now" in capsys.readouterr().out
    blocks = [json.loads(meta.read_text()) for meta in out.glob("*/meta.json")]
    assert blocks
    assert max(b["maxTime"] for b in blocks) <= time.time() * 1000 + 60_000
    listing = subprocess.run(["promtool", "tsdb", "list", str(out)], capture_output=True, text=True)
    assert listing.returncode == 0, listing.stderr


@pytest.mark.skipif(shutil.which("promtool") is None, reason="needs promtool (Debian package prometheus)")
def test_the_history_goes_to_promtool_a_block_at_a_time(tmp_path: Path) -> None:
    """Each chunk becomes one block on promtool's own boundaries: blocks do not overlap, and every
    sample generated is in them (none lost or doubled at a chunk's edge)."""
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(SITE, encoding="utf-8")
    start = dt.datetime(2026, 11, 1, tzinfo=backfill.TZ)
    out = tmp_path / "data"
    end = start + dt.timedelta(days=6)
    stats = backfill.backfill(inventory, start, end, out, block_hours=54)
    blocks = sorted((json.loads(m.read_text()) for m in out.glob("*/meta.json")), key=lambda b: b["minTime"])
    block_ms = 54 * 3600 * 1000
    windows = (int(end.timestamp()) * 1000 - 1) // block_ms - int(start.timestamp()) * 1000 // block_ms + 1
    assert len(blocks) == windows == 4  # 144 hours touch four 54-hour windows
    for b in blocks:
        assert b["minTime"] // block_ms == (b["maxTime"] - 1) // block_ms  # inside one window
    assert all(a["maxTime"] <= b["minTime"] for a, b in itertools.pairwise(blocks))
    assert sum(b["stats"]["numSamples"] for b in blocks) == stats["samples"]


def test_a_block_length_promtool_does_not_cut_is_refused(tmp_path: Path) -> None:
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(SITE, encoding="utf-8")
    start = dt.datetime(2026, 11, 1, tzinfo=backfill.TZ)
    with pytest.raises(ValueError, match="one of"):
        backfill.backfill(inventory, start, start + dt.timedelta(days=1), tmp_path / "d", block_hours=24)
