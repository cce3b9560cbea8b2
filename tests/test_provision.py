"""`hotspot-collector provision`: agent configs, push credentials and vmauth users from the inventory,
checked with the agent's own config loader and with a real vmauth in front of a real VictoriaMetrics."""

from __future__ import annotations

import base64
import http.client
import json
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

import pytest
import yaml

from agent import config as agent_config
from collector import provision
from collector.cli import main as collector_main
from collector.inventory import loads
from tests.support.ports import free_port
from tests.support.receivers import Receiver, have

ROOT = Path(__file__).resolve().parent.parent
PUSH_URL = "https://collector.example.vn:8427/api/v1/write"

INVENTORY = """
sites:
  - {id: nd-1-ubnd, name: "UBND Xã Một", type: commune_office, commune: "Xã Một", commune_code: "1",
     province: "Tỉnh Nam Định", latitude: 20.1, longitude: 106.1, isp: VNPT,
     contracted_download_mbps: 100, contracted_upload_mbps: 50, scrape: "10.36.0.1:9591"}
  - {id: nd-1-tyt, type: health_station, commune: "Xã Một", commune_code: "1", province: "Tỉnh Nam Định",
     isp: Viettel, push: true}
  - {id: nd-2-nvh1, type: village_hall, commune: "Xã Hai", province: "Tỉnh Nam Định", push: true}
"""


def run(tmp_path: Path, text: str = INVENTORY, **kw) -> provision.Report:
    return provision.provision(loads(text), tmp_path / "out", push_url=PUSH_URL, **kw)


def mtimes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in sorted(root.rglob("*")) if p.is_file()}


def test_site_configs_load_in_the_agent_with_identity_and_push(tmp_path, monkeypatch):
    """Every generated config is a valid agent config carrying the inventory's identity and reach."""
    run(tmp_path)
    out = tmp_path / "out"
    pulled = agent_config.load(out / "sites/nd-1-ubnd/config.yaml")
    assert (pulled.site.id, pulled.site.name, pulled.site.latitude, pulled.site.isp) == (
        "nd-1-ubnd",
        "UBND Xã Một",
        20.1,
        "VNPT",
    )
    assert pulled.site.contracted_upload_mbps == 50
    assert pulled.exposition.listen == "0.0.0.0:9591" and not pulled.push.enabled
    assert not (out / "sites/nd-1-ubnd/push-password").exists()
    # The device keeps its password at /etc/hotspot-agent/push-password: point the config at ours.
    text = (out / "sites/nd-1-tyt/config.yaml").read_text()
    password = out / "sites/nd-1-tyt/push-password"
    pushed = agent_config.loads(text.replace(provision.DEVICE_PASSWORD, str(password)))
    assert pushed.push.enabled and pushed.push.url == PUSH_URL
    assert pushed.push.basic_auth is not None and pushed.push.basic_auth.username == "nd-1-tyt"
    creds = json.loads((out / "credentials.json").read_text())["push_passwords"]
    assert pushed.push.basic_auth.password.reveal() == creds["nd-1-tyt"]
    assert len(creds["nd-1-tyt"]) >= 32 and creds["nd-1-tyt"] != creds["nd-2-nvh1"]
    for secret in (out / "credentials.json", out / "vmauth.yml", password):
        assert secret.stat().st_mode & 0o777 == 0o600, secret
    assert (out / "targets/sites-tinh-nam-dinh.json").exists()


def test_rerun_changes_nothing_rotate_changes_one_site_removal_drops_credential(tmp_path):
    """A second run rewrites no file; --rotate replaces one credential only; a removed site is gone."""
    first = run(tmp_path)
    assert sorted(first.created) == ["nd-1-tyt", "nd-2-nvh1"]
    out = tmp_path / "out"
    before = mtimes(out)
    time.sleep(0.01)
    again = run(tmp_path)
    assert again.written == [] and again.removed == [] and again.created == []
    assert mtimes(out) == before
    old = json.loads((out / "credentials.json").read_text())["push_passwords"]

    rotated = run(tmp_path, rotate={"nd-2-nvh1"})
    assert rotated.rotated == ["nd-2-nvh1"]
    new = json.loads((out / "credentials.json").read_text())["push_passwords"]
    assert new["nd-1-tyt"] == old["nd-1-tyt"] and new["nd-2-nvh1"] != old["nd-2-nvh1"]
    assert sorted(rotated.written) == sorted(
        [str(out / "credentials.json"), "sites/nd-2-nvh1/push-password", "vmauth.yml"]
    )

    fewer = INVENTORY.split("  - {id: nd-2-nvh1", maxsplit=1)[0]
    removed = run(tmp_path, fewer)
    assert removed.removed == ["sites/nd-2-nvh1"]
    assert not (out / "sites/nd-2-nvh1").exists()
    assert set(json.loads((out / "credentials.json").read_text())["push_passwords"]) == {"nd-1-tyt"}
    assert "nd-2-nvh1" not in (out / "vmauth.yml").read_text()


