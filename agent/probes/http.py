"""HTTP reachability (status, time to first byte, total time) and captive-portal detection."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from agent.probes.base import ProbeContext, ProbeSettings, ProbeSpec
from agent.result import Result
from agent.schema import check, each, is_url


@dataclass(frozen=True)
class Settings(ProbeSettings):
    interval_s: float = 60.0
    timeout_s: float = 60.0
    urls: tuple[str, ...] = check(each(is_url), default=("https://dichvucong.gov.vn/",))
    # Should answer 204 with no body; a redirect or a 200 page means a captive portal. "" disables.
    portal_check_url: str = "http://connectivitycheck.gstatic.com/generate_204"
    request_timeout_s: float = 10.0


@dataclass(frozen=True)
class HttpCheck:
    url: str
    kind: Literal["reachability", "portal_check"]
    status: int | None  # None when no HTTP answer came
    first_byte_s: float | None
    total_s: float | None
    body_bytes: int
    captive_portal: bool  # only ever true for the portal check
    location: str  # the redirect target, if any


def run(settings: Settings, context: ProbeContext) -> list[Result]:
    raise NotImplementedError


SPEC = ProbeSpec("http", Settings, run)
