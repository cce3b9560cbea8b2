"""Plain-words verdicts for a person at a terminal (`hotspot-agent measure`)."""

from __future__ import annotations

from agent.bandwidth.engine import BandwidthTest
from agent.probes.bandwidth import BandwidthRun
from agent.probes.dns import DnsLookup
from agent.probes.http import HttpCheck
from agent.probes.ping import PingStats
from agent.probes.system import SystemStats
from agent.probes.wifi import WifiLink
from agent.result import Result
from agent.site import Site

GOODPUT_LIMIT = 1448 / 1514  # the most TCP can carry over a 1500-byte-MTU Ethernet line


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f} ms"


def _mbps(bps: float | None) -> str:
    return "not measured" if bps is None else f"{bps / 1e6:.1f} Mbit/s"


def bandwidth_verdict(test: BandwidthTest, site: Site) -> list[str]:
    lines = []
    for direction, bps, lower_bound, contracted in (
        ("download", test.download_bps, test.download_lower_bound, site.contracted_download_mbps),
        ("upload", test.upload_bps, test.upload_lower_bound, site.contracted_upload_mbps),
    ):
        threshold = contracted * site.pass_ratio
        if bps is None:
            lines.append(f"{direction.capitalize()}: not measured.")
            continue
        mbps = bps / 1e6
        required = f"{threshold:g} Mbit/s ({site.pass_ratio:.0%} of {contracted:g})"
        if mbps >= threshold:
            verdict = f"MEETS the requirement (at least {required})"
        elif lower_bound:
            verdict = f"cannot tell whether it meets the requirement of {required}"
        else:
            verdict = f"BELOW the requirement of {required}"
        figure = f"at least {mbps:.1f} Mbit/s" if lower_bound else f"{mbps:.1f} Mbit/s"
        why = " (the test's byte or time limit stopped it before its full measurement)" if lower_bound else ""
        lines.append(
            f"{direction.capitalize()}: {figure}{why} — {verdict}. "
            f"(A {contracted:g} Mbit/s line carries at most {contracted * GOODPUT_LIMIT:.1f} Mbit/s of data.)"
        )
    if test.latency_idle_s is not None:
        line = f"Latency: {_ms(test.latency_idle_s)} idle"
        if test.latency_loaded_s is not None:
            extra = test.latency_loaded_s - test.latency_idle_s
            line += f", {_ms(test.latency_loaded_s)} under load"
            if extra > 0.1:
                line += (
                    " — the line's buffers add delay under load (bufferbloat): calls and video will stutter"
                )
        lines.append(line + ".")
    moved = (test.download_bytes + test.upload_bytes) / 1e6
    lines.append(
        f"The test moved {moved:.0f} MB in {test.duration_s:.1f} s ({test.engine} engine, {test.server})."
    )
    return lines


def _one(r: Result, site: Site) -> list[str]:
    d = r.data
    prefix = "" if r.ok else "PROBLEM: "
    if isinstance(d, BandwidthRun):
        lines = bandwidth_verdict(d.test, site) if d.test is not None else []
        return lines if r.ok else [f"PROBLEM: {r.detail}", *lines]
    if isinstance(d, PingStats):
        return [
            f"{prefix}{r.target} ({d.address}, {d.method}): {d.received}/{d.sent} replies, "
            f"loss {d.loss_ratio:.0%}, average {_ms(d.rtt_avg_s)}, jitter {_ms(d.jitter_s)}"
            + ("" if r.ok else f" — {r.detail}")
        ]
    if isinstance(d, DnsLookup):
        got = ", ".join(d.addresses) if d.addresses else (d.rcode or "no answer")
        return [
            f"{prefix}{d.name} via {d.resolver}: {got} in {_ms(d.lookup_s)}"
            + ("" if r.ok else f" — {r.detail}")
        ]
    if isinstance(d, HttpCheck):
        status = d.status if d.status is not None else "no answer"
        return [
            f"{prefix}{d.url}: {status}, first byte {_ms(d.first_byte_s)}, total {_ms(d.total_s)}"
            + ("" if r.ok else f" — {r.detail}")
        ]
    if isinstance(d, WifiLink):
        if not d.connected:
            return [f"PROBLEM: {d.interface}: not connected — {r.detail}"]
        signal = "-" if d.signal_dbm is None else f"{d.signal_dbm:.0f} dBm"
        return [f"{d.interface}: SSID {d.ssid!r}, signal {signal}, bitrate {_mbps(d.tx_bitrate_bps)}"]
    if isinstance(d, SystemStats):
        mem = d.memory_available_bytes / max(d.memory_total_bytes, 1)
        return [
            f"CPU {d.cpu_ratio:.0%}, load {d.load1:.2f}, memory available {mem:.0%}, "
            f"{len(d.interfaces)} interfaces, agent RSS {d.agent_rss_bytes / 1e6:.1f} MB"
        ]
    return [f"{prefix}{r.target or r.probe}: {r.detail or ('ok' if r.ok else r.reason)}"]


def describe_results(probe: str, results: list[Result], site: Site) -> str:
    if not results:
        return f"{probe}: no result."
    lines = [line for r in results for line in _one(r, site)]
    failed = sum(not r.ok for r in results)
    run = results[0].data
    if probe == "bandwidth" and not failed and isinstance(run, BandwidthRun) and run.test is not None:
        below: list[str] = []
        unsure: list[str] = []
        for direction, bps, lower_bound, contracted in (
            ("download", run.test.download_bps, run.test.download_lower_bound, site.contracted_download_mbps),
            ("upload", run.test.upload_bps, run.test.upload_lower_bound, site.contracted_upload_mbps),
        ):
            if bps is not None and bps < contracted * 1e6 * site.pass_ratio:
                # A lower bound under the threshold says nothing about the line: the rate had not settled.
                (unsure if lower_bound else below).append(direction)
        if below:
            verdict = f"is BELOW the requirement ({' and '.join(below)})"
        elif unsure:
            verdict = (
                f"cannot tell whether the line meets the requirement ({' and '.join(unsure)} not settled)"
            )
        else:
            verdict = "MEETS the requirement"
        return "\n".join([*lines, f"Verdict: this test {verdict}."])
    summary = (
        f"{probe}: all {len(results)} checks fine."
        if not failed
        else f"{probe}: {failed} of {len(results)} failed."
    )
    return "\n".join([*lines, summary])
