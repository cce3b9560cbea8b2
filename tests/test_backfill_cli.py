"""`hotspot-collector backfill` refuses what would give a wrong history: exit 2, one clear line,
no traceback, nothing written. A second run into the same --out is refused after a real first run
(promtool blocks), leaving the blocks of the first as they were.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest

from collector import cli

SITE = "sites:\n  - {id: nd-1-ubnd, commune: 'Xã Giao Minh', province: 'Tỉnh Nam Định', push: true}\n"
TODAY = dt.datetime.now(dt.UTC).date()


def run(tmp_path: Path, out: Path, start: str, end: str) -> int:
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(SITE, encoding="utf-8")
    args = ["backfill", "--inventory", str(inventory), "--out", str(out), "--start", start, "--end", end]
    return cli.main(args)


@pytest.mark.skipif(shutil.which("promtool") is None, reason="needs promtool (Debian package prometheus)")
def test_a_second_run_into_the_same_out_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "data"
    yesterday = str(TODAY - dt.timedelta(days=1))
    assert run(tmp_path, out, yesterday, str(TODAY)) == 0
    before = sorted(p.name for p in out.iterdir())
    assert any((out / name / "meta.json").is_file() for name in before)
    capsys.readouterr()
    assert run(tmp_path, out, yesterday, str(TODAY)) == 2
    err = capsys.readouterr().err
    assert f"--out {out}: not empty" in err and "overlapping" in err
    assert sorted(p.name for p in out.iterdir()) == before


@pytest.mark.parametrize(
    "case",
    [
        ("1969-12-31", "2026-01-01", "data", "argument --start: 1969-12-31: before the Unix epoch"),
        ("1970-01-01", "2026-01-01", "data", "argument --start: 1970-01-01: before the Unix epoch"),
        ("2026-02-30", "2026-03-01", "data", "argument --start: not a date (YYYY-MM-DD): '2026-02-30'"),
        ("2026-11-02", "2026-11-01", "data", "--end must be after --start"),
        ("2025-01-01", "2026-03-01", "data", "spans 424 days; at most 400"),
        (str(TODAY + dt.timedelta(days=2)), str(TODAY + dt.timedelta(days=5)), "data", "is not before now"),
        ("2026-01-01", "2026-01-02", "file", "exists and is not a directory"),
        ("2026-01-01", "2026-01-02", "nonempty", "not empty"),
    ],
)
def test_bad_dates_and_out_are_refused(
    case: tuple[str, str, str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    start, end, out, message = case
    (tmp_path / "file").write_text("not a data directory\n")
    (tmp_path / "nonempty").mkdir()
    (tmp_path / "nonempty" / "01HZZZZZZZZZZZZZZZZZZZZZZZ").mkdir()
    try:
        code = run(tmp_path, tmp_path / out, start, end)
    except SystemExit as exc:  # argparse's own usage error
        code = int(str(exc.code))
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "data").exists()
    assert (tmp_path / "file").read_text() == "not a data directory\n"
