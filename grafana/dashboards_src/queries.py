"""PromQL for the panels: selectors from the template variables, a site's status, the data source."""

from __future__ import annotations

from grafana_foundation_sdk.builders import (
    prometheus,
)
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import prometheus as pm

from .texts import BELOW, DOWN, MEETS, UNKNOWN

DATASOURCE_UID = "hotspot-prometheus"  # the uid provisioning/datasources/prometheus.yaml gives Prometheus
# Every panel reads the Prometheus chosen in the `datasource` variable, whose default is the
# provisioned one: provisioning works as before, and the JSON also imports through Grafana's UI on
# another server (the variable then offers that server's Prometheus data sources).
DS = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")
MBIT = 1_000_000  # panels show bit/s: bytes/s metrics are multiplied by 8


OVERVIEW_SEL = 'province="$province", commune=~"$commune", site_type=~"$site_type"'
SITE_SEL = 'site="$site"'


def status_expr(sel: str) -> str:
    """Per site: 0 down, 1 below the requirement, 2 not enough tests yet, 3 meets (label: site).
    Every inventory site has one: a listed site with no state at all (never heard) is down."""
    up = f"max by (site) (site:hotspot_up:bool{{{sel}}})"
    met = f"max by (site) (site:hotspot_requirement_met:bool{{{sel}}})"
    listed = f'max by (site) (site:hotspot_inventory:info{{{sel}, maintenance="false"}})'
    return (
        f"({up} == 0) or ({met} == 0) + {BELOW} or ({met} == 1) + {MEETS - 1} or ({up} == 1) + {UNKNOWN - 1}"
        f" or {listed} * {DOWN}"
    )


def info_expr(sel: str) -> str:
    """The site description from the inventory (coordinates included), so that a site silent for
    weeks, or never heard from, keeps its place on the map and in the tables."""
    return (
        f"max by (site, name, commune, site_type, latitude, longitude) (site:hotspot_inventory:info{{{sel}}})"
    )


def with_info(sel: str, expr: str) -> str:
    """`expr` (one series per site) carrying the site's name, commune, type and coordinates."""
    return f"{info_expr(sel)} * on (site) group_left () ({expr})"


def only_problems(sel: str, expr: str) -> str:
    """`expr` kept only for sites whose status is below MEETS (down, below, not enough tests)."""
    return f"({expr}) and on (site) (({status_expr(sel)}) < {MEETS})"


def query(
    expr: str, legend: str = "", ref: str = "A", *, instant: bool = False, table_format: bool = False
) -> prometheus.Dataquery:
    """A Prometheus query on the `datasource` variable: `legend` as Grafana's legend format,
    `ref` its refId; a range query unless `instant`; `table_format` for tables merged on labels.
    """
    q = prometheus.Dataquery().expr(expr).ref_id(ref).datasource(DS)
    if legend:
        q = q.legend_format(legend)
    q = q.instant() if instant else q.range()
    if table_format:
        q = q.format(pm.PromQueryFormat.TABLE)
    return q
