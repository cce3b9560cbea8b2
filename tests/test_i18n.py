"""The person at the site: `measure` and `check-config` in Vietnamese under a Vietnamese locale,
English otherwise, with what to do in plain words; the catalogue complete and compiled."""

from __future__ import annotations

import ast
import gettext
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agent.i18n import DOMAIN, LOCALE_DIR
from agent.probes.ping import summarize
from agent.result import Result
from agent.site import Site
from agent.verdict import describe_results

ROOT = Path(__file__).resolve().parent.parent
PO = LOCALE_DIR / "vi" / "LC_MESSAGES" / f"{DOMAIN}.po"
MO = PO.with_suffix(".mo")
LOCALE_VARS = ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG")
SITE = Site(id="nd-1-tyt", commune="Xã Một", province="Tỉnh Nam Định", isp="VNPT")


def set_locale(monkeypatch: pytest.MonkeyPatch, lang: str) -> None:
    for name in LOCALE_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LANG", lang)


def gateway_down() -> list[Result]:
    stats = summarize("192.168.1.1", "gateway", "icmp", 10, [])
    lost = Result(probe="ping", target="gateway", ok=False, reason="unreachable", detail="0/10", data=stats)
    internet = summarize("1.1.1.1", "internet", "icmp", 10, [0.02] * 10)
    return [lost, Result(probe="ping", target="1.1.1.1", ok=True, data=internet)]


def test_a_dead_gateway_tells_a_vietnamese_officer_to_check_the_cable(monkeypatch):
    set_locale(monkeypatch, "vi_VN.UTF-8")
    text = describe_results("ping", gateway_down(), SITE)
    assert "Kiểm tra dây mạng tới bộ phát wifi" in text
    assert "LỖI: gateway (192.168.1.1, icmp): nhận 0/10 gói" in text
    assert "ping: 1/2 phép kiểm tra bị lỗi." in text


def test_english_otherwise_and_the_internet_advice_names_the_isp(monkeypatch):
    set_locale(monkeypatch, "C.UTF-8")
    assert "Check the network cable to the wifi router" in describe_results("ping", gateway_down(), SITE)
    internet = summarize("1.1.1.1", "internet", "icmp", 10, [])
    down = [Result(probe="ping", target="1.1.1.1", ok=False, reason="unreachable", detail="x", data=internet)]
    text = describe_results("ping", down, SITE)
    assert "call the internet provider VNPT." in text and "network cable" not in text
    fine = describe_results("ping", gateway_down()[1:], SITE)
    assert fine.endswith("ping: all 1 checks fine.") and "What to do" not in fine


def run_cli(*argv: str, lang: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in LOCALE_VARS} | {"LANG": lang}
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=ROOT,
        check=False,
    )


def test_check_config_speaks_the_locales_language(tmp_path):
    """A real agent process: the check's verdict and its advice follow LANG; key paths stay as written."""
    good = tmp_path / "good.yaml"
    good.write_text("site: {id: nd-1-tyt, commune: Xã Một, province: Tỉnh Nam Định}\n")
    done = run_cli("check-config", str(good), lang="vi_VN.UTF-8", tmp_path=tmp_path)
    assert done.returncode == 0 and "hợp lệ — điểm nd-1-tyt" in done.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("site: {id: BAD, commune: Xã Một, province: P}\n")
    vi = run_cli("check-config", str(bad), lang="vi_VN.UTF-8", tmp_path=tmp_path)
    assert vi.returncode == 2 and "1 lỗi:" in vi.stderr and "site.id:" in vi.stderr
    assert "báo cho cán bộ kỹ thuật của tỉnh" in vi.stderr
    en = run_cli("check-config", str(bad), lang="en_US.UTF-8", tmp_path=tmp_path)
    assert (
        en.returncode == 2 and "1 problem(s):" in en.stderr and "tell the province's technician" in en.stderr
    )