def test_cli_reports_missing_push_url_unknown_rotate_and_bad_state(tmp_path, capsys):
    """User mistakes end with exit 2 and a sentence saying what to do, never a traceback."""
    inv = tmp_path / "inventory.yaml"
    inv.write_text(INVENTORY)
    out = tmp_path / "out"
    assert collector_main(["provision", "--inventory", str(inv), "--out", str(out)]) == 2
    assert "give --push-url" in capsys.readouterr().err
    args = ["provision", "--inventory", str(inv), "--out", str(out), "--push-url", PUSH_URL]
    assert collector_main([*args, "--rotate", "nd-1-ubnd"]) == 2
    assert "nd-1-ubnd: not a pushing site" in capsys.readouterr().err
    assert collector_main([*args[:-1], "collector:8427/api/v1/write"]) == 2
    assert (
        "--push-url: 'collector:8427/api/v1/write' is not an http:// or https:// URL"
        in capsys.readouterr().err
    )
    assert collector_main([*args, "--speedtest-server", "https://speedtest.example.vn/"]) == 2
    assert "the http engine speaks plain http:// only" in capsys.readouterr().err
    assert not out.exists()  # nothing written for a refused command line
    assert collector_main(args) == 0
    assert "2 new credentials" in capsys.readouterr().out
    (out / "credentials.json").write_text("[]")
    assert collector_main(args) == 2
    assert "not a credential state file" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert collector_main([*args[:4], str(tmp_path / "file"), *args[5:]]) == 2
    assert f"--out {tmp_path / 'file'}: not a directory" in capsys.readouterr().err


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _post(port: int, user: str, password: str, path: str, labels: dict[str, str]) -> int:
    from agent.push.encoding import compress, encode_labels, encode_write_request

    now = int(time.time() * 1000)
    body = compress(encode_write_request([(encode_labels(labels), [(now, struct.pack("<d", 1.0))])]))
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {
        "Content-Encoding": "snappy",
        "Content-Type": "application/x-protobuf",
        "Authorization": f"Basic {auth}",
    }
    conn.request("POST", path, body=body, headers=headers)
    status = conn.getresponse().status
    conn.close()
    return status


