"""Turn parsed YAML into frozen dataclasses, collecting every problem with its key path.

Shared by the agent's config and the collector's inventory. A dataclass field's type drives the
check (str, int, float, bool, Literal, tuple[X, ...], dict[str, X], nested dataclasses, Optional,
Secret); `field(metadata={"check": fn})` adds a domain check that returns an error text or None.
Unknown keys are errors: a typo must never be silently ignored.
"""

from __future__ import annotations

import base64
import dataclasses
import ipaddress
import os
import re
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, Union, get_args, get_origin

from agent.i18n import _

T = TypeVar("T")
Check = Callable[[Any], str | None]


class SchemaError(Exception):
    """Every problem found in one document, each prefixed by its key path."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class Secret:
    """A password or token. Given inline, as `{env: NAME}` or as `{file: PATH}`; never printed."""

    def __init__(self, value: str, source: str = "inline") -> None:
        self._value = value
        self.source = source

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret(<{self.source}>)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def secrets_in(settings: Any) -> list[str]:
    """Every Secret's value inside parsed settings (dataclasses, mappings, sequences), for redaction."""
    if isinstance(settings, Secret):
        return [settings.reveal()]
    if isinstance(settings, BasicAuth):  # sent as base64 of user:password, so echoed that way too
        password = settings.password.reveal()
        return [password, base64.b64encode(f"{settings.username}:{password}".encode()).decode()]
    if dataclasses.is_dataclass(settings) and not isinstance(settings, type):
        return [s for f in dataclasses.fields(settings) for s in secrets_in(getattr(settings, f.name))]
    if isinstance(settings, dict):
        return [s for v in settings.values() for s in secrets_in(v)]
    if isinstance(settings, (list, tuple, frozenset, set)):
        return [s for v in settings for s in secrets_in(v)]
    return []


@dataclasses.dataclass(frozen=True)
class BasicAuth:
    """HTTP basic auth credentials (the agent's /metrics, the push receiver)."""

    username: str
    password: Secret

    def validate(self) -> list[str]:
        """An empty user or password would let anyone in (or be refused by every receiver)."""
        errs = []
        if not self.username:
            errs.append("username: " + _("must not be empty"))
        elif ":" in self.username:
            errs.append("username: " + _("must not contain ':' (basic auth splits user from password there)"))
        if not self.password.reveal():
            errs.append("password: " + _("must not be empty"))
        return errs


MAX_YAML_NODES = 2_000_000  # values in a YAML document, aliases expanded; 5,000 inventory sites: ~140,000


def _unique_key_loader() -> type:
    """A SafeLoader that records every key given twice in one mapping (with both lines).

    PyYAML keeps the last value silently; a site whose second `maintenance:` undoes the first, or a
    second `probes:` section that replaces the first, must be an error instead.
    """
    import yaml

    class Loader(yaml.SafeLoader):
        duplicates: list[tuple[int, str]]

        def construct_document(self, node: Any) -> Any:
            # Aliases are shared, so a few lines can stand for 10^9 values ("billion laughs"), which
            # the checks would then walk: count the document as expanded before building it.
            sizes: dict[int, int] = {}

            def size(n: Any) -> int:
                if id(n) not in sizes:
                    sizes[id(n)] = 0  # a node inside itself counts once
                    kids = (
                        [k for pair in n.value for k in pair]
                        if isinstance(n, yaml.MappingNode)
                        else (n.value if isinstance(n, yaml.SequenceNode) else [])
                    )
                    sizes[id(n)] = 1 + sum(size(k) for k in kids)
                return sizes[id(n)]

            if size(node) > MAX_YAML_NODES:
                raise yaml.composer.ComposerError(
                    None,
                    None,
                    _("aliases expand to more than {limit} values; write the values out").format(
                        limit=f"{MAX_YAML_NODES:,}"
                    ),
                    node.start_mark,
                )
            return super().construct_document(node)

        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            first: dict[Any, int] = {}
            for key_node, _value in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # `<<:` merges are meant to be overridden
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                try:
                    if key in first:
                        self.duplicates.append(
                            (
                                line,
                                _("key {key} given twice (lines {first} and {line}); keep one").format(
                                    key=repr(key), first=first[key], line=line
                                ),
                            )
                        )
                    first.setdefault(key, line)
                except TypeError:  # unhashable key: the base constructor reports it
                    continue
            return super().construct_mapping(node, deep)

    return Loader


