"""Generate the Grafana dashboards (Vietnamese and English) from one source.

Run `python grafana/build.py` from the repository root to rewrite grafana/dashboards/{vi,en}/*.json;
`python grafana/build.py --check` exits 1 when the committed JSON differs from what this file
generates. Every text exists once here in both languages (`T`); the two variants differ only in
words and in which language's dashboards their links open.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from grafana_foundation_sdk.builders import (
    bargauge,
    geomap,
    prometheus,
    stat,
    statetimeline,
    table,
    timeseries,
)
from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import geomap as gm
from grafana_foundation_sdk.models import prometheus as pm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere
from collector import requirement

Lang = Literal["vi", "en"]
LANGS: tuple[Lang, ...] = ("vi", "en")
DATASOURCE_UID = "hotspot-prometheus"  # the uid provisioning/datasources/prometheus.yaml gives Prometheus
DASHBOARDS_DIR = Path(__file__).resolve().parent / "dashboards"
# Every panel reads the Prometheus chosen in the `datasource` variable, whose default is the
# provisioned one: provisioning works as before, and the JSON also imports through Grafana's UI on
# another server (the variable then offers that server's Prometheus data sources).
DS = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")
MBIT = 1_000_000  # panels show bit/s: bytes/s metrics are multiplied by 8
DEFAULT_THRESHOLD_BPS = 80 * MBIT  # the default pass threshold: 80% of a 100 Mbit/s line

# Site status, one number per site so that a map and a table can colour and sort by it (worst first).
DOWN, BELOW, UNKNOWN, MEETS = 0, 1, 2, 3


@dataclass(frozen=True)
class T:
    """A text in Vietnamese and English."""

    vi: str
    en: str

    def __call__(self, lang: Lang) -> str:
        return self.vi if lang == "vi" else self.en

    def __add__(self, other: T) -> T:
        return T(self.vi + other.vi, self.en + other.en)


def uid(name: str, lang: Lang) -> str:
    return f"hotspot-{name}-{lang}"


# ---------------------------------------------------------------- queries

OVERVIEW_SEL = 'province="$province", commune=~"$commune", site_type=~"$site_type"'
SITE_SEL = 'site="$site"'


def status_expr(sel: str) -> str:
    """Per site: 0 down, 1 below the requirement, 2 not enough tests yet, 3 meets (label: site).
    Every inventory site has one: a listed site with no state at all (never heard) is down."""
    up = f"max by (site) (site:hotspot_up:bool{{{sel}}})"
    met = f"max by (site) (site:hotspot_requirement_met:bool{{{sel}}})"
    listed = f'max by (site) (site:hotspot_inventory:info{{{sel}, maintenance="false"}})'
    return (
        f"({up} == 0) or ({met} == 0) + {BELOW} or ({met} == 1) + {MEETS - 1} or ({up} == 1) + {UNKNOWN - 1}"
        f" or {listed} * {DOWN}"
    )


def info_expr(sel: str) -> str:
    """The site description from the inventory (coordinates included), so that a site silent for
    weeks, or never heard from, keeps its place on the map and in the tables."""
    return (
        f"max by (site, name, commune, site_type, latitude, longitude) (site:hotspot_inventory:info{{{sel}}})"
    )


def with_info(sel: str, expr: str) -> str:
    """`expr` (one series per site) carrying the site's name, commune, type and coordinates."""
    return f"{info_expr(sel)} * on (site) group_left () ({expr})"


def only_problems(sel: str, expr: str) -> str:
    return f"({expr}) and on (site) (({status_expr(sel)}) < {MEETS})"


def query(
    expr: str, legend: str = "", ref: str = "A", *, instant: bool = False, table_format: bool = False
) -> prometheus.Dataquery:
    q = prometheus.Dataquery().expr(expr).ref_id(ref).datasource(DS)
    if legend:
        q = q.legend_format(legend)
    q = q.instant() if instant else q.range()
    if table_format:
        q = q.format(pm.PromQueryFormat.TABLE)
    return q


# ---------------------------------------------------------------- panel pieces

STATUS_TEXT = {
    DOWN: (T("Mất kết nối", "Down"), "red"),
    BELOW: (T("Dưới yêu cầu", "Below the requirement"), "orange"),
    UNKNOWN: (T("Chưa đủ phép đo", "Not enough tests yet"), "blue"),
    MEETS: (T("Đạt yêu cầu", "Meets the requirement"), "green"),
}

CAUSE_TEXT = {
    "healthy": T("Bình thường", "Healthy"),
    "lan_fault": T("Lỗi mạng nội bộ / điểm phát wifi", "LAN or access point fault"),
    "uplink_fault": T("Lỗi đường truyền nhà mạng", "ISP uplink fault"),
    "dns_fault": T("Lỗi phân giải tên miền (DNS)", "DNS fault"),
    "captive_portal": T("Bị trang đăng nhập chặn", "Captive portal in the way"),
    "unknown": T("Chưa rõ", "Unknown"),
}


SITE_TYPE_TEXT = {
    "commune_office": T("UBND xã / phường", "Commune office"),
    "health_station": T("Trạm y tế", "Health station"),
    "village_hall": T("Nhà văn hóa thôn", "Village hall"),
    "other": T("Khác", "Other"),
}


def site_type_mappings(lang: Lang) -> list[dm.ValueMapping]:
    """Site types in words, not keys."""
    return [
        dm.ValueMap(
            options={
                key: dm.ValueMappingResult(text=text(lang), index=i)
                for i, (key, text) in enumerate(SITE_TYPE_TEXT.items())
            }
        )
    ]


def status_mappings(lang: Lang) -> list[dm.ValueMapping]:
    return [
        dm.ValueMap(
            options={
                str(code): dm.ValueMappingResult(text=text(lang), color=color, index=code)
                for code, (text, color) in STATUS_TEXT.items()
            }
        )
    ]


def yes_no_mappings(lang: Lang) -> list[dm.ValueMapping]:
    return [
        dm.ValueMap(
            options={
                "0": dm.ValueMappingResult(text=T("Không đạt", "Fails")(lang), color="red", index=0),
                "1": dm.ValueMappingResult(text=T("Đạt", "Meets")(lang), color="green", index=1),
            }
        )
    ]


def up_down_mappings(lang: Lang, up: T, down: T) -> list[dm.ValueMapping]:
    return [
        dm.ValueMap(
            options={
                "0": dm.ValueMappingResult(text=down(lang), color="red", index=0),
                "1": dm.ValueMappingResult(text=up(lang), color="green", index=1),
            }
        )
    ]


def cause_mappings(lang: Lang) -> list[dm.ValueMapping]:
    return [
        dm.ValueMap(
            options={
                cause: dm.ValueMappingResult(
                    text=text(lang), color="green" if cause == "healthy" else "orange", index=i
                )
                for i, (cause, text) in enumerate(CAUSE_TEXT.items())
            }
        )
    ]


def steps(*pairs: tuple[float | None, str]) -> db.ThresholdsConfig:
    """Threshold steps; the first value is None (Grafana's -Infinity)."""
    return (
        db.ThresholdsConfig()
        .mode(dm.ThresholdsMode.ABSOLUTE)
        .steps([dm.Threshold(value=v, color=c) for v, c in pairs])
    )


RATIO_STEPS = steps((None, "red"), (0.8, "orange"), (0.95, "green"))  # share of tests/sites meeting
SPEED_STEPS = steps((None, "red"), (DEFAULT_THRESHOLD_BPS, "green"))
LATENCY_STEPS = steps((None, "green"), (100, "red"))  # ms: the latency limit of the default rule
COUNT_BAD_STEPS = steps((None, "green"), (1, "red"))


def prop(id_: str, value: object) -> dm.DynamicConfigValue:
    return dm.DynamicConfigValue(id_val=id_, value=value)


def link(title: str, url: str) -> dict[str, object]:
    return {"title": title, "url": url}


def transform(id_: str, options: dict[str, object]) -> dm.DataTransformerConfig:
    return dm.DataTransformerConfig(id_val=id_, options=options)


def site_link(lang: Lang, site_ref: str = "${__value.raw}") -> dict[str, object]:
    return link(
        T("Mở trang chi tiết điểm", "Open the site's page")(lang),
        f"/d/{uid('site', lang)}?var-province=$province&var-site={site_ref}&${{__url_time_range}}",
    )


