"""The province's requirement (collector/requirement.yaml) and the verdict rules generated from it.

One file states the rule; this module reads it (`load`), turns it into Prometheus recording rules
for the rolling 7-day window the dashboards show (`rules_file`), and is what the monthly report
reads too, so the rules and the report never disagree. `hotspot-collector requirement --write`
regenerates collector/prometheus/rules/verdict.yml; a test checks the shipped file matches.

Every inventory site gets exactly one verdict per period, recorded as
`site:hotspot_verdict:state_7d{verdict="meets|fails|not_enough|maintenance"} 1`, joined on
`site:hotspot_inventory:info`, so a site that is dead or never reported is still counted:

- maintenance: the inventory says so; left out of every share and listed;
- fails: availability below the level (whatever was measured), or judged and below the rule;
- not_enough: too few tests to judge, availability at or above the level (or unknown);
- meets: enough tests, every share at or above the rule, availability at or above the level.

A commune meets when all its sites outside maintenance meet (one failing or unmeasured site and it
does not); shares are recorded with their denominators.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from agent.probes.bandwidth import GOODPUT_BOUNDS_MBPS
from agent.probes.ping import RTT_BOUNDS_S
from agent.schema import SchemaError, read_yaml_file
from agent.site import MBPS

ROOT = Path(__file__).resolve().parent
DEFAULT_FILE = ROOT / "requirement.yaml"
RULES_OUT = ROOT / "prometheus" / "rules" / "verdict.yml"
VERDICTS = ("meets", "fails", "not_enough", "maintenance")
GOODPUT = "hotspot_bandwidth_test_goodput_bytes_per_second"
RTT = "hotspot_ping_test_rtt_seconds"
ID = "site, site_type, commune, province, district"  # identity labels (district when set)


class RequirementError(ValueError):
    """The requirement file is missing, unreadable or states an impossible rule."""


@dataclass(frozen=True)
class Requirement:
    """The province's rule, as collector/requirement.yaml states it (the file explains each field):
    speeds in Mbit/s, shares and ratios 0-1, latency limit in ms, minimum tests per 7 days.
    The defaults are the values of collector/requirement.yaml as shipped.
    """

    download_mbps: float = 100
    upload_mbps: float = 100
    test_pass_ratio: float = 0.8
    site_test_share: float = 0.8
    latency_limit_ms: float = 100
    latency_test_share: float = 0.95
    min_bandwidth_tests_per_week: float = 10
    min_latency_tests_per_week: float = 100
    availability: float = 0.9

    def threshold_mbps(self, direction: str) -> float:
        """The goodput a test must be above, in Mbit/s."""
        speed = self.download_mbps if direction == "download" else self.upload_mbps
        return round(speed * self.test_pass_ratio, 6)

    def min_tests(self, days: float) -> tuple[int, int]:
        """(bandwidth tests per direction, latency tests) needed to judge a period of `days`."""
        scale = days / 7
        return (
            math.ceil(self.min_bandwidth_tests_per_week * scale - 1e-9),
            math.ceil(self.min_latency_tests_per_week * scale - 1e-9),
        )

    def problems(self) -> list[str]:
        """Why the rule cannot be evaluated; [] when it can. The thresholds must be bucket boundaries
        of the agents' histograms (docs/metrics.md), or the rules could not count tests above them.
        """
        errs = []
        for d in ("download", "upload"):
            if self.threshold_mbps(d) not in GOODPUT_BOUNDS_MBPS:
                errs.append(
                    f"{d}_mbps × test_pass_ratio = {self.threshold_mbps(d):g} Mbit/s is not a boundary of "
                    f"the agents' goodput histogram ({', '.join(f'{b:g}' for b in GOODPUT_BOUNDS_MBPS)})"
                )
        if self.latency_limit_ms / 1000 not in RTT_BOUNDS_S:
            errs.append(
                f"latency_limit_ms = {self.latency_limit_ms:g} is not a boundary of the agents' RTT "
                f"histogram ({', '.join(f'{b * 1000:g}' for b in RTT_BOUNDS_S)} ms)"
            )
        for key in ("test_pass_ratio", "site_test_share", "latency_test_share", "availability"):
            if not 0 < getattr(self, key) <= 1:
                errs.append(f"{key}: must be a share above 0 and at most 1")
        for key in ("min_bandwidth_tests_per_week", "min_latency_tests_per_week"):
            if getattr(self, key) < 1:
                errs.append(f"{key}: must be at least 1")
        return errs

    def in_words(self, lang: str = "en") -> list[str]:
        """The rule as sentences for people (report), in English ("en") or Vietnamese ("vi")."""
        down, up = self.threshold_mbps("download"), self.threshold_mbps("upload")
        mb, ml = self.min_tests(7)
        pct = _pct
        if lang == "vi":
            return [
                f"Yêu cầu: tải xuống {self.download_mbps:g} Mbit/s và tải lên {self.upload_mbps:g} Mbit/s. "
                f"Một lần đo đạt khi tốc độ trên {down:g} Mbit/s (tải xuống) và {up:g} Mbit/s (tải lên), "
                f"tức {pct(self.test_pass_ratio)} mức yêu cầu.",
                f"Một điểm đạt trong kỳ khi ít nhất {pct(self.site_test_share)} số lần đo mỗi chiều đạt, "
                f"ít nhất {pct(self.latency_test_share)} số lần đo độ trễ không quá "
                f"{self.latency_limit_ms:g} ms, và thời gian hoạt động từ {pct(self.availability)} trở lên.",
                f"Thời gian hoạt động dưới {pct(self.availability)}: không đạt. Ít hơn {mb} lần đo tốc độ "
                f"mỗi chiều hoặc {ml} lần đo độ trễ mỗi 7 ngày (tháng: theo tỉ lệ): chưa đủ số liệu.",
                "Một xã đạt khi mọi điểm (trừ điểm đang bảo trì) đều đạt; "
                "một điểm không đạt hoặc chưa đủ số liệu thì xã không đạt.",
            ]
        return [
            f"Requirement: {self.download_mbps:g} Mbit/s download and {self.upload_mbps:g} Mbit/s upload. "
            f"A test meets when its goodput is above {down:g} Mbit/s down and {up:g} Mbit/s up "
            f"({pct(self.test_pass_ratio)} of the requirement).",
            f"A site meets in a period when at least {pct(self.site_test_share)} of its tests meet in each "
            f"direction, at least {pct(self.latency_test_share)} of its latency tests are at or under "
            f"{self.latency_limit_ms:g} ms, and it was available at least {pct(self.availability)} of the "
            "time.",
            f"Availability below {pct(self.availability)}: does not meet. Fewer than {mb} bandwidth tests "
            f"per direction or {ml} latency tests per 7 days (a month: in proportion): not enough "
            "measurements.",
            "A commune meets when every one of its sites outside maintenance meets; "
            "one failing or unmeasured site and it does not.",
        ]


def _pct(share: float) -> str:
    return f"{share * 100:g}%"


def load(path: Path = DEFAULT_FILE) -> Requirement:
    """Read and check the requirement file. Raises RequirementError with every problem found."""
    try:  # the agent's one YAML reader: UTF-8 checked, a key given twice refused, lines named
        doc = read_yaml_file(path)
    except SchemaError as exc:
        raise RequirementError("\n".join(exc.problems)) from None
    if not isinstance(doc, dict):
        raise RequirementError(f"{path}: expected a mapping of settings")
    known = {f.name for f in fields(Requirement)}
    errs = [
        f"{path}: unknown setting {k!r} (known: {', '.join(sorted(known))})" for k in doc if k not in known
    ]
    values: dict[str, float] = {}
    for key, value in doc.items():
        if key in known:
            if isinstance(value, bool) or not isinstance(value, int | float):
                errs.append(f"{path}: {key}: expected a number, got {value!r}")
            else:
                values[key] = float(value)
    if errs:
        raise RequirementError("\n".join(errs))
    req = Requirement(**values)
    if errs := req.problems():
        raise RequirementError("\n".join(f"{path}: {e}" for e in errs))
    return req


def le_matcher(value: float) -> str:
    """A regex for the `le` label of a bucket boundary, as the Python client ("1e+07") or others
    ("10000000", "1.0e+07") write it."""
    plain = f"{int(value)}(\\\\.0)?" if value == int(value) else f"{value!r}".replace(".", "\\\\.")
    mantissa, exp = f"{value:e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    sign, digits = exp[0], exp[1:].lstrip("0") or "0"
    escaped = mantissa.replace(".", "\\\\.")
    sci = f"{escaped}(\\\\.0)?e\\\\{sign}0?{digits}"
    return f"{plain}|{sci}"


def _window_rules(req: Requirement, w: str, days: float) -> list[dict[str, Any]]:
    min_bw, min_lat = req.min_tests(days)
    per_dir = []
    for d in ("download", "upload"):
        bound = le_matcher(req.threshold_mbps(d) * MBPS)
        per_dir.append(
            f'sum by ({ID}, direction) (increase({GOODPUT}_count{{direction="{d}"}}[{w}]))\n'
            f'- sum by ({ID}, direction) (increase({GOODPUT}_bucket{{direction="{d}", le=~"{bound}"}}[{w}]))'
        )
    lat_le = le_matcher(req.latency_limit_ms / 1000)
    inv = 'site:hotspot_inventory:info{maintenance="false"}'
    s = f"site:hotspot_verdict:state_{w}"
    judged = (
        f"((count by (site) (site:hotspot_programme_bandwidth_tests:increase_{w} >= {min_bw}) == 2)\n"
        f"   and on (site) (site:hotspot_programme_latency_tests:increase_{w} >= {min_lat}))"
    )
    bw_share, lat_share = f"{req.site_test_share:g}", f"{req.latency_test_share:g}"
    ok = (
        f"((min by (site) (site:hotspot_programme_bandwidth_tests_meeting:ratio_{w}) >= {bw_share})\n"
        f"   and on (site) (site:hotspot_programme_latency_tests_within_limit:ratio_{w} >= {lat_share})\n"
        f"   and on (site) (site:hotspot_availability:ratio_{w} >= {req.availability:g}))"
    )
    low = f"(site:hotspot_availability:ratio_{w} < {req.availability:g})"
    commune = "province, district, commune"
    counted = f'{s}{{verdict!="maintenance"}}'

    def share(what: str, unit: str) -> str:
        return (
            f'(count by (province) ({unit}{{verdict="meets"}})\n or count by (province) ({what}) * 0)\n'
            f"/ count by (province) ({what})"
        )

    return [
        {
            "record": f"site:hotspot_programme_bandwidth_tests:increase_{w}",
            "expr": f"sum by ({ID}, direction) (increase({GOODPUT}_count[{w}]))",
        },
        {
            "record": f"site:hotspot_programme_bandwidth_tests_meeting:increase_{w}",
            "expr": "(\n" + "\n)\nor\n(\n".join(per_dir) + "\n)",
        },
        {
            "record": f"site:hotspot_programme_bandwidth_tests_meeting:ratio_{w}",
            "expr": f"site:hotspot_programme_bandwidth_tests_meeting:increase_{w}\n"
            f"/ (site:hotspot_programme_bandwidth_tests:increase_{w} > 0)",
        },
        {
            "record": f"site:hotspot_programme_latency_tests:increase_{w}",
            "expr": f'sum by ({ID}) (increase(hotspot_ping_tests_total{{role="internet"}}[{w}]))',
        },
        {
            "record": f"site:hotspot_programme_latency_tests_within_limit:ratio_{w}",
            "expr": f'sum by ({ID}) (increase({RTT}_bucket{{role="internet", le=~"{lat_le}"}}[{w}]))\n'
            f"/ (site:hotspot_programme_latency_tests:increase_{w} > 0)",
        },
        # Exactly one verdict per inventory site; the four are disjoint by construction.
        {
            "record": s,
            "expr": f"{inv} and on (site) {judged}\n  and on (site) {ok}",
            "labels": {"verdict": "meets"},
        },
        {
            "record": s,
            "expr": f"{inv} and on (site) (\n  ({judged} unless on (site) {ok})\n  or on (site) {low}\n)",
            "labels": {"verdict": "fails"},
        },
        {
            "record": s,
            "expr": f"{inv} unless on (site) (\n  {judged}\n  or on (site) {low}\n)",
            "labels": {"verdict": "not_enough"},
        },
        {
            "record": s,
            "expr": 'site:hotspot_inventory:info{maintenance="true"}',
            "labels": {"verdict": "maintenance"},
        },
        # Communes: meets when all counted sites meet; fails with any failing or unmeasured site.
        {
            "record": f"commune:hotspot_verdict:state_{w}",
            "expr": f'clamp_max(count by ({commune}) ({s}{{verdict="meets"}}), 1)\n'
            f'unless on ({commune}) {s}{{verdict=~"fails|not_enough"}}',
            "labels": {"verdict": "meets"},
        },
        {
            "record": f"commune:hotspot_verdict:state_{w}",
            "expr": f'clamp_max(count by ({commune}) ({s}{{verdict=~"fails|not_enough"}}), 1)',
            "labels": {"verdict": "fails"},
        },
        {
            "record": f"commune:hotspot_verdict:state_{w}",
            "expr": f'clamp_max(count by ({commune}) ({s}{{verdict="maintenance"}}), 1)\n'
            f"unless on ({commune}) {counted}",
            "labels": {"verdict": "maintenance"},
        },
        {
            "record": f"commune:hotspot_sites:count_{w}",
            "expr": f"count by ({commune}, verdict) ({s})",
        },
        # Province: counts per verdict (the denominators) and the two shares officials report.
        {
            "record": f"province:hotspot_sites:count_{w}",
            "expr": f"count by (province, verdict) ({s})",
        },
        {
            "record": f"province:hotspot_communes:count_{w}",
            "expr": f"count by (province, verdict) (commune:hotspot_verdict:state_{w})",
        },
        {
            "record": f"province:hotspot_sites_meeting:ratio_{w}",
            "expr": share(counted, s),
        },
        {
            "record": f"province:hotspot_communes_meeting:ratio_{w}",
            "expr": share(
                f'commune:hotspot_verdict:state_{w}{{verdict!="maintenance"}}',
                f"commune:hotspot_verdict:state_{w}",
            ),
        },
    ]


def _compat_rules() -> list[dict[str, Any]]:
    """The names the dashboards were built on, now from the province's rule (7 days)."""
    return [
        {
            "record": "site:hotspot_requirement_met:bool",
            "expr": f'max by ({ID}) (site:hotspot_verdict:state_7d{{verdict="meets"}})\n'
            f'or max by ({ID}) (site:hotspot_verdict:state_7d{{verdict="fails"}}) * 0',
        },
        {
            "record": "commune:hotspot_requirement_met:bool",
            "expr": 'max by (province, district, commune) (commune:hotspot_verdict:state_7d{verdict="meets"})'
            "\nor max by (province, district, commune) "
            '(commune:hotspot_verdict:state_7d{verdict="fails"}) * 0',
        },
        {"record": "province:hotspot_sites_meeting:ratio", "expr": "province:hotspot_sites_meeting:ratio_7d"},
        {
            "record": "province:hotspot_communes_meeting:ratio",
            "expr": "province:hotspot_communes_meeting:ratio_7d",
        },
    ]


