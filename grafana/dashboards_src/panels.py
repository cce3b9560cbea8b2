"""Panel kinds and the pieces they are built from: thresholds, overrides, links to other dashboards."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import (
    prometheus,
    stat,
    statetimeline,
    table,
    timeseries,
)
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

from collector import requirement

from .board import uid
from .queries import MBIT
from .texts import Lang, T, site_type_mappings


def steps(*pairs: tuple[float | None, str]) -> db.ThresholdsConfig:
    """Threshold steps; the first value is None (Grafana's -Infinity)."""
    return (
        db.ThresholdsConfig()
        .mode(dm.ThresholdsMode.ABSOLUTE)
        .steps([dm.Threshold(value=v, color=c) for v, c in pairs])
    )


RATIO_STEPS = steps((None, "red"), (0.8, "orange"), (0.95, "green"))  # share of tests/sites meeting
COUNT_BAD_STEPS = steps((None, "green"), (1, "red"))


def whole(value: float) -> float:
    """`value` as an int when it is whole, so that the JSON says 100 rather than 100.0."""
    return int(value) if value == int(value) else value


def speed_steps(direction: str) -> db.ThresholdsConfig:
    """Red below the province's pass threshold for `direction` and green from it, in bit/s: the
    speed × test_pass_ratio of collector/requirement.yaml (rebuild the dashboards when it changes)."""
    return steps((None, "red"), (whole(requirement.load().threshold_mbps(direction) * MBIT), "green"))


SPEED_STEPS = speed_steps("download")
# ms: green up to the latency limit of collector/requirement.yaml, red above.
LATENCY_STEPS = steps((None, "green"), (whole(requirement.load().latency_limit_ms), "red"))


def prop(id_: str, value: object) -> dm.DynamicConfigValue:
    """One field-config property of an override, e.g. `prop("unit", "bps")`."""
    return dm.DynamicConfigValue(id_val=id_, value=value)


def link(title: str, url: str) -> dict[str, object]:
    """A data link: `title` shown on hover, `url` opened on click."""
    return {"title": title, "url": url}


def transform(id_: str, options: dict[str, object]) -> dm.DataTransformerConfig:
    """A panel transformation by Grafana's id (`merge`, `organize`, ...) with its options."""
    return dm.DataTransformerConfig(id_val=id_, options=options)


def site_link(lang: Lang, site_ref: str = "${__value.raw}") -> dict[str, object]:
    """A link to the site detail dashboard of the same language, for the site in `site_ref`
    (default: the clicked value), keeping the province and time range.
    """
    return link(
        T("Mở trang chi tiết điểm", "Open the site's page")(lang),
        f"/d/{uid('site', lang)}?var-province=$province&var-site={site_ref}&${{__url_time_range}}",
    )


def commune_link(lang: Lang, commune_ref: str = "${__value.raw}") -> dict[str, object]:
    """A link to the commune dashboard of the same language, for the commune in `commune_ref`
    (default: the clicked value), keeping the province and time range.
    """
    return link(
        T("Mở trang của xã", "Open the commune's page")(lang),
        f"/d/{uid('commune', lang)}?var-province=$province&var-commune={commune_ref}&${{__url_time_range}}",
    )


PanelBuilder = cogbuilder.Builder[dm.Panel]


def stat_panel(
    targets: Sequence[prometheus.Dataquery],
    unit: str,
    thresholds: db.ThresholdsConfig,
    decimals: int | None = None,
) -> stat.Panel:
    """A stat panel showing each target's last value in `unit`, its background coloured by
    `thresholds`, with `decimals` when given.
    """
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
    """A time series panel in `unit` with a table legend (last, min, mean). `thresholds` draws
    dashed lines; `steps_line` draws steps (one value per test, not a trend); `min_`, `max_` fix
    the axis.
    """
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
    """A state timeline: each target's series as coloured bands, read through `mappings`
    (below 1 red, from 1 green unless mapped).
    """
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
    """Table panel `p` with column `field` shown as `name` and the given properties."""
    return p.override_by_name(field, [prop("displayName", name), *props])


def colored_cell() -> dm.DynamicConfigValue:
    """A table cell coloured by its thresholds or value mapping."""
    return prop("custom.cellOptions", {"type": "color-background", "mode": "basic"})


# ---------------------------------------------------------------- 1. province overview


def site_columns(p: Any, lang: Lang) -> Any:
    """Table panel `p` with the columns every site table shares: name, site id (opening the site's
    page), commune (opening the commune's page) and site type in words."""
    p = column(p, "name", T("Tên điểm", "Site name")(lang))
    p = column(p, "site", T("Mã điểm", "Site id")(lang), prop("links", [site_link(lang)]))
    p = column(p, "commune", T("Xã", "Commune")(lang), prop("links", [commune_link(lang)]))
    return column(p, "site_type", T("Loại điểm", "Type")(lang), prop("mappings", site_type_mappings(lang)))
