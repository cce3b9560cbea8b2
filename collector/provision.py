"""Site inventory -> everything a fleet of agents needs: one source of truth for 800 devices.

`hotspot-collector provision --inventory FILE --out DIR --push-url URL` writes into DIR:

- `sites/<id>/config.yaml`: the site's agent config (identity, coordinates, ISP, contract; a
  pushing site gets `push:` with the URL and `basic_auth` naming its credential file, a scraped
  site listens on its inventory port).
- `sites/<id>/push-password` (mode 0600): a pushing site's credential; the device keeps it as
  /etc/hotspot-agent/push-password (root:hotspot-agent 0640).
- `vmauth.yml` (mode 0600): one vmauth user per pushing site, whose `url_prefix` pins every label
  the inventory gives it (site, site_type, commune, province, district if any, instance, job) with
  `extra_label`, so a credential can only write series of its own site, commune and province.
- `targets/`: the Prometheus file_sd targets and the inventory recording rules (collector.targets).
- `credentials.json` (mode 0600, `--state` to keep it elsewhere): the credentials themselves. A
  credential is generated once (`secrets.token_urlsafe`) and kept; `--rotate SITE` replaces one;
  a site gone from the inventory loses its credential and its directory.

Files are rewritten (atomic rename) only when their content changes: re-running it changes nothing
and no mtime moves, so it can run from cron or a deploy hook.
"""

from __future__ import annotations

import argparse
import json
import secrets
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import yaml

from agent.probes.bandwidth import server_problem
from agent.push.pusher import JOB as PUSH_JOB
from agent.schema import is_url, split_host_port, url_has_credentials
from collector import targets
from collector.atomic_file import write_atomic
from collector.inventory import Inventory, InventorySite, load_or_report

STATE_FILE = "credentials.json"
VMAUTH_FILE = "vmauth.yml"
SITES_DIR = "sites"
TARGETS_DIR = "targets"
PASSWORD_FILE = "push-password"
DEVICE_PASSWORD = "/etc/hotspot-agent/push-password"  # where the device keeps its credential
DEFAULT_VM_URL = "http://127.0.0.1:8428"
WRITE_PATH = "/api/v1/write"


class ProvisionError(Exception):
    """Provisioning cannot go on; the message says what to fix."""


@dataclass
class Report:
    """What one run changed, as paths relative to the output directory."""

    written: list[str] = field(default_factory=list)
    unchanged: int = 0
    removed: list[str] = field(default_factory=list)
    rotated: list[str] = field(default_factory=list)
    created: list[str] = field(default_factory=list)


def load_state(path: Path) -> dict[str, str]:
    """Site id -> push password from the state file; {} when it does not exist yet."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProvisionError(f"{path}: cannot read the credential state: {exc}") from None
    creds = raw.get("push_passwords") if isinstance(raw, dict) else None
    if not isinstance(creds, dict) or not all(isinstance(v, str) and v for v in creds.values()):
        raise ProvisionError(
            f'{path}: not a credential state file (expected {{"push_passwords": {{site: password}}}}); '
            "move it away only if you mean to give every site a new credential"
        )
    return {str(k): v for k, v in creds.items()}


def credentials(
    inventory: Inventory, old: dict[str, str], rotate: set[str], report: Report
) -> dict[str, str]:
    """Every pushing site's password: kept, created when new, replaced when rotated."""
    out: dict[str, str] = {}
    for site in inventory.sites:
        if not site.push:
            continue
        if site.id in old and site.id not in rotate:
            out[site.id] = old[site.id]
            continue
        (report.rotated if site.id in old else report.created).append(site.id)
        out[site.id] = secrets.token_urlsafe(24)  # 192 bits; URL-safe so it needs no YAML quoting
    return out


def agent_config(site: InventorySite, push_url: str, speedtest_server: str) -> dict[str, Any]:
    """The site's agent config as a mapping (only what differs from the agent's defaults)."""
    identity: dict[str, Any] = {
        "id": site.id,
        "name": site.name,
        "type": site.type,
        "commune": site.commune,
        "commune_code": site.commune_code,
        "district": site.district,
        "province": site.province,
        "latitude": site.latitude,
        "longitude": site.longitude,
        "isp": site.isp,
        "contracted_download_mbps": site.contracted_download_mbps,
        "contracted_upload_mbps": site.contracted_upload_mbps,
    }
    config: dict[str, Any] = {"site": {k: v for k, v in identity.items() if v not in ("", None)}}
    if site.scrape:
        _host, port = split_host_port(site.scrape)
        config["exposition"] = {"listen": f"0.0.0.0:{port}"}
    if speedtest_server:
        config["probes"] = {"bandwidth": {"server": speedtest_server}}
    if site.push:
        config["push"] = {
            "enabled": True,
            "url": push_url,
            "basic_auth": {"username": site.id, "password": {"file": DEVICE_PASSWORD}},
        }
    return config