def commune_link(lang: Lang, commune_ref: str = "${__value.raw}") -> dict[str, object]:
    return link(
        T("Mở trang của xã", "Open the commune's page")(lang),
        f"/d/{uid('commune', lang)}?var-province=$province&var-commune={commune_ref}&${{__url_time_range}}",
    )


PanelBuilder = cogbuilder.Builder[dm.Panel]


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
        self.dashboard = self.dashboard.with_row(db.Row(title(self.lang)).id(self._take_id()))

    def add(self, panel: Any, title: T, description: T, width: int, height: int) -> None:
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


def stat_panel(
    targets: Sequence[prometheus.Dataquery],
    unit: str,
    thresholds: db.ThresholdsConfig,
    decimals: int | None = None,
) -> stat.Panel:
    p = (
        stat.Panel()
        .unit(unit)
        .thresholds(thresholds)
        .color_mode(cm.BigValueColorMode.BACKGROUND)
        .graph_mode(cm.BigValueGraphMode.NONE)
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )
    if decimals is not None:
        p = p.decimals(decimals)
    for t in targets:
        p = p.with_target(t)
    return p


def share_with_denominator(
    lang: Lang, share: prometheus.Dataquery, total: prometheus.Dataquery
) -> stat.Panel:
    """A share and, beside it, the count it is a share of (every share states its denominator)."""
    return (
        stat_panel([share, total], "percentunit", RATIO_STEPS, decimals=0)
        .text_mode(cm.BigValueTextMode.VALUE_AND_NAME)
        .override_by_query(
            "B",
            [prop("unit", "none"), prop("color", {"mode": "fixed", "fixedColor": "transparent"})],
        )
    )


def series_panel(
    targets: Sequence[prometheus.Dataquery],
    unit: str,
    thresholds: db.ThresholdsConfig | None = None,
    *,
    steps_line: bool = False,
    min_: float | None = None,
    max_: float | None = None,
) -> timeseries.Panel:
    p = (
        timeseries.Panel()
        .unit(unit)
        .line_width(2)
        .fill_opacity(5)
        .line_interpolation(cm.LineInterpolation.STEP_AFTER if steps_line else cm.LineInterpolation.LINEAR)
        .show_points(cm.VisibilityMode.AUTO)
        .span_nulls(False)
        .legend(
            cb.VizLegendOptions()
            .show_legend(True)
            .display_mode(cm.LegendDisplayMode.TABLE)
            .placement(cm.LegendPlacement.BOTTOM)
            .calcs(["lastNotNull", "min", "mean"])
        )
        .tooltip(cb.VizTooltipOptions().mode(cm.TooltipDisplayMode.MULTI).sort(cm.SortOrder.DESCENDING))
    )
    if thresholds is not None:
        p = p.thresholds(thresholds).thresholds_style(
            cb.GraphThresholdsStyleConfig().mode(cm.GraphThresholdsStyleMode.DASHED)
        )
    if min_ is not None:
        p = p.min(min_)
    if max_ is not None:
        p = p.max(max_)
    for t in targets:
        p = p.with_target(t)
    return p


def timeline_panel(targets: Sequence[prometheus.Dataquery], mappings: list[dm.ValueMapping]) -> Any:
    p = (
        statetimeline.Panel()
        .mappings(mappings)
        .show_value(cm.VisibilityMode.NEVER)
        .merge_values(True)
        .row_height(0.8)
        .fill_opacity(80)
        .legend(cb.VizLegendOptions().show_legend(False))
        .thresholds(steps((None, "red"), (1, "green")))
        .color_scheme(db.FieldColor().mode(dm.FieldColorModeId.THRESHOLDS))
    )
    for t in targets:
        p = p.with_target(t)
    return p


def table_panel(
    targets: Sequence[prometheus.Dataquery],
    hide: Sequence[str],
    order: Sequence[str],
    sort_field: str,
    *,
    sort_desc: bool = False,
) -> table.Panel:
    """Instant queries in table format merged on their common labels (one row per site or commune)."""
    p = table.Panel().filterable(True).cell_height(cm.TableCellHeight.SM)
    for t in targets:
        p = p.with_target(t)
    return (
        p.with_transformation(transform("merge", {}))
        .with_transformation(
            transform(
                "organize",
                {
                    "excludeByName": {name: True for name in ("Time", *hide)},
                    "indexByName": {name: i for i, name in enumerate(order)},
                    "renameByName": {},
                },
            )
        )
        .sort_by([cb.TableSortByFieldState().display_name(sort_field).desc(sort_desc)])
    )


def column(p: Any, field: str, name: str, *props: dm.DynamicConfigValue) -> Any:
    return p.override_by_name(field, [prop("displayName", name), *props])


def colored_cell() -> dm.DynamicConfigValue:
    return prop("custom.cellOptions", {"type": "color-background", "mode": "basic"})


# ---------------------------------------------------------------- 1. province overview


