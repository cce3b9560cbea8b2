"""Plain-words verdicts for a person at a terminal (`hotspot-agent measure`)."""

from __future__ import annotations

from typing import Any

from agent.bandwidth.engine import BandwidthTest
from agent.i18n import _
from agent.probes.bandwidth import BandwidthRun
from agent.probes.dns import DnsLookup
from agent.probes.http import HttpCheck
from agent.probes.ping import PingStats
from agent.probes.system import SystemStats
from agent.probes.wifi import WifiLink
from agent.result import Result
from agent.site import Direction, Site

GOODPUT_LIMIT = 1448 / 1514  # the most TCP can carry over a 1500-byte-MTU Ethernet line


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f} ms"


def _mbps(bps: float | None) -> str:
    return _("not measured") if bps is None else f"{bps / 1e6:.1f} Mbit/s"


def _words(directions: list[str]) -> str:
    """["download", "upload"] -> "download and upload", in the reader's language."""
    return _(" and ").join(_("download") if d == "download" else _("upload") for d in directions)


def bandwidth_verdict(test: BandwidthTest, site: Site) -> list[str]:
    lines = []
    for direction, bps, lower_bound, contracted in (
        (_("Download"), test.download_bps, test.download_lower_bound, site.contracted_download_mbps),
        (_("Upload"), test.upload_bps, test.upload_lower_bound, site.contracted_upload_mbps),
    ):
        threshold = site.threshold_mbps(contracted)
        if bps is None:
            lines.append(_("{direction}: not measured.").format(direction=direction))
            continue
        mbps = bps / 1e6
        values = {
            "threshold": f"{threshold:g}",
            "ratio": f"{site.pass_ratio:.0%}",
            "contracted": f"{contracted:g}",
        }
        if mbps >= threshold:
            verdict = _("MEETS the requirement (at least {threshold} Mbit/s, {ratio} of {contracted})")
        elif lower_bound:
            verdict = _(
                "cannot tell whether it meets the requirement of {threshold} Mbit/s ({ratio} of {contracted})"
            )
        else:
            verdict = _("BELOW the requirement of {threshold} Mbit/s ({ratio} of {contracted})")
        figure = (
            _("at least {mbps} Mbit/s (the test's byte or time limit stopped it before its full measurement)")
            if lower_bound
            else _("{mbps} Mbit/s")
        ).format(mbps=f"{mbps:.1f}")
        lines.append(
            _("{direction}: {figure} — {verdict}.").format(
                direction=direction, figure=figure, verdict=verdict.format(**values)
            )
            + " "
            + _("(A {contracted} Mbit/s line carries at most {limit} Mbit/s of data.)").format(
                contracted=f"{contracted:g}", limit=f"{contracted * GOODPUT_LIMIT:.1f}"
            )
        )
    if test.latency_idle_s is not None:
        line = _("Latency: {idle} idle").format(idle=_ms(test.latency_idle_s))
        if test.latency_loaded_s is not None:
            extra = test.latency_loaded_s - test.latency_idle_s
            line += _(", {loaded} under load").format(loaded=_ms(test.latency_loaded_s))
            if extra > 0.1:
                line += _(
                    " — the line's buffers add delay under load (bufferbloat): calls and video will stutter"
                )
        lines.append(line + ".")
    moved = (test.download_bytes + test.upload_bytes) / 1e6
    lines.append(
        _("The test moved {mb} MB in {seconds} s ({engine} engine, {server}).").format(
            mb=f"{moved:.0f}", seconds=f"{test.duration_s:.1f}", engine=test.engine, server=test.server
        )
    )
    return lines