def render_config(site: InventorySite, push_url: str, speedtest_server: str) -> str:
    """One site's agent config as YAML, with a header saying it is generated; every setting not
    given has its default (config.example.yaml).
    """
    header = (
        f"# Agent config for site {site.id} ({site.reach}), generated by `hotspot-collector provision`\n"
        "# from the inventory: change the inventory and provision again rather than edit this file.\n"
        "# Every other setting has its default (see config.example.yaml).\n"
    )
    body = yaml.safe_dump(
        agent_config(site, push_url, speedtest_server), allow_unicode=True, sort_keys=False, width=200
    )
    return header + body


def pinned_labels(site: InventorySite) -> dict[str, str]:
    """Every label the inventory owns on a pushing site's series, as a scrape target would set them:
    site, site_type, commune, province, district (when the inventory gives one), instance, job.
    VictoriaMetrics 1.79 ignores an empty extra_label, so a site without a district cannot be
    pinned to none (docs/push.md says what that leaves open).
    """
    return {**targets.target_labels(site), "job": PUSH_JOB}


def url_prefix(site: InventorySite, vm_url: str) -> str:
    """Where vmauth forwards the site's writes: `vm_url` with an extra_label per pinned label."""
    pins = [("extra_label", f"{k}={v}") for k, v in sorted(pinned_labels(site).items())]
    return f"{vm_url.rstrip('/')}?{urlencode(pins, safe='=', quote_via=quote)}"


def vmauth_config(inventory: Inventory, creds: dict[str, str], vm_url: str) -> str:
    """vmauth users: a site's credential writes only to WRITE_PATH, only with its own identity labels."""
    users = [
        {
            "username": site.id,
            "password": creds[site.id],
            "url_map": [
                {
                    "src_paths": [WRITE_PATH],
                    # VictoriaMetrics sets each extra_label over whatever the series carry, and the
                    # ones in url_prefix over any a client adds to its own URL.
                    "url_prefix": url_prefix(site, vm_url),
                }
            ],
        }
        for site in sorted(inventory.sites, key=lambda s: s.id)
        if site.push
    ]
    header = (
        "# vmauth users, generated by `hotspot-collector provision`: do not edit; readable by vmauth only.\n"
        "# One user per pushing site; extra_label pins every identity label the inventory gives (site,\n"
        "# site_type, commune, province, district if any, instance, job): a site writes only as itself.\n"
    )
    if not users:
        # vmauth refuses a config without users (and on reload would keep the last one, with the
        # credentials of sites since removed): one user that reaches nothing, not a write path.
        header += "# No site pushes: the one user below routes nowhere.\n"
        users = [
            {
                "username": "no-pushing-site",
                "password": "no-pushing-site",
                "url_map": [{"src_paths": ["/no-pushing-site"], "url_prefix": "http://127.0.0.1:9/"}],
            }
        ]
    return header + yaml.safe_dump({"users": users}, sort_keys=False, width=200)


