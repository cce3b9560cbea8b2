"""Texts in both languages (`T`), and the words and colours that stand for status codes, causes and
site types."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from grafana_foundation_sdk.models import dashboard as dm

Lang = Literal["vi", "en"]
LANGS: tuple[Lang, ...] = ("vi", "en")

# Site status, one number per site so that a map and a table can colour and sort by it (worst first).
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
    """Status codes (DOWN..MEETS) as words and colours, in `lang`."""
    return [
        dm.ValueMap(
            options={
                str(code): dm.ValueMappingResult(text=text(lang), color=color, index=code)
                for code, (text, color) in STATUS_TEXT.items()
            }
        )
    ]


def yes_no_mappings(lang: Lang) -> list[dm.ValueMapping]:
    """0/1 verdicts as "Fails" (red) and "Meets" (green), in `lang`."""
    return [
        dm.ValueMap(
            options={
                "0": dm.ValueMappingResult(text=T("Không đạt", "Fails")(lang), color="red", index=0),
                "1": dm.ValueMappingResult(text=T("Đạt", "Meets")(lang), color="green", index=1),
            }
        )
    ]


def up_down_mappings(lang: Lang, up: T, down: T) -> list[dm.ValueMapping]:
    """0/1 as the words `down` (red) and `up` (green), in `lang`."""
    return [
        dm.ValueMap(
            options={
                "0": dm.ValueMappingResult(text=down(lang), color="red", index=0),
                "1": dm.ValueMappingResult(text=up(lang), color="green", index=1),
            }
        )
    ]


def cause_mappings(lang: Lang) -> list[dm.ValueMapping]:
    """The agent's diagnosis causes as words in `lang`: healthy green, every fault orange."""
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