def test_every_problem_line_of_check_config_is_vietnamese_under_a_vietnamese_locale(tmp_path):
    """The file's mistakes and what this host refuses: each line keeps its key, says why in Vietnamese."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "site: {id: Nd-1, commune: Xã Một, province: P}\n"
        "probes: {ping: {count: 0, colour: red}}\n"
        "push: {enabled: true}\n"
        "exposition: {listen: nohostport}\n"
    )
    vi = run_cli("check-config", str(bad), lang="vi_VN.UTF-8", tmp_path=tmp_path)
    assert vi.returncode == 2
    lines = [line.strip() for line in vi.stderr.splitlines() if line.startswith("  ")]
    assert "probes.ping.count: phải nằm trong khoảng 1 đến 1000" in lines
    assert any(line.startswith("probes.ping.colour: khóa không tồn tại (các khóa hợp lệ:") for line in lines)
    assert "exposition.listen: không đúng dạng HOST:PORT (với IPv6 dùng [ĐỊA_CHỈ]:PORT)" in lines
    assert any(line.startswith("site.id: phải gồm 1-63 chữ thường") for line in lines)
    assert "push.url: bắt buộc khi bật push" in lines
    (tmp_path / "state").write_text("")
    host = tmp_path / "host.yaml"
    host.write_text(
        f"site: {{id: nd-1-tyt, commune: Xã Một, province: P}}\nstate_dir: {tmp_path / 'state'}\n"
    )
    vi = run_cli("check-config", str(host), lang="vi_VN.UTF-8", tmp_path=tmp_path)
    assert vi.returncode == 2
    assert f"  state_dir: {tmp_path / 'state'} không phải là thư mục" in vi.stderr
    assert "Thiết bị này không chạy được chương trình đo" in vi.stderr
    en = run_cli("check-config", str(host), lang="C.UTF-8", tmp_path=tmp_path)
    assert f"  state_dir: {tmp_path / 'state'} is not a directory" in en.stderr


def test_measure_ping_in_vietnamese_against_loopback(tmp_path):
    """`measure ping` with a loopback-only config: a real measurement, its summary in Vietnamese."""
    config = tmp_path / "c.yaml"
    config.write_text(
        "site: {id: nd-1-tyt, commune: Xã Một, province: Tỉnh Nam Định}\n"
        "probes: {ping: {targets: ['127.0.0.1'], gateway: false, count: 3, packet_interval_s: 0.05}}\n"
    )
    done = run_cli("measure", "ping", "--config", str(config), lang="vi_VN.UTF-8", tmp_path=tmp_path)
    assert re.search(r"127\.0\.0\.1 \(127\.0\.0\.1, (icmp|tcp)\)", done.stdout), done.stdout + done.stderr
    if done.returncode == 0:
        assert "ping: cả 1 phép kiểm tra đều tốt." in done.stdout
    else:  # no ICMP here and nothing on the TCP port: the failure is still told in Vietnamese
        assert "Cần làm gì:" in done.stdout


def msgids(pofile: Path) -> dict[str, str]:
    """msgid -> msgstr of a .po file (adjacent string lines joined, escapes undone)."""
    out: dict[str, str] = {}
    current, parts = "", {"msgid": "", "msgstr": ""}
    for line in [*pofile.read_text(encoding="utf-8").splitlines(), ""]:
        m = re.match(r'^(msgid|msgstr) (".*")$', line)
        if m:
            current = m.group(1)
            parts[current] = ast.literal_eval(m.group(2))
        elif line.startswith('"'):
            parts[current] += ast.literal_eval(line)
        elif not line.strip() and parts["msgid"]:
            out[parts["msgid"]] = parts["msgstr"]
            parts = {"msgid": "", "msgstr": ""}
    return out


@pytest.mark.skipif(shutil.which("xgettext") is None, reason="gettext tools missing (Debian package gettext)")
def test_every_message_in_the_code_is_translated_and_keeps_its_placeholders(tmp_path):
    pot = tmp_path / "messages.pot"
    subprocess.run(
        ["xgettext", "--language=Python", "--keyword=_", "--from-code=UTF-8", "-o", str(pot)]
        + [
            str(ROOT / "agent" / name)
            for name in ("cli.py", "verdict.py", "config.py", "schema.py", "site.py", "push/settings.py")
        ],
        check=True,
        capture_output=True,
        env={**os.environ, "LC_ALL": "C.UTF-8"},  # xgettext reads the sources in the locale's charset
    )
    wanted = set(msgids(pot)) - {""}  # "" is the header
    have = msgids(PO)
    assert wanted - set(have) == set(), "not in the .po"
    for msgid in wanted:
        assert have[msgid], f"untranslated: {msgid!r}"
        assert set(re.findall(r"\{\w+\}", msgid)) == set(re.findall(r"\{\w+\}", have[msgid])), msgid


def test_the_committed_mo_is_compiled_from_the_po():
    """The .mo the agent reads holds exactly the .po's translations (recompile with msgfmt if not)."""
    with MO.open("rb") as f:
        catalog = gettext.GNUTranslations(f)._catalog  # type: ignore[attr-defined]
    compiled = {k: v for k, v in catalog.items() if k}
    assert compiled == {k: v for k, v in msgids(PO).items() if k}