def decode_text(data: bytes, source: str) -> str:
    """UTF-8 bytes to text; anything else (a legacy Windows encoding, binary) is a SchemaError."""
    if b"\0" in data:
        raise SchemaError([_("{source}: binary content, not a YAML text file").format(source=source)])
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        text = _(
            "{source}: not UTF-8 text: byte 0x{byte} at line {line}, column {column}; "
            "save the file as UTF-8 (legacy encodings such as Windows cp1258 are not read)"
        )
        byte = f"{data[exc.start]:02x}"
        raise SchemaError([text.format(source=source, byte=byte, line=line, column=column)]) from None


def read_yaml_file(path: str | Path) -> Any:
    """Read and parse a YAML file; unreadable, non-UTF-8 or invalid YAML becomes a SchemaError."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise SchemaError([_("{path}: cannot read: {why}").format(path=path, why=exc.strerror)]) from None
    return load_yaml(decode_text(data, str(path)), str(path))


def load_yaml(text: str, source: str) -> Any:
    """Parse YAML text; a syntax error or a key given twice becomes a SchemaError that says where."""
    import yaml

    duplicates: list[tuple[int, str]] = []
    try:
        loader = _unique_key_loader()(text)  # its reader already refuses control characters
        loader.duplicates = duplicates
        try:
            data = loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).split("\n")[0]
        text = (
            _("{source}: not valid YAML at line {line}, column {column}: {problem}").format(
                source=source, line=where.line + 1, column=where.column + 1, problem=problem
            )
            if where
            else _("{source}: not valid YAML: {problem}").format(source=source, problem=problem)
        )
        raise SchemaError([text]) from None
    except RecursionError:
        raise SchemaError([_("{source}: not valid YAML: nested too deeply").format(source=source)]) from None
    if duplicates:
        raise SchemaError(
            [
                _("{source}: line {line}: {problem}").format(source=source, line=line, problem=text)
                for line, text in sorted(duplicates)
            ]
        )
    return data


def check(fn: Check | Each, **kw: Any) -> Any:
    """A dataclass field with a domain check: `x: str = check(is_host, default="a")`.

    The one place a field's own rule is declared; `validate()` is only for rules between fields.
    """
    return dataclasses.field(metadata={"check": fn}, **kw)


_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


def is_host(value: Any) -> str | None:
    """A host name or an IPv4/IPv6 address."""
    if not isinstance(value, str):
        return None  # the type check reports it
    try:
        ipaddress.ip_address(value)
        return None
    except ValueError:
        pass
    name = value.rstrip(".")
    if 0 < len(name) <= 253 and all(_HOST_LABEL.match(part) for part in name.split(".")):
        return None
    return _("not a host name or address")


def is_host_port(value: Any) -> str | None:
    """HOST:PORT, with [v6]:PORT for IPv6; an empty host means every address."""
    if not isinstance(value, str):
        return None
    try:
        host, _port = split_host_port(value)
    except ValueError as exc:
        return str(exc)
    if host and is_host(host):
        return _("not a host name or address before the port")
    return None


def split_host_port(value: str) -> tuple[str, int]:
    # [v6]:PORT, a link-local v6 with its zone too ([fe80::1%eth0]:53)
    m = re.fullmatch(r"\[([0-9a-fA-F:.]+(?:%[^\]\s]+)?)\]:([0-9]{1,5})|([^:\[\]]*):([0-9]{1,5})", value)
    if not m:
        raise ValueError(_("not HOST:PORT (use [ADDRESS]:PORT for IPv6)"))
    host = m.group(1) if m.group(1) is not None else m.group(3)
    port = int(m.group(2) or m.group(4))
    if not 0 <= port <= 65535:
        raise ValueError(_("port out of range 0-65535"))
    return host, port


def url_has_credentials(value: str) -> bool:
    """Whether a URL carries a user name or password (USER:PASSWORD@HOST) in its authority."""
    m = re.match(r"[A-Za-z][A-Za-z0-9+.-]*://([^/?#]*)", value)
    return bool(m and "@" in m.group(1))


def shown(value: str) -> str:
    """`value` as it may be printed: a URL's USER:PASSWORD@ becomes ***@ (anything else as it is)."""
    if not url_has_credentials(value):
        return value
    return re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#]*@", r"\1***@", value)


