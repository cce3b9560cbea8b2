"""Config: the example loads and documents everything; every class of error names its key path."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import typing
from pathlib import Path

import pytest
import yaml

from agent import config
from agent.config import Config, ConfigError
from agent.schema import Secret
from tests.support.legacy_text import cp1258

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config.example.yaml"
MINIMAL = "site: {id: nd-1, commune: Xã A, province: Ninh Bình}\n"


def problems_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        config.loads(text)
    return info.value.problems


def _key_paths(cls: type, prefix: str = "") -> list[str]:
    out = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        path = f"{prefix}{f.name}"
        out.append(path)
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            out += _key_paths(tp, path + ".")  # type: ignore[arg-type]
    return out


def test_example_loads() -> None:
    """config.example.yaml is valid and describes a real site."""
    c = config.load(EXAMPLE)
    assert c.site.type == "health_station"
    assert c.site.labels()["commune"] == "Xã Giao Minh"


def test_example_documents_every_setting() -> None:
    """Every settings key the agent knows appears in config.example.yaml."""
    raw = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))

    def present(path: str) -> bool:
        node = raw
        for part in path.split("."):
            if not isinstance(node, dict) or part not in node:
                return False
            node = node[part]
        return True

    missing = [p for p in _key_paths(Config) if not present(p)]
    assert missing == []


def test_example_values_are_the_defaults() -> None:
    """The example's probe and exposition values are the built-in defaults (so it documents them)."""
    c = config.load(EXAMPLE)
    defaults = config.loads(MINIMAL)
    assert c.probes == defaults.probes
    assert c.exposition == defaults.exposition
    assert c.push == defaults.push


def test_minimal_config_uses_defaults() -> None:
    """Only the site identity is required."""
    c = config.loads(MINIMAL)
    assert c.site.contracted_download_mbps == 100
    assert c.exposition.listen == "0.0.0.0:9591"
    assert set(c.probes.enabled()) == {"ping", "dns", "http", "wifi", "system", "bandwidth"}


def test_wrong_type_names_key_path() -> None:
    """A value of the wrong type is reported with its key path."""
    assert problems_of(MINIMAL + "probes: {ping: {count: many}}") == [
        "probes.ping.count: must be a whole number (got str 'many')"
    ]


def test_unknown_key_is_an_error() -> None:
    """A typo is an error, not silently ignored."""
    (problem,) = problems_of(MINIMAL + "probes: {ping: {intervl_s: 30}}")
    assert problem.startswith("probes.ping.intervl_s: unknown key")


def test_missing_identity_reported() -> None:
    """A config without the site's identity lists each missing key."""
    assert problems_of("site: {id: nd-1}") == ["site.commune: required", "site.province: required"]
    assert "required" in problems_of("log_level: info")[0]


def test_bad_address_in_list_names_its_index() -> None:
    """A bad host in a list is reported with its index."""
    text = MINIMAL + "probes: {ping: {targets: [1.1.1.1, 8.8.8.8, 'not a host!']}}"
    assert problems_of(text) == ["probes.ping.targets[2]: not a host name or address"]


def test_all_problems_reported_at_once() -> None:
    """Several problems in different sections come back together."""
    text = """
site: {id: "Bad Id", commune: Xã A, province: P, latitude: 200, longitude: 5}
exposition: {listen: "nowhere"}
probes: {dns: {interval_s: 0}, bogus: {}}
log_level: loud
"""
    found = problems_of(text)
    assert len(found) == 6, found
    for key in (
        "site.id",
        "site.latitude",
        "exposition.listen",
        "probes.dns.interval_s",
        "probes.bogus",
        "log_level",
    ):
        assert any(p.startswith(key + ":") for p in found), key


def test_invalid_yaml_reports_line() -> None:
    """A YAML syntax error says where."""
    (problem,) = problems_of("site:\n  id: [unclosed\n")
    assert "not valid YAML at line" in problem


