"""Agent configuration: YAML parsed once into frozen, typed settings.

Every problem is reported at once with its key path; unknown keys are errors. `check_host` adds
what the file cannot say alone (TLS files that load, an address that binds, a writable state dir),
for `check-config` and `run` alike.
"""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import http.client
import os
import re
import socket
import sqlite3
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from agent.i18n import _
from agent.probes import PROBES
from agent.probes.base import ProbeSettings, ProbeSpec
from agent.push.settings import PushSettings
from agent.schema import (
    BasicAuth,
    SchemaError,
    Secret,
    check,
    is_host_port,
    load_yaml,
    parse,
    read_yaml_file,
    split_host_port,
)
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
            errs.append("tls_cert_file: " + _("tls_cert_file and tls_key_file go together"))
        if self.client_ca_file and not self.tls_cert_file:
            errs.append("client_ca_file: " + _("needs tls_cert_file and tls_key_file"))
        for key in ("tls_cert_file", "tls_key_file", "client_ca_file"):
            path = getattr(self, key)
            if path and not Path(path).is_file():
                errs.append(f"{key}: " + _("no such file: {path}").format(path=path))
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
                _(
                    "{source}: empty; at least the site's identity (site.id, site.commune, "
                    "site.province) is required"
                ).format(source=source)
            ]
        )
    try:
        return parse(Config, raw)
    except SchemaError as exc:
        raise ConfigError(exc.problems) from None


def state_dir_for(config: Config) -> Path:
    """systemd's StateDirectory= sets $STATE_DIRECTORY; otherwise the configured path."""
    return Path(os.environ.get("STATE_DIRECTORY") or config.state_dir)


def restart_only_changes(running: Config, new: Config) -> list[str]:
    """The settings `new` changes that the running agent applies only at a restart, each as
    "key (running: X, file: Y)". Everything else a reload applies: site, probes, push, log_level,
    and exposition (/metrics moves to a new address, TLS and basic auth included).
    state_dir holds the push queue and the data budget, which open files there for the agent's life.
    """
    changes = []
    if not os.environ.get("STATE_DIRECTORY") and new.state_dir != running.state_dir:  # else unused
        changes.append(f"state_dir (running: {running.state_dir}, file: {new.state_dir})")
    return changes


@dataclass(frozen=True)
class HostCheck:
    """What this host says about a valid config: `problems` stop a start (each "key: why"),
    `notes` do not (a weak secret, a port held by the running agent itself)."""

    problems: list[str]
    notes: list[str]


def check_host(config: Config, listen: str | None = None, *, starting: bool = False) -> HostCheck:
    """Everything `run` needs from this host, tried without leaving anything behind: the state dir
    can be created and written, the TLS files load, the listen address can be bound (bound, then
    closed), the push queue file can be opened. `check-config` and `run` both call it, so the check
    refuses what a start would. `starting`: a port or queue held by a running agent is then a problem
    (two agents cannot share them); for a check, it is the agent the file is meant for.
    """
    problems: list[str] = []
    notes: list[str] = []
    state_key = "$STATE_DIRECTORY" if os.environ.get("STATE_DIRECTORY") else "state_dir"
    state_dir = state_dir_for(config)
    if (problem := state_dir_problem(state_dir)) is not None:
        problems.append(f"{state_key}: {problem}")
    problems += _tls_problems(config.exposition)
    if config.push.enabled and config.push.tls_ca_file and config.push.url.startswith("https://"):
        try:
            ssl.create_default_context(cafile=config.push.tls_ca_file)
        except (OSError, ValueError) as exc:
            problems.append(
                _("push.tls_ca_file: cannot load {path} as PEM certificates: {why}").format(
                    path=config.push.tls_ca_file, why=_why(exc)
                )
            )
    key = "--listen" if listen is not None else "exposition.listen"
    in_use = _bind_problem(listen or config.exposition.listen, config.exposition)
    if in_use is not None:
        problem, by_agent = in_use
        if by_agent and not starting:
            notes.append(f"{key}: {problem}")
        else:
            problems.append(f"{key}: {problem}")
    if config.push.enabled and state_dir.is_dir():
        from agent.push.pusher import QUEUE_FILE  # pushing sites load it anyway

        queue = _queue_problem(state_dir / QUEUE_FILE)
        if queue is not None:
            problem, kind = queue
            note = kind == "damaged" or (kind == "held" and not starting)
            (notes if note else problems).append(f"{state_key}: {problem}")
    notes += weak_secret_notes(config)
    return HostCheck(problems, notes)


