"""The wifi link of the agent's interface (SSID, signal, bitrate, frequency), read with `iw`.

When the agent runs on the access point, the number of associated stations too.

How a run goes: `iw dev` lists the client (managed) and access-point interfaces, and the probe reads
the one carrying the default route, else one in use (associated or an access point), else the first,
unless one is configured (then `iw dev IF info` says what it is); a client is read with `iw dev IF link`, an
access point with `iw dev IF station dump`. The parsers below are pure (text in, values out) so
they are tested on output captured from real devices (tests/fixtures/iw/).
"""

from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass

from agent.families import Family, ProbeMetrics, Samples, per_result
from agent.probes import ping
from agent.probes.base import ProbeContext, ProbeSettings, ProbeSpec
from agent.result import Reason, Result, failure
from agent.schema import check, positive

PROBE = "wifi"
# The interface types the probe can read; iw names others "monitor", "mesh point", "P2P-device", ...
READABLE_MODES = ("managed", "AP")
ROUTE_TABLES = (ping.ROUTE_TABLE, ping.ROUTE_TABLE_V6)  # where the default routes are read


@dataclass(frozen=True)
class Settings(ProbeSettings):
    interval_s: float = check(positive, default=60.0)
    timeout_s: float = check(positive, default=15.0)
    interface: str = ""  # "": the radio carrying the default route, else one in use, else the first
    iw_path: str = "iw"


@dataclass(frozen=True)
class WifiLink:
    interface: str
    mode: str  # "managed" (a client) or "AP"
    connected: bool
    ssid: str
    bssid: str
    frequency_hz: float | None
    signal_dbm: float | None
    tx_bitrate_bps: float | None  # bits per second, as iw reports it
    rx_bitrate_bps: float | None
    stations: int | None  # associated stations, on an access point


@dataclass(frozen=True)
class IwInterface:
    """One `Interface` block of `iw dev` or `iw dev IF info`."""

    name: str
    mode: str  # iw's "type": managed, AP, monitor, mesh point, ...
    ssid: str
    addr: str
    frequency_hz: float | None


@dataclass(frozen=True)
class IwLink:
    """What `iw dev IF link` says about a client's association."""

    connected: bool
    bssid: str = ""
    ssid: str = ""
    frequency_hz: float | None = None
    signal_dbm: float | None = None
    tx_bitrate_bps: float | None = None
    rx_bitrate_bps: float | None = None


