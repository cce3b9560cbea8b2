"""A site's identity: the labels on every series, and what goes into the site info metric."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from agent.i18n import _
from agent.schema import between, check, positive

SiteType = Literal["commune_office", "health_station", "village_hall", "other"]
SITE_TYPES: tuple[SiteType, ...] = ("commune_office", "health_station", "village_hall", "other")
Direction = Literal["download", "upload"]
MBPS = 1_000_000 / 8  # bytes per second in one Mbit/s (contracted speeds are in Mbit/s)


def is_site_id(value: object) -> str | None:
    if isinstance(value, str) and not re.fullmatch(r"[a-z0-9][a-z0-9_.-]{0,62}", value):
        return _("must be 1-63 lower-case letters, digits, '-', '_' or '.', starting with a letter or digit")
    return None


def non_empty(value: object) -> str | None:
    return _("must not be empty") if isinstance(value, str) and not value.strip() else None


def is_pass_ratio(value: object) -> str | None:
    """A share above 0 and at most 1."""
    return _("must be between 0 and 1") if isinstance(value, int | float) and not 0 < value <= 1 else None


@dataclass(frozen=True)
class Site:
    id: str = check(is_site_id)  # stable id, e.g. "nd-13636-ubnd"; never reuse it for another site
    commune: str = check(non_empty)  # the commune's name as officials write it, e.g. "Xã Giao Minh"
    province: str = check(non_empty)
    type: SiteType = "other"
    name: str = ""  # e.g. "Trạm y tế xã Giao Minh"
    district: str = ""  # optional: Vietnam abolished the district level on 2025-07-01
    commune_code: str = ""  # GSO code, e.g. "14161"
    latitude: float | None = check(between(-90, 90), default=None)
    longitude: float | None = check(between(-180, 180), default=None)
    isp: str = ""
    contracted_download_mbps: float = check(positive, default=100.0)
    contracted_upload_mbps: float = check(positive, default=100.0)
    # A bandwidth test "meets" the requirement at or above this share of the contracted speed
    # (the FCC's 80/80 rule; TCP goodput can never exceed ~95.6% of the line rate).
    pass_ratio: float = check(is_pass_ratio, default=0.8)
    # A latency test "meets" the requirement when its average RTT is at or under this (FCC: 100 ms).
    latency_limit_ms: float = check(positive, default=100.0)

    def validate(self) -> list[str]:
        errs = []
        if (self.latitude is None) != (self.longitude is None):
            errs.append("latitude: " + _("latitude and longitude go together"))
        return errs

    # The agent's own pass rule, in one place: the terminal verdict and the agent's counters both
    # ask here. The province's rule (collector/requirement.yaml) judges the histograms on its own.

    def threshold_mbps(self, contracted_mbps: float) -> float:
        """The goodput (Mbit/s) a bandwidth test must reach on a line contracted at `contracted_mbps`."""
        return contracted_mbps * self.pass_ratio

    def threshold_bps(self, direction: Direction) -> float:
        """The goodput (bits/s) a bandwidth test must reach in `direction` to meet the requirement."""
        contracted = self.contracted_download_mbps if direction == "download" else self.contracted_upload_mbps
        return self.threshold_mbps(contracted) * 1e6

    def meets(self, direction: Direction, bps: float) -> bool:
        """Whether a goodput (bits/s) meets the requirement: at or above the threshold."""
        return bps >= self.threshold_bps(direction)

    def latency_within_limit(self, rtt_s: float | None) -> bool:
        """Whether a latency test's average RTT (None: unanswered) is within the site's limit."""
        return rtt_s is not None and rtt_s <= self.latency_limit_ms / 1000

    def labels(self) -> dict[str, str]:
        """The identity labels every series carries (district only when set)."""
        out = {"site": self.id, "site_type": self.type, "commune": self.commune, "province": self.province}
        if self.district:
            out["district"] = self.district
        return out