def _why(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return exc.reason or str(exc)  # "PEM lib", "KEY_VALUES_MISMATCH"...
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)


def state_dir_problem(path: Path) -> str | None:
    """None when the agent can create (mkdir -p) and write `path`; else why not, in plain words."""
    if path.exists():
        if not path.is_dir():
            return _("{path} is not a directory").format(path=path)
        if not os.access(path, os.W_OK | os.X_OK):
            return _("{path}: no permission to write there").format(path=path)
        return None
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        return _("{path} cannot be created: {parent} is not a directory").format(path=path, parent=parent)
    if not os.access(parent, os.W_OK | os.X_OK):
        return _("{path} cannot be created: no permission to write in {parent}").format(
            path=path, parent=parent
        )
    return None


def _tls_problems(exposition: Exposition) -> list[str]:
    """Each TLS file loaded the way the server loads it; problems name the file's key."""
    problems = []
    cert, key, ca = exposition.tls_cert_file, exposition.tls_key_file, exposition.client_ca_file
    for name, path in (("tls_cert_file", cert), ("tls_key_file", key), ("client_ca_file", ca)):
        if path and Path(path).is_file():
            try:
                Path(path).open("rb").close()
            except OSError as exc:
                problems.append(
                    _("exposition.{key}: cannot read {path}: {why}").format(
                        key=name, path=path, why=_why(exc)
                    )
                )
    if problems or not (cert and key and Path(cert).is_file() and Path(key).is_file()):
        return problems  # missing files and lone halves are reported by Exposition.validate()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:  # a certificate file loads as trust anchors only when it holds PEM certificates
        context.load_verify_locations(cafile=cert)
    except (ssl.SSLError, ValueError) as exc:
        problems.append(
            _("exposition.tls_cert_file: {path} is not a PEM certificate: {why}").format(
                path=cert, why=_why(exc)
            )
        )
    else:
        try:
            context.load_cert_chain(cert, key)
        except (ssl.SSLError, ValueError) as exc:
            problems.append(
                _("exposition.tls_key_file: {path} is not a PEM private key for tls_cert_file: {why}").format(
                    path=key, why=_why(exc)
                )
            )
    if ca and Path(ca).is_file():
        try:
            context.load_verify_locations(cafile=ca)
        except (ssl.SSLError, ValueError) as exc:
            problems.append(
                _("exposition.client_ca_file: {path} is not a PEM certificate: {why}").format(
                    path=ca, why=_why(exc)
                )
            )
    return problems


def _bind_problem(listen: str, exposition: Exposition) -> tuple[str, bool] | None:
    """Bind `listen` as the server does, then close. (problem, held by a running agent) or None."""
    host, port = split_host_port(listen)
    host = host or "0.0.0.0"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server: TIME_WAIT is no problem
        try:
            sock.bind((host, port))
            return None
        except socket.gaierror as exc:
            return _("cannot resolve {host}: {why}").format(host=host, why=exc.strerror), False
        except OSError as exc:
            if exc.errno == errno.EADDRNOTAVAIL:
                return _("{host} is not an address of this host").format(host=host), False
            if exc.errno == errno.EACCES:
                return _("port {port}: no permission (ports below 1024 need root)").format(port=port), False
            if exc.errno != errno.EADDRINUSE:
                return _("cannot listen on {listen}: {why}").format(listen=listen, why=_why(exc)), False
    if _answers_as_agent(host, port, exposition):
        held = _("port {port} is in use by a running hotspot-agent (a reload keeps it)")
        return held.format(port=port), True
    return _("port {port} is in use by another program").format(port=port), False


