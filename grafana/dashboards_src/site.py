"""The site detail dashboard: one site's speed, latency, DNS, HTTP, wifi and device."""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.builders import (
    bargauge,
)
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

from .board import Board
from .panels import LATENCY_STEPS, RATIO_STEPS, prop, series_panel, stat_panel, steps, timeline_panel
from .queries import SITE_SEL, query, status_expr
from .texts import BELOW, MEETS, UNKNOWN, Lang, T, cause_mappings, status_mappings, up_down_mappings


def site(lang: Lang) -> dict[str, Any]:
    """The site detail dashboard in `lang`, as Grafana's JSON model."""
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
    verdict_row(b, sel)
    speed_row(b, sel)
    speed_tests(b, sel)
    latency_dns_http_row(b, sel)
    wifi_lan_row(b, sel)
    device_row(b, sel)
    return b.to_json()


def verdict_row(b: Board, sel: str) -> None:
    """Status, likely cause and the shares behind the verdict."""
    lang = b.lang
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
    # The last diagnosis of the day: a site silent now keeps the cause last seen.
    b.add(
        stat_panel(
            [
                query(
                    f"max by (cause) (last_over_time(hotspot_diagnosis{{{sel}}}[1d]) == 1)",
                    legend="{{cause}}",
                    instant=True,
                )
            ],
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


def speed_row(b: Board, sel: str) -> None:
    """Goodput per test against the pass threshold and the contracted speed, each direction."""
    lang = b.lang
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


def speed_tests(b: Board, sel: str) -> None:
    """The speed row, continued: idle vs loaded latency, tests run, passed, deferred and skipped,
    data used against the monthly budget."""
    lang = b.lang
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
                f"max(last_over_time(hotspot_bandwidth_budget_bytes{{{sel}}}[1d]) - "
                f"last_over_time(hotspot_bandwidth_budget_remaining_bytes{{{sel}}}[1d]))",
                legend=T("đã dùng", "used")(lang),
                ref="A",
                instant=True,
            )
        )
        .with_target(
            query(
                f"max(last_over_time(hotspot_bandwidth_budget_bytes{{{sel}}}[1d]))",
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


def latency_dns_http_row(b: Board, sel: str) -> None:
    """RTT, jitter, loss, DNS lookup time, DNS and HTTP checks, HTTP response time."""
    lang = b.lang
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


def wifi_lan_row(b: Board, sel: str) -> None:
    """Wifi signal, stations and interface traffic."""
    lang = b.lang
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


def device_row(b: Board, sel: str) -> None:
    """The agent's own machine (CPU, memory, disk, temperature) and its diagnosis over time."""
    lang = b.lang
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