def rules_file(req: Requirement) -> str:
    """The generated rule file's text (deterministic)."""
    doc = {
        "groups": [
            {
                "name": "hotspot-verdict-7d",
                "interval": "2m",  # like the other 7d rules: well inside the 5-minute lookback
                "rules": _window_rules(req, "7d", 7) + _compat_rules(),
            }
        ]
    }
    header = (
        "# Generated by `hotspot-collector requirement --write` from collector/requirement.yaml: "
        "do not edit.\n"
        "# The province's rule over the last 7 days: one verdict per inventory site (docs/collector.md).\n"
    )
    return header + yaml.dump(doc, Dumper=_Dumper, allow_unicode=True, sort_keys=False, width=200)


class _Dumper(yaml.SafeDumper):
    """Multi-line expressions as YAML block text, so the generated file reads like a hand-written one."""


_Dumper.add_representer(
    str,
    lambda d, v: d.represent_scalar("tag:yaml.org,2002:str", v, style="|" if "\n" in v else None),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `hotspot-collector requirement`."""
    parser.add_argument("--file", type=Path, default=DEFAULT_FILE, help="the requirement file (YAML)")
    parser.add_argument("--write", type=Path, nargs="?", const=RULES_OUT, help="write the rules file here")


def command(args: argparse.Namespace) -> int:
    """Run `hotspot-collector requirement`: print the rules file or write it (`--write`); 0 on
    success, 1 when it cannot be written, 2 for an invalid requirement file.
    """
    try:
        req = load(args.file)
    except RequirementError as exc:
        print(exc, file=sys.stderr)
        return 2
    text = rules_file(req)
    if args.write is None:
        sys.stdout.write(text)
        return 0
    try:
        args.write.write_text(text, encoding="utf-8")
    except OSError as exc:
        print(f"hotspot-collector requirement: cannot write {args.write}: {exc.strerror}", file=sys.stderr)
        return 1
    print(f"written: {args.write} (reload Prometheus to apply)")
    return 0
