"""A site's identity: the labels on every series, and what goes into the site info metric."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from agent.schema import check, positive

SiteType = Literal["commune_office", "health_station", "village_hall", "other"]
SITE_TYPES: tuple[SiteType, ...] = ("commune_office", "health_station", "village_hall", "other")


def is_site_id(value: object) -> str | None:
    if isinstance(value, str) and not re.fullmatch(r"[a-z0-9][a-z0-9_.-]{0,62}", value):
        return "must be 1-63 lower-case letters, digits, '-', '_' or '.', starting with a letter or digit"
    return None


def non_empty(value: object) -> str | None:
    return "must not be empty" if isinstance(value, str) and not value.strip() else None


@dataclass(frozen=True)
class Site:
    id: str = check(is_site_id)  # stable id, e.g. "nd-13636-ubnd"; never reuse it for another site
    commune: str = check(non_empty)  # the commune's name as officials write it, e.g. "Xã Giao Minh"
    province: str = check(non_empty)
    type: SiteType = "other"
    name: str = ""  # e.g. "Trạm y tế xã Giao Minh"
    district: str = ""  # optional: Vietnam abolished the district level on 2025-07-01
    commune_code: str = ""  # GSO code, e.g. "14161"
    latitude: float | None = None
    longitude: float | None = None
    isp: str = ""
    contracted_download_mbps: float = 100.0
    contracted_upload_mbps: float = 100.0
    # A bandwidth test "meets" the requirement at or above this share of the contracted speed
    # (the FCC's 80/80 rule; TCP goodput can never exceed ~95.6% of the line rate).
    pass_ratio: float = check(lambda v: "must be between 0 and 1" if not 0 < v <= 1 else None, default=0.8)
    # A latency test "meets" the requirement when its average RTT is at or under this (FCC: 100 ms).
    latency_limit_ms: float = check(positive, default=100.0)

    def validate(self) -> list[str]:
        errs = []
        if (self.latitude is None) != (self.longitude is None):
            errs.append("latitude: latitude and longitude go together")
        if self.latitude is not None and not -90 <= self.latitude <= 90:
            errs.append("latitude: must be between -90 and 90")
        if self.longitude is not None and not -180 <= self.longitude <= 180:
            errs.append("longitude: must be between -180 and 180")
        for key in ("contracted_download_mbps", "contracted_upload_mbps"):
            if getattr(self, key) <= 0:
                errs.append(f"{key}: must be greater than 0")
        return errs

    def labels(self) -> dict[str, str]:
        """The identity labels every series carries (district only when set)."""
        out = {"site": self.id, "site_type": self.type, "commune": self.commune, "province": self.province}
        if self.district:
            out["district"] = self.district
        return out