def _one(r: Result[Any], site: Site) -> list[str]:
    d = r.data
    prefix = "" if r.ok else _("PROBLEM: ")
    if isinstance(d, BandwidthRun):
        lines = bandwidth_verdict(d.test, site) if d.test is not None else []
        return lines if r.ok else [f"{prefix}{r.said()}", *lines]
    if isinstance(d, PingStats):
        return [
            prefix
            + _(
                "{target} ({address}, {method}): {received}/{sent} replies, "
                "loss {loss}, average {avg}, jitter {jitter}"
            ).format(
                target=r.target,
                address=d.address,
                method=d.method,
                received=d.received,
                sent=d.sent,
                loss=f"{d.loss_ratio:.0%}",
                avg=_ms(d.rtt_avg_s),
                jitter=_ms(d.jitter_s),
            )
            + ("" if r.ok else f" — {r.said()}")
        ]
    if isinstance(d, DnsLookup):
        got = ", ".join(d.addresses) if d.addresses else (d.rcode or _("no answer"))
        return [
            f"{prefix}{d.name} via {d.resolver}: {got}"
            + ("" if d.lookup_s is None else f" in {_ms(d.lookup_s)}")  # no answer: no time to give
            + ("" if r.ok else f" — {r.said()}")
        ]
    if isinstance(d, HttpCheck):
        status = d.status if d.status is not None else _("no answer")
        return [
            f"{prefix}{d.url}: {status}, first byte {_ms(d.first_byte_s)}, total {_ms(d.total_s)}"
            + ("" if r.ok else f" — {r.said()}")
        ]
    if isinstance(d, WifiLink):
        if not d.connected:
            return [prefix + _("{interface}: not connected").format(interface=d.interface) + f" — {r.said()}"]
        signal = "-" if d.signal_dbm is None else f"{d.signal_dbm:.0f} dBm"
        return [f"{d.interface}: SSID {d.ssid!r}, signal {signal}, bitrate {_mbps(d.tx_bitrate_bps)}"]
    if isinstance(d, SystemStats):
        mem = d.memory_available_bytes / max(d.memory_total_bytes, 1)
        return [
            f"CPU {d.cpu_ratio:.0%}, load {d.load1:.2f}, memory available {mem:.0%}, "
            f"{len(d.interfaces)} interfaces, agent RSS {d.agent_rss_bytes / 1e6:.1f} MB"
        ]
    return [f"{prefix}{r.target or r.probe}: {r.said() or ('ok' if r.ok else r.reason)}"]


def describe_results(probe: str, results: list[Result[Any]], site: Site) -> str:
    if not results:
        return _("{probe}: no result.").format(probe=probe)
    lines = [line for r in results for line in _one(r, site)]
    failed = sum(not r.ok for r in results)
    run = results[0].data
    if probe == "bandwidth" and not failed and isinstance(run, BandwidthRun) and run.test is not None:
        below: list[str] = []
        unsure: list[str] = []
        directions: tuple[tuple[Direction, float | None, bool], ...] = (
            ("download", run.test.download_bps, run.test.download_lower_bound),
            ("upload", run.test.upload_bps, run.test.upload_lower_bound),
        )
        for direction, bps, lower_bound in directions:
            if bps is not None and not site.meets(direction, bps):
                # A lower bound under the threshold says nothing about the line: the rate had not settled.
                (unsure if lower_bound else below).append(direction)
        if below:
            verdict = _("Verdict: this test is BELOW the requirement ({directions}).").format(
                directions=_words(below)
            )
        elif unsure:
            verdict = _(
                "Verdict: cannot tell whether the line meets the requirement ({directions} not settled)."
            ).format(directions=_words(unsure))
        else:
            verdict = _("Verdict: this test MEETS the requirement.")
        todo = [_("Write down the time and the result, and tell the province's technician.")] if below else []
        return "\n".join([*lines, verdict, *_what_to_do(todo)])
    summary = (
        _("{probe}: all {count} checks fine.") if not failed else _("{probe}: {failed} of {count} failed.")
    ).format(probe=probe, count=len(results), failed=failed)
    return "\n".join([*lines, summary, *advice(probe, results, site)])


def advice(probe: str, results: list[Result[Any]], site: Site) -> list[str]:
    """What the person at the site can do about the failures, in words they follow; [] when fine."""
    failed = [r for r in results if not r.ok and r.reason != "unsupported"]
    if not failed:
        return []
    todo: list[str] = []
    if probe == "ping":
        gateway = [r for r in results if r.target == "gateway" or getattr(r.data, "role", "") == "gateway"]
        if any(not r.ok for r in gateway):
            todo.append(_("Check the network cable to the wifi router, and that the router is switched on."))
        else:
            todo.append(
                _(
                    "The internet does not answer: turn the internet modem off, wait 30 seconds and "
                    "turn it on again. If it still fails, call the internet provider{isp}."
                ).format(isp=f" {site.isp}" if site.isp else "")
            )
    elif probe == "dns":
        todo.append(
            _(
                "Names of web sites cannot be found: restart the internet modem; "
                "if it still fails, call the internet provider."
            )
        )
    elif probe == "http":
        if any(r.reason == "captive_portal" for r in failed):
            todo.append(
                _(
                    "The line shows a login page instead of the internet: "
                    "ask the internet provider to remove it."
                )
            )
        else:
            todo.append(
                _(
                    "Some public service web sites do not open: try again in 15 minutes, "
                    "then tell the province's technician."
                )
            )
    elif probe == "wifi":
        todo.append(_("This device is not on the wifi: check that the wifi router is switched on."))
    else:
        todo.append(
            _("Run the check again in a few minutes; if it keeps failing, tell the province's technician.")
        )
    return _what_to_do(todo)


def _what_to_do(todo: list[str]) -> list[str]:
    return [_("What to do:"), *(f"  - {line}" for line in todo)] if todo else []
