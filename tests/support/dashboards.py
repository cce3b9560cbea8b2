"""Reading the generated Grafana dashboards: their panels, queries, variables and metric names."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.support.paths import ROOT

GRAFANA = ROOT / "grafana"
DASHBOARDS = GRAFANA / "dashboards"
RULES_DIR = ROOT / "collector" / "prometheus" / "rules"

# Grafana's own variables ($__range, ${__value.raw}, ...) all start with two underscores.
VARIABLE_USE = re.compile(
    r"\$\{([A-Za-z0-9_.]+)(?::[^}]*)?\}|\$([A-Za-z_][A-Za-z0-9_]*)|\[\[([A-Za-z0-9_]+)\]\]"
)
AGENT_METRIC = re.compile(r"(?<![:\w])hotspot_[a-z0-9_]+\b")  # not the middle of a recorded name
RECORDED_METRIC = re.compile(r"\b(?:site|commune|province):[a-z0-9_]+:[a-z0-9_]+\b")


def dashboard_files() -> list[Path]:
    return sorted(DASHBOARDS.glob("*/*.json"))


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows included, and the panels inside collapsed rows."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def targets(dashboard: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            yield panel, target


def strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)


def dicts_with(value: Any, key: str) -> Iterator[dict[str, Any]]:
    if isinstance(value, dict):
        if key in value:
            yield value
        for v in value.values():
            yield from dicts_with(v, key)
    elif isinstance(value, list):
        for v in value:
            yield from dicts_with(v, key)


def variables_used(text: str) -> set[str]:
    names = set()
    for match in VARIABLE_USE.finditer(text):
        name = next(g for g in match.groups() if g)
        if not name.startswith("__"):
            names.add(name.split(".")[0])
    return names


def metric_names(dashboard: dict[str, Any]) -> tuple[set[str], set[str]]:
    """(agent metric names, recording rule names) the dashboard's queries and variables use."""
    exprs = [t["expr"] for _, t in targets(dashboard)]
    exprs += [v["query"] for v in dashboard["templating"]["list"] if isinstance(v.get("query"), str)]
    agent = {m for e in exprs for m in AGENT_METRIC.findall(e)}
    recorded = {m for e in exprs for m in RECORDED_METRIC.findall(e)}
    return agent, recorded


def substitute(expr: str, values: dict[str, str]) -> str:
    """Replace template variables the way Grafana does before it sends a query."""

    def one(match: re.Match[str]) -> str:
        name = next(g for g in match.groups() if g)
        if name not in values:
            raise KeyError(f"no value for ${name} in {expr!r}")
        return values[name]

    return VARIABLE_USE.sub(one, expr)


def graph_step(panel: dict[str, Any], step: int) -> int:
    """The step (s) Grafana asks a graph panel's queries at: `step`, or the panel's own minimum
    interval ("1h", "30s", ...) when that is longer."""
    match = re.fullmatch(r"(\d+)([smhd])", panel.get("interval") or "0s")
    if not match:
        raise ValueError(
            f"panel {panel.get('title')!r}: interval {panel['interval']!r} is not like 30s, 5m, 1h, 1d"
        )
    return max(step, int(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)])
