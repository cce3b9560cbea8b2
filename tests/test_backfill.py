"""Backfill never writes samples after now: Prometheus would refuse every live sample behind them."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from collector import cli

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
