"""The source of the Grafana dashboards: shared pieces (texts, queries, board, panels) and one module
per dashboard. `render()` gives every dashboard file's exact text; grafana/build.py writes or checks
them."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import commune, fleet, overview, site
from .texts import LANGS, Lang

DASHBOARDS: dict[str, Callable[[Lang], dict[str, Any]]] = {
    "overview": overview.overview,
    "commune": commune.commune,
    "site": site.site,
    "fleet": fleet.fleet,
}


def render() -> dict[Path, str]:
    """Every dashboard file's path (relative to grafana/dashboards/, e.g. `vi/site.json`) and its
    exact text: JSON with sorted keys, two-space indent, non-ASCII kept, a final newline."""
    out: dict[Path, str] = {}
    for lang in LANGS:
        for name, make in DASHBOARDS.items():
            text = json.dumps(make(lang), ensure_ascii=False, indent=2, sort_keys=True) + "\n"
            out[Path(lang) / f"{name}.json"] = text
    return out
