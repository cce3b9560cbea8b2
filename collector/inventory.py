"""The site inventory: every site the collector watches, and how it is reached (scraped or pushing).

`load()` turns an inventory YAML into frozen settings, reporting every problem with its key path, the
same way the agent's config does. collector/inventory_example.py (`hotspot-collector inventory`)
generates the example inventories in collector/examples/ from the real commune lists in data/.

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

import sys
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
        """The site's own problems plus how it is reached: exactly one of `scrape` and `push`."""
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
        """ "push" when the agent pushes by remote write, "pull" when Prometheus scrapes it."""
        return "push" if self.push else "pull"


@dataclass(frozen=True)
class Inventory:
    """Every site of a province's inventory, in file order; built by load() or loads(), never
    empty once validated.
    """

    sites: tuple[InventorySite, ...] = ()

    def validate(self) -> list[str]:
        """Problems across sites, with key paths: no sites, a duplicate id, an address scraped twice,
        one commune code with two names or districts.
        """
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
    """Parse and validate inventory YAML from `text` (`source` names it in messages); raises
    InventoryError listing every problem.
    """
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
