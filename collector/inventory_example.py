"""Example inventories generated from the real commune lists in data/: `hotspot-collector inventory
--data CSV` writes collector/examples/*.yaml, and `--check FILE` validates and summarises any
inventory. The communes, their GSO codes and approximate coordinates come from data/ (see
data/SOURCES.md); site names, ISPs and agent addresses are illustrative."""

from __future__ import annotations

import argparse
import csv
import math
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from agent.digits import ascii_uint
from collector.atomic_file import write_atomic
from collector.inventory import DEFAULT_AGENT_PORT, InventoryError, load, loads

ISPS = ("VNPT", "Viettel", "FPT Telecom")  # illustrative: the real contract holder is not public


@dataclass(frozen=True)
class Commune:
    """One row of a data/ commune CSV: GSO code, name, kind (Xã, Phường, Thị trấn), district (""
    for the 2025 lists, which have none) and approximate centroid in degrees (WGS 84).
    """

    code: str
    name: str
    kind: str  # Xã, Phường, Thị trấn
    district: str
    lat: float
    lon: float


@dataclass(frozen=True)
class Flavour:
    """How one data file becomes an inventory: its province, id prefix and agent address block."""

    province: str
    prefix: str
    address_block: int  # scraped commune offices get 10.<block>.x.y (the province VPN)


FLAVOURS = {
    "nam-dinh": Flavour("Tỉnh Nam Định", "nd", 36),
    "ninh-binh-2025": Flavour("Tỉnh Ninh Bình", "nb", 37),
}


def read_communes(path: Path) -> tuple[str, list[Commune]]:
    """Read one of data/'s CSVs; returns its flavour name and the communes in file order."""
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{path}: no rows")
    columns = set(rows[0])
    flavour = "nam-dinh" if "district_name" in columns else "ninh-binh-2025"
    need = {"commune_code", "commune_name", "commune_type", "lat", "lon"}
    if not need <= columns:
        raise ValueError(f"{path}: missing columns {', '.join(sorted(need - columns))}")
    communes = []
    for n, row in enumerate(rows, start=2):
        if ascii_uint(row["commune_code"] or "") is None:  # ids and ISPs are derived from it
            raise ValueError(
                f"{path}: line {n}: commune_code must be digits 0-9, got {row['commune_code']!r}"
            )
        try:
            communes.append(
                Commune(
                    code=row["commune_code"],
                    name=row["commune_name"],
                    kind=row["commune_type"],
                    district=row.get("district_name", ""),
                    lat=float(row["lat"]),
                    lon=float(row["lon"]),
                )
            )
        except ValueError as exc:
            raise ValueError(f"{path}: line {n}: {exc}") from None
    return flavour, communes


def _place(commune: Commune, k: int) -> tuple[float, float]:
    """Spread a commune's sites on a small circle round its (approximate) centroid, so map markers
    do not sit on top of each other. The data's coordinates are only good to a few km anyway."""
    if k == 0:
        return commune.lat, commune.lon
    angle = 2 * math.pi * k / 5
    return round(commune.lat + 0.004 * math.sin(angle), 5), round(commune.lon + 0.004 * math.cos(angle), 5)


