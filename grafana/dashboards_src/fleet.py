"""The fleet health dashboard: agent versions, last heard from, push queues, probe failures, data used."""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.builders import (
    bargauge,
)
from grafana_foundation_sdk.models import common as cm

from .board import Board
from .panels import colored_cell, column, prop, series_panel, site_link, steps, table_panel
from .queries import OVERVIEW_SEL, query
from .texts import Lang, T, up_down_mappings


def fleet(lang: Lang) -> dict[str, Any]:
    """The fleet health dashboard in `lang`, as Grafana's JSON model."""
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
    versions_and_agents(b, sel)
    queues_failures_data(b, sel)
    return b.to_json()


def versions_and_agents(b: Board, sel: str) -> None:
    """Agents by version, and one row per agent."""
    lang = b.lang
    b.add(
        bargauge.Panel()
        .with_target(
            query(
                f"count by (version) (last_over_time(hotspot_agent_info{{{sel}}}[1d]))",
                legend="{{version}}",
                instant=True,
            )
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
    clock = f"hotspot_agent_clock_seconds{{{sel}}}"
    skew = f"({clock} - timestamp({clock}))"
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
                # Now, or as last measured in the day for an agent silent now (a subquery: the skew
                # is a scrape's clock against that scrape's timestamp).
                f"max by (site) ({skew} or last_over_time({skew}[1d:5m]))",
                ref="C",
                instant=True,
                table_format=True,
            ),
            query(
                f"max by (site) (last_over_time(hotspot_agent_clock_seconds{{{sel}}}[1d]) - "
                f"last_over_time(hotspot_agent_start_time_seconds{{{sel}}}[1d]))",
                ref="D",
                instant=True,
                table_format=True,
            ),
            query(
                f"min by (site) (last_over_time(hotspot_config_last_reload_successful{{{sel}}}[1d]))",
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


def queues_failures_data(b: Board, sel: str) -> None:
    """Push queue depth and dropped samples, probe failures by reason, test data budget and data per day."""
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
                "sort_desc(max by (site) (1 - "
                f"last_over_time(hotspot_bandwidth_budget_remaining_bytes{{{sel}}}[1d]) / "
                f"last_over_time(hotspot_bandwidth_budget_bytes{{{sel}}}[1d])))",
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
        )
        # A day's total needs no point every few minutes: an hourly step reads 6x fewer windows of a
        # day (1.4 s -> see bench/RESULTS-verdicts.md for the province's 785 sites over 7 days).
        .interval("1h"),
        T("Dữ liệu phép đo dùng mỗi ngày", "Test data per day"),
        T(
            "Dung lượng các phép đo tốc độ dùng trong 24 giờ qua, từng điểm.",
            "Data the speed tests moved over the last 24 hours, per site.",
        ),
        12,
        8,
    )