class IwError(Exception):
    """`iw` could not tell us what we asked; `reason` is the Result's failure reason."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason: Reason = reason
        self.detail = detail


_CHANNEL_FREQ = re.compile(r"\((\d+(?:\.\d+)?) MHz\)")
_CONNECTED = re.compile(r"^Connected to ([0-9a-fA-F:]{17})")
_NUMBER = re.compile(r"^-?\d+(?:\.\d+)?")


_ESCAPED_BYTE = re.compile(r"\\x([0-9a-fA-F]{2})")


def unescape_ssid(text: str) -> str:
    """An SSID as iw prints it, back to text: iw writes every byte that is not printable ASCII (and
    a space at either end, and the backslash) as \\xNN, so "Wifi X\\xc3\\xa3 Giao Minh" is
    "Wifi Xã Giao Minh". The bytes are read as UTF-8; those that are not UTF-8 become U+FFFD.
    """
    raw = bytearray()
    pos = 0
    for match in _ESCAPED_BYTE.finditer(text):
        raw += text[pos : match.start()].encode("utf-8")
        raw.append(int(match.group(1), 16))
        pos = match.end()
    raw += text[pos:].encode("utf-8")
    return raw.decode("utf-8", "replace")


def parse_interfaces(text: str) -> list[IwInterface]:
    """The named interfaces in `iw dev` (or `iw dev IF info`) output, in the order listed."""
    found: list[IwInterface] = []
    block: dict[str, str] | None = None

    def close() -> None:
        if block is not None and block.get("name"):
            found.append(
                IwInterface(
                    name=block["name"],
                    mode=block.get("type", ""),
                    ssid=unescape_ssid(block.get("ssid", "")),
                    addr=block.get("addr", ""),
                    frequency_hz=_channel_hz(block.get("channel", "")),
                )
            )

    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("Interface "):
            close()
            block = {"name": line.removeprefix("Interface ").strip()}
        elif line.startswith(("Unnamed/non-netdev interface", "phy#")):
            close()  # a P2P device has no netdev: nothing to read on it
            block = None
        elif block is not None:
            key, _, value = line.partition(" ")
            if key in ("type", "ssid", "addr", "channel") and key not in block:
                block[key] = value.strip()
    close()
    return found


def _channel_hz(channel: str) -> float | None:
    """ "11 (2462 MHz), width: 20 MHz, ..." -> 2.462e9."""
    match = _CHANNEL_FREQ.search(channel)
    return float(match.group(1)) * 1e6 if match else None


def parse_bitrate(value: str) -> float | None:
    """ "866.7 MBit/s VHT-MCS 9 80MHz short GI" -> 866.7e6 bits per second (None if unreadable)."""
    parts = value.split()
    if len(parts) >= 2 and parts[1] == "MBit/s" and _NUMBER.match(parts[0]):
        return float(parts[0]) * 1e6
    return None


def _leading_number(value: str) -> float | None:
    """ "-66 [-69, -69, -82] dBm" -> -66.0; "2447.0" -> 2447.0."""
    match = _NUMBER.match(value.strip())
    return float(match.group(0)) if match else None


def parse_link(text: str) -> IwLink:
    """Parse `iw dev IF link`; ValueError when the text is neither form iw prints."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if lines and lines[0] == "Not connected.":
        return IwLink(connected=False)
    match = _CONNECTED.match(lines[0]) if lines else None
    if match is None:
        raise ValueError(f"unexpected `iw link` output: {text[:80]!r}")
    fields = {}
    for line in lines[1:]:
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    freq_mhz = _leading_number(fields.get("freq", ""))
    return IwLink(
        connected=True,
        bssid=match.group(1).lower(),
        ssid=unescape_ssid(fields.get("SSID", "")),
        frequency_hz=freq_mhz * 1e6 if freq_mhz is not None else None,
        signal_dbm=_leading_number(fields.get("signal", "")),
        tx_bitrate_bps=parse_bitrate(fields.get("tx bitrate", "")),
        rx_bitrate_bps=parse_bitrate(fields.get("rx bitrate", "")),
    )


def count_stations(text: str) -> int:
    """Associated stations in `iw dev IF station dump`: one "Station <mac> (on IF)" block each."""
    return sum(1 for line in text.splitlines() if line.startswith("Station "))