def example_sites(communes: Iterable[Commune], flavour: Flavour) -> list[dict[str, Any]]:
    """For each commune: a commune office (scraped over the VPN), a health station and two or three
    village halls (pushing from behind NAT). Ids and addresses depend only on the data."""
    sites: list[dict[str, Any]] = []
    for index, commune in enumerate(communes):
        halls = 2 + int(commune.code) % 2
        isp = ISPS[int(commune.code) % len(ISPS)]
        village = "tổ dân phố" if commune.kind == "Phường" else "thôn"
        kinds = [
            ("ubnd", "commune_office", f"Bộ phận một cửa UBND {commune.name}"),
            ("tyt", "health_station", f"Trạm y tế {commune.name}"),
        ] + [
            (f"nvh{n}", "village_hall", f"Nhà văn hóa {village} {n}, {commune.name}")
            for n in range(1, halls + 1)
        ]
        for k, (suffix, site_type, name) in enumerate(kinds):
            lat, lon = _place(commune, k)
            site: dict[str, Any] = {
                "id": f"{flavour.prefix}-{commune.code}-{suffix}",
                "name": name,
                "type": site_type,
                "commune": commune.name,
                "commune_code": commune.code,
            }
            if commune.district:
                site["district"] = commune.district
            site |= {
                "province": flavour.province,
                "latitude": lat,
                "longitude": lon,
                "isp": isp,
                "contracted_download_mbps": 100,
                "contracted_upload_mbps": 100,
            }
            if site_type == "commune_office":
                host = f"10.{flavour.address_block}.{index // 250}.{index % 250 + 1}"
                site["scrape"] = f"{host}:{DEFAULT_AGENT_PORT}"
            else:
                site["push"] = True
            sites.append(site)
    return sites


def render_example(data_path: Path) -> str:
    """The example inventory YAML generated from one data/ CSV, with a header saying where it comes
    from. Raises OSError when the file cannot be read, ValueError when it is not a commune list.
    """
    flavour_name, communes = read_communes(data_path)
    flavour = FLAVOURS[flavour_name]
    sites = example_sites(communes, flavour)
    header = (
        f"# Example site inventory for {flavour.province}: {len(communes)} communes, {len(sites)} sites.\n"
        f"# Generated by `hotspot-collector inventory --data {data_path.name}`; the communes, codes\n"
        "# and approximate coordinates come from data/ (see data/SOURCES.md). Site names, ISPs and\n"
        "# agent addresses are illustrative. Commune offices are scraped over the province VPN;\n"
        "# health stations and village halls push from behind NAT.\n"
    )
    body = yaml.safe_dump({"sites": sites}, allow_unicode=True, sort_keys=False, width=200)
    return header + body


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `hotspot-collector inventory`."""
    parser.add_argument(
        "--data", type=Path, help="a commune CSV from data/ to generate an example inventory from"
    )
    parser.add_argument("--out", type=Path, help="where to write the generated inventory (default: stdout)")
    parser.add_argument("--check", type=Path, metavar="FILE", help="validate an inventory and summarise it")


def command(args: argparse.Namespace) -> int:
    """Run `hotspot-collector inventory`: generate (`--data`, to `--out` or stdout) or check
    (`--check`). 0 on success, 1 when the CSV cannot be read or the output written, 2 for
    missing options or an invalid inventory (every problem printed to stderr).
    """
    if args.check is not None:
        return _check(args.check)
    if args.data is None:
        print("hotspot-collector inventory: give --data CSV (to generate) or --check FILE", file=sys.stderr)
        return 2
    try:
        text = render_example(args.data)
    except (OSError, ValueError) as exc:
        print(f"hotspot-collector inventory: {exc}", file=sys.stderr)
        return 1
    loads(text, str(args.data))  # a generated inventory must itself be valid
    if args.out is None:
        sys.stdout.write(text)
        return 0
    try:
        changed = write_atomic(args.out, text)
    except OSError as exc:
        print(f"hotspot-collector inventory: cannot write {args.out}: {exc.strerror}", file=sys.stderr)
        return 1
    print(f"{args.out}: {'written' if changed else 'unchanged'}")
    return 0


def _check(path: Path) -> int:
    try:
        inventory = load(path)
    except InventoryError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 2
    pulled = sum(1 for s in inventory.sites if s.scrape)
    communes = {(s.province, s.district, s.commune) for s in inventory.sites}
    held = sum(1 for s in inventory.sites if s.maintenance)
    print(
        f"{path}: {len(inventory.sites)} sites in {len(communes)} communes "
        f"({pulled} scraped, {len(inventory.sites) - pulled} pushing, {held} in maintenance)"
    )
    return 0
