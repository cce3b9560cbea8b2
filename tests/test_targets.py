"""`hotspot-collector targets`: inventory -> file_sd target files and the inventory rules file."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "collector" / "examples"

INVENTORY = """\
sites:
  - {id: nb-2-ubnd, name: "UBND Xã B", type: commune_office, commune: "Xã B", province: "Tỉnh Ninh Bình",
     isp: VNPT, scrape: "10.37.0.2:9591"}
  - {id: nb-1-ubnd, name: "UBND Xã A", type: commune_office, commune: "Xã A", province: "Tỉnh Ninh Bình",
     scrape: "10.37.0.1:9591", maintenance: true}
  - {id: nd-9-ubnd, type: commune_office, commune: "Xã C", district: "Huyện Hải Hậu",
     province: "Tỉnh Nam Định", scrape: "10.36.0.9:9591"}
  - {id: nb-1-tyt, type: health_station, commune: "Xã A", province: "Tỉnh Ninh Bình", push: true}
"""


def run_targets(inventory: Path, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "collector.cli", "targets", "--inventory", str(inventory), "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )


@pytest.fixture
def inventory_file(tmp_path: Path) -> Path:
    path = tmp_path / "sites.yaml"
    path.write_text(INVENTORY, encoding="utf-8")
    return path


def test_writes_one_sorted_file_sd_file_per_province(inventory_file: Path, tmp_path: Path) -> None:
    """Scraped sites go to sites-<province>.json, sorted by id, labelled with identity and instance."""
    out = tmp_path / "out"
    run = run_targets(inventory_file, out)
    assert run.returncode == 0, run.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "inventory.rules.yml",
        "sites-tinh-nam-dinh.json",
        "sites-tinh-ninh-binh.json",
    ]
    groups = json.loads((out / "sites-tinh-ninh-binh.json").read_text(encoding="utf-8"))
    assert [g["targets"] for g in groups] == [["10.37.0.1:9591"], ["10.37.0.2:9591"]]
    assert groups[1]["labels"] == {
        "commune": "Xã B",
        "instance": "nb-2-ubnd",
        "province": "Tỉnh Ninh Bình",
        "site": "nb-2-ubnd",
        "site_type": "commune_office",
    }
    nam_dinh = json.loads((out / "sites-tinh-nam-dinh.json").read_text(encoding="utf-8"))
    assert nam_dinh[0]["labels"]["district"] == "Huyện Hải Hậu"


def test_inventory_rules_list_every_site_with_reach_and_maintenance(
    inventory_file: Path, tmp_path: Path
) -> None:
    """inventory.rules.yml has one site:hotspot_inventory:info per site, pushed ones too."""
    out = tmp_path / "out"
    assert run_targets(inventory_file, out).returncode == 0
    doc = yaml.safe_load((out / "inventory.rules.yml").read_text(encoding="utf-8"))
    rules = doc["groups"][0]["rules"]
    by_site = {r["labels"]["site"]: r["labels"] for r in rules}
    assert list(by_site) == ["nb-1-tyt", "nb-1-ubnd", "nb-2-ubnd", "nd-9-ubnd"]
    assert {r["record"] for r in rules} == {"site:hotspot_inventory:info"}
    assert by_site["nb-1-tyt"]["reach"] == "push"
    assert by_site["nb-1-ubnd"]["maintenance"] == "true"
    assert by_site["nb-2-ubnd"] == {
        "commune": "Xã B",
        "contracted_download_mbps": "100",
        "contracted_upload_mbps": "100",
        "isp": "VNPT",
        "maintenance": "false",
        "name": "UBND Xã B",
        "province": "Tỉnh Ninh Bình",
        "reach": "pull",
        "site": "nb-2-ubnd",
        "site_type": "commune_office",
    }


def test_output_passes_promtool(inventory_file: Path, tmp_path: Path) -> None:
    """Prometheus accepts the rules file and the file_sd files (promtool check rules / check config)."""
    if shutil.which("promtool") is None:
        pytest.skip("promtool not installed (apt-get install prometheus)")
    out = tmp_path / "inventory"
    assert run_targets(inventory_file, out).returncode == 0
    check = subprocess.run(
        ["promtool", "check", "rules", str(out / "inventory.rules.yml")], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "scrape_configs:\n  - job_name: hotspot-agent\n    file_sd_configs:\n"
        f"      - files: ['{out}/sites-*.json']\n",
        encoding="utf-8",
    )
    check = subprocess.run(["promtool", "check", "config", str(config)], capture_output=True, text=True)
    assert check.returncode == 0 and "WARNING" not in check.stdout + check.stderr, check.stdout + check.stderr


def test_second_run_rewrites_nothing(inventory_file: Path, tmp_path: Path) -> None:
    """Unchanged inventory: no file is rewritten (same inode and mtime), so Prometheus sees no churn."""
    out = tmp_path / "out"
    assert run_targets(inventory_file, out).returncode == 0
    before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.iterdir()}
    second = run_targets(inventory_file, out)
    assert second.returncode == 0
    assert "0 files written, 3 unchanged, 0 removed" in second.stdout
    assert {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.iterdir()} == before


def test_changed_site_rewrites_only_its_province_and_stale_files_go(
    inventory_file: Path, tmp_path: Path
) -> None:
    """A change touches only the affected files; a province with no scraped site left loses its file."""
    out = tmp_path / "out"
    assert run_targets(inventory_file, out).returncode == 0
    nb_before = (out / "sites-tinh-ninh-binh.json").stat().st_mtime_ns
    inventory_file.write_text(INVENTORY.replace('scrape: "10.36.0.9:9591"', "push: true"), encoding="utf-8")
    run = run_targets(inventory_file, out)
    assert run.returncode == 0, run.stderr
    assert "removed: " in run.stdout and "sites-tinh-nam-dinh.json" in run.stdout
    assert not (out / "sites-tinh-nam-dinh.json").exists()
    assert (out / "sites-tinh-ninh-binh.json").stat().st_mtime_ns == nb_before
    assert "reload Prometheus" in run.stdout  # the rules file changed (nd-9-ubnd now pushes)
    assert not list(out.glob(".*.tmp"))


def test_invalid_inventory_writes_nothing_and_exits_2(tmp_path: Path) -> None:
    """An invalid inventory: every problem on stderr, exit 2, and the old output left untouched."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "sites:\n  - {id: a, commune: X, province: P, latitude: 91, longitude: 0}\n", encoding="utf-8"
    )
    out = tmp_path / "out"
    run = run_targets(bad, out)
    assert run.returncode == 2
    assert sorted(run.stderr.splitlines()) == [
        "sites[0].latitude: must be between -90 and 90",
        "sites[0].scrape: required: scrape: HOST:PORT (pulled) or push: true (pushed)",
    ]
    assert not out.exists()


def test_example_inventory_gives_one_target_per_commune(tmp_path: Path) -> None:
    """The Nam Định example: 175 scraped commune offices in one file, 785 sites in the rules."""
    out = tmp_path / "out"
    assert run_targets(EXAMPLES / "nam-dinh.yaml", out).returncode == 0
    groups = json.loads((out / "sites-tinh-nam-dinh.json").read_text(encoding="utf-8"))
    assert len(groups) == 175
    rules = yaml.safe_load((out / "inventory.rules.yml").read_text(encoding="utf-8"))["groups"][0]["rules"]
    assert len(rules) == 785