def overview(lang: Lang) -> dict[str, Any]:
    sel = OVERVIEW_SEL
    b = Board(
        "overview",
        lang,
        T("Điểm wifi công cộng — Tổng quan tỉnh", "Public wifi sites — Province overview"),
        T(
            "Điểm nào đang mất kết nối hoặc dưới yêu cầu 100 Mbit/s, từ khi nào, và vì sao.",
            "Which sites are down or below the 100 Mbit/s requirement right now, since when, and why.",
        ),
        ["province", "commune", "site_type"],
    )
    count_note = T(
        " Lọc theo xã và loại điểm ở đầu trang.", " Follows the commune and site type filters at the top."
    )
    b.add(
        stat_panel(
            [query(f"count(site:hotspot_up:bool{{{sel}}} == 1) or vector(0)", instant=True)],
            "none",
            steps((None, "green")),
        ),
        T("Điểm đang hoạt động", "Sites heard from"),
        T("Số điểm có thiết bị đo gửi số liệu gần đây.", "Sites whose agent reported recently.") + count_note,
        4,
        4,
    )
    b.add(
        stat_panel(
            [query(f"count(site:hotspot_up:bool{{{sel}}} == 0) or vector(0)", instant=True)],
            "none",
            COUNT_BAD_STEPS,
        ),
        T("Điểm mất kết nối", "Sites down"),
        T(
            "Số điểm không gửi số liệu: mất điện, mất mạng hoặc thiết bị đo hỏng.",
            "Sites not heard from: power cut, line down or the agent broken.",
        )
        + count_note,
        4,
        4,
    )
    b.add(
        stat_panel(
            [query(f"count(site:hotspot_requirement_met:bool{{{sel}}} == 0) or vector(0)", instant=True)],
            "none",
            COUNT_BAD_STEPS,
        ),
        T("Điểm dưới yêu cầu", "Sites below the requirement"),
        T(
            "Điểm không đạt tiêu chí của tỉnh (collector/requirement.yaml) trong 7 ngày: ít nhất 80% phép đo "
            "trên 80 Mbit/s mỗi chiều, 95% phép đo độ trễ không quá 100 ms, hoạt động từ 90% thời gian.",
            "Sites failing the province's rule (collector/requirement.yaml) over 7 days: at least 80% of "
            "tests above 80 Mbit/s each way, 95% of latency tests at or under 100 ms, available 90% of "
            "the time.",
        )
        + count_note,
        4,
        4,
    )
    b.add(
        stat_panel(
            [
                query(
                    f"count((site:hotspot_up:bool{{{sel}}} == 1) unless on (site) "
                    f"site:hotspot_requirement_met:bool{{{sel}}}) or vector(0)",
                    instant=True,
                )
            ],
            "none",
            steps((None, "green"), (1, "blue")),
        ),
        T("Chưa đủ phép đo", "Not enough tests yet"),
        T(
            "Điểm đang hoạt động nhưng chưa có đủ phép đo để kết luận (điểm mới hoặc bị hoãn đo).",
            "Sites heard from without enough tests for a verdict yet (new, or tests deferred).",
        )
        + count_note,
        4,
        4,
    )
    b.add(
        share_with_denominator(
            lang,
            query(
                'province:hotspot_communes_meeting:ratio{province="$province"}',
                legend=T("Đạt", "Meeting")(lang),
                instant=True,
            ),
            query(
                'sum(province:hotspot_communes:count_7d{province="$province", verdict!="maintenance"})',
                legend=T("trên tổng số", "out of")(lang),
                ref="B",
                instant=True,
            ),
        ),
        T("Xã đạt yêu cầu", "Communes meeting"),
        T(
            "Tỷ lệ xã của tỉnh mà mọi điểm đạt yêu cầu (toàn tỉnh, không theo bộ lọc).",
            "Share of the province's communes whose sites all meet the requirement (whole province).",
        ),
        4,
        4,
    )
    b.add(
        share_with_denominator(
            lang,
            query(
                'province:hotspot_sites_meeting:ratio{province="$province"}',
                legend=T("Đạt", "Meeting")(lang),
                instant=True,
            ),
            query(
                'sum(province:hotspot_sites:count_7d{province="$province", verdict!="maintenance"})',
                legend=T("trên tổng số", "out of")(lang),
                ref="B",
                instant=True,
            ),
        ),
        T("Điểm đạt yêu cầu", "Sites meeting"),
        T(
            "Tỷ lệ điểm đạt yêu cầu trên mọi điểm trong danh mục trừ điểm bảo trì (toàn tỉnh): điểm mất kết "
            "nối hoặc chưa đủ số liệu vẫn được tính.",
            "Share of the province's sites meeting the requirement, out of every inventory site outside "
            "maintenance: sites down or without enough tests still count.",
        ),
        4,
        4,
    )

    status = status_expr(sel)
    site_map = (
        geomap.Panel()
        .with_target(query(with_info(sel, status), instant=True, table_format=True))
        .with_transformation(
            transform(
                "convertFieldType",
                {
                    "conversions": [
                        {"targetField": "latitude", "destinationType": "number"},
                        {"targetField": "longitude", "destinationType": "number"},
                    ],
                    "fields": {},
                },
            )
        )
        .view(geomap.MapViewConfig().id("fit").lat(20).lon(106).zoom(9))
        .controls(geomap.ControlsOptions().show_zoom(True).mouse_wheel_zoom(True).show_scale(True))
        # A basemap Grafana ships (country outlines, public/maps): works on a closed network, where
        # the default tile servers cannot be reached.
        .basemap(
            cb.MapLayerOptions()
            .type("geojson")
            .name(T("Bản đồ nền", "Basemap")(lang))
            .config({"src": "public/maps/countries.geojson", "style": {"color": "#c8d0d8", "opacity": 0.4}})
        )
        .layers(
            [
                cb.MapLayerOptions()
                .type("markers")
                .name(T("Điểm wifi", "Sites")(lang))
                .location(
                    cb.FrameGeometrySource()
                    .mode(cm.FrameGeometrySourceMode.COORDS)
                    .latitude("latitude")
                    .longitude("longitude")
                )
                .tooltip(True)
                .config(
                    {
                        "showLegend": True,
                        "style": {
                            "color": {"field": "Value", "fixed": "dark-green"},
                            "size": {"fixed": 7, "min": 2, "max": 15},
                            "symbol": {"fixed": "img/icons/marker/circle.svg", "mode": "fixed"},
                            "opacity": 0.9,
                        },
                    }
                )
            ]
        )
        .tooltip(geomap.TooltipOptions().mode(gm.TooltipMode.DETAILS))
        .mappings(status_mappings(lang))
        .thresholds(steps((None, "red"), (BELOW, "orange"), (UNKNOWN, "blue"), (MEETS, "green")))
        .color_scheme(db.FieldColor().mode(dm.FieldColorModeId.THRESHOLDS))
        .override_by_name("site", [prop("links", [site_link(lang)])])
    )
    b.add(
        site_map,
        T("Bản đồ các điểm", "Map of sites"),
        T(
            "Mỗi chấm là một điểm: đỏ mất kết nối, cam dưới yêu cầu, xanh dương chưa đủ phép đo, xanh lá "
            "đạt. Toạ độ lấy từ danh mục điểm.",
            "One dot per site: red down, orange below the requirement, blue not enough tests yet, "
            "green meets. Coordinates come from the site inventory.",
        ),
        12,
        14,
    )

    communes = table_panel(
        [
            query(
                "max by (commune) (commune:hotspot_requirement_met:bool"
                '{province="$province", commune=~"$commune"})',
                ref="A",
                instant=True,
                table_format=True,
            ),
            query(
                f"avg by (commune) (site:hotspot_requirement_met:bool{{{sel}}})",
                ref="B",
                instant=True,
                table_format=True,
            ),
            query(
                f"count by (commune) (site:hotspot_up:bool{{{sel}}})",
                ref="C",
                instant=True,
                table_format=True,
            ),
            query(
                f"count by (commune) (site:hotspot_up:bool{{{sel}}} == 0)",
                ref="D",
                instant=True,
                table_format=True,
            ),
        ],
        hide=[],
        order=["commune", "Value #A", "Value #B", "Value #C", "Value #D"],
        sort_field=T("Tỷ lệ điểm đạt", "Sites meeting")(lang),
    )
    communes = column(communes, "commune", T("Xã", "Commune")(lang), prop("links", [commune_link(lang)]))
    communes = column(
        communes,
        "Value #A",
        T("Kết luận", "Verdict")(lang),
        prop("mappings", yes_no_mappings(lang)),
        colored_cell(),
    )
    communes = column(
        communes,
        "Value #B",
        T("Tỷ lệ điểm đạt", "Sites meeting")(lang),
        prop("unit", "percentunit"),
        prop("decimals", 0),
        prop("thresholds", RATIO_STEPS.build()),
        prop("custom.cellOptions", {"type": "gauge", "mode": "basic"}),
        prop("min", 0),
        prop("max", 1),
    )
    communes = column(communes, "Value #C", T("Số điểm", "Sites")(lang))
    communes = column(
        communes,
        "Value #D",
        T("Mất kết nối", "Down")(lang),
        prop("thresholds", COUNT_BAD_STEPS.build()),
        colored_cell(),
        prop("noValue", "0"),
    )
    b.add(
        communes,
        T("Mức đạt yêu cầu theo xã", "Compliance per commune"),
        T(
            "Mỗi xã: kết luận (mọi điểm đạt), tỷ lệ điểm đạt, số điểm và số điểm mất kết nối. Xếp xã kém "
            "nhất lên đầu; bấm tên xã để xem từng điểm.",
            "Each commune: verdict (all its sites meet), share of sites meeting, sites, sites down. "
            "Worst first; click a commune to see its sites.",
        ),
        12,
        14,
    )

    problems = table_panel(
        [
            query(with_info(sel, f"({status}) < {MEETS}"), ref="A", instant=True, table_format=True),
            query(
                only_problems(
                    sel, f"max by (site, cause) (last_over_time(hotspot_diagnosis{{{sel}}}[1d]) == 1)"
                ),
                ref="B",
                instant=True,
                table_format=True,
            ),
            query(
                only_problems(
                    sel,
                    "max by (site) (last_over_time("
                    f"hotspot_diagnosis_since_timestamp_seconds{{{sel}}}[1d])) * 1000",
                ),
                ref="C",
                instant=True,
                table_format=True,
            ),
            query(
                only_problems(sel, f"max by (site) (site:hotspot_last_heard:timestamp{{{sel}}}) * 1000"),
                ref="D",
                instant=True,
                table_format=True,
            ),
            query(
                only_problems(
                    sel,
                    "max by (site) (site:hotspot_bandwidth_tests_meeting:ratio_7d"
                    f'{{{sel}, direction="download"}})',
                ),
                ref="E",
                instant=True,
                table_format=True,
            ),
            query(
                only_problems(
                    sel,
                    "max by (site) (last_over_time(hotspot_bandwidth_goodput_bytes_per_second"
                    f'{{{sel}, direction="download"}}[1d])) * 8',
                ),
                ref="F",
                instant=True,
                table_format=True,
            ),
        ],
        hide=["latitude", "longitude", "Value #B"],
        order=[
            "Value #A",
            "name",
            "site",
            "commune",
            "site_type",
            "cause",
            "Value #C",
            "Value #D",
            "Value #E",
            "Value #F",
        ],
        sort_field=T("Trạng thái", "Status")(lang),
    )
    problems = column(
        problems,
        "Value #A",
        T("Trạng thái", "Status")(lang),
        prop("mappings", status_mappings(lang)),
        colored_cell(),
    )
    problems = column(problems, "name", T("Tên điểm", "Site name")(lang))
    problems = column(problems, "site", T("Mã điểm", "Site id")(lang), prop("links", [site_link(lang)]))
    problems = column(problems, "commune", T("Xã", "Commune")(lang), prop("links", [commune_link(lang)]))
    problems = column(
        problems, "site_type", T("Loại điểm", "Type")(lang), prop("mappings", site_type_mappings(lang))
    )
    problems = column(
        problems,
        "cause",
        T("Nguyên nhân có thể", "Likely cause")(lang),
        prop("mappings", cause_mappings(lang)),
        colored_cell(),
    )
    problems = column(
        problems, "Value #C", T("Nguyên nhân từ lúc", "Cause since")(lang), prop("unit", "dateTimeFromNow")
    )
    problems = column(
        problems,
        "Value #D",
        T("Gửi số liệu lần cuối", "Last heard from")(lang),
        prop("unit", "dateTimeFromNow"),
    )
    problems = column(
        problems,
        "Value #E",
        T("Phép đo tải xuống đạt (7 ngày)", "Download tests meeting (7 d)")(lang),
        prop("unit", "percentunit"),
        prop("decimals", 0),
        prop("thresholds", RATIO_STEPS.build()),
        colored_cell(),
    )
    problems = column(
        problems,
        "Value #F",
        T("Tải xuống lần đo cuối", "Last download test")(lang),
        prop("unit", "bps"),
        prop("thresholds", SPEED_STEPS.build()),
        colored_cell(),
    )
    b.add(
        problems,
        T("Điểm có vấn đề", "Sites with problems"),
        T(
            "Điểm mất kết nối, dưới yêu cầu hoặc chưa đủ phép đo; nặng nhất lên đầu. 'Nguyên nhân có thể' do "
            "thiết bị đo tự chẩn đoán: lỗi mạng nội bộ/điểm phát wifi, lỗi nhà mạng, lỗi DNS hoặc trang đăng "
            "nhập chặn.",
            "Sites down, below the requirement or without enough tests; worst first. 'Likely cause' is "
            "the agent's own diagnosis: LAN/access point, ISP uplink, DNS, or a captive portal.",
        ),
        24,
        12,
    )
    this_month(b, sel)
    alerts_and_maintenance(b, sel)
    return b.to_json()


