"""The site inventory: every site the collector watches, and how it is reached (scraped or pushing).

`load()` turns an inventory YAML into frozen settings, reporting every problem with its key path, the
same way the agent's config does. `hotspot-collector inventory` (re)generates the example
inventories in collector/examples/ from the real commune lists in data/.

    sites:
      - id: nd-13636-ubnd                # stable: never reuse an id for another site
        name: "Bộ phận một cửa UBND Phường Vị Xuyên"
        type: commune_office             # commune_office | health_station | village_hall | other
        commune: "Phường Vị Xuyên"
        commune_code: "13636"
        district: "Thành phố Nam Định"   # optional (districts were abolished on 2025-07-01)
        province: "Tỉnh Nam Định"
        latitude: 20.44129
        longitude: 106.17024
        isp: VNPT
        contracted_download_mbps: 100
        contracted_upload_mbps: 100
        scrape: 10.36.0.1:9591           # pulled: Prometheus scrapes this; or `push: true`
        maintenance: false               # true: the site's alerts are held back
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import sys
import tempfile
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from agent.digits import ascii_uint
from agent.schema import SchemaError, check, load_yaml, parse, read_yaml_file, split_host_port
from agent.site import Site

DEFAULT_AGENT_PORT = 9591


class InventoryError(SchemaError):
    """The inventory cannot be used; `problems` lists every reason with its key path."""


def is_scrape_address(value: Any) -> str | None:
    """HOST:PORT of a pulled agent: unlike a listen address, the host must be given."""
    if not isinstance(value, str) or value == "":
        return None
    try:
        host, port = split_host_port(value)
    except ValueError as exc:
        return str(exc)
    if not host:
        return "the host is missing before the port"
    if port == 0:
        return "port 0 cannot be scraped"
    return None


@dataclass(frozen=True)
class InventorySite(Site):
    """A site as the collector knows it: its identity plus how its metrics arrive."""

    scrape: str = check(is_scrape_address, default="")  # HOST:PORT when Prometheus pulls /metrics
    push: bool = False  # true when the agent pushes (remote write); its identity is its site id
    maintenance: bool = False  # true: alerts for this site are held back (see docs/collector.md)

    def validate(self) -> list[str]:
        errs = super().validate()
        if self.scrape and self.push:
            errs.append(
                "scrape: a site is either scraped (scrape: HOST:PORT) or pushing (push: true), not both"
            )
        if not self.scrape and not self.push:
            errs.append("scrape: required: scrape: HOST:PORT (pulled) or push: true (pushed)")
        return errs

    @property
    def reach(self) -> str:
        return "push" if self.push else "pull"


@dataclass(frozen=True)
class Inventory:
    sites: tuple[InventorySite, ...] = ()

    def validate(self) -> list[str]:
        errs: list[str] = []
        if not self.sites:
            errs.append("sites: the inventory lists no site")
        first_id: dict[str, int] = {}
        first_scrape: dict[str, int] = {}
        communes: dict[tuple[str, str], tuple[int, tuple[str, str]]] = {}
        for i, site in enumerate(self.sites):
            if site is None:  # its own problems are already reported
                continue
            if site.id in first_id:
                errs.append(
                    f"sites[{i}].id: duplicate site id {site.id} (first at sites[{first_id[site.id]}])"
                )
            first_id.setdefault(site.id, i)
            if site.scrape:
                if site.scrape in first_scrape:
                    errs.append(
                        f"sites[{i}].scrape: {site.scrape} is already scraped for "
                        f"sites[{first_scrape[site.scrape]}]"
                    )
                first_scrape.setdefault(site.scrape, i)
            if site.commune_code:
                # One GSO code is one commune: its name and district must not disagree between sites.
                key = (site.province, site.commune_code)
                where = (site.commune, site.district)
                if key in communes and communes[key][1] != where:
                    j, (name, district) = communes[key]
                    errs.append(
                        f"sites[{i}].commune: commune_code {site.commune_code} is "
                        f"{name!r} (district {district!r}) at sites[{j}], "
                        f"here {site.commune!r} (district {site.district!r})"
                    )
                communes.setdefault(key, (i, where))
        return errs


def loads(text: str, source: str = "<inventory>") -> Inventory:
    try:
        raw = load_yaml(text, source)
    except SchemaError as exc:
        raise InventoryError(exc.problems) from None
    return _build(raw, source)


def _build(raw: Any, source: str) -> Inventory:
    if raw is None:
        raise InventoryError([f"{source}: empty; an inventory lists its sites under `sites:`"])
    # Passing our own problem list lets the whole-inventory checks (duplicate ids) run even when
    # single sites have errors, so every problem is reported at once.
    problems: list[str] = []
    inventory = parse(Inventory, raw, "", problems)
    if problems or inventory is None:
        raise InventoryError(problems or [f"{source}: not a usable inventory"])
    return inventory


def load(path: str | Path) -> Inventory:
    """Read and validate an inventory file; raise InventoryError listing every problem."""
    try:
        raw = read_yaml_file(path)
    except SchemaError as exc:
        raise InventoryError(exc.problems) from None
    return _build(raw, str(path))


# --- generating example inventories from data/ ---------------------------------------------------

ISPS = ("VNPT", "Viettel", "FPT Telecom")  # illustrative: the real contract holder is not public


@dataclass(frozen=True)
class Commune:
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


def write_atomic(path: Path, text: str) -> bool:
    """Write `text` to `path` by renaming a temporary file over it; False when nothing changed."""
    try:
        if path.read_text(encoding="utf-8") == text:
            return False
    except (OSError, UnicodeDecodeError):
        pass
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data", type=Path, help="a commune CSV from data/ to generate an example inventory from"
    )
    parser.add_argument("--out", type=Path, help="where to write the generated inventory (default: stdout)")
    parser.add_argument("--check", type=Path, metavar="FILE", help="validate an inventory and summarise it")


def command(args: argparse.Namespace) -> int:
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


def slug(text: str) -> str:
    """ASCII file-name form of a Vietnamese name: "Tỉnh Nam Định" -> "tinh-nam-dinh"."""
    plain = unicodedata.normalize("NFKD", text.replace("Đ", "D").replace("đ", "d"))
    plain = "".join(c for c in plain if not unicodedata.combining(c)).lower()
    out = "".join(c if c.isascii() and c.isalnum() else "-" for c in plain)
    return "-".join(part for part in out.split("-") if part) or "unnamed"


def load_or_report(path: str | Path) -> Inventory | None:
    """`load()` for a command: every problem printed to stderr and None when the inventory is unusable."""
    try:
        return load(path)
    except InventoryError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return None
