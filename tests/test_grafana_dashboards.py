"""The generated dashboards: regenerated identically, valid, self-consistent, and on the metrics contract."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path
from types import ModuleType

import jsonschema
import pytest
import yaml

from tests.support.dashboards import (
    DASHBOARDS,
    GRAFANA,
    RULES_DIR,
    dashboard_files,
    dicts_with,
    load,
    metric_names,
    panels,
    strings,
    targets,
    variables_used,
)
from tests.support.paths import ROOT


def load_build() -> ModuleType:
    """grafana/build.py is a script, not an installed package: load it from its path."""
    spec = importlib.util.spec_from_file_location("grafana_build", GRAFANA / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["grafana_build"] = module  # dataclasses look their module up while building
    spec.loader.exec_module(module)
    return module


FILES = dashboard_files()
PROVISIONED_UID = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yaml").read_text())[
    "datasources"
][0]["uid"]


def ids(path: Path) -> str:
    return f"{path.parent.name}/{path.stem}"


def test_regenerating_gives_the_committed_files() -> None:
    """The committed JSON is exactly what grafana/build.py generates, and nothing else is there."""
    rendered = load_build().render()
    assert sorted(rendered) == sorted(p.relative_to(DASHBOARDS) for p in FILES)
    for rel, text in rendered.items():
        assert (DASHBOARDS / rel).read_text(encoding="utf-8") == text, f"{rel}: run python grafana/build.py"


def test_check_mode_reports_a_stale_file(tmp_path: Path) -> None:
    """`build.py --check` exits 1 when a dashboard differs from the generator's output, 0 when not."""
    build = load_build()
    assert build.main(["--out", str(tmp_path)]) == 0
    assert build.main(["--out", str(tmp_path), "--check"]) == 0
    (tmp_path / "en" / "site.json").write_text("{}\n")
    assert build.main(["--out", str(tmp_path), "--check"]) == 1


def test_there_are_four_dashboards_in_two_languages() -> None:
    """Overview, commune, site and fleet, each in Vietnamese and English."""
    assert [ids(p) for p in FILES] == [
        f"{lang}/{name}" for lang in ("en", "vi") for name in ("commune", "fleet", "overview", "site")
    ]


