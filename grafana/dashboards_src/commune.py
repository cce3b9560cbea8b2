"""The commune dashboard: every site of one commune side by side."""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.models import common as cm

from .board import Board
from .panels import (
    LATENCY_STEPS,
    RATIO_STEPS,
    colored_cell,
    column,
    prop,
    series_panel,
    site_link,
    speed_steps,
    stat_panel,
    steps,
    table_panel,
    timeline_panel,
)
from .queries import info_expr, query, status_expr, with_info
from .texts import (
    BELOW,
    MEETS,
    UNKNOWN,
    Lang,
    T,
    cause_mappings,
    site_type_mappings,
    status_mappings,
    up_down_mappings,
    yes_no_mappings,
)


def commune(lang: Lang) -> dict[str, Any]:
    """The commune dashboard in `lang`, as Grafana's JSON model."""
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
    verdicts(b, sel)
    sites_table(b, sel)
    over_time(b, sel)
    return b.to_json()


def verdicts(b: Board, sel: str) -> None:
    """The commune's verdict and each site's status."""
    lang = b.lang
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


def sites_table(b: Board, sel: str) -> None:
    """One row per site: shares of tests meeting over 7 days, availability, likely cause."""
    lang = b.lang
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


def over_time(b: Board, sel: str) -> None:
    """Speed, latency and up/down of every site over time."""
    lang = b.lang
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
                speed_steps(direction),
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