def provision(
    inventory: Inventory,
    out: Path,
    *,
    push_url: str,
    state_path: Path | None = None,
    vm_url: str = DEFAULT_VM_URL,
    speedtest_server: str = "",
    rotate: set[str] | None = None,
) -> Report:
    """Write every output file into `out`; returns what changed. Raises ProvisionError or OSError."""
    rotate = rotate or set()
    pushing = {s.id for s in inventory.sites if s.push}
    unknown = rotate - pushing
    if unknown:
        raise ProvisionError(
            f"--rotate: {', '.join(sorted(unknown))}: not a pushing site of the inventory "
            "(only pushing sites have a push credential)"
        )
    for name, url, instead in (
        ("--push-url", push_url, "provision gives each pushing site its own (sites/ID/push-password)"),
        ("--vm-url", vm_url, "vmauth reaches VictoriaMetrics without one: keep it on a private address"),
        ("--speedtest-server", speedtest_server, "its token goes in each agent's probes.bandwidth.token"),
    ):
        if url_has_credentials(url):  # not echoed: it holds a password
            raise ProvisionError(
                f"{name}: has a user name or password in it (USER:PASSWORD@HOST), which would be copied "
                f"into every site's config and the logs; give the URL alone: {instead}"
            )
        problem = is_url(url) if url else None
        if problem:
            raise ProvisionError(f"{name}: {url!r} is {problem}")
    if speedtest_server and (problem := server_problem("http", speedtest_server)):
        raise ProvisionError(f"--speedtest-server: {speedtest_server!r}: {problem}")
    if pushing and not push_url:
        raise ProvisionError(
            f"{len(pushing)} sites push: give --push-url, the address the agents push to "
            "(e.g. https://collector.example.vn:8427/api/v1/write)"
        )
    state_path = state_path or out / STATE_FILE
    report = Report()
    out.mkdir(parents=True, exist_ok=True)
    creds = credentials(inventory, load_state(state_path), rotate, report)

    def put(rel: str, text: str, mode: int = 0o644) -> None:
        if write_atomic(out / rel, text, mode):
            report.written.append(rel)
        else:
            report.unchanged += 1

    # The state first: a credential handed out must already be on record.
    put_state = json.dumps({"push_passwords": dict(sorted(creds.items()))}, indent=1) + "\n"
    if write_atomic(state_path, put_state, 0o600):
        report.written.append(str(state_path))
    for site in inventory.sites:
        put(f"{SITES_DIR}/{site.id}/config.yaml", render_config(site, push_url, speedtest_server))
        if site.push:
            put(f"{SITES_DIR}/{site.id}/{PASSWORD_FILE}", creds[site.id] + "\n", 0o600)
        else:
            stale = out / SITES_DIR / site.id / PASSWORD_FILE
            if stale.exists():  # a site that stopped pushing keeps no credential
                stale.unlink()
                report.removed.append(f"{SITES_DIR}/{site.id}/{PASSWORD_FILE}")
    put(VMAUTH_FILE, vmauth_config(inventory, creds, vm_url), 0o600)
    known = {s.id for s in inventory.sites}
    for old in sorted((out / SITES_DIR).iterdir()):
        if old.is_dir() and old.name not in known:
            shutil.rmtree(old)
            report.removed.append(f"{SITES_DIR}/{old.name}")
    written, unchanged, removed = targets.write(inventory, out / TARGETS_DIR)
    report.written += [f"{TARGETS_DIR}/{n}" for n in written]
    report.unchanged += len(unchanged)
    report.removed += [f"{TARGETS_DIR}/{n}" for n in removed]
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `hotspot-collector provision`."""
    parser.add_argument("--inventory", type=Path, required=True, help="the site inventory (YAML)")
    parser.add_argument("--out", type=Path, required=True, help="output directory (see docs/install.md)")
    parser.add_argument(
        "--push-url",
        default="",
        help="where pushing agents send remote write, e.g. https://collector:8427/api/v1/write",
    )
    parser.add_argument(
        "--vm-url",
        default=DEFAULT_VM_URL,
        help=f"VictoriaMetrics as vmauth reaches it (default {DEFAULT_VM_URL})",
    )
    parser.add_argument(
        "--speedtest-server", default="", help="the bandwidth test server's URL for every site"
    )
    parser.add_argument(
        "--state",
        type=Path,
        help=f"the credential state file (default OUT/{STATE_FILE}); keep it, back it up",
    )
    parser.add_argument(
        "--rotate",
        action="append",
        default=[],
        metavar="SITE",
        help="give SITE a new push credential (repeatable)",
    )


def command(args: argparse.Namespace) -> int:
    """Run `hotspot-collector provision`; 0 when everything was written, 1 when a file cannot be
    written, 2 for a bad inventory or options (every problem printed to stderr).
    """
    inventory = load_or_report(args.inventory)
    if inventory is None:
        return 2
    if args.out.exists() and not args.out.is_dir():  # else a bare "File exists" from mkdir
        print(f"hotspot-collector provision: --out {args.out}: not a directory", file=sys.stderr)
        return 2
    try:
        report = provision(
            inventory,
            args.out,
            push_url=args.push_url,
            state_path=args.state,
            vm_url=args.vm_url,
            speedtest_server=args.speedtest_server,
            rotate=set(args.rotate),
        )
    except ProvisionError as exc:
        print(f"hotspot-collector provision: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(
            f"hotspot-collector provision: cannot write {exc.filename or args.out}: {exc.strerror}",
            file=sys.stderr,
        )
        return 1
    sites = inventory.sites
    pushing = sum(1 for s in sites if s.push)
    print(
        f"{len(sites)} sites ({pushing} pushing): {len(report.written)} files written, "
        f"{report.unchanged} unchanged, {len(report.removed)} removed; "
        f"{len(report.created)} new credentials, {len(report.rotated)} rotated"
    )
    for rel in report.written:
        print(f"  written: {rel}")
    for rel in report.removed:
        print(f"  removed: {rel}")
    if VMAUTH_FILE in report.written:
        print(f"  {VMAUTH_FILE} changed: copy it to vmauth and reload it (SIGHUP)")
    if report.rotated:
        print(f"  rotated: {', '.join(report.rotated)}: deploy their new push-password (the playbook does)")
    return 0