@pytest.mark.parametrize("path", FILES, ids=ids)
def test_dashboard_validates_against_the_schema(path: Path) -> None:
    """Every dashboard is valid against grafana/schema/dashboard.schema.json."""
    schema = json.loads((GRAFANA / "schema/dashboard.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(load(path)), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:10])


def test_schema_rejects_a_broken_dashboard() -> None:
    """The schema is not a rubber stamp: a panel off the grid and an unknown key both fail."""
    schema = json.loads((GRAFANA / "schema/dashboard.schema.json").read_text())
    broken = load(FILES[0])
    broken["panels"][0]["gridPos"]["x"] = 30
    broken["panels"][0]["bogus"] = 1
    messages = [e.message for e in jsonschema.Draft7Validator(schema).iter_errors(broken)]
    assert messages


@pytest.mark.parametrize("path", FILES, ids=ids)
def test_sdk_typed_models_keep_every_key(path: Path) -> None:
    """Decoding into grafana-foundation-sdk's typed models and encoding again loses nothing."""
    from grafana_foundation_sdk.cog import plugins
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models.dashboard import Dashboard

    plugins.register_default_plugins()  # panel options and queries decode into their typed models too
    data = load(path)
    again = json.loads(json.dumps(Dashboard.from_json(data), cls=JSONEncoder))
    assert again == data


def test_sdk_round_trip_drops_an_unknown_option() -> None:
    """The round trip above would notice a misspelt panel option (the typed model drops it)."""
    from grafana_foundation_sdk.cog import plugins
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models.dashboard import Dashboard

    plugins.register_default_plugins()
    data = load(DASHBOARDS / "en/overview.json")
    stat = next(p for p in data["panels"] if p["type"] == "stat")
    stat["options"]["colourMode"] = "background"
    again = json.loads(json.dumps(Dashboard.from_json(data), cls=JSONEncoder))
    assert again != data


def test_uids_are_unique_and_panel_ids_unique_per_dashboard() -> None:
    """No two dashboards share a uid; no two panels of one dashboard share an id."""
    uids = [load(p)["uid"] for p in FILES]
    assert len(set(uids)) == len(uids)
    for path in FILES:
        panel_ids = [p["id"] for p in panels(load(path))]
        assert len(set(panel_ids)) == len(panel_ids), path


@pytest.mark.parametrize("path", FILES, ids=ids)
def test_every_datasource_reference_is_the_provisioned_uid(path: Path) -> None:
    """Panels, queries and variables all read the `datasource` variable, whose default is the
    provisioned Prometheus's uid (so the file provisions as before and imports through the UI)."""
    dash = load(path)
    refs = [d["datasource"] for d in dicts_with(dash, "datasource")]
    assert refs
    assert all(r == {"type": "prometheus", "uid": "${datasource}"} for r in refs), refs
    var = next(v for v in dash["templating"]["list"] if v["name"] == "datasource")
    assert var["type"] == "datasource" and var["query"] == "prometheus"
    assert var["current"]["value"] == PROVISIONED_UID


@pytest.mark.parametrize("path", FILES, ids=ids)
def test_every_variable_used_is_defined(path: Path) -> None:
    """Each $var / ${var} in queries, titles and links is a template variable of the dashboard."""
    data = load(path)
    defined = {v["name"] for v in data["templating"]["list"]}
    used = {name for text in strings(data) for name in variables_used(text)}
    assert used <= defined, used - defined
    assert defined <= used, f"defined but unused: {defined - used}"


def test_variables_chain_province_commune_type_site() -> None:
    """Each variable's query is narrowed by the ones before it."""
    data = load(DASHBOARDS / "en/site.json")
    queries = {v["name"]: v["query"] for v in data["templating"]["list"]}
    assert list(queries) == ["datasource", "province", "commune", "site_type", "site"]
    assert variables_used(queries["commune"]) == {"province"}
    assert variables_used(queries["site_type"]) == {"province", "commune"}
    assert variables_used(queries["site"]) == {"province", "commune", "site_type"}


def test_links_open_dashboards_of_the_same_language() -> None:
    """Every /d/UID link inside a dashboard opens a generated dashboard in its own language."""
    uids = {load(p)["uid"]: p.parent.name for p in FILES}
    for path in FILES:
        linked = {m for text in strings(load(path)) for m in re.findall(r"/d/([A-Za-z0-9_-]+)", text)}
        for uid in linked:
            assert uids.get(uid) == path.parent.name, (path, uid)


def test_both_languages_run_the_same_queries_and_layout() -> None:
    """vi and en differ only in words: same panels, positions, units and queries."""
    for name in ("overview", "commune", "site", "fleet"):
        vi, en = load(DASHBOARDS / f"vi/{name}.json"), load(DASHBOARDS / f"en/{name}.json")
        shape = [
            (
                p["type"],
                p["gridPos"],
                p["fieldConfig"]["defaults"].get("unit") if "fieldConfig" in p else None,
            )
            for p in panels(vi)
        ]
        assert shape == [
            (
                p["type"],
                p["gridPos"],
                p["fieldConfig"]["defaults"].get("unit") if "fieldConfig" in p else None,
            )
            for p in panels(en)
        ]
        assert [t["expr"] for _, t in targets(vi)] == [t["expr"] for _, t in targets(en)]
        vi_titles = [p.get("title") for p in panels(vi)]
        en_titles = [p.get("title") for p in panels(en)]
        untranslated = [t for t, e in zip(vi_titles, en_titles, strict=True) if t == e]
        assert not untranslated, f"{name}: titles not translated: {untranslated}"


def test_bit_rates_are_shown_in_bits_per_second() -> None:
    """A bytes-per-second metric is multiplied by 8 and shown with unit bps (Mbit/s at a glance)."""
    for path in FILES:
        for panel, target in targets(load(path)):
            uses = re.findall(r"bytes_per_second\{[^}]*\}(?:\[[^\]]*\])?\)*( \* 8)?", target["expr"])
            if not uses:
                continue
            assert all(uses), (path, target["expr"])
            units = {panel["fieldConfig"]["defaults"].get("unit")} | {
                prop["value"]
                for o in panel["fieldConfig"]["overrides"]
                for prop in o["properties"]
                if prop["id"] == "unit"
            }
            assert "bps" in units, (path, panel["title"])


def test_speed_panels_are_red_below_the_threshold() -> None:
    """Speed thresholds start red and turn green at the 80 Mbit/s default pass threshold."""
    build = load_build()
    config = build.SPEED_STEPS.build()
    assert [(s.value, s.color) for s in config.steps] == [(None, "red"), (80_000_000, "green")]


def test_provisioning_points_at_the_generated_dashboards() -> None:
    """The datasource has the fixed uid and an env URL with a default; each language has its folder."""
    ds = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yaml").read_text())
    assert ds["apiVersion"] == 1
    (source,) = ds["datasources"]
    assert (
        source["type"] == "prometheus"
        and source["uid"] == "hotspot-prometheus"
        and source["access"] == "proxy"
    )
    env = dict(
        line.split("=", 1)
        for line in (GRAFANA / "provisioning/grafana.env").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert source["url"] == "${HOTSPOT_PROMETHEUS_URL}" and env["HOTSPOT_PROMETHEUS_URL"].startswith(
        "http://"
    )
    providers = yaml.safe_load((GRAFANA / "provisioning/dashboards/hotspot.yaml").read_text())["providers"]
    assert len({p["folder"] for p in providers}) == len(providers) == 2
    for provider in providers:
        assert provider["type"] == "file"
        rel = provider["options"]["path"].replace("${HOTSPOT_DASHBOARDS_DIR}", str(DASHBOARDS))
        assert sorted(Path(rel).glob("*.json")), provider
    assert "HOTSPOT_DASHBOARDS_DIR" in env


def test_every_agent_metric_used_is_in_the_metrics_reference() -> None:
    """A metric renamed in docs/metrics.md (the contract) breaks this test, naming the panel's metric."""
    documented = set(re.findall(r"`(hotspot_[a-z0-9_]+)`", (ROOT / "docs/metrics.md").read_text()))
    used = {m for p in FILES for m in metric_names(load(p))[0]}
    assert used, "no hotspot_* metric found in the dashboards"
    assert used <= documented, sorted(used - documented)


def test_every_recorded_metric_used_is_a_recording_rule() -> None:
    """Each site:/commune:/province: series the dashboards read is recorded in collector/prometheus/rules,
    or in the inventory rules `hotspot-collector targets` generates."""
    from collector import inventory, targets

    recorded = set()
    generated = targets.rules_file(inventory.load(ROOT / "collector/examples/nam-dinh.yaml"))
    docs = [yaml.safe_load(generated)]
    docs += [
        yaml.safe_load(p.read_text())
        for p in sorted(RULES_DIR.glob("*.yml")) + sorted(RULES_DIR.glob("*.yaml"))
    ]
    for doc in docs:
        for group in (doc or {}).get("groups", []):
            recorded |= {r["record"] for r in group.get("rules", []) if "record" in r}
    used = {m for p in FILES for m in metric_names(load(p))[1]}
    assert used <= recorded, f"not recorded in {RULES_DIR}: {sorted(used - recorded)}"
