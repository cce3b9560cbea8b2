"""The wifi probe: parsers on real captured `iw` output, and whole runs against a replaying `iw`."""

from __future__ import annotations

import json
import shutil
import stat
from pathlib import Path

import pytest

from agent.probes import wifi
from agent.probes.base import ProbeContext
from agent.site import Site

FIXTURES = Path(__file__).parent / "fixtures" / "iw"


def capture(name: str) -> str:
    return (FIXTURES / name).read_text()


def context(tmp_path: Path) -> ProbeContext:
    return ProbeContext(site=Site(id="lab", commune="Xã Thử", province="Nam Định"), state_dir=tmp_path)


def replaying_iw(tmp_path: Path, answers: dict[str, str], delay_s: float = 0.0) -> str:
    """An `iw` that prints the captured file mapped to its arguments ("dev wlan0 link" -> file)."""
    store = tmp_path / "iw-captures"
    store.mkdir()
    for args, fixture in answers.items():
        shutil.copy(FIXTURES / fixture, store / args.replace(" ", "_"))
    script = tmp_path / "iw"
    script.write_text(
        "#!/bin/sh\n"
        f"sleep {delay_s}\n"
        f'file="{store}/$(echo "$*" | tr " " "_")"\n'
        'if [ -f "$file" ]; then cat "$file"; exit 0; fi\n'
        'echo "replay has no capture for: $*" >&2\n'
        "exit 1\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


# --- parsers -------------------------------------------------------------------------------------


def test_iw_dev_lists_the_managed_interface_and_skips_the_p2p_device():
    """`iw dev` on a laptop yields only the netdev interface, with its type, SSID and frequency."""
    assert wifi.parse_interfaces(capture("dev_client_p2p.txt")) == [
        wifi.IwInterface("wlp64s0", "managed", "whatever", "9c:fc:e8:b8:fa:60", 5500e6)
    ]


def test_info_blocks_keep_ssids_with_spaces_and_each_channel():
    """Two AP info blocks parse to two interfaces; an SSID with spaces stays whole."""
    got = wifi.parse_interfaces(capture("info_ap_openwrt_two.txt"))
    assert [(i.name, i.mode, i.ssid, i.frequency_hz) for i in got] == [
        ("wlan0", "AP", "Access Point 5GHz SSID", 5220e6),
        ("wlan1", "AP", "Access Point 2.4GHz SSID", 2457e6),
    ]


def test_info_reads_ap_and_mesh_modes():
    """`iw dev IF info` gives the interface type, including multi-word ones like "mesh point"."""
    (ap,) = wifi.parse_interfaces(capture("info_ap_lede.txt"))
    assert (ap.name, ap.mode, ap.ssid, ap.addr, ap.frequency_hz) == (
        "wlan0",
        "AP",
        "LEDE",
        "f4:f2:6d:22:7c:f0",
        2462e6,
    )
    (mesh,) = wifi.parse_interfaces(capture("info_mesh_chromeos.txt"))
    assert mesh.mode == "mesh point"
    (client,) = wifi.parse_interfaces(capture("info_managed_wlan0.txt"))
    assert (client.mode, client.ssid) == ("managed", "")


def test_ssids_escaped_by_iw_are_decoded_in_every_parser():
    """iw prints "Wifi Xã Giao Minh" as Wifi X\\xc3\\xa3 Giao Minh: back to text in `link` and in
    `dev`/`info` output; escaped end spaces and backslashes come back too."""
    assert wifi.parse_link(capture("link_ssid_escaped.txt")).ssid == "Wifi Xã Giao Minh"
    (ap,) = wifi.parse_interfaces(capture("info_ap_ssid_escaped.txt"))
    assert ap.ssid == " Trạm y tế Xã Giao Minh\\2 "


def test_ssid_bytes_that_are_not_utf8_become_replacement_characters():
    """An access point configured in a legacy encoding (cp1258 "Xã" is X, a, then 0xde)."""
    assert wifi.unescape_ssid("Wifi Xa\\xde Giao Minh") == "Wifi Xa\ufffd Giao Minh"
    assert wifi.unescape_ssid("\\xff\\xfe") == "\ufffd\ufffd"
    assert wifi.unescape_ssid("plain\\x") == "plain\\x"  # not an escape: kept as printed


def test_run_reports_the_decoded_ssid_and_survives_odd_bytes(tmp_path):
    """A whole run with the escaped capture; raw non-UTF-8 bytes from iw do not crash the probe."""
    iw = replaying_iw(
        tmp_path, {"dev wlan0 info": "info_managed_wlan0.txt", "dev wlan0 link": "link_ssid_escaped.txt"}
    )
    (result,) = wifi.run(wifi.Settings(iw_path=iw, interface="wlan0"), context(tmp_path))
    assert result.ok and result.data.ssid == "Wifi Xã Giao Minh"
    assert "'Wifi Xã Giao Minh'" in result.detail
    raw = tmp_path / "iw-captures" / "dev_wlan0_link"
    raw.write_bytes(raw.read_bytes().replace(b"freq: 2462", b"freq: 2462 \xff\xfe"))
    (result,) = wifi.run(wifi.Settings(iw_path=iw, interface="wlan0"), context(tmp_path))
    assert result.ok and result.data.frequency_hz == 2462e6, result.detail


def test_link_with_only_tx_bitrate():
    """An older iw link output (no rx bitrate) gives tx in bits/s and rx as unknown, not 0."""
    link = wifi.parse_link(capture("link_lede.txt"))
    assert link == wifi.IwLink(
        connected=True,
        bssid="f4:f2:6d:22:7c:f0",
        ssid="LEDE-tp1043",
        frequency_hz=2462e6,
        signal_dbm=-39.0,
        tx_bitrate_bps=13.0e6,
        rx_bitrate_bps=None,
    )


def test_link_with_vht_rates_and_decimal_frequency():
    """ "freq: 2447.0" and "866.7 MBit/s VHT-MCS 9 ..." convert to Hz and bits per second."""
    link = wifi.parse_link(capture("link_android_vht.txt"))
    assert link.frequency_hz == pytest.approx(2447e6)
    assert link.rx_bitrate_bps == pytest.approx(866.7e6)
    assert link.tx_bitrate_bps == pytest.approx(780.0e6)
    assert (link.ssid, link.signal_dbm) == ("AndroidWifi", -50.0)


def test_link_indented_with_spaces_and_trailing_bss_section():
    """Space-indented output with the bss flags section still yields SSID, frequency and signal."""
    link = wifi.parse_link(capture("link_chromeos.txt"))
    assert (link.bssid, link.ssid, link.frequency_hz, link.signal_dbm) == (
        "12:34:56:ab:cd:ef",
        "PMKSACaching_4m9p5_ch1",
        5220e6,
        -59.0,
    )


def test_not_connected_link():
    """ "Not connected." parses to an unassociated link with no values."""
    assert wifi.parse_link(capture("link_not_connected.txt")) == wifi.IwLink(connected=False)


def test_unrecognised_link_output_is_an_error():
    """Text that is neither form iw prints is refused rather than read as an empty link."""
    with pytest.raises(ValueError, match="unexpected"):
        wifi.parse_link(capture("station_dump_openwrt_2.txt"))
    with pytest.raises(ValueError):  # noqa: PT011  the assertion as written: empty output is refused
        wifi.parse_link("")


def test_station_dump_counts_station_blocks():
    """Each "Station <mac>" block is one associated station."""
    assert wifi.count_stations(capture("station_dump_chromeos_3.txt")) == 3
    assert wifi.count_stations(capture("station_dump_openwrt_2.txt")) == 2
    assert wifi.count_stations("") == 0


def test_bitrate_needs_the_mbit_unit():
    """Only "<number> MBit/s" is a bitrate; anything else is unknown."""
    assert wifi.parse_bitrate("7.2 MBit/s") == pytest.approx(7.2e6)
    assert wifi.parse_bitrate("unknown") is None
    assert wifi.parse_bitrate("") is None


# --- whole runs ----------------------------------------------------------------------------------


def test_run_finds_the_client_interface_and_reads_its_link(tmp_path):
    """With no interface configured, the probe lists interfaces, picks the client and reads its link."""
    iw = replaying_iw(tmp_path, {"dev": "dev_client_p2p.txt", "dev wlp64s0 link": "link_android_vht.txt"})
    (result,) = wifi.run(wifi.Settings(iw_path=iw), context(tmp_path))
    assert result.ok, result.detail
    assert (result.probe, result.target) == ("wifi", "wlp64s0")
    link = result.data
    assert (link.mode, link.connected, link.ssid, link.stations) == ("managed", True, "AndroidWifi", None)
    assert link.rx_bitrate_bps == pytest.approx(866.7e6)
    assert "AndroidWifi" in result.detail and "-50 dBm" in result.detail
    json.dumps(result.to_json())  # the data serialises for `measure --json`


def test_run_reports_an_unassociated_client_as_unreachable(tmp_path):
    """A configured client that is not associated is a failed run (unreachable), still carrying data."""
    iw = replaying_iw(
        tmp_path, {"dev wlan0 info": "info_managed_wlan0.txt", "dev wlan0 link": "link_not_connected.txt"}
    )
    (result,) = wifi.run(wifi.Settings(iw_path=iw, interface="wlan0"), context(tmp_path))
    assert (result.ok, result.reason, result.target) == (False, "unreachable", "wlan0")
    assert result.detail == "wifi: wlan0 is not connected to any network"
    assert result.data.connected is False and result.data.signal_dbm is None


def test_run_on_an_access_point_counts_stations(tmp_path):
    """On an AP interface the probe reports SSID, own address, channel frequency and station count."""
    iw = replaying_iw(
        tmp_path,
        {"dev wlan0 info": "info_ap_lede.txt", "dev wlan0 station dump": "station_dump_chromeos_3.txt"},
    )
    (result,) = wifi.run(wifi.Settings(iw_path=iw, interface="wlan0"), context(tmp_path))
    assert result.ok, result.detail
    link = result.data
    assert (link.mode, link.connected, link.ssid, link.bssid) == ("AP", True, "LEDE", "f4:f2:6d:22:7c:f0")
    assert (link.frequency_hz, link.stations, link.signal_dbm) == (2462e6, 3, None)
    assert result.detail == "wifi: wlan0 is access point 'LEDE' on 2462 MHz with 3 stations"


ROUTES = Path(__file__).parent / "fixtures" / "ping"


# An unused onboard radio (wlan0, listed first) and an associated USB radio (wlp64s0).
TWO_RADIOS = {
    "dev": "dev_two_radios.txt",
    "dev wlan0 link": "link_not_connected.txt",
    "dev wlp64s0 link": "link_android_vht.txt",
}


def routes_via(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, v4_table: str | None) -> None:
    """Point the probe at a captured IPv4 routing table (None: no default route) and no IPv6 routes."""
    (tmp_path / "ipv6_route").write_text("")
    v4 = ROUTES / v4_table if v4_table else ROUTES / "route-no-default.txt"
    monkeypatch.setattr(wifi, "ROUTE_TABLES", (v4, tmp_path / "ipv6_route"))


def test_two_radios_the_associated_one_is_read(tmp_path, monkeypatch):
    """An unused onboard radio listed first and an associated USB radio: the USB one is read."""
    routes_via(monkeypatch, tmp_path, None)
    iw = replaying_iw(tmp_path, TWO_RADIOS)
    (result,) = wifi.run(wifi.Settings(iw_path=iw), context(tmp_path))
    assert (result.ok, result.target, result.data.ssid) == (True, "wlp64s0", "AndroidWifi"), result.detail


def test_two_radios_the_one_carrying_the_default_route_comes_first(tmp_path, monkeypatch):
    """When the default route goes through wlan0, wlan0 is the radio that matters, associated or not:
    here it lost its association, which is the site's wifi being down."""
    routes_via(monkeypatch, tmp_path, "route-three-defaults.txt")  # defaults via ppp0, wan0 and wlan0
    iw = replaying_iw(tmp_path, TWO_RADIOS)
    (result,) = wifi.run(wifi.Settings(iw_path=iw), context(tmp_path))
    assert (result.ok, result.reason, result.target) == (False, "unreachable", "wlan0")


def test_wired_agent_with_an_idle_onboard_radio_is_not_wifi_down(tmp_path, monkeypatch):
    """The default config on a wired Pi: the idle radio is "not in use", no wifi data, no finding."""
    routes_via(monkeypatch, tmp_path, "route-default-no-gateway.txt")  # the default route is on eth0
    iw = replaying_iw(tmp_path, {"dev": "dev_onboard_idle.txt", "dev wlan0 link": "link_not_connected.txt"})
    (result,) = wifi.run(wifi.Settings(iw_path=iw), context(tmp_path))
    assert (result.ok, result.reason, result.data) == (False, "unsupported", None)
    assert result.detail == (
        "wifi: not in use: wlan0 is not associated and the way out is eth0; "
        "set probes.wifi.interface to watch a radio"
    )
    # without any default route the radio may be the lost way out: still a finding
    routes_via(monkeypatch, tmp_path, None)
    (result,) = wifi.run(wifi.Settings(iw_path=iw), context(tmp_path))
    assert (result.ok, result.reason, result.target) == (False, "unreachable", "wlan0")


def test_run_refuses_a_mesh_interface(tmp_path):
    """An interface in a mode the probe cannot read is "unsupported", naming the mode."""
    iw = replaying_iw(tmp_path, {"dev wlan-2400mhz info": "info_mesh_chromeos.txt"})
    (result,) = wifi.run(wifi.Settings(iw_path=iw, interface="wlan-2400mhz"), context(tmp_path))
    assert (result.ok, result.reason) == (False, "unsupported")
    assert "mesh point" in result.detail


def test_run_gives_up_at_the_timeout(tmp_path):
    """An iw that answers later than the run's timeout yields a "timeout" failure, not a hang."""
    iw = replaying_iw(tmp_path, {"dev": "dev_client_p2p.txt"}, delay_s=5)
    (result,) = wifi.run(wifi.Settings(iw_path=iw, timeout_s=0.5), context(tmp_path))
    assert (result.ok, result.reason) == (False, "timeout")
    assert result.duration_s < 5


def test_run_without_the_iw_program(tmp_path):
    """A missing iw binary is "unsupported" with a hint to install it."""
    (result,) = wifi.run(wifi.Settings(iw_path=str(tmp_path / "no-such-iw")), context(tmp_path))
    assert (result.ok, result.reason) == (False, "unsupported")
    assert "install the iw package" in result.detail


@pytest.mark.skipif(shutil.which("iw") is None, reason="iw is not installed")
def test_run_with_the_real_iw_on_a_machine_without_radio(tmp_path):
    """The real iw on this radio-less machine leads to "unsupported" with a plain explanation."""
    (result,) = wifi.run(wifi.Settings(), context(tmp_path))
    assert (result.ok, result.reason) == (False, "unsupported")
    assert "no wireless" in result.detail
