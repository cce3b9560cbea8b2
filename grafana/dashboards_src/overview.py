"""The province overview: which sites are down or below the requirement, since when, and why."""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import (
    geomap,
)
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import geomap as gm

from collector import requirement

from .board import Board
from .panels import (
    COUNT_BAD_STEPS,
    RATIO_STEPS,
    SPEED_STEPS,
    colored_cell,
    column,
    commune_link,
    prop,
    share_with_denominator,
    site_columns,
    site_link,
    stat_panel,
    steps,
    table_panel,
    transform,
)
from .queries import MBIT, OVERVIEW_SEL, only_problems, query, status_expr, with_info
from .texts import (
    BELOW,
    MEETS,
    UNKNOWN,
    Lang,
    T,
    cause_mappings,
    site_type_mappings,
    status_mappings,
    yes_no_mappings,
)


def overview(lang: Lang) -> dict[str, Any]:
    """The province overview dashboard in `lang`, as Grafana's JSON model."""
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
    counts(b, sel)
    map_of_sites(b, sel)
    communes(b, sel)
    problems(b, sel)
    this_month(b, sel)
    alerts_and_maintenance(b, sel)
    return b.to_json()


def counts(b: Board, sel: str) -> None:
    """Sites heard from, down, below, without a verdict; communes and sites meeting."""
    lang = b.lang
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


def map_of_sites(b: Board, sel: str) -> None:
    """One dot per site, coloured by status, placed by the inventory's coordinates."""
    lang = b.lang
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


def communes(b: Board, sel: str) -> None:
    """One row per commune: verdict, share of sites meeting, sites, sites down."""
    lang = b.lang
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


def problems(b: Board, sel: str) -> None:
    """Sites down, below the requirement or without enough tests, worst first."""
    lang = b.lang
    status = status_expr(sel)
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
    problems = site_columns(problems, lang)
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
    p = site_columns(p, lang)
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
