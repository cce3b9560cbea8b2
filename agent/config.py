"""Agent configuration: YAML parsed once into frozen, typed settings.

Every problem is reported at once with its key path; unknown keys are errors.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from agent.probes import PROBES
from agent.probes.base import ProbeSettings, ProbeSpec
from agent.push.settings import PushSettings
from agent.schema import BasicAuth, SchemaError, check, is_host_port, load_yaml, parse, read_yaml_file
from agent.site import Site

DEFAULT_LISTEN = "0.0.0.0:9591"


class ConfigError(SchemaError):
    """The config cannot be used; `problems` lists every reason with its key path."""


@dataclass(frozen=True)
class Exposition:
    """Where /metrics and /healthz are served, and how they are protected (all off by default)."""

    listen: str = check(is_host_port, default=DEFAULT_LISTEN)
    tls_cert_file: str = ""
    tls_key_file: str = ""
    client_ca_file: str = ""  # when set, clients must present a certificate signed by this CA
    basic_auth: BasicAuth | None = None

    def validate(self) -> list[str]:
        errs = []
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            errs.append("tls_cert_file: tls_cert_file and tls_key_file go together")
        if self.client_ca_file and not self.tls_cert_file:
            errs.append("client_ca_file: needs tls_cert_file and tls_key_file")
        for key in ("tls_cert_file", "tls_key_file", "client_ca_file"):
            path = getattr(self, key)
            if path and not Path(path).is_file():
                errs.append(f"{key}: no such file: {path}")
        return errs


def _enabled(self: Any) -> dict[str, ProbeSettings]:
    """The enabled probes' settings by probe name."""
    return {name: s for name, s in vars(self).items() if s.enabled}


def probes_settings_class(specs: Mapping[str, ProbeSpec[Any, Any]]) -> type:
    """A frozen dataclass with one field per probe: its config key is the probe's name, its type the
    probe's settings class, its default those settings' defaults. So a new probe needs no line here."""
    return dataclasses.make_dataclass(
        "Probes",
        [(name, spec.settings, field(default_factory=spec.settings)) for name, spec in specs.items()],
        frozen=True,
        namespace={"enabled": _enabled, "__doc__": "Every registered probe's settings, one field per probe."},
    )


if TYPE_CHECKING:

    class Probes:
        """Every registered probe's settings, one field per probe (`probes.ping`, ...)."""

        def enabled(self) -> dict[str, ProbeSettings]: ...

        def __getattr__(self, name: str) -> Any: ...

else:
    Probes = probes_settings_class(PROBES)


@dataclass(frozen=True)
class Config:
    site: Site
    exposition: Exposition = field(default_factory=Exposition)
    probes: Probes = field(default_factory=Probes)
    push: PushSettings = field(default_factory=PushSettings)
    state_dir: str = "/var/lib/hotspot-agent"  # the data budget and the push queue live here
    log_level: Literal["debug", "info", "warning", "error"] = "info"


def load(path: str | Path) -> Config:
    """Read and validate a config file; raise ConfigError listing every problem."""
    try:
        raw = read_yaml_file(path)
    except SchemaError as exc:
        raise ConfigError(exc.problems) from None
    return _build(raw, str(path))


def loads(text: str, source: str = "<config>") -> Config:
    try:
        raw = load_yaml(text, source)
    except SchemaError as exc:
        raise ConfigError(exc.problems) from None
    return _build(raw, source)


def _build(raw: Any, source: str) -> Config:
    if raw is None:
        raise ConfigError(
            [
                f"{source}: empty; at least the site's identity (site.id, site.commune, "
                "site.province) is required"
            ]
        )
    try:
        return parse(Config, raw)
    except SchemaError as exc:
        raise ConfigError(exc.problems) from None
