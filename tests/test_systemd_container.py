"""The Debian package and its unit under a real systemd: Debian 12 booted in systemd-nspawn.

One container for the module (tests run in file order): the package built by
deploy/debian/build-deb.sh is installed with dpkg, the site's provisioned config and credential put in
place, and the agent pushes through the real vmauth into a real VictoriaMetrics, both started in the
container's network namespace. From nothing (no cached root filesystem, no wheels) this takes about
two minutes; warm, well under one. Figures (start-up time, RSS) are printed; run with -s to see them.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from collector import provision
from collector.inventory import loads
from tests.support import nspawn

pytestmark = [
    pytest.mark.slow,
    pytest.mark.netns,
    pytest.mark.skipif(nspawn.available() is not None, reason=str(nspawn.available())),
    pytest.mark.skipif(
        not (Path(sys.executable).parent / "ansible-playbook").exists(),
        reason="ansible-core missing (pip install -e '.[test]')",
    ),
]

ROOT = Path(__file__).resolve().parent.parent
SITE = "nd-1-tyt"
INVENTORY = f"""
sites:
  - {{id: {SITE}, name: "Trạm y tế Xã Một", type: health_station, commune: "Xã Một", commune_code: "1",
     province: "Tỉnh Nam Định", latitude: 20.1, longitude: 106.1, isp: VNPT, push: true}}
"""
VMAUTH_PORT, VM_PORT = 8427, 8428
# Only loopback exists in the container: measure it, push often, leave the internet probes out.
PROBES = {
    "ping": {"targets": ["127.0.0.1"], "gateway": False, "count": 3, "interval_s": 5, "jitter_s": 0},
    "system": {"interval_s": 5, "jitter_s": 0},
    "dns": {"enabled": False},
    "http": {"enabled": False},
    "wifi": {"interval_s": 5, "jitter_s": 0},  # no radio here: proves iw reaches netlink in the unit
    "bandwidth": {"enabled": False},
}


def build(version: str, out: Path) -> Path:
    done = subprocess.run(
        [str(ROOT / "deploy/debian/build-deb.sh"), "amd64", version, str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return Path(done.stdout.strip().splitlines()[-1])


def repack(deb: Path, version: str) -> Path:
    """The same package under a newer version (an upgrade without a second build)."""
    tree = deb.parent / f"tree-{version}"
    subprocess.run(["dpkg-deb", "-R", str(deb), str(tree)], check=True)
    control = tree / "DEBIAN/control"
    control.write_text(re.sub(r"^Version: .*$", f"Version: {version}", control.read_text(), flags=re.M))
    new = deb.with_name(deb.name.replace("0.9.0", version))
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "-b", str(tree), str(new)], check=True, capture_output=True
    )
    return new


class Site:
    """The container with the package installed and the collector side running in its netns."""

    def __init__(self, ct: nspawn.Container, debs: dict[str, Path], work: Path) -> None:
        self.ct, self.debs, self.work = ct, debs, work
        self.servers: list[subprocess.Popen[bytes]] = []
        self.provisioned = work / "provisioned"
        self.boot_s = 0.0

    def metrics(self) -> str:
        done = self.ct.net("curl", "-sf", "--max-time", "5", "http://127.0.0.1:9591/metrics")
        return done.stdout if done.returncode == 0 else ""

    def wait_metric(self, pattern: str, timeout_s: float = 60) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            text = self.metrics()
            m = re.search(pattern, text, re.M)
            if m:
                return m.group(0)
            time.sleep(0.5)
        raise AssertionError(f"no {pattern!r} on /metrics:\n{self.metrics()[-3000:]}")

    def main_pid(self) -> int:
        return int(self.ct.run("systemctl", "show", "-P", "MainPID", "hotspot-agent").stdout)

    def journal(self) -> str:
        return self.ct.run("journalctl", "-u", "hotspot-agent", "--no-pager", "-o", "cat").stdout

    def install(self, name: str) -> subprocess.CompletedProcess[str]:
        shutil.copy(self.debs[name], self.ct.root / "root" / self.debs[name].name)
        return self.ct.run("dpkg", "-i", f"/root/{self.debs[name].name}", check=False)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    work = tmp_path_factory.mktemp("container")
    old = build("0.9.0", work / "dist")
    debs = {"old": old, "new": repack(old, "0.9.1"), "newer": repack(old, "0.9.2")}
    ct = nspawn.Container(work)
    try:
        boot_s = ct.boot()
        print(f"\ncontainer booted in {boot_s:.1f} s")
        s = Site(ct, debs, work)
        s.boot_s = boot_s
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(work / "id_ed25519")], check=True
        )
        ssh = ct.root / "root/.ssh"
        ssh.mkdir(mode=0o700, exist_ok=True)
        shutil.copy(work / "id_ed25519.pub", ssh / "authorized_keys")
        # The collector side, real binaries from the host, listening in the container's netns.
        out = s.provisioned
        provision.provision(
            loads(INVENTORY),
            out,
            push_url=f"http://127.0.0.1:{VMAUTH_PORT}/api/v1/write",
            vm_url=f"http://127.0.0.1:{VM_PORT}",
        )
        for argv in (
            ["victoria-metrics", f"-storageDataPath={work}/vm", f"-httpListenAddr=127.0.0.1:{VM_PORT}"],
            ["vmauth", f"-auth.config={out}/vmauth.yml", f"-httpListenAddr=127.0.0.1:{VMAUTH_PORT}"],
        ):
            cmd = ["nsenter", "-t", str(ct.leader), "-n", *argv, "-loggerLevel=ERROR"]
            s.servers.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        yield s
    finally:
        for proc in locals().get("s", Site(ct, {}, work)).servers:
            proc.terminate()
            proc.wait(10)
        ct.shutdown()


def put_config(site: Site, extra: dict[str, object] | None = None) -> None:
    """The site's provisioned config (+ test probe settings) and credential, as the playbook puts them."""
    out = site.provisioned
    config = yaml.safe_load((out / f"sites/{SITE}/config.yaml").read_text())
    config["probes"] = PROBES
    config["push"]["interval_s"] = 2
    config.update(extra or {})
    etc = site.ct.root / "etc/hotspot-agent"
    (etc / "config.yaml").write_text(yaml.safe_dump(config, allow_unicode=True))
    shutil.copy(out / f"sites/{SITE}/push-password", etc / "push-password")
    for name in ("config.yaml", "push-password"):
        site.ct.run("chown", "root:hotspot-agent", f"/etc/hotspot-agent/{name}")
        site.ct.run("chmod", "0640", f"/etc/hotspot-agent/{name}")


