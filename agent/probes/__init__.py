"""Every probe the agent knows, by its config key. Adding a probe: one file, one line here
(the checklist: docs/adding-a-probe.md). Config, scheduler and metrics read only this registry."""

from typing import Any

from agent.probes import bandwidth, dns, http, ping, system, wifi
from agent.probes.base import ProbeContext, ProbeSettings, ProbeSpec

PROBES: dict[str, ProbeSpec[Any, Any]] = {
    spec.name: spec for spec in (ping.SPEC, dns.SPEC, http.SPEC, wifi.SPEC, system.SPEC, bandwidth.SPEC)
}

__all__ = ["PROBES", "ProbeContext", "ProbeSettings", "ProbeSpec"]
