"""A dashboard under construction (`Board`), its template variables and header links."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as dm

from .queries import DATASOURCE_UID, DS
from .texts import Lang, T


def uid(name: str, lang: Lang) -> str:
    """A dashboard's uid, e.g. `hotspot-site-vi`: links between dashboards are built from it."""
    return f"hotspot-{name}-{lang}"


class Board:
    """A dashboard under construction: numbers panels and places them left to right, row by row."""

    def __init__(self, name: str, lang: Lang, title: T, description: T, variables: Sequence[str]) -> None:
        self.lang = lang
        self._next_id = 1
        self.dashboard = (
            db.Dashboard(title(lang))
            .uid(uid(name, lang))
            .description(description(lang))
            .tags(["hotspot", lang])
            .timezone("browser")
            .time("now-7d", "now")
            .refresh("1m")
            .editable()
            .tooltip(dm.DashboardCursorSync.CROSSHAIR)
            .links(nav_links(lang))
        )
        self.dashboard = self.dashboard.with_variable(
            db.DatasourceVariable("datasource")
            .type("prometheus")
            .label(T("Nguồn dữ liệu", "Data source")(lang))
            .current(dm.VariableOption(selected=True, text="Hotspot Prometheus", value=DATASOURCE_UID))
        )
        for variable in variables:
            self.dashboard = self.dashboard.with_variable(VARIABLES[variable](lang))

    def row(self, title: T) -> None:
        """Start a row titled `title`; the panels added next go under it."""
        self.dashboard = self.dashboard.with_row(db.Row(title(self.lang)).id(self._take_id()))

    def add(self, panel: Any, title: T, description: T, width: int, height: int) -> None:
        """Add `panel` (a panel builder) with its title and description, `width` of 24 grid columns
        and `height` in grid rows (30 px each); placed after the previous panel.
        """
        built = (
            panel.id(self._take_id())
            .title(title(self.lang))
            .description(description(self.lang))
            .datasource(DS)
            .span(width)
            .height(height)
        )
        self.dashboard = self.dashboard.with_panel(built)

    def _take_id(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    def to_json(self) -> dict[str, Any]:
        """The dashboard as Grafana's JSON model (a dict, ready for json.dumps)."""
        encoded: dict[str, Any] = json.loads(json.dumps(self.dashboard.build(), cls=JSONEncoder))
        return encoded


def nav_links(lang: Lang) -> list[cogbuilder.Builder[dm.DashboardLink]]:
    """The header links: every dashboard of the same language, keeping variables and time."""
    return [
        db.DashboardLink(T("Bảng giám sát điểm wifi", "Hotspot dashboards")(lang))
        .type(dm.DashboardLinkType.DASHBOARDS)
        .tags(["hotspot", lang])
        .as_dropdown(False)
        .include_vars(True)
        .keep_time(True)
    ]


# ---------------------------------------------------------------- template variables


def variable(name: str, label: T, query_text: str, *, multi: bool, all_: bool) -> Callable[[Lang], Any]:
    """A template variable's builder for either language: a Prometheus query variable named `name`,
    its values from `query_text` (a `label_values(...)`), sorted, refreshed when the time range
    changes; `all_` adds "All" matching `.*`.
    """

    def make(lang: Lang) -> Any:
        v = (
            db.QueryVariable(name)
            .label(label(lang))
            .query(query_text)
            .datasource(DS)
            .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(dm.VariableSort.ALPHABETICAL_CASE_INSENSITIVE_ASC)
            .multi(multi)
        )
        if all_:
            v = v.include_all(True).all_value(".*")
        return v

    return make


VARIABLES: dict[str, Callable[[Lang], Any]] = {
    "province": variable(
        "province",
        T("Tỉnh", "Province"),
        "label_values(site:hotspot_inventory:info, province)",
        multi=False,
        all_=False,
    ),
    "commune": variable(
        "commune",
        T("Xã", "Commune"),
        'label_values(site:hotspot_inventory:info{province="$province"}, commune)',
        multi=True,
        all_=True,
    ),
    "commune_one": variable(
        "commune",
        T("Xã", "Commune"),
        'label_values(site:hotspot_inventory:info{province="$province"}, commune)',
        multi=False,
        all_=False,
    ),
    "site_type": variable(
        "site_type",
        T("Loại điểm", "Site type"),
        'label_values(site:hotspot_inventory:info{province="$province", commune=~"$commune"}, site_type)',
        multi=True,
        all_=True,
    ),
    "site": variable(
        "site",
        T("Điểm", "Site"),
        "label_values(site:hotspot_inventory:info"
        '{province="$province", commune=~"$commune", site_type=~"$site_type"}, site)',
        multi=False,
        all_=False,
    ),
}


# ---------------------------------------------------------------- panel kinds