ALERT_TEXT = {
    "HotspotSiteDown": T("Mất kết nối tới điểm", "Site down"),
    "HotspotCommuneOutage": T("Cả xã mất kết nối", "Commune outage"),
    "HotspotIspOutage": T("Sự cố nhà mạng", "ISP outage"),
    "HotspotUplinkDown": T("Mất đường truyền", "Uplink down"),
    "HotspotLanFault": T("Lỗi mạng nội bộ / điểm phát wifi", "LAN or access point fault"),
    "HotspotDnsFailing": T("Lỗi phân giải tên miền (DNS)", "DNS failing"),
    "HotspotCaptivePortal": T("Bị trang đăng nhập chặn", "Captive portal in the way"),
    "HotspotBandwidthBelowRequirement": T("Tốc độ dưới yêu cầu", "Speed below the requirement"),
    "HotspotBandwidthTestsMissing": T("Không đo được tốc độ", "Speed tests missing"),
    "HotspotHighLatency": T("Độ trễ cao", "High latency"),
    "HotspotPacketLoss": T("Mất gói tin", "Packet loss"),
    "HotspotBufferbloat": T("Trễ tăng khi tải nặng", "Bufferbloat"),
    "HotspotDataBudgetExhausted": T("Hết hạn mức dữ liệu đo", "Test data budget used up"),
}


def alerts_and_maintenance(b: Board, sel: str) -> None:
    """Alerts firing now (in words), and the sites in maintenance (left out of every share)."""
    lang = b.lang
    alerts = table_panel(
        [
            query(
                "max by (alertname, severity, site, commune) "
                '(ALERTS{alertstate="firing", province="$province"})',
                instant=True,
                table_format=True,
            )
        ],
        hide=["Value"],
        order=["alertname", "severity", "site", "commune"],
        sort_field=T("Cảnh báo", "Alert")(lang),
    )
    words = [
        dm.ValueMap(
            options={
                name: dm.ValueMappingResult(text=text(lang), index=i)
                for i, (name, text) in enumerate(ALERT_TEXT.items())
            }
        )
    ]
    alerts = column(alerts, "alertname", T("Cảnh báo", "Alert")(lang), prop("mappings", words))
    alerts = column(alerts, "severity", T("Mức độ", "Severity")(lang))
    alerts = column(alerts, "site", T("Mã điểm", "Site id")(lang), prop("links", [site_link(lang)]))
    alerts = column(alerts, "commune", T("Xã", "Commune")(lang), prop("links", [commune_link(lang)]))
    b.add(
        alerts,
        T("Cảnh báo đang bật", "Alerts firing"),
        T(
            "Các cảnh báo đang bật trong tỉnh, đã gửi cho cán bộ kỹ thuật.",
            "Alerts firing in the province, as sent to IT staff.",
        ),
        12,
        8,
    )
    held = table_panel(
        [
            query(
                "max by (site, name, commune, site_type) "
                f'(site:hotspot_inventory:info{{{sel}, maintenance="true"}})',
                instant=True,
                table_format=True,
            )
        ],
        hide=["Value"],
        order=["name", "site", "commune", "site_type"],
        sort_field=T("Xã", "Commune")(lang),
    )
    held = column(held, "name", T("Tên điểm", "Site name")(lang))
    held = column(held, "site", T("Mã điểm", "Site id")(lang), prop("links", [site_link(lang)]))
    held = column(held, "commune", T("Xã", "Commune")(lang))
    held = column(held, "site_type", T("Loại điểm", "Type")(lang), prop("mappings", site_type_mappings(lang)))
    b.add(
        held,
        T("Điểm đang bảo trì", "Sites in maintenance"),
        T(
            "Điểm danh mục ghi đang bảo trì: không cảnh báo và không tính vào tỷ lệ đạt.",
            "Sites the inventory marks as in maintenance: no alerts, and left out of every share.",
        ),
        12,
        8,
    )


def this_month(b: Board, sel: str) -> None:
    """The calendar month so far (panel time `now/M`), judged against the province's rule as
    collector/requirement.yaml states it (rebuild the dashboards when it changes): the figures
    behind each site's verdict, worst first. The monthly report gives the official verdicts."""
    lang = b.lang
    req = requirement.load()
    g = requirement.GOODPUT
    targets = [
        query(
            with_info(sel, f"avg_over_time(site:hotspot_internet_up:bool{{{sel}}}[$__range])"),
            ref="A",
            instant=True,
            table_format=True,
        )
    ]
    for ref, direction in (("B", "download"), ("C", "upload")):
        le = requirement.le_matcher(req.threshold_mbps(direction) * MBIT / 8)
        d = f'{sel}, direction="{direction}"'
        tests = f"sum by (site) (increase({g}_count{{{d}}}[$__range]))"
        below = f'sum by (site) (increase({g}_bucket{{{d}, le=~"{le}"}}[$__range]))'
        targets.append(
            query(f"({tests} - {below}) / ({tests} > 0)", ref=ref, instant=True, table_format=True)
        )
    lat_le = requirement.le_matcher(req.latency_limit_ms / 1000)
    targets.append(
        query(
            f"sum by (site) (increase({requirement.RTT}_bucket"
            f'{{{sel}, role="internet", le=~"{lat_le}"}}[$__range]))'
            " / (sum by (site) (increase(hotspot_ping_tests_total"
            f'{{{sel}, role="internet"}}[$__range])) > 0)',
            ref="D",
            instant=True,
            table_format=True,
        )
    )
    p = table_panel(
        targets,
        hide=["latitude", "longitude"],
        order=["name", "site", "commune", "site_type", "Value #A", "Value #B", "Value #C", "Value #D"],
        sort_field=T("Thời gian hoạt động", "Availability")(lang),
    ).time_from("now/M")
    p = column(p, "name", T("Tên điểm", "Site name")(lang))
    p = column(p, "site", T("Mã điểm", "Site id")(lang), prop("links", [site_link(lang)]))
    p = column(p, "commune", T("Xã", "Commune")(lang), prop("links", [commune_link(lang)]))
    p = column(p, "site_type", T("Loại điểm", "Type")(lang), prop("mappings", site_type_mappings(lang)))
    need = {
        "Value #A": (T("Thời gian hoạt động", "Availability"), req.availability),
        "Value #B": (T("Phép đo tải xuống đạt", "Download tests meeting"), req.site_test_share),
        "Value #C": (T("Phép đo tải lên đạt", "Upload tests meeting"), req.site_test_share),
        "Value #D": (T("Phép đo độ trễ đạt", "Latency tests within the limit"), req.latency_test_share),
    }
    for field, (name, level) in need.items():
        p = column(
            p,
            field,
            name(lang),
            prop("unit", "percentunit"),
            prop("decimals", 1),
            prop("thresholds", steps((None, "red"), (level, "green")).build()),
            colored_cell(),
        )
    b.add(
        p,
        T(
            "Tháng này: số liệu từng điểm theo tiêu chí của tỉnh",
            "This month: each site against the province's rule",
        ),
        T(
            "Từ đầu tháng (theo lịch) đến nay: thời gian hoạt động, tỷ lệ phép đo tốc độ đạt mỗi "
            "chiều và tỷ lệ phép đo độ trễ đạt; ô đỏ là dưới mức yêu cầu. Mọi điểm trong danh mục "
            "đều có mặt, kể cả điểm mất kết nối. Kết luận chính thức: báo cáo tháng "
            "(hotspot-collector report).",
            "From the first of the (calendar) month to now: availability, share of speed tests "
            "meeting in each direction and of latency tests within the limit; red cells are below "
            "the rule. Every inventory site is listed, down ones too. The official verdicts: the "
            "monthly report (hotspot-collector report).",
        ),
        24,
        12,
    )


