"""The site inventory: validation with key paths, and the generated example inventories."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from collector import inventory, inventory_example
from collector.inventory import InventoryError
from tests.support.legacy_text import cp1258
from tests.support.paths import shared_data

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "collector" / "examples"
SITE = 'id: nd-13636-ubnd, commune: "Phường Vị Xuyên", province: "Tỉnh Nam Định", scrape: "10.36.0.1:9591"'


def problems(text: str) -> list[str]:
    with pytest.raises(InventoryError) as info:
        inventory.loads(text)
    return info.value.problems


def test_valid_inventory_loads_with_reach_and_identity() -> None:
    """A scraped and a pushing site load, with their identity labels and how they are reached."""
    inv = inventory.loads(
        f"sites:\n  - {{{SITE}, type: commune_office, district: Thành phố Nam Định}}\n"
        '  - {id: nd-13636-tyt, commune: "Phường Vị Xuyên", province: "Tỉnh Nam Định", push: true,'
        " maintenance: true}\n"
    )
    office, station = inv.sites
    assert office.reach == "pull" and office.scrape == "10.36.0.1:9591"
    assert office.labels() == {
        "site": "nd-13636-ubnd",
        "site_type": "commune_office",
        "commune": "Phường Vị Xuyên",
        "province": "Tỉnh Nam Định",
        "district": "Thành phố Nam Định",
    }
    assert station.reach == "push" and station.maintenance


def test_every_problem_is_reported_with_its_key_path() -> None:
    """Bad coordinates, unknown keys, a missing reach and duplicate ids are all reported at once."""
    found = problems(
        "sites:\n"
        f"  - {{{SITE}, latitude: 120, longitude: 106}}\n"
        '  - {id: nd-2, commune: "X", province: "P", colour: red, push: true}\n'
        '  - {id: nd-13636-ubnd, commune: "X", province: "P"}\n'
        '  - {id: nd-4, commune: "X", province: "P", push: true, scrape: "h:1"}\n'
    )
    assert "sites[0].latitude: must be between -90 and 90" in found
    assert any(p.startswith("sites[1].colour: unknown key") for p in found)
    assert "sites[2].scrape: required: scrape: HOST:PORT (pulled) or push: true (pushed)" in found
    assert "sites[2].id: duplicate site id nd-13636-ubnd (first at sites[0])" in found
    assert any(p.startswith("sites[3].scrape: a site is either scraped") for p in found)


def test_scrape_address_needs_a_host_and_a_port() -> None:
    """`scrape:` must be HOST:PORT with a host; the same address twice is an error."""
    assert problems('sites:\n  - {id: a, commune: X, province: P, scrape: ":9591"}\n') == [
        "sites[0].scrape: the host is missing before the port"
    ]
    assert problems('sites:\n  - {id: a, commune: X, province: P, scrape: "h"}\n') == [
        "sites[0].scrape: not HOST:PORT (use [ADDRESS]:PORT for IPv6)"
    ]
    found = problems(
        'sites:\n  - {id: a, commune: X, province: P, scrape: "h:1"}\n'
        '  - {id: b, commune: X, province: P, scrape: "h:1"}\n'
    )
    assert found == ["sites[1].scrape: h:1 is already scraped for sites[0]"]


def test_one_commune_code_cannot_name_two_communes() -> None:
    """Two sites giving the same commune_code with different commune names is an error."""
    found = problems(
        'sites:\n  - {id: a, commune: "Xã A", commune_code: "1", province: P, push: true}\n'
        '  - {id: b, commune: "Xã B", commune_code: "1", province: P, push: true}\n'
    )
    assert len(found) == 1 and found[0].startswith("sites[1].commune: commune_code 1 is 'Xã A'")


def test_empty_and_broken_files_get_a_clear_error() -> None:
    """An empty file, invalid YAML, a file with no sites: one clear line each, no traceback."""
    assert problems("") == ["<inventory>: empty; an inventory lists its sites under `sites:`"]
    assert problems("sites: [\n")[0].startswith("<inventory>: not valid YAML at line")
    assert problems("sites: []\n") == ["sites: the inventory lists no site"]


def test_check_command_prints_problems_and_exits_2(tmp_path: Path) -> None:
    """`hotspot-collector inventory --check` prints each problem on stderr and exits 2."""
    bad = tmp_path / "sites.yaml"
    bad.write_text("sites:\n  - {id: A, commune: X, province: P, push: true}\n", encoding="utf-8")
    run = subprocess.run(
        [sys.executable, "-m", "collector.cli", "inventory", "--check", str(bad)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2, run.stderr
    assert run.stderr.startswith("sites[0].id: must be 1-63 lower-case letters")
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize(
    ("data", "example", "communes", "prefix"),
    [
        ("nam-dinh-communes.csv", "nam-dinh.yaml", 175, "nd-"),
        ("ninh-binh-2025-communes.csv", "ninh-binh.yaml", 129, "nb-"),
    ],
)
def test_examples_are_regenerated_identically(data: str, example: str, communes: int, prefix: str) -> None:
    """The shipped examples are exactly what `inventory --data` generates from data/, and valid."""
    csv_path = shared_data(data)
    text = inventory_example.render_example(csv_path)
    assert text == (EXAMPLES / example).read_text(encoding="utf-8")
    inv = inventory.loads(text)
    ids = [s.id for s in inv.sites]
    assert all(i.startswith(prefix) for i in ids)
    assert len({s.commune_code for s in inv.sites}) == communes
    # each commune: one office (scraped), one health station, two or three village halls (pushing)
    per_commune: dict[str, list[str]] = {}
    for s in inv.sites:
        per_commune.setdefault(s.commune_code, []).append(s.type)
    assert all(
        t.count("commune_office") == 1
        and t.count("health_station") == 1
        and t.count("village_hall") in (2, 3)
        for t in per_commune.values()
    )
    assert all(bool(s.scrape) == (s.type == "commune_office") for s in inv.sites)


def test_example_ids_follow_the_commune_code() -> None:
    """Ids are prefix-code-kind, e.g. nd-13636-ubnd / nd-13636-tyt / nd-13636-nvh1."""
    inv = inventory.load(EXAMPLES / "nam-dinh.yaml")
    ids = {s.id for s in inv.sites}
    assert {"nd-13636-ubnd", "nd-13636-tyt", "nd-13636-nvh1", "nd-13636-nvh2"} <= ids
    office = next(s for s in inv.sites if s.id == "nd-13636-ubnd")
    assert (office.commune, office.district, office.province) == (
        "Phường Vị Xuyên",
        "Thành phố Nam Định",
        "Tỉnh Nam Định",
    )


def test_generate_command_writes_once_then_leaves_the_file_alone(tmp_path: Path) -> None:
    """Running `inventory --data --out` twice rewrites nothing the second time."""
    csv_path = shared_data("ninh-binh-2025-communes.csv")
    out = tmp_path / "nb.yaml"
    cmd = [sys.executable, "-m", "collector.cli", "inventory", "--data", str(csv_path), "--out", str(out)]
    first = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True)
    mtime = out.stat().st_mtime_ns
    second = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True)
    assert "written" in first.stdout and "unchanged" in second.stdout
    assert out.stat().st_mtime_ns == mtime


def test_slug_is_ascii() -> None:
    """Province names become ASCII file names."""
    assert inventory.slug("Tỉnh Nam Định") == "tinh-nam-dinh"
    assert inventory.slug("Tỉnh Ninh Bình") == "tinh-ninh-binh"


def test_duplicate_key_in_a_site_names_both_lines() -> None:
    """`maintenance: true` then `maintenance: false` in one site: an error, not a silent false."""
    text = f"sites:\n  - {SITE.replace(', ', chr(10) + '    ')}\n    maintenance: true\n    push: false\n"
    text += "    maintenance: false\n"
    assert problems(text) == ["<inventory>: line 8: key 'maintenance' given twice (lines 6 and 8); keep one"]


def test_inventory_not_utf8(tmp_path: Path) -> None:
    """An inventory saved as cp1258 or binary: one clear problem from the shared loader."""
    path = tmp_path / "sites.yaml"
    path.write_bytes(cp1258(f"sites:\n  - {{{SITE}}}\n"))
    with pytest.raises(InventoryError) as info:
        inventory.load(path)
    assert info.value.problems == [
        f"{path}: not UTF-8 text: byte 0xfd at line 2, column 37; save the file as UTF-8 "
        "(legacy encodings such as Windows cp1258 are not read)"
    ]
    path.write_bytes(b"\x00\x01binary")
    with pytest.raises(InventoryError, match="binary content"):
        inventory.load(path)