def _iw(settings: Settings, args: list[str], deadline: float) -> str:
    """Run iw with what is left of the run's time; its stdout, or IwError."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise IwError("timeout", f"wifi: no time left for `iw {' '.join(args)}`")
    try:
        done = subprocess.run([settings.iw_path, *args], capture_output=True, timeout=remaining, check=False)
    except FileNotFoundError:
        raise IwError(
            "unsupported",
            f"wifi: the iw program was not found ({settings.iw_path!r}); install the iw package",
        ) from None
    except PermissionError:
        raise IwError("unsupported", f"wifi: cannot run {settings.iw_path!r} (permission denied)") from None
    except subprocess.TimeoutExpired:
        raise IwError("timeout", f"wifi: `iw {' '.join(args)}` gave no answer in time") from None
    # iw escapes SSIDs, but not interface names or messages: bytes that are not UTF-8 become U+FFFD.
    stdout, stderr = (out.decode("utf-8", "replace") for out in (done.stdout, done.stderr))
    if done.returncode != 0:
        said = (stderr or stdout).strip().splitlines()
        message = said[-1] if said else f"exit status {done.returncode}"
        if "nl80211 not found" in message:
            raise IwError("unsupported", "wifi: this device has no wireless support (nl80211 not found)")
        if "No such device" in message and len(args) > 1:
            raise IwError("unsupported", f"wifi: there is no wireless interface named {args[1]!r}")
        raise IwError("error", f"wifi: `iw {' '.join(args)}` failed: {message}")
    return stdout


def _choose_interface(settings: Settings, deadline: float, routed: set[str]) -> IwInterface:
    if settings.interface:
        blocks = parse_interfaces(_iw(settings, ["dev", settings.interface, "info"], deadline))
        if not blocks:
            raise IwError("unsupported", f"wifi: {settings.interface} is not a wireless interface")
        chosen = blocks[0]
        if chosen.mode not in READABLE_MODES:
            raise IwError(
                "unsupported",
                f"wifi: {chosen.name} is in {chosen.mode or 'an unknown'} mode; "
                "the probe reads client (managed) and access-point interfaces",
            )
        return chosen
    listed = parse_interfaces(_iw(settings, ["dev"], deadline))
    readable = [i for i in listed if i.mode in READABLE_MODES]
    if readable:
        # Two radios (a Pi's unused onboard one and an associated USB one): the radio carrying the
        # default route, else one in use (associated, or an access point), else the first listed.
        return min(readable, key=lambda i: (i.name not in routed, not (i.ssid or i.mode == "AP")))
    if listed:
        modes = ", ".join(f"{i.name} ({i.mode})" for i in listed)
        raise IwError("unsupported", f"wifi: no client or access-point interface; iw lists {modes}")
    raise IwError("unsupported", "wifi: this device has no wireless interface")


def routed_interfaces() -> set[str]:
    """The interfaces that carry a default route (IPv4 or IPv6); empty when none can be read."""
    try:
        return {r.interface for r in ping.default_routes(*ROUTE_TABLES)}
    except OSError:
        return set()


def measure(settings: Settings, deadline: float, routed: set[str] | None = None) -> WifiLink:
    """Read the link of the configured (or best auto-chosen) wireless interface; IwError when it cannot.

    Chosen automatically, a client radio that is not associated while the default route goes through
    another interface (a wired agent's idle onboard radio) is not in use: IwError "unsupported",
    which is no finding about the site's wifi.
    """
    routed = routed_interfaces() if routed is None else routed
    chosen = _choose_interface(settings, deadline, routed)
    if chosen.mode == "AP":
        dump = _iw(settings, ["dev", chosen.name, "station", "dump"], deadline)
        return WifiLink(
            interface=chosen.name,
            mode="AP",
            connected=True,  # an access point is "up" for its users whatever the station count
            ssid=chosen.ssid,
            bssid=chosen.addr.lower(),
            frequency_hz=chosen.frequency_hz,
            signal_dbm=None,
            tx_bitrate_bps=None,
            rx_bitrate_bps=None,
            stations=count_stations(dump),
        )
    text = _iw(settings, ["dev", chosen.name, "link"], deadline)
    try:
        link = parse_link(text)
    except ValueError as exc:
        raise IwError("protocol", f"wifi: {exc}") from None
    if not link.connected and not settings.interface and routed and chosen.name not in routed:
        raise IwError(
            "unsupported",
            f"wifi: not in use: {chosen.name} is not associated and the way out is "
            f"{', '.join(sorted(routed))}; set probes.wifi.interface to watch a radio",
        )
    return WifiLink(
        interface=chosen.name,
        mode="managed",
        connected=link.connected,
        ssid=link.ssid,
        bssid=link.bssid,
        frequency_hz=link.frequency_hz,
        signal_dbm=link.signal_dbm,
        tx_bitrate_bps=link.tx_bitrate_bps,
        rx_bitrate_bps=link.rx_bitrate_bps,
        stations=None,
    )


def describe(link: WifiLink) -> str:
    """One line for logs and the terminal."""
    freq = f"{link.frequency_hz / 1e6:.0f} MHz" if link.frequency_hz else "unknown frequency"
    if link.mode == "AP":
        return f"wifi: {link.interface} is access point {link.ssid!r} on {freq} with {link.stations} stations"
    if not link.connected:
        return f"wifi: {link.interface} is not connected to any network"
    parts = [f"wifi: {link.interface} connected to {link.ssid!r} ({link.bssid}) on {freq}"]
    if link.signal_dbm is not None:
        parts.append(f"signal {link.signal_dbm:.0f} dBm")
    if link.tx_bitrate_bps is not None:
        parts.append(f"tx {link.tx_bitrate_bps / 1e6:.1f} Mbit/s")
    if link.rx_bitrate_bps is not None:
        parts.append(f"rx {link.rx_bitrate_bps / 1e6:.1f} Mbit/s")
    return ", ".join(parts)


def run(settings: Settings, context: ProbeContext) -> list[Result[WifiLink]]:
    started = time.time()
    start = time.monotonic()
    target = settings.interface
    try:
        link = measure(settings, start + settings.timeout_s)
    except IwError as exc:
        return [
            failure(
                PROBE, target, exc.reason, exc.detail, started_at=started, duration_s=time.monotonic() - start
            )
        ]
    duration = time.monotonic() - start
    if not link.connected:
        # Not associated is a finding about the site (the hotspot's uplink wifi is down), not a tool error.
        return [
            failure(
                PROBE,
                link.interface,
                "unreachable",
                describe(link),
                data=link,
                started_at=started,
                duration_s=duration,
            )
        ]
    return [
        Result(
            PROBE,
            link.interface,
            ok=True,
            detail=describe(link),
            data=link,
            started_at=started,
            duration_s=duration,
        )
    ]


# -- metrics (names and meanings: docs/metrics.md) ------------------------------------------------
# A sample (site labels shortened to "..."; check by hand with `curl -s HOST:9591/metrics | grep _wifi_`):
#   hotspot_wifi_info{...,interface="wlan0",ssid="Wifi-UBND",bssid="aa:bb:cc:dd:ee:ff",mode="managed"} 1.0
#   hotspot_wifi_signal_dbm{...,interface="wlan0"} -61.0
#   hotspot_wifi_transmit_bitrate_bytes_per_second{...,interface="wlan0"} 9.025e+06

_IF = ("interface",)
INFO = Family(
    "hotspot_wifi_info", "gauge", "The wifi link; value always 1.", ("interface", "ssid", "bssid", "mode")
)
CONNECTED = Family("hotspot_wifi_connected", "gauge", "1 when associated (or an access point).", _IF)
SIGNAL = Family("hotspot_wifi_signal_dbm", "gauge", "Received signal strength.", _IF)
TX_BITRATE = Family("hotspot_wifi_transmit_bitrate_bytes_per_second", "gauge", "Transmit bitrate.", _IF)
RX_BITRATE = Family("hotspot_wifi_receive_bitrate_bytes_per_second", "gauge", "Receive bitrate.", _IF)
FREQUENCY = Family("hotspot_wifi_frequency_hertz", "gauge", "Channel frequency.", _IF)
STATIONS = Family("hotspot_wifi_stations", "gauge", "Associated stations on the access point.", _IF)


def _bytes(bps: float | None) -> float | None:
    return None if bps is None else bps / 8


def _show(r: Result[WifiLink], out: Samples) -> None:
    if (d := r.data) is None:
        return
    out.add(INFO, 1, interface=d.interface, ssid=d.ssid, bssid=d.bssid, mode=d.mode)
    out.add(CONNECTED, 1 if d.connected else 0, interface=d.interface)
    out.add(SIGNAL, d.signal_dbm, interface=d.interface)
    out.add(TX_BITRATE, _bytes(d.tx_bitrate_bps), interface=d.interface)
    out.add(RX_BITRATE, _bytes(d.rx_bitrate_bps), interface=d.interface)
    out.add(FREQUENCY, d.frequency_hz, interface=d.interface)
    out.add(STATIONS, d.stations, interface=d.interface)


METRICS = ProbeMetrics[Settings, WifiLink](
    families=(INFO, CONNECTED, SIGNAL, TX_BITRATE, RX_BITRATE, FREQUENCY, STATIONS), show=per_result(_show)
)
SPEC = ProbeSpec("wifi", Settings, run, metrics=METRICS)