def test_secret_from_env_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Secrets come from the environment or a file and never show in repr."""
    monkeypatch.setenv("SCRAPE_PASSWORD", "s3cret-env")
    secret_file = tmp_path / "pw"
    secret_file.write_text("s3cret-file\n")
    c = config.loads(MINIMAL + "exposition: {basic_auth: {username: p, password: {env: SCRAPE_PASSWORD}}}")
    assert c.exposition.basic_auth is not None
    assert c.exposition.basic_auth.password.reveal() == "s3cret-env"
    assert "s3cret" not in repr(c)
    c = config.loads(
        MINIMAL + f"exposition: {{basic_auth: {{username: p, password: {{file: {secret_file}}}}}}}"
    )
    assert c.exposition.basic_auth is not None
    assert c.exposition.basic_auth.password == Secret("s3cret-file")
    found = problems_of(
        MINIMAL + "exposition: {basic_auth: {username: p, password: {file: /nonexistent/pw}}}"
    )
    assert found == [
        "exposition.basic_auth.password: cannot read secret file /nonexistent/pw: No such file or directory"
    ]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", *args], cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def test_check_config_exit_codes(tmp_path: Path) -> None:
    """check-config exits 0 on a valid file and 2 listing every problem otherwise."""
    ok = run_cli("check-config", str(EXAMPLE))
    assert ok.returncode == 0, ok.stderr
    assert "ok" in ok.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("site: {id: nd-1}\nprobes: {ping: {targets: [a, 'b c']}}\n")
    res = run_cli("check-config", str(bad))
    assert res.returncode == 2
    assert "site.commune: required" in res.stderr
    assert "probes.ping.targets[1]: not a host name or address" in res.stderr
    assert "Traceback" not in res.stderr
    missing = run_cli("check-config", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2
    assert "cannot read" in missing.stderr


def test_config_not_utf8_is_a_config_problem(tmp_path: Path) -> None:
    """A config saved as cp1258 (Vietnamese Windows) or random binary: exit 2, one clear line."""
    legacy = tmp_path / "cp1258.yaml"
    legacy.write_bytes(cp1258(EXAMPLE.read_text(encoding="utf-8")))
    res = run_cli("check-config", str(legacy))
    assert res.returncode == 2, res.stderr
    assert "not UTF-8 text: byte 0x97 at line 1, column 31; save the file as UTF-8" in res.stderr
    assert "Traceback" not in res.stderr
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(bytes(range(256)) * 4)
    res = run_cli("check-config", str(binary))
    assert res.returncode == 2 and "binary content, not a YAML text file" in res.stderr
    assert "Traceback" not in res.stderr
    # binary without a NUL byte: still a decoding problem, not a traceback
    binary.write_bytes(bytes(range(1, 256)) * 4)
    with pytest.raises(ConfigError, match="not UTF-8 text: byte 0x80 at line 2, column 118"):
        config.load(binary)
    # valid UTF-8 with control characters: YAML's own reader refuses them, still one line
    binary.write_bytes(b"site: \x01\x02\n")
    with pytest.raises(ConfigError, match=r"not valid YAML.*unacceptable character"):
        config.load(binary)


def test_secret_file_not_utf8(tmp_path: Path) -> None:
    secret_file = tmp_path / "pw"
    secret_file.write_bytes(cp1258("mật khẩu"))
    auth = f"exposition: {{basic_auth: {{username: p, password: {{file: {secret_file}}}}}}}"
    found = problems_of(MINIMAL + auth)
    assert found == [f"exposition.basic_auth.password: secret file {secret_file} is not UTF-8 text"]


def test_duplicate_keys_name_the_key_and_both_lines() -> None:
    """Two `probes:` sections: PyYAML would keep the second silently; here it is an error."""
    text = MINIMAL + "probes:\n  ping: {count: 5}\nlog_level: info\nprobes:\n  dns: {enabled: false}\n"
    assert problems_of(text) == ["<config>: line 5: key 'probes' given twice (lines 2 and 5); keep one"]
    # nested and flow mappings too; every duplicate at once
    text = MINIMAL + "probes: {ping: {count: 5, count: 6}}\nsite: {}\n"
    assert problems_of(text) == [
        "<config>: line 2: key 'count' given twice (lines 2 and 2); keep one",
        "<config>: line 3: key 'site' given twice (lines 1 and 3); keep one",
    ]
    # a YAML merge (`<<:`) is an intended override, not a duplicate
    text = MINIMAL + "probes:\n  ping: &p {count: 5, interval_s: 60}\n  dns: {enabled: false}\n"
    text += "exposition: {listen: '127.0.0.1:0'}\n"
    assert config.loads(text).probes.ping.count == 5


def test_an_alias_bomb_is_refused_before_it_is_expanded(tmp_path: Path) -> None:
    """Nine lines of YAML aliases stand for 10^9 values ("billion laughs"): the config and the
    inventory, read by the one YAML reader, refuse them instead of walking them for minutes."""
    from collector.inventory import InventoryError
    from collector.inventory import load as load_inventory

    levels = ['a0: &a0 ["x","x","x","x","x","x","x","x","x"]']
    levels += [f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    bomb = "\n".join(levels) + "\n"
    path = tmp_path / "bomb.yaml"
    path.write_text("site: {id: nd-1, commune: Xã A, province: Ninh Bình}\n" + bomb, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        config.load(path)
    assert "aliases expand to more than 2,000,000 values" in str(err.value)
    path.write_text("sites: []\n" + bomb, encoding="utf-8")
    with pytest.raises(InventoryError) as inv_err:
        load_inventory(path)
    assert "aliases expand to more than 2,000,000 values" in str(inv_err.value)