def is_url(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    if url_has_credentials(value):  # a URL is copied into configs, logs and labels; a secret must not be
        return _(
            "has a user name or password in it (USER:PASSWORD@HOST): give credentials in their own "
            "setting (push: basic_auth or bearer_token; probes.bandwidth: token), never in a URL"
        )
    m = re.fullmatch(r"(https?)://([^/?#]+)([/?#].*)?", value)
    if not m:
        return _("not an http:// or https:// URL")
    return None


def positive(value: Any) -> str | None:
    if isinstance(value, int | float) and value <= 0:
        return _("must be greater than 0")
    return None


def non_negative(value: Any) -> str | None:
    if isinstance(value, int | float) and value < 0:
        return _("must not be negative")
    return None


def ratio(value: Any) -> str | None:
    if isinstance(value, int | float) and not 0 <= value <= 1:
        return _("must be between 0 and 1")
    return None


def between(low: float, high: float) -> Check:
    """A number from `low` to `high`, both included."""

    def run(value: Any) -> str | None:
        if isinstance(value, int | float) and not low <= value <= high:
            return _("must be between {low} and {high}").format(low=f"{low:g}", high=f"{high:g}")
        return None

    return run


def at_least(low: float) -> Check:
    """A number of at least `low`."""

    def run(value: Any) -> str | None:
        if isinstance(value, int | float) and value < low:
            return _("must be at least {low}").format(low=f"{low:g}")
        return None

    return run


def at_most(high: float) -> Check:
    """A number of at most `high`."""

    def run(value: Any) -> str | None:
        if isinstance(value, int | float) and value > high:
            return _("must be at most {high}").format(high=f"{high:g}")
        return None

    return run


def all_of(*checks: Check) -> Check:
    """Every check in turn; the first problem found."""

    def run(value: Any) -> str | None:
        return next((msg for fn in checks if (msg := fn(value)) is not None), None)

    return run


@dataclasses.dataclass(frozen=True)
class Each:
    """A check applied to every element of a list; the element's index goes into the key path."""

    element: Check


def each(fn: Check) -> Each:
    """`x: tuple[str, ...] = check(each(is_host), default=())`."""
    return Each(fn)


def checks_pass(obj: Any, *names: str) -> bool:
    """Whether the named fields of a dataclass pass their own declared checks.

    For a `validate()` rule between fields, so that a value already reported wrong on its own field
    is not reported a second time by the rule that combines it.
    """
    fields = {f.name: f for f in dataclasses.fields(obj)}
    for name in names:
        fn = fields[name].metadata.get("check")
        if isinstance(fn, Each):
            if any(fn.element(v) is not None for v in getattr(obj, name)):
                return False
        elif fn is not None and fn(getattr(obj, name)) is not None:
            return False
    return True


def _type_name(tp: Any) -> str:
    if tp is str:
        return _("a string")
    if tp is int:
        return _("a whole number")
    if tp is float:
        return _("a number")
    if tp is bool:
        return _("true or false")
    if dataclasses.is_dataclass(tp):
        return _("a mapping")
    origin = get_origin(tp)
    if origin is tuple:
        return _("a list")
    if origin is dict:
        return _("a mapping")
    return str(tp)


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _convert(
    tp: Any, value: Any, path: str, problems: list[str], check_fn: Check | Each | None = None
) -> Any:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if value is None:
            return None
        tp = args[0] if len(args) == 1 else tp
        origin = get_origin(tp)
    if tp is Secret:
        return _secret(value, path, problems)
    if origin is typing.Literal:
        allowed = get_args(tp)
        if value not in allowed:
            problems.append(
                f"{path}: "
                + _("must be one of {allowed} (got {value})").format(
                    allowed=", ".join(map(str, allowed)), value=repr(value)
                )
            )
            return allowed[0]
        return value
    if dataclasses.is_dataclass(tp):
        return parse(tp, value, path, problems)  # type: ignore[arg-type]
    if origin is tuple:
        (elem,) = [a for a in get_args(tp) if a is not Ellipsis]
        if not isinstance(value, list):
            problems.append(f"{path}: " + _("must be a list"))
            return ()
        inner = check_fn.element if isinstance(check_fn, Each) else None
        out = []
        for i, item in enumerate(value):
            out.append(_convert(elem, item, _join(path, i), problems, inner))
        return tuple(out)
    if origin is dict:
        _key, elem = get_args(tp)
        if not isinstance(value, dict):
            problems.append(f"{path}: " + _("must be a mapping"))
            return {}
        return {str(k): _convert(elem, v, _join(path, str(k)), problems) for k, v in value.items()}
    ok = (
        (tp is bool and isinstance(value, bool))
        or (tp is int and isinstance(value, int) and not isinstance(value, bool))
        or (tp is float and isinstance(value, int | float) and not isinstance(value, bool))
        or (tp is str and isinstance(value, str))
    )
    if not ok:
        problems.append(
            f"{path}: "
            + _("must be {kind} (got {type} {value})").format(
                kind=_type_name(tp), type=type(value).__name__, value=repr(value)
            )
        )
        return None
    value = float(value) if tp is float else value
    if check_fn is not None and not isinstance(check_fn, Each):
        err = check_fn(value)
        if err:
            problems.append(f"{path}: {err}")
    return value


def _secret(value: Any, path: str, problems: list[str]) -> Secret | None:
    if isinstance(value, str):
        return Secret(value)
    if isinstance(value, dict) and len(value) == 1:
        ((kind, ref),) = value.items()
        if kind == "env" and isinstance(ref, str):
            if ref not in os.environ:
                problems.append(f"{path}: " + _("environment variable {name} is not set").format(name=ref))
                return None
            return Secret(os.environ[ref], f"env {ref}")
        if kind == "file" and isinstance(ref, str):
            try:
                return Secret(Path(ref).read_text(encoding="utf-8").strip(), f"file {ref}")
            except OSError as exc:
                problems.append(
                    f"{path}: "
                    + _("cannot read secret file {file}: {why}").format(file=ref, why=exc.strerror)
                )
                return None
            except UnicodeDecodeError:
                problems.append(f"{path}: " + _("secret file {file} is not UTF-8 text").format(file=ref))
                return None
    problems.append(f"{path}: " + _("must be a string, {env: NAME} or {file: PATH}"))
    return None


def parse(cls: type[T], raw: Any, path: str = "", problems: list[str] | None = None) -> T:
    """Build `cls` from `raw`. With `problems` given, errors are appended there; otherwise raised."""
    own = problems is None
    problems = [] if problems is None else problems
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        where = path or _("(top level)")
        problems.append(f"{where}: " + _("must be a mapping"))
        raw = {}
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for key in raw:
        if key not in fields:
            known = ", ".join(sorted(fields))
            problems.append(
                f"{_join(path, str(key))}: " + _("unknown key (known keys: {known})").format(known=known)
            )
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        key_path = _join(path, name)
        if name in raw:
            value = _convert(hints[name], raw[name], key_path, problems, f.metadata.get("check"))
            if value is not None or raw[name] is None:
                kwargs[name] = value
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            problems.append(f"{key_path}: " + _("required"))
    if own and problems:
        raise SchemaError(problems)
    try:
        obj = cls(**kwargs)
    except (TypeError, ValueError) as exc:  # missing required fields already reported
        if own:
            raise SchemaError(problems or [f"{path}: {exc}"]) from None
        return None  # type: ignore[return-value]
    validate = getattr(obj, "validate", None)
    if callable(validate):
        for err in validate():
            problems.append(f"{path}.{err}" if path else err)  # err starts with the field's key
    if own and problems:
        raise SchemaError(problems)
    return obj