# ---------------------------------------------------------------- 2. commune


def commune(lang: Lang) -> dict[str, Any]:
    sel = 'province="$province", commune="$commune", site_type=~"$site_type"'
    b = Board(
        "commune",
        lang,
        T("Điểm wifi công cộng — Xã", "Public wifi sites — Commune"),
        T(
            "Mọi điểm của một xã đặt cạnh nhau: trạng thái, tốc độ, độ trễ, thời gian hoạt động.",
            "Every site of one commune side by side: status, speed, latency, availability.",
        ),
        ["province", "commune_one", "site_type"],
    )
    b.add(
        stat_panel(
            [
                query(
                    'max(commune:hotspot_requirement_met:bool{province="$province", commune="$commune"})',
                    instant=True,
                )
            ],
            "none",
            steps((None, "red"), (1, "green")),
        ).mappings(yes_no_mappings(lang)),
        T("Kết luận của xã", "Commune verdict"),
        T(
            "Xã đạt khi mọi điểm đủ phép đo của xã đều đạt yêu cầu.",
            "The commune meets the requirement when every site with enough tests meets it.",
        ),
        6,
        5,
    )
    b.add(
        stat_panel(
            [query(with_info(sel, status_expr(sel)), legend="{{name}}", instant=True)],
            "none",
            steps((None, "red"), (BELOW, "orange"), (UNKNOWN, "blue"), (MEETS, "green")),
        )
        .mappings(status_mappings(lang))
        .text_mode(cm.BigValueTextMode.VALUE_AND_NAME)
        .orientation(cm.VizOrientation.HORIZONTAL),
        T("Trạng thái từng điểm", "Status of each site"),
        T(
            "Đỏ mất kết nối, cam dưới yêu cầu, xanh dương chưa đủ phép đo, xanh lá đạt.",
            "Red down, orange below the requirement, blue not enough tests yet, green meets.",
        ),
        18,
        5,
    )

    sites = table_panel(
        [
            query(info_expr(sel), ref="A", instant=True, table_format=True),
            query(
                "max by (site) (site:hotspot_bandwidth_tests_meeting:ratio_7d"
                f'{{{sel}, direction="download"}})',
                ref="B",
                instant=True,
                table_format=True,
            ),
            query(
                f'max by (site) (site:hotspot_bandwidth_tests_meeting:ratio_7d{{{sel}, direction="upload"}})',
                ref="C",
                instant=True,
                table_format=True,
            ),
            query(
                f"max by (site) (site:hotspot_latency_tests_within_limit:ratio_7d{{{sel}}})",
                ref="D",
                instant=True,
                table_format=True,
            ),
            query(
                f"max by (site) (site:hotspot_availability:ratio_7d{{{sel}}})",
                ref="E",
                instant=True,
                table_format=True,
            ),
            query(
                f"max by (site, cause) (last_over_time(hotspot_diagnosis{{{sel}}}[1d]) == 1)",
                ref="F",
                instant=True,
                table_format=True,
            ),
        ],
        hide=["latitude", "longitude", "commune", "Value #A", "Value #F"],
        order=["name", "site", "site_type", "Value #B", "Value #C", "Value #D", "Value #E", "cause"],
        sort_field=T("Tải xuống đạt (7 ngày)", "Download tests meeting (7 d)")(lang),
    )
    sites = column(sites, "name", T("Tên điểm", "Site name")(lang))
    sites = column(sites, "site", T("Mã điểm", "Site id")(lang), prop("links", [site_link(lang)]))
    sites = column(
        sites, "site_type", T("Loại điểm", "Type")(lang), prop("mappings", site_type_mappings(lang))
    )
    for field, text in (
        ("Value #B", T("Tải xuống đạt (7 ngày)", "Download tests meeting (7 d)")),
        ("Value #C", T("Tải lên đạt (7 ngày)", "Upload tests meeting (7 d)")),
        ("Value #D", T("Độ trễ ≤ 100 ms (7 ngày)", "Latency ≤ 100 ms (7 d)")),
        ("Value #E", T("Thời gian hoạt động (7 ngày)", "Availability (7 d)")),
    ):
        sites = column(
            sites,
            field,
            text(lang),
            prop("unit", "percentunit"),
            prop("decimals", 0),
            prop("thresholds", RATIO_STEPS.build()),
            colored_cell(),
        )
    sites = column(
        sites,
        "cause",
        T("Nguyên nhân có thể", "Likely cause")(lang),
        prop("mappings", cause_mappings(lang)),
        colored_cell(),
    )
    b.add(
        sites,
        T("Các điểm của xã", "Sites of the commune"),
        T(
            "Tỷ lệ phép đo đạt ngưỡng trong 7 ngày, từng điểm. Đỏ: dưới 80% (yêu cầu mặc định).",
            "Share of tests meeting the threshold over 7 days, per site. Red: under 80% (the default rule).",
        ),
        24,
        8,
    )
    for direction, text in (("download", T("Tải xuống", "Download")), ("upload", T("Tải lên", "Upload"))):
        b.add(
            series_panel(
                [
                    query(
                        "max by (site) (hotspot_bandwidth_goodput_bytes_per_second"
                        f'{{{sel}, direction="{direction}"}}) * 8',
                        legend="{{site}}",
                    )
                ],
                "bps",
                SPEED_STEPS,
                steps_line=True,
                min_=0,
            ),
            T(f"{text.vi} theo từng điểm", f"{text.en} per site"),
            T(
                "Tốc độ của mỗi lần đo (Mbit/s). Đường nét đứt: ngưỡng đạt mặc định 80 Mbit/s.",
                "Speed of each test (Mbit/s). Dashed line: the default pass threshold, 80 Mbit/s.",
            ),
            12,
            8,
        )
    b.add(
        series_panel(
            [
                query(
                    f'max by (site) (hotspot_ping_rtt_seconds{{{sel}, role="internet", stat="avg"}}) * 1000',
                    legend="{{site}}",
                )
            ],
            "ms",
            LATENCY_STEPS,
            min_=0,
        ),
        T("Độ trễ ra Internet theo từng điểm", "Internet latency per site"),
        T(
            "Thời gian khứ hồi trung bình (ms). Đường nét đứt: giới hạn 100 ms.",
            "Average round-trip time (ms). Dashed line: the 100 ms limit.",
        ),
        12,
        8,
    )
    b.add(
        timeline_panel(
            [query(f"max by (site) (site:hotspot_up:bool{{{sel}}})", legend="{{site}}")],
            up_down_mappings(lang, T("Hoạt động", "Up"), T("Mất kết nối", "Down")),
        ),
        T("Hoạt động theo thời gian", "Up and down over time"),
        T("Xanh: điểm gửi số liệu; đỏ: mất kết nối.", "Green: the site reported; red: not heard from."),
        12,
        8,
    )
    return b.to_json()


# ---------------------------------------------------------------- 3. site detail