def playbook(site: Site, *extra: str) -> tuple[int, str]:
    """Run deploy/ansible/site.yml against the container over SSH; returns (changed count, output).

    ansible-playbook runs on this machine in the container's network namespace only (its files,
    Python and keys are this machine's), and reaches the device as an operator would: ssh to port 22.
    """
    ct, work = site.ct, site.work
    hosts = work / "hosts.yml"
    hosts.write_text(
        yaml.safe_dump(
            {
                "sites": {
                    "hosts": {"device": {"ansible_host": "127.0.0.1", "site_id": SITE}},
                    "vars": {
                        "ansible_user": "root",
                        "ansible_ssh_private_key_file": str(work / "id_ed25519"),
                        "ansible_ssh_common_args": "-o StrictHostKeyChecking=no "
                        "-o UserKnownHostsFile=/dev/null",
                        "ansible_python_interpreter": "/usr/bin/python3",
                    },
                }
            }
        )
    )
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": str(work),
        "ANSIBLE_LOCAL_TEMP": str(work / "ansible-tmp"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_RETRY_FILES_ENABLED": "0",
        "LANG": "C.UTF-8",
    }
    argv = [
        "nsenter", "-t", str(ct.leader), "-n",
        str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(hosts),
        str(ROOT / "deploy/ansible/site.yml"),
        "-e", f"hotspot_provision_dir={site.provisioned}",
        "-e", f"hotspot_deb_dir={site.debs['old'].parent}",
        *extra,
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    m = re.search(r"device\s*:\s*ok=\d+\s+changed=(\d+)", output)
    assert m, output[-3000:]
    return int(m.group(1)), output


def test_playbook_check_mode_on_a_fresh_device_changes_nothing(site: Site) -> None:
    """--check on a fresh device reports the work to do and does none of it."""
    changed, _ = playbook(site, "--check", "-e", "hotspot_version=0.9.0")
    assert changed >= 1
    assert site.ct.run("dpkg-query", "-W", "hotspot-agent", check=False).returncode != 0
    assert not (site.ct.root / "etc/hotspot-agent").exists()


def test_playbook_brings_a_fresh_device_to_a_running_agent_as_its_own_user(site: Site) -> None:
    """From a fresh Debian 12 (no pip, no venv) to the site's agent running; a second run and a
    check run change nothing."""
    start = time.monotonic()
    changed, _ = playbook(site, "-e", "hotspot_version=0.9.0")
    site.wait_metric(rf'^hotspot_site_info{{.*site="{SITE}".*}} 1\.0$', 60)
    print(
        f"fresh container to running agent with the playbook: {site.boot_s + time.monotonic() - start:.1f} s"
    )
    assert changed >= 4
    assert site.ct.run("systemctl", "is-enabled", "hotspot-agent").stdout.strip() == "enabled"
    for name in ("config.yaml", "push-password"):
        st = site.ct.run("stat", "-c", "%U:%G %a", f"/etc/hotspot-agent/{name}").stdout.strip()
        assert st == "root:hotspot-agent 640", (name, st)
    check = site.ct.run(
        "runuser",
        "-u",
        "hotspot-agent",
        "--",
        "hotspot-agent",
        "check-config",
        "/etc/hotspot-agent/config.yaml",
    )
    assert f"site {SITE}" in check.stdout
    vi = site.ct.run(
        "env", "LANG=vi_VN.UTF-8", "hotspot-agent", "check-config", "/etc/hotspot-agent/config.yaml"
    )
    assert f"hợp lệ — điểm {SITE}" in vi.stdout  # the packaged Vietnamese catalogue
    pid = site.main_pid()
    assert site.ct.run("stat", "-c", "%U", f"/proc/{pid}").stdout.strip() == "hotspot-agent"
    # The package did not start the agent under the example config's identity before the playbook
    # put the site's config in place.
    assert "nd-14161-tyt" not in site.journal()
    assert playbook(site, "-e", "hotspot_version=0.9.0")[0] == 0
    assert playbook(site, "--check", "-e", "hotspot_version=0.9.0")[0] == 0
    assert site.main_pid() == pid


def test_agent_start_up_time_and_memory_inside_the_unit(site: Site) -> None:
    put_config(site)
    start = time.monotonic()
    site.ct.run("systemctl", "restart", "hotspot-agent")
    site.wait_metric(r"^hotspot_site_info\{.*\} 1\.0$", 60)
    started_s = time.monotonic() - start
    time.sleep(10)  # a few probe and push rounds
    rss = site.ct.run("grep", "VmRSS", f"/proc/{site.main_pid()}/status").stdout.split()[1]
    print(f"agent start-up to /metrics: {started_s:.2f} s; RSS after 10 s: {int(rss) / 1024:.1f} MiB")
    assert int(rss) > 0


def test_ping_measures_with_icmp_thanks_to_the_packages_sysctl(site: Site) -> None:
    """The package's sysctl drop-in opened unprivileged ICMP, and it works under PrivateUsers=."""
    assert site.ct.run("cat", "/proc/sys/net/ipv4/ping_group_range").stdout.split() == ["0", "2147483647"]
    line = site.wait_metric(r'^hotspot_ping_\w+\{[^}]*method="(icmp|tcp)"[^}]*\} \S+$')
    assert 'method="icmp"' in line, line


def test_push_queue_lives_in_the_state_directory_and_delivers_as_its_site(site: Site) -> None:
    """The queue is under /var/lib/hotspot-agent, owned by the agent; vmauth lets the provisioned
    credential in, and VictoriaMetrics stores the series under the site's own label."""
    stat = site.ct.run("stat", "-c", "%U %a", "/var/lib/hotspot-agent/push-queue.sqlite").stdout.split()
    assert stat[0] == "hotspot-agent"
    deadline = time.monotonic() + 60
    while True:
        q = "http://127.0.0.1:8428/api/v1/series?match[]=hotspot_site_info"
        series = json.loads(site.ct.net("curl", "-s", "-g", q).stdout or "{}").get("data", [])
        if series:
            break
        assert time.monotonic() < deadline, site.journal()[-3000:]
        time.sleep(1)
    assert {s["site"] for s in series} == {SITE}


def test_reload_applies_a_valid_config_and_keeps_running_on_an_invalid_one(site: Site) -> None:
    """`systemctl reload` works without procps' /bin/kill (hidden here; openssh-server pulls procps
    in, minimal images lack it); a bad config is refused and the agent keeps running."""
    kills = [p for p in site.ct.run("dpkg-query", "-L", "procps").stdout.split() if p.endswith("bin/kill")]
    for path in kills:
        site.ct.run("mv", path, f"{path}.hidden")
    pid = site.main_pid()
    put_config(site, {"log_level": "debug"})
    site.ct.run("systemctl", "reload", "hotspot-agent")
    site.wait_metric(r"^hotspot_config_last_reload_successful(\{[^}]*\})? 1\.0$", 20)
    (site.ct.root / "etc/hotspot-agent/config.yaml").write_text("site: {id: BAD}\n")
    site.ct.run("systemctl", "reload", "hotspot-agent")
    site.wait_metric(r"^hotspot_config_last_reload_successful(\{[^}]*\})? 0\.0$", 20)
    assert site.ct.run("systemctl", "is-active", "hotspot-agent").stdout.strip() == "active"
    assert site.main_pid() == pid
    put_config(site)
    site.ct.run("systemctl", "reload", "hotspot-agent")
    site.wait_metric(r"^hotspot_config_last_reload_successful(\{[^}]*\})? 1\.0$", 20)
    assert kills and all(site.ct.run("test", "-e", p, check=False).returncode != 0 for p in kills)
    for path in kills:
        site.ct.run("mv", f"{path}.hidden", path)


def test_sigkill_is_followed_by_a_restart(site: Site) -> None:
    pid = site.main_pid()
    site.ct.run("systemctl", "kill", "-s", "KILL", "hotspot-agent")
    deadline = time.monotonic() + 40  # RestartSec=10s
    while site.main_pid() in (0, pid):
        assert time.monotonic() < deadline, site.ct.run(
            "systemctl", "status", "hotspot-agent", check=False
        ).stdout
        time.sleep(0.5)
    site.wait_metric(r"^hotspot_site_info\{.*\} 1\.0$", 60)
    assert site.ct.run("systemctl", "show", "-P", "NRestarts", "hotspot-agent").stdout.strip() == "1"


def test_no_seccomp_or_memory_protection_kill_and_exposure_at_most_2_5(site: Site) -> None:
    """After all of the above: no SIGSYS, no traceback; systemd's own security score for the unit."""
    journal = site.journal()
    assert "SYS" not in re.findall(r"status=\d+/(\w+)", journal), journal[-3000:]
    assert "Traceback" not in journal, journal[-3000:]
    assert "duplicate" not in journal.lower(), journal[-3000:]  # one pusher per queue
    # iw asked the kernel over generic netlink and heard "no nl80211": netlink works in the sandbox.
    assert "no wireless support (nl80211 not found)" in journal, journal[-3000:]
    result = site.ct.run("systemctl", "show", "-P", "Result", "hotspot-agent").stdout.strip()
    assert result == "success"
    done = site.ct.run("systemd-analyze", "security", "hotspot-agent", check=False)
    m = re.search(r"Overall exposure level for hotspot-agent\.service: (\d+\.\d+)", done.stdout)
    assert m and float(m.group(1)) <= 2.5, done.stdout[-2000:]


def test_the_playbook_upgrades_a_site(site: Site) -> None:
    """Raising hotspot_version upgrades the package; the agent runs the site's config again."""
    pid = site.main_pid()
    changed, _ = playbook(site, "-e", "hotspot_version=0.9.1")
    assert changed >= 2
    version = site.ct.run("dpkg-query", "-W", "-f", "${Version}", "hotspot-agent").stdout
    assert version == "0.9.1"
    site.wait_metric(rf'^hotspot_site_info{{.*site="{SITE}".*}} 1\.0$', 60)
    assert site.main_pid() != pid  # restarted on the new program


def test_upgrade_keeps_the_config_then_remove_and_purge(site: Site) -> None:
    """A newer package keeps the site's config (a conffile changed by the admin) and restarts the
    agent; remove keeps config and state; purge removes them and leaves the system user."""
    put_config(site, {"log_level": "warning"})
    before = (site.ct.root / "etc/hotspot-agent/config.yaml").read_text()
    done = site.install("newer")
    assert done.returncode == 0, done.stdout + done.stderr
    assert (site.ct.root / "etc/hotspot-agent/config.yaml").read_text() == before
    version = site.ct.run("dpkg-query", "-W", "-f", "${Version}", "hotspot-agent").stdout
    assert version == "0.9.2"
    site.wait_metric(r"^hotspot_site_info\{.*\} 1\.0$", 60)

    site.ct.run("dpkg", "--remove", "hotspot-agent")
    assert site.ct.run("systemctl", "is-active", "hotspot-agent", check=False).stdout.strip() != "active"
    assert not (site.ct.root / "opt/hotspot-agent/venv/bin").exists()
    assert (site.ct.root / "etc/hotspot-agent/config.yaml").exists()
    assert site.ct.run("test", "-d", "/var/lib/hotspot-agent", check=False).returncode == 0

    site.ct.run("dpkg", "--purge", "hotspot-agent")
    assert site.ct.run("test", "-e", "/etc/hotspot-agent", check=False).returncode != 0
    assert site.ct.run("test", "-e", "/var/lib/hotspot-agent", check=False).returncode != 0
    assert site.ct.run("id", "hotspot-agent", check=False).returncode == 0
