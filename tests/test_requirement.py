"""The province's requirement file: one source for the rules and the report."""

from __future__ import annotations

import argparse
import shutil
import subprocess
from pathlib import Path

import pytest

from collector import requirement
from collector.requirement import Requirement, RequirementError, load, rules_file


def test_shipped_rules_are_generated_from_the_shipped_file() -> None:
    """verdict.yml is exactly what the requirement file generates: edit one, regenerate the other."""
    assert requirement.RULES_OUT.read_text(encoding="utf-8") == rules_file(load()), (
        "run: hotspot-collector requirement --write"
    )


def test_defaults_match_the_shipped_file() -> None:
    """The file states the issue's defaults: 100/100 Mbit/s, 80%, 80%, 100 ms, 95%."""
    req = load()
    assert req == Requirement()
    assert (req.threshold_mbps("download"), req.threshold_mbps("upload")) == (80, 80)
    assert req.min_tests(7) == (10, 100)
    assert req.min_tests(30) == (43, 429)


def test_a_changed_rule_changes_the_generated_thresholds(tmp_path: Path) -> None:
    """50 Mbit/s down at 80%: the download tests are judged at the 40 Mbit/s boundary (5e+06 B/s)."""
    path = tmp_path / "r.yaml"
    path.write_text("download_mbps: 50\nlatency_limit_ms: 150\n", encoding="utf-8")
    text = rules_file(load(path))
    assert 'direction="download", le=~"5000000(\\\\.0)?|5(\\\\.0)?e\\\\+0?6"' in text
    assert 'direction="upload", le=~"10000000(\\\\.0)?|1(\\\\.0)?e\\\\+0?7"' in text
    assert 'le=~"0\\\\.15|1\\\\.5(\\\\.0)?e\\\\-0?1"' in text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("download_mbps: 90\n", "72 Mbit/s is not a boundary"),
        ("latency_limit_ms: 120\n", "latency_limit_ms = 120 is not a boundary"),
        ("availability: 1.5\n", "availability: must be a share"),
        ("download_mbsp: 100\n", "unknown setting 'download_mbsp'"),
        ("upload_mbps: fast\n", "upload_mbps: expected a number"),
        ("- 1\n", "expected a mapping"),
        ("a: [\n", "not valid YAML"),
        ("download_mbps: 100\ndownload_mbps: 50\n", "key 'download_mbps' given twice"),
    ],
)
def test_bad_files_are_refused_with_the_reason(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(RequirementError, match=message.replace("(", r"\(").replace("[", r"\[")):
        load(path)


def test_command_reports_a_bad_file_without_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("download_mbps: 90\n", encoding="utf-8")
    assert requirement.command(argparse.Namespace(file=path, write=None)) == 2
    assert "not a boundary" in capsys.readouterr().err
    assert requirement.command(argparse.Namespace(file=tmp_path / "missing.yaml", write=None)) == 2
    assert "cannot read" in capsys.readouterr().err
    path.write_bytes("# Yêu cầu của tỉnh\ndownload_mbps: 100\n".encode().replace(b"\xc3\xaa", b"\xea"))
    assert requirement.command(argparse.Namespace(file=path, write=None)) == 2
    assert "not UTF-8" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_generated_rules_of_a_changed_file_load(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("download_mbps: 30\nupload_mbps: 10\ntest_pass_ratio: 0.8\n", encoding="utf-8")
    out = tmp_path / "verdict.yml"
    assert requirement.command(argparse.Namespace(file=path, write=out)) == 0
    res = subprocess.run(["promtool", "check", "rules", str(out)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_local_stack_keeps_the_verdict_windows_when_it_has_history(tmp_path: Path) -> None:
    """make run shortens every window, except the verdict rules' when it starts on a month of
    history: a backfilled week must be judged as a week (tests every 6 hours)."""
    import yaml

    from collector.localstack import PROMETHEUS_DIR, render_rules

    render_rules(PROMETHEUS_DIR / "rules", tmp_path / "kept", 15, ("verdict.yml",), ("verdict.yml",))
    render_rules(PROMETHEUS_DIR / "rules", tmp_path / "short", 15)
    kept = yaml.safe_load((tmp_path / "kept" / "verdict.yml").read_text(encoding="utf-8"))
    short = yaml.safe_load((tmp_path / "short" / "verdict.yml").read_text(encoding="utf-8"))
    assert "[7d]" in kept["groups"][0]["rules"][0]["expr"]
    assert "[7d]" not in short["groups"][0]["rules"][0]["expr"]
    assert kept["groups"][0]["interval"] == "2m"  # a week is not re-read every 8 s
    assert short["groups"][0]["interval"] == "8s"