def site(lang: Lang) -> dict[str, Any]:
    sel = SITE_SEL
    b = Board(
        "site",
        lang,
        T("Điểm wifi công cộng — Chi tiết điểm", "Public wifi sites — Site detail"),
        T(
            "Một điểm: tốc độ so với 100 Mbit/s và ngưỡng đạt, độ trễ, DNS, HTTP, wifi, thiết bị; giúp phân "
            "biệt lỗi mạng nội bộ, lỗi nhà mạng và lỗi DNS.",
            "One site: speed against 100 Mbit/s and the pass threshold, latency, DNS, HTTP, wifi, device; "
            "tells a LAN fault from an ISP fault from a DNS fault.",
        ),
        ["province", "commune", "site_type", "site"],
    )
    b.row(T("Kết luận", "Verdict"))
    b.add(
        stat_panel(
            [query(status_expr(sel), instant=True)],
            "none",
            steps((None, "red"), (BELOW, "orange"), (UNKNOWN, "blue"), (MEETS, "green")),
        ).mappings(status_mappings(lang)),
        T("Trạng thái", "Status"),
        T("Theo quy tắc mặc định trong 7 ngày.", "Under the default rule, over 7 days."),
        4,
        4,
    )
    b.add(
        stat_panel(
            [query(f"max by (cause) (hotspot_diagnosis{{{sel}}} == 1)", legend="{{cause}}", instant=True)],
            "none",
            steps((None, "orange")),
        )
        .text_mode(cm.BigValueTextMode.NAME)
        .mappings(cause_mappings(lang)),
        T("Nguyên nhân có thể", "Likely cause"),
        T(
            "Chẩn đoán của thiết bị đo: lỗi mạng nội bộ/điểm phát wifi (không tới được gateway), lỗi nhà "
            "mạng (gateway tốt, Internet không), lỗi DNS, hoặc trang đăng nhập chặn.",
            "The agent's diagnosis: LAN/access point (gateway unreachable), ISP uplink (gateway fine, "
            "internet not), DNS, or a captive portal.",
        ),
        4,
        4,
    )
    for expr, text, desc in (
        (
            f'site:hotspot_bandwidth_tests_meeting:ratio_7d{{{sel}, direction="download"}}',
            T("Tải xuống đạt (7 ngày)", "Download tests meeting (7 d)"),
            T(
                "Tỷ lệ phép đo tải xuống đạt ngưỡng. Cần ít nhất 80%.",
                "Share of download tests at or above the threshold. 80% needed.",
            ),
        ),
        (
            f'site:hotspot_bandwidth_tests_meeting:ratio_7d{{{sel}, direction="upload"}}',
            T("Tải lên đạt (7 ngày)", "Upload tests meeting (7 d)"),
            T(
                "Tỷ lệ phép đo tải lên đạt ngưỡng. Cần ít nhất 80%.",
                "Share of upload tests at or above the threshold. 80% needed.",
            ),
        ),
        (
            f"site:hotspot_latency_tests_within_limit:ratio_7d{{{sel}}}",
            T("Độ trễ ≤ 100 ms (7 ngày)", "Latency ≤ 100 ms (7 d)"),
            T(
                "Tỷ lệ phép đo độ trễ không quá 100 ms. Cần ít nhất 95%.",
                "Share of latency tests at or under 100 ms. 95% needed.",
            ),
        ),
        (
            f"site:hotspot_availability:ratio_7d{{{sel}}}",
            T("Thời gian hoạt động (7 ngày)", "Availability (7 d)"),
            T("Tỷ lệ thời gian điểm gửi được số liệu.", "Share of the time the site reported."),
        ),
    ):
        b.add(
            stat_panel([query(f"max({expr})", instant=True)], "percentunit", RATIO_STEPS, decimals=0),
            text,
            desc,
            4,
            4,
        )

    b.row(T("Tốc độ", "Speed"))
    for direction, text in (("download", T("Tải xuống", "Download")), ("upload", T("Tải lên", "Upload"))):
        d = f'direction="{direction}"'
        b.add(
            series_panel(
                [
                    query(
                        f"hotspot_bandwidth_goodput_bytes_per_second{{{sel}, {d}}} * 8",
                        legend=T("đo được ({{engine}})", "measured ({{engine}})")(lang),
                        ref="A",
                    ),
                    query(
                        f"max(hotspot_site_threshold_bytes_per_second{{{sel}, {d}}}) * 8",
                        legend=T("ngưỡng đạt", "pass threshold")(lang),
                        ref="B",
                    ),
                    query(
                        f"max(hotspot_site_contracted_bytes_per_second{{{sel}, {d}}}) * 8",
                        legend=T("tốc độ hợp đồng", "contracted speed")(lang),
                        ref="C",
                    ),
                ],
                "bps",
                steps_line=True,
                min_=0,
            )
            .override_by_name(
                T("ngưỡng đạt", "pass threshold")(lang),
                [
                    prop("color", {"mode": "fixed", "fixedColor": "red"}),
                    prop("custom.lineStyle", {"fill": "dash", "dash": [10, 10]}),
                    prop("custom.showPoints", "never"),
                ],
            )
            .override_by_name(
                T("tốc độ hợp đồng", "contracted speed")(lang),
                [
                    prop("color", {"mode": "fixed", "fixedColor": "green"}),
                    prop("custom.lineStyle", {"fill": "dash", "dash": [4, 8]}),
                    prop("custom.showPoints", "never"),
                ],
            ),
            T(f"{text.vi} (Mbit/s)", f"{text.en} (Mbit/s)"),
            T(
                "Mỗi điểm là một lần đo. Một đường 100 Mbit/s không bao giờ đo được đủ 100 (TCP tối đa "
                "khoảng 95,6%); phép đo 'đạt' khi đạt ngưỡng (mặc định 80% tốc độ hợp đồng).",
                "Each point is one test. A 100 Mbit/s line never shows a full 100 (TCP tops out near "
                "95.6%); a test 'meets' at or above the threshold (by default 80% of the contracted speed).",
            ),
            12,
            8,
        )
    b.add(
        series_panel(
            [query(f"hotspot_bandwidth_latency_seconds{{{sel}}} * 1000", legend="{{state}}")],
            "ms",
            LATENCY_STEPS,
            steps_line=True,
            min_=0,
        ),
        T("Độ trễ khi rảnh và khi tải nặng", "Idle and loaded latency"),
        T(
            "Độ trễ trước (idle) và trong khi đo tốc độ (loaded). "
            "Chênh lệch lớn: hàng đợi đầy (bufferbloat).",
            "Latency before (idle) and during (loaded) a speed test. A large gap means bufferbloat.",
        ),
        8,
        8,
    )
    b.add(
        stat_panel(
            [
                query(
                    f'sum(increase(hotspot_bandwidth_tests_total{{{sel}, direction="download"}}[$__range]))',
                    legend=T("đã đo", "run")(lang),
                    ref="A",
                    instant=True,
                ),
                query(
                    "sum(increase(hotspot_bandwidth_tests_meeting_threshold_total"
                    f'{{{sel}, direction="download"}}[$__range]))',
                    legend=T("đạt", "passed")(lang),
                    ref="B",
                    instant=True,
                ),
                query(
                    f"sum(increase(hotspot_bandwidth_tests_deferred_total{{{sel}}}[$__range]))",
                    legend=T("hoãn vì đang có người dùng", "deferred for users")(lang),
                    ref="C",
                    instant=True,
                ),
                query(
                    "sum(increase(hotspot_bandwidth_tests_skipped_total"
                    f'{{{sel}, reason="budget"}}[$__range]))',
                    legend=T("bỏ vì hết hạn mức dữ liệu", "skipped for budget")(lang),
                    ref="D",
                    instant=True,
                ),
            ],
            "none",
            steps((None, "blue")),
            decimals=0,
        )
        .text_mode(cm.BigValueTextMode.VALUE_AND_NAME)
        .color_mode(cm.BigValueColorMode.VALUE),
        T("Phép đo tốc độ trong khoảng thời gian", "Speed tests in the time range"),
        T(
            "Số phép đo tải xuống đã chạy và đạt; số lần hoãn vì người dùng đang dùng đường truyền; số lần "
            "bỏ vì hết hạn mức dữ liệu tháng.",
            "Download tests run and passed; tests deferred while users loaded the line; tests skipped "
            "because the monthly data budget ran out.",
        ),
        8,
        8,
    )
    b.add(
        bargauge.Panel()
        .with_target(
            query(
                f"max(hotspot_bandwidth_budget_bytes{{{sel}}} - "
                f"hotspot_bandwidth_budget_remaining_bytes{{{sel}}})",
                legend=T("đã dùng", "used")(lang),
                ref="A",
                instant=True,
            )
        )
        .with_target(
            query(
                f"max(hotspot_bandwidth_budget_bytes{{{sel}}})",
                legend=T("hạn mức tháng", "monthly budget")(lang),
                ref="B",
                instant=True,
            )
        )
        .unit("decbytes")
        .min(0)
        .display_mode(cm.BarGaugeDisplayMode.BASIC)
        .orientation(cm.VizOrientation.HORIZONTAL)
        .thresholds(steps((None, "blue"))),
        T("Dữ liệu dùng cho phép đo tháng này", "Test data used this month"),
        T(
            "Dung lượng các phép đo tốc độ đã dùng so với hạn mức tháng.",
            "Data the speed tests used against the monthly budget.",
        ),
        8,
        8,
    )

    b.row(T("Độ trễ, DNS, HTTP", "Latency, DNS, HTTP"))
    b.add(
        series_panel(
            [query(f'hotspot_ping_rtt_seconds{{{sel}, stat="avg"}} * 1000', legend="{{target}} ({{role}})")],
            "ms",
            LATENCY_STEPS,
            min_=0,
        ),
        T("Độ trễ", "Latency"),
        T(
            "Thời gian khứ hồi trung bình tới gateway và tới Internet. Gateway chậm: lỗi mạng nội bộ; chỉ "
            "Internet chậm: lỗi nhà mạng.",
            "Average round-trip time to the gateway and to internet targets. Slow gateway: LAN fault; "
            "only internet slow: ISP fault.",
        ),
        8,
        8,
    )
    b.add(
        series_panel(
            [query(f"hotspot_ping_jitter_seconds{{{sel}}} * 1000", legend="{{target}} ({{role}})")],
            "ms",
            steps((None, "green"), (30, "red")),
            min_=0,
        ),
        T("Độ biến động trễ (jitter)", "Jitter"),
        T(
            "Chênh lệch trung bình giữa các lần đo liên tiếp; cao làm gọi video bị giật.",
            "Mean difference of consecutive round trips; high jitter breaks video calls.",
        ),
        8,
        8,
    )
    b.add(
        series_panel(
            [query(f"hotspot_ping_loss_ratio{{{sel}}}", legend="{{target}} ({{role}})")],
            "percentunit",
            steps((None, "green"), (0.02, "red")),
            min_=0,
            max_=1,
        ),
        T("Mất gói", "Packet loss"),
        T("Tỷ lệ gói tin bị mất trong mỗi lần đo.", "Share of packets lost in each run."),
        8,
        8,
    )
    b.add(
        series_panel(
            [query(f"hotspot_dns_lookup_seconds{{{sel}}} * 1000", legend="{{resolver}} {{name}}")],
            "ms",
            steps((None, "green"), (500, "red")),
            min_=0,
        ),
        T("Thời gian phân giải DNS", "DNS lookup time"),
        T(
            "Thời gian để máy chủ DNS trả lời; trống khi không có câu trả lời.",
            "Time to the DNS answer; empty when none came.",
        ),
        8,
        8,
    )
    ok_fail = up_down_mappings(lang, T("Được", "OK"), T("Lỗi", "Failed"))
    b.add(
        timeline_panel(
            [
                query(f"hotspot_dns_success{{{sel}}}", legend="DNS {{resolver}} {{name}}", ref="A"),
                query(f"hotspot_http_success{{{sel}}}", legend="HTTP {{url}}", ref="B"),
            ],
            ok_fail,
        ),
        T("Kiểm tra DNS và HTTP", "DNS and HTTP checks"),
        T("Xanh: trả lời đúng; đỏ: lỗi.", "Green: the expected answer; red: failed."),
        8,
        8,
    )
    b.add(
        series_panel(
            [
                query(
                    f"hotspot_http_first_byte_seconds{{{sel}}} * 1000",
                    legend=T("byte đầu tiên {{url}}", "first byte {{url}}")(lang),
                    ref="A",
                ),
                query(
                    f"hotspot_http_captive_portal{{{sel}}}",
                    legend=T("trang đăng nhập chặn {{url}}", "captive portal {{url}}")(lang),
                    ref="B",
                ),
            ],
            "ms",
            min_=0,
        ).override_by_name(
            T("trang đăng nhập chặn {{url}}", "captive portal {{url}}")(lang), [prop("unit", "bool")]
        ),
        T("Thời gian phản hồi HTTP", "HTTP response time"),
        T(
            "Thời gian tới byte đầu tiên của trang kiểm tra, và có bị trang đăng nhập chặn không.",
            "Time to the first byte of the check page, and whether a captive portal answered.",
        ),
        8,
        8,
    )

    b.row(T("Wifi và mạng nội bộ", "Wifi and LAN"))
    b.add(
        series_panel(
            [query(f"hotspot_wifi_signal_dbm{{{sel}}}", legend="{{interface}}")],
            "dBm",
            steps((None, "red"), (-75, "orange"), (-65, "green")),
        ),
        T("Cường độ sóng wifi", "Wifi signal"),
        T("Dưới -75 dBm là yếu.", "Below -75 dBm is weak."),
        8,
        8,
    )
    b.add(
        series_panel([query(f"hotspot_wifi_stations{{{sel}}}", legend="{{interface}}")], "none", min_=0),
        T("Thiết bị đang kết nối wifi", "Wifi stations"),
        T(
            "Số máy đang kết nối (khi thiết bị đo chạy trên điểm phát).",
            "Associated stations (when the agent runs on the access point).",
        ),
        8,
        8,
    )
    b.add(
        series_panel(
            [
                query(
                    f"rate(hotspot_interface_receive_bytes_total{{{sel}}}[$__rate_interval]) * 8",
                    legend=T("{{interface}} nhận", "{{interface}} receive")(lang),
                    ref="A",
                ),
                query(
                    f"rate(hotspot_interface_transmit_bytes_total{{{sel}}}[$__rate_interval]) * 8",
                    legend=T("{{interface}} gửi", "{{interface}} transmit")(lang),
                    ref="B",
                ),
            ],
            "bps",
            min_=0,
        ),
        T("Lưu lượng giao diện mạng", "Interface traffic"),
        T(
            "Lưu lượng của người dùng và phép đo qua từng giao diện.",
            "Traffic of users and tests on each interface.",
        ),
        8,
        8,
    )

    b.row(T("Thiết bị đo", "Device"))
    b.add(
        series_panel(
            [
                query(f"hotspot_system_cpu_usage_ratio{{{sel}}}", legend="CPU", ref="A"),
                query(
                    f"1 - hotspot_system_memory_available_bytes{{{sel}}}"
                    f" / hotspot_system_memory_total_bytes{{{sel}}}",
                    legend=T("bộ nhớ", "memory")(lang),
                    ref="B",
                ),
                query(
                    f"1 - hotspot_system_disk_free_bytes{{{sel}}} / hotspot_system_disk_total_bytes{{{sel}}}",
                    legend=T("đĩa {{path}}", "disk {{path}}")(lang),
                    ref="C",
                ),
            ],
            "percentunit",
            steps((None, "green"), (0.9, "red")),
            min_=0,
            max_=1,
        ),
        T("CPU, bộ nhớ, đĩa", "CPU, memory, disk"),
        T(
            "Phần đang dùng. Trên 90% làm phép đo kém tin cậy.",
            "Share in use. Over 90% makes tests unreliable.",
        ),
        8,
        8,
    )
    b.add(
        series_panel(
            [query(f"hotspot_system_temperature_celsius{{{sel}}}", legend="{{sensor}}")],
            "celsius",
            steps((None, "green"), (75, "red")),
        ),
        T("Nhiệt độ", "Temperature"),
        T("Nhiệt độ thiết bị, nếu phần cứng báo.", "Device temperature, where the hardware reports it."),
        8,
        8,
    )
    b.add(
        timeline_panel(
            [query(f"hotspot_diagnosis{{{sel}}}", legend="{{cause}}")],
            [
                dm.ValueMap(
                    options={
                        "0": dm.ValueMappingResult(text=" ", color="transparent", index=0),
                        "1": dm.ValueMappingResult(
                            text=T("hiện tại", "current")(lang), color="orange", index=1
                        ),
                    }
                )
            ],
        ),
        T("Chẩn đoán theo thời gian", "Diagnosis over time"),
        T(
            "Nguyên nhân có thể ở từng thời điểm (một dòng cho mỗi nguyên nhân).",
            "The likely cause at each moment (one line per cause).",
        ),
        8,
        8,
    )
    return b.to_json()