@pytest.mark.skipif(
    not (have("victoria-metrics") and have("vmauth")), reason="victoria-metrics not installed"
)
def test_generated_vmauth_lets_a_credential_write_only_its_own_site(tmp_path):
    """Real vmauth 1.79 + VictoriaMetrics: whatever site label or extra_label a site sends, its series
    are stored under its own site; a rotated-out or wrong password writes nothing; reads are refused."""
    vm = Receiver("victoria", tmp_path)
    vm.start()
    report = run(tmp_path, vm_url=vm.base)
    creds = json.loads((tmp_path / "out/credentials.json").read_text())["push_passwords"]
    port = free_port()
    proc = subprocess.Popen(
        ["vmauth", f"-auth.config={tmp_path / 'out/vmauth.yml'}", f"-httpListenAddr=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while not _listening(port):
            assert time.monotonic() < deadline, "vmauth did not start"
            time.sleep(0.1)
        assert report.created
        tyt, nvh = creds["nd-1-tyt"], creds["nd-2-nvh1"]
        w = "/api/v1/write"
        # nd-1-tyt's credential pushing as another site, commune, province and district, by labels
        # on the series and by extra_label on its own URL: every identity label stays its own.
        other = {
            "site": "nd-2-nvh1",
            "site_type": "village_hall",
            "commune": "Xã Hai",
            "district": "Giao Thủy",
        }
        other |= {"province": "Tỉnh Thái Bình", "instance": "nd-2-nvh1", "job": "fake"}
        assert _post(port, "nd-1-tyt", tyt, w, {"__name__": "pin_a", **other}) == 204
        query = urlencode([("extra_label", f"{k}={v}") for k, v in other.items()])
        assert _post(port, "nd-1-tyt", tyt, f"{w}?{query}", {"__name__": "pin_b"}) == 204
        assert _post(port, "nd-2-nvh1", nvh, w, {"__name__": "pin_c"}) == 204
        assert _post(port, "nd-1-tyt", nvh, w, {"__name__": "pin_wrong"}) != 204
        assert _post(port, "nd-1-tyt", tyt, "/api/v1/import/prometheus", {"__name__": "pin_path"}) != 204
        # Rotation: vmauth re-reads its file on SIGHUP; the old password stops working.
        run(tmp_path, vm_url=vm.base, rotate={"nd-1-tyt"})
        proc.send_signal(1)
        deadline = time.monotonic() + 20
        while _post(port, "nd-1-tyt", tyt, w, {"__name__": "pin_old"}) == 204:
            assert time.monotonic() < deadline, "vmauth still takes the rotated-out password"
            time.sleep(0.2)
        new = json.loads((tmp_path / "out/credentials.json").read_text())["push_passwords"]["nd-1-tyt"]
        assert _post(port, "nd-1-tyt", new, w, {"__name__": "pin_new"}) == 204
        got = {}
        for key in vm.samples('{__name__=~"pin_.*"}'):
            labels = dict(key)
            got[labels.pop("__name__")] = labels
        tyt_labels = {"site": "nd-1-tyt", "site_type": "health_station", "commune": "Xã Một"}
        tyt_labels |= {"province": "Tỉnh Nam Định", "instance": "nd-1-tyt", "job": "hotspot-agent"}
        nvh_labels = {"site": "nd-2-nvh1", "site_type": "village_hall", "commune": "Xã Hai"}
        nvh_labels |= {"province": "Tỉnh Nam Định", "instance": "nd-2-nvh1", "job": "hotspot-agent"}
        # pin_old gets through while vmauth has not yet re-read its file (a slow reload on a busy machine)
        assert got.pop("pin_old", tyt_labels) == tyt_labels
        # VictoriaMetrics ignores an empty extra_label: a site the inventory gives no district can add
        # one to its own series (docs/push.md), and nothing else; its own extra_label adds nothing.
        forged = tyt_labels | {"district": "Giao Thủy"}
        assert got == {"pin_a": forged, "pin_b": tyt_labels, "pin_c": nvh_labels, "pin_new": tyt_labels}
    finally:
        proc.terminate()
        proc.wait(10)
        vm.stop()


def test_vmauth_file_is_yaml_with_one_user_per_pushing_site(tmp_path):
    """The vmauth file parses, lists exactly the pushing sites, and routes only the write path; the
    test server given reaches every site's config."""
    run(tmp_path, vm_url="http://vm:8428/", speedtest_server="http://speedtest.example.vn:8989/")
    pulled = agent_config.load(tmp_path / "out/sites/nd-1-ubnd/config.yaml")
    assert pulled.probes.bandwidth.server == "http://speedtest.example.vn:8989/"
    users = yaml.safe_load((tmp_path / "out/vmauth.yml").read_text())["users"]
    assert [u["username"] for u in users] == ["nd-1-tyt", "nd-2-nvh1"]
    [route] = users[0]["url_map"]
    assert route["src_paths"] == ["/api/v1/write"]
    base, query = route["url_prefix"].split("?")
    assert base == "http://vm:8428"
    pinned = [
        tuple(v.split("=", 1)) for k, v in parse_qsl(query, keep_blank_values=True) if k == "extra_label"
    ]
    assert dict(pinned) == {
        "commune": "Xã Một",
        "instance": "nd-1-tyt",
        "job": "hotspot-agent",
        "province": "Tỉnh Nam Định",
        "site": "nd-1-tyt",
        "site_type": "health_station",
    }
    with_district = INVENTORY.replace('commune: "Xã Hai",', 'commune: "Xã Hai", district: Giao Thủy,')
    provision.provision(loads(with_district), tmp_path / "out2", push_url=PUSH_URL)
    nvh1 = yaml.safe_load((tmp_path / "out2/vmauth.yml").read_text())["users"][1]
    prefix = nvh1["url_map"][0]["url_prefix"]
    assert "&extra_label=district=Giao%20Th%E1%BB%A7y&" in prefix


@pytest.mark.skipif(not have("vmauth"), reason="vmauth not installed")
def test_vmauth_keeps_running_and_revokes_when_no_site_pushes_any_more(tmp_path):
    """The last pushing site removed: vmauth (1.79 refuses a config without users, and on reload
    would keep the last one) loads the new file, and the removed site's password stops working."""
    run(tmp_path, vm_url="http://127.0.0.1:9/")
    tyt = json.loads((tmp_path / "out/credentials.json").read_text())["push_passwords"]["nd-1-tyt"]
    port = free_port()
    argv = ["vmauth", f"-auth.config={tmp_path / 'out/vmauth.yml'}", f"-httpListenAddr=127.0.0.1:{port}"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while not _listening(port):
            assert time.monotonic() < deadline, "vmauth did not start"
            time.sleep(0.1)
        # Routed: the proxy finds nothing at the VictoriaMetrics address (502), not a refusal.
        assert _post(port, "nd-1-tyt", tyt, "/api/v1/write", {"__name__": "x"}) == 502
        scraped_only = "\n".join(INVENTORY.strip().splitlines()[:4]) + "\n"
        run(tmp_path, scraped_only, vm_url="http://127.0.0.1:9/")
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 20
        while _post(port, "nd-1-tyt", tyt, "/api/v1/write", {"__name__": "x"}) not in (400, 401):
            assert time.monotonic() < deadline, "vmauth still takes the removed site's password"
            time.sleep(0.2)
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(10)
    # A fresh vmauth starts on that file too.
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while not _listening(port):
            assert proc.poll() is None and time.monotonic() < deadline, "vmauth refused the file"
            time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(10)