def _answers_as_agent(host: str, port: int, exposition: Exposition) -> bool:
    """Whether what listens on host:port is a hotspot-agent: it serves the configured certificate
    (so an agent that requires client certificates counts too), or its Server header says so."""
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1" if host == "0.0.0.0" else "::1"
    conn: http.client.HTTPConnection
    if exposition.tls_cert_file:
        context = ssl.create_default_context()  # identified by its certificate, not verified by it
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        try:
            with (
                socket.create_connection((host, port), timeout=3) as raw,
                context.wrap_socket(raw) as tls,
            ):
                served = tls.getpeercert(binary_form=True)
            pem = Path(exposition.tls_cert_file).read_text(encoding="ascii", errors="replace")
            leaf = re.search(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", pem, re.S)
            if served is not None and leaf and served == ssl.PEM_cert_to_DER_cert(leaf.group(0)):
                return True
        except (OSError, ValueError):
            pass
        conn = http.client.HTTPSConnection(host, port, timeout=3, context=context)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=3)
    try:
        conn.request("GET", "/healthz")
        return conn.getresponse().getheader("Server", "").startswith("hotspot-agent")
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def _queue_problem(path: Path) -> tuple[str, str] | None:
    """The push queue file as the pusher opens it: (problem, kind) or None. kind: "problem";
    "held" (by a running agent); "damaged" (the pusher moves it aside and starts empty)."""
    if not path.exists():
        return None
    if not path.is_file():
        return _("{path} is not a file").format(path=path), "problem"
    if not os.access(path, os.R_OK | os.W_OK):
        return _("{path}: no permission to read and write it").format(path=path), "problem"
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        finally:
            db.close()
    except sqlite3.Error as exc:
        if type(exc) is sqlite3.DatabaseError:  # damaged ("malformed", "not a database"), not locked
            damaged = _("{path} is damaged ({why}): the agent moves it to {path}.corrupt and starts empty")
            return damaged.format(path=path, why=exc), "damaged"
        return _("{path} is not a push queue: {why}").format(path=path, why=exc), "problem"
    lock = Path(f"{path}.lock")
    if lock.is_file():
        try:
            with lock.open("rb") as f:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released by the close
        except BlockingIOError:
            return _("{path} is in use by a running hotspot-agent").format(path=path), "held"
        except OSError:
            pass  # cannot even open it: the pusher will say why
    return None


# Words that turn up in the agent's own log lines and in default setups: as a secret, each is masked
# wherever it appears (the redaction cannot tell the password from the word) and easily guessed.
_ORDINARY = frozenset(
    [
        "admin",
        "administrator",
        "agent",
        "bandwidth",
        "changeme",
        "collector",
        "default",
        "guest",
        "hotspot",
        "login",
        "metrics",
        "monitor",
        "password",
        "pass",
        "prometheus",
        "push",
        "root",
        "scrape",
        "secret",
        "test",
        "token",
        "user",
        "wifi",
    ]
)
_SHORT = 12  # characters; below this a secret is easy to guess and likely to occur in other text


def weak_secret_notes(config: Config) -> list[str]:
    """One note per secret that is short or an ordinary word, with its key: not an error (the agent
    runs, and masks it), but redaction (agent/redact.py) masks that text in every log line, and
    such a secret is easily guessed."""
    notes = []
    site_words = {config.site.id.lower(), config.site.commune.lower()}
    for key, secret in _secrets_with_keys(config):
        value = secret.reveal()
        plain = value.lower().strip("0123456789!._-")
        if plain in _ORDINARY or value.lower() in site_words:
            notes.append(
                _(
                    "{key}: the secret is an ordinary word; every log line that holds this word will "
                    "show <secret> in its place, and it is easily guessed: use a long random one"
                ).format(key=key)
            )
        elif len(value) < _SHORT:
            notes.append(
                _(
                    "{key}: the secret has only {length} characters (fewer than {short}): it is easily "
                    "guessed, and log lines that happen to hold the same text show <secret> there"
                ).format(key=key, length=len(value), short=_SHORT)
            )
    return notes


def _secrets_with_keys(settings: Any, path: str = "") -> list[tuple[str, Secret]]:
    """Every Secret inside parsed settings, with its key path."""
    if isinstance(settings, Secret):
        return [(path, settings)]
    if dataclasses.is_dataclass(settings) and not isinstance(settings, type):
        return [
            found
            for f in dataclasses.fields(settings)
            for found in _secrets_with_keys(getattr(settings, f.name), f"{path}.{f.name}".lstrip("."))
        ]
    return []