# ---------------------------------------------------------------- 4. fleet health


def fleet(lang: Lang) -> dict[str, Any]:
    sel = OVERVIEW_SEL
    b = Board(
        "fleet",
        lang,
        T("Điểm wifi công cộng — Tình trạng thiết bị đo", "Public wifi sites — Fleet health"),
        T(
            "Các thiết bị đo: phiên bản, lần cuối gửi số liệu, hàng đợi gửi, lỗi đo và dữ liệu đã dùng.",
            "The agents: versions, last heard from, push queues, probe failures and data used.",
        ),
        ["province", "commune", "site_type"],
    )
    b.add(
        bargauge.Panel()
        .with_target(
            query(f"count by (version) (hotspot_agent_info{{{sel}}})", legend="{{version}}", instant=True)
        )
        .unit("none")
        .display_mode(cm.BarGaugeDisplayMode.BASIC)
        .orientation(cm.VizOrientation.HORIZONTAL)
        .thresholds(steps((None, "blue"))),
        T("Thiết bị đo theo phiên bản", "Agents by version"),
        T("Số thiết bị đo chạy mỗi phiên bản.", "Agents running each version."),
        8,
        8,
    )
    agents = table_panel(
        [
            query(
                f"max by (site, version) (last_over_time(hotspot_agent_info{{{sel}}}[1d]))",
                ref="A",
                instant=True,
                table_format=True,
            ),
            query(
                f"max by (site) (last_over_time(hotspot_agent_clock_seconds{{{sel}}}[1d])) * 1000",
                ref="B",
                instant=True,
                table_format=True,
            ),
            query(
                f"max by (site) (hotspot_agent_clock_seconds{{{sel}}} - timestamp(hotspot_agent_clock_seconds"
                f"{{{sel}}}))",
                ref="C",
                instant=True,
                table_format=True,
            ),
            query(
                f"max by (site) (time() - hotspot_agent_start_time_seconds{{{sel}}})",
                ref="D",
                instant=True,
                table_format=True,
            ),
            query(
                f"min by (site) (hotspot_config_last_reload_successful{{{sel}}})",
                ref="E",
                instant=True,
                table_format=True,
            ),
        ],
        hide=["Value #A"],
        order=["site", "version", "Value #B", "Value #C", "Value #D", "Value #E"],
        sort_field=T("Gửi số liệu lần cuối", "Last heard from")(lang),
    )
    agents = column(agents, "site", T("Mã điểm", "Site id")(lang), prop("links", [site_link(lang)]))
    agents = column(agents, "version", T("Phiên bản", "Version")(lang))
    agents = column(
        agents,
        "Value #B",
        T("Gửi số liệu lần cuối", "Last heard from")(lang),
        prop("unit", "dateTimeFromNow"),
    )
    agents = column(
        agents,
        "Value #C",
        T("Lệch đồng hồ", "Clock skew")(lang),
        prop("unit", "s"),
        prop("thresholds", steps((None, "red"), (-5, "green"), (5, "red")).build()),
        colored_cell(),
    )
    agents = column(agents, "Value #D", T("Đã chạy", "Running for")(lang), prop("unit", "dtdurations"))
    agents = column(
        agents,
        "Value #E",
        T("Cấu hình nạp lại", "Config reload")(lang),
        prop("mappings", up_down_mappings(lang, T("Được", "OK"), T("Bị từ chối", "Refused"))),
        colored_cell(),
    )
    b.add(
        agents,
        T("Thiết bị đo", "Agents"),
        T(
            "Mỗi thiết bị: phiên bản, lần cuối gửi số liệu, lệch đồng hồ so với máy chủ, thời gian đã chạy, "
            "lần nạp lại cấu hình gần nhất có được không.",
            "Each agent: version, last heard from, clock skew against the collector, uptime, whether "
            "the last config reload succeeded.",
        ),
        16,
        8,
    )
    b.add(
        series_panel(
            [query(f"hotspot_push_queue_samples{{{sel}}}", legend="{{site}}")],
            "short",
            steps((None, "green"), (10000, "red")),
            min_=0,
        ),
        T("Hàng đợi gửi số liệu", "Push queue depth"),
        T(
            "Số mẫu chờ gửi ở các điểm sau NAT (chỉ khi bật gửi). Tăng dần: đường lên mất kết nối.",
            "Samples waiting to be pushed at NAT'd sites (push only). Growing: the uplink is out.",
        ),
        12,
        8,
    )
    b.add(
        series_panel(
            [
                query(
                    "sum by (site, reason) (increase("
                    f"hotspot_push_samples_dropped_total{{{sel}}}[$__rate_interval]))",
                    legend="{{site}} {{reason}}",
                )
            ],
            "short",
            steps((None, "green"), (1, "red")),
            min_=0,
        ),
        T("Mẫu bị bỏ khi gửi", "Dropped push samples"),
        T(
            "Mẫu bị bỏ: hàng đợi đầy, quá cũ hoặc bị máy chủ từ chối. Phải luôn bằng 0.",
            "Samples dropped: queue full, too old, or rejected by the receiver. Should stay at 0.",
        ),
        12,
        8,
    )
    b.add(
        bargauge.Panel()
        .with_target(
            query(
                "sort_desc(sum by (probe, reason) ("
                f"increase(hotspot_probe_failures_total{{{sel}}}[$__range])) > 0)",
                legend="{{probe}}: {{reason}}",
                instant=True,
            )
        )
        .unit("short")
        .display_mode(cm.BarGaugeDisplayMode.BASIC)
        .orientation(cm.VizOrientation.HORIZONTAL)
        .thresholds(steps((None, "orange"))),
        T("Lỗi đo theo nguyên nhân", "Probe failures by reason"),
        T(
            "Số lần đo lỗi trong khoảng thời gian, theo loại phép đo và lý do.",
            "Failed measurements in the time range, by probe and reason.",
        ),
        12,
        8,
    )
    b.add(
        bargauge.Panel()
        .with_target(
            query(
                f"sort_desc(max by (site) (1 - hotspot_bandwidth_budget_remaining_bytes{{{sel}}} / "
                f"hotspot_bandwidth_budget_bytes{{{sel}}}))",
                legend="{{site}}",
                instant=True,
            )
        )
        .unit("percentunit")
        .min(0)
        .max(1)
        .display_mode(cm.BarGaugeDisplayMode.GRADIENT)
        .orientation(cm.VizOrientation.HORIZONTAL)
        .thresholds(steps((None, "green"), (0.8, "orange"), (0.95, "red"))),
        T("Hạn mức dữ liệu đo đã dùng", "Test data budget used"),
        T(
            "Phần hạn mức dữ liệu tháng mà phép đo tốc độ đã dùng, từng điểm. Hết hạn mức thì phép đo bị bỏ.",
            "Share of each site's monthly test data budget used. When it runs out, tests are skipped.",
        ),
        12,
        8,
    )
    b.add(
        series_panel(
            [
                query(
                    f"sum by (site) (increase(hotspot_bandwidth_test_bytes_total{{{sel}}}[1d]))",
                    legend="{{site}}",
                )
            ],
            "decbytes",
            min_=0,
        ),
        T("Dữ liệu phép đo dùng mỗi ngày", "Test data per day"),
        T(
            "Dung lượng các phép đo tốc độ dùng trong 24 giờ qua, từng điểm.",
            "Data the speed tests moved over the last 24 hours, per site.",
        ),
        12,
        8,
    )
    return b.to_json()


# ---------------------------------------------------------------- output

DASHBOARDS: dict[str, Callable[[Lang], dict[str, Any]]] = {
    "overview": overview,
    "commune": commune,
    "site": site,
    "fleet": fleet,
}


def render() -> dict[Path, str]:
    """Every dashboard file's path (under dashboards/) and its exact text."""
    out: dict[Path, str] = {}
    for lang in LANGS:
        for name, make in DASHBOARDS.items():
            text = json.dumps(make(lang), ensure_ascii=False, indent=2, sort_keys=True) + "\n"
            out[Path(lang) / f"{name}.json"] = text
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed JSON is not up to date")
    parser.add_argument(
        "--out", type=Path, default=DASHBOARDS_DIR, help="where to write (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    stale = []
    for rel, text in render().items():
        path = args.out / rel
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        stale.append(str(rel))
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    if args.check and stale:
        print("out of date (run python grafana/build.py): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
