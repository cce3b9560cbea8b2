"""Interfaces and system health from psutil: counters and link state per interface, CPU, memory,
disk, temperature, uptime and the agent's own footprint."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import psutil

from agent.families import Family, ProbeMetrics, Samples, per_result
from agent.probes.base import ProbeContext, ProbeSettings, ProbeSpec
from agent.result import Result, failure
from agent.schema import check, non_negative, positive

PROBE = "system"
IFF_UP = 0x1


@dataclass(frozen=True)
class Settings(ProbeSettings):
    interval_s: float = check(positive, default=15.0)
    jitter_s: float = check(non_negative, default=1.0)
    timeout_s: float = check(positive, default=10.0)
    disk_paths: tuple[str, ...] = ("/",)
    # Interfaces whose names start with these are left out (loopback, containers).
    ignore_interfaces: tuple[str, ...] = ("lo", "docker", "veth", "br-")
    # CPU use is measured over this window inside each run, so it never depends on a previous call.
    cpu_sample_s: float = check(positive, default=0.5)

    within_run = ("cpu_sample_s",)


@dataclass(frozen=True)
class InterfaceStats:
    interface: str
    up: bool
    speed_bps: float | None  # link speed in bits per second, when the driver says
    rx_bytes: int
    tx_bytes: int
    rx_packets: int
    tx_packets: int
    rx_errors: int
    tx_errors: int
    rx_drops: int
    tx_drops: int


@dataclass(frozen=True)
class SystemStats:
    cpu_ratio: float  # all cores, 0..1, over the run's cpu_sample_s window
    load1: float
    memory_total_bytes: int
    memory_available_bytes: int
    disks: tuple[tuple[str, int, int], ...]  # (path, total bytes, free bytes)
    temperatures_c: tuple[tuple[str, float], ...]  # (sensor, degrees Celsius)
    boot_time_s: float
    agent_rss_bytes: int
    agent_cpu_s: float
    interfaces: tuple[InterfaceStats, ...]


@dataclass(frozen=True)
class _Link:
    isup: bool
    speed: int  # Mbit/s; 0 when the driver does not say


def _link_states(names: list[str]) -> dict[str, _Link]:
    """Link state and speed by interface name: psutil's, else read from /sys/class/net one by one.

    psutil.net_if_stats() raises for every interface at once when one name is not UTF-8 (the
    kernel allows any bytes), so then each interface is read on its own and only an unreadable
    one is left without a state.
    """
    try:
        return {name: _Link(s.isup, s.speed) for name, s in psutil.net_if_stats().items()}
    except (UnicodeError, OSError):
        pass
    out = {}
    for name in names:
        base = b"/sys/class/net/" + os.fsencode(name)  # the name's own bytes
        try:
            flags = int(_read(base + b"/flags"), 16)
            carrier = _read(base + b"/carrier").strip() == "1" if flags & IFF_UP else False
        except (OSError, ValueError):
            continue
        try:
            speed = int(_read(base + b"/speed"))
        except (OSError, ValueError):  # EINVAL while the link is down, or no speed at all
            speed = 0
        out[name] = _Link(carrier, max(speed, 0))  # up with carrier: IFF_RUNNING, as psutil's isup
    return out


def _read(path: bytes) -> str:
    with open(path, "rb") as f:
        return f.read().decode("ascii", "replace")


def shown(name: str) -> str:
    """A name read from the system, fit for labels and logs: bytes that are not UTF-8 become U+FFFD."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def interfaces(ignore: tuple[str, ...]) -> tuple[InterfaceStats, ...]:
    """Counters and link state of every interface not ignored, sorted by name.

    Names that are not UTF-8 are shown with U+FFFD for the odd bytes; they never hide the others.
    """
    counters = psutil.net_io_counters(pernic=True)
    links = _link_states(list(counters))
    out = []
    for name in sorted(counters):
        if name.startswith(ignore):
            continue
        c = counters[name]
        link = links.get(name)
        # psutil reports 0 when the driver does not know the speed (wifi, veth): unknown, not 0 bit/s.
        speed = link.speed * 1e6 if link is not None and link.speed > 0 else None
        out.append(
            InterfaceStats(
                interface=shown(name),
                up=bool(link and link.isup),  # IFF_RUNNING: up and with carrier
                speed_bps=speed,
                rx_bytes=c.bytes_recv,
                tx_bytes=c.bytes_sent,
                rx_packets=c.packets_recv,
                tx_packets=c.packets_sent,
                rx_errors=c.errin,
                tx_errors=c.errout,
                rx_drops=c.dropin,
                tx_drops=c.dropout,
            )
        )
    return tuple(out)


def temperatures() -> tuple[tuple[str, float], ...]:
    """Every temperature sensor psutil sees (a Raspberry Pi shows "cpu_thermal"); () where none."""
    read = getattr(psutil, "sensors_temperatures", None)
    if read is None:
        return ()
    out: list[tuple[str, float]] = []
    seen: set[str] = set()
    for chip, entries in sorted(read().items()):
        for entry in entries:
            name = shown(f"{chip} {entry.label}" if entry.label else chip)  # sysfs names: any bytes
            base, n = name, 1
            while name in seen:  # unlabelled entries of one chip get "#2", "#3"
                n += 1
                name = f"{base} #{n}"
            seen.add(name)
            out.append((name, float(entry.current)))
    return tuple(out)


def disks(paths: tuple[str, ...]) -> tuple[tuple[tuple[str, int, int], ...], list[str]]:
    """(path, total, free) for each path that exists, and the paths that could not be read."""
    found, missing = [], []
    for path in paths:
        try:
            usage = psutil.disk_usage(path)
        except OSError:
            missing.append(path)
            continue
        found.append((path, int(usage.total), int(usage.free)))
    return tuple(found), missing


def measure(settings: Settings) -> tuple[SystemStats, list[str]]:
    """Take one sample; the list names disk paths that were left out."""
    # Blocks for the sample window: a ratio over a known interval, never psutil's meaningless first 0.0.
    cpu_ratio = psutil.cpu_percent(interval=settings.cpu_sample_s) / 100.0
    memory = psutil.virtual_memory()
    disk_usage, missing = disks(settings.disk_paths)
    me = psutil.Process()
    cpu_times = me.cpu_times()
    stats = SystemStats(
        cpu_ratio=min(max(cpu_ratio, 0.0), 1.0),
        load1=os.getloadavg()[0],
        memory_total_bytes=int(memory.total),
        memory_available_bytes=int(memory.available),
        disks=disk_usage,
        temperatures_c=temperatures(),
        boot_time_s=psutil.boot_time(),
        agent_rss_bytes=int(me.memory_info().rss),
        agent_cpu_s=cpu_times.user + cpu_times.system,
        interfaces=interfaces(settings.ignore_interfaces),
    )
    return stats, missing


def describe(stats: SystemStats, missing: list[str]) -> str:
    """One line for logs and the terminal."""
    used = 1 - stats.memory_available_bytes / stats.memory_total_bytes if stats.memory_total_bytes else 0.0
    up = sum(1 for i in stats.interfaces if i.up)
    text = (
        f"system: cpu {stats.cpu_ratio:.0%}, load {stats.load1:.2f}, memory {used:.0%} used, "
        f"{up} of {len(stats.interfaces)} interfaces up"
    )
    if missing:
        text += f"; disk path(s) not found, left out: {', '.join(missing)}"
    return text


def run(settings: Settings, context: ProbeContext) -> list[Result[SystemStats]]:
    started = time.time()
    start = time.monotonic()
    try:
        stats, missing = measure(settings)
    except (OSError, psutil.Error) as exc:
        return [
            failure(
                PROBE,
                "",
                "error",
                f"system: could not read system statistics: {exc}",
                started_at=started,
                duration_s=time.monotonic() - start,
            )
        ]
    return [
        Result(
            PROBE,
            "",
            ok=True,
            detail=describe(stats, missing),
            data=stats,
            started_at=started,
            duration_s=time.monotonic() - start,
        )
    ]


# -- metrics (names and meanings: docs/metrics.md) ------------------------------------------------
# A sample (site labels shortened to "..."; by hand: `curl -s HOST:9591/metrics | grep _system_`):
#   hotspot_interface_receive_bytes_total{...,interface="eth0"} 1.234567e+09
#   hotspot_system_cpu_usage_ratio{...} 0.25
#   hotspot_system_disk_free_bytes{...,path="/"} 8.589934592e+09

_IF = ("interface",)
INTERFACE_UP = Family("hotspot_interface_up", "gauge", "1 when the link is up.", _IF)
INTERFACE_SPEED = Family("hotspot_interface_speed_bytes_per_second", "gauge", "Link speed.", _IF)
# The kernel's own counters, shown as read: (family, InterfaceStats attribute).
INTERFACE_COUNTERS = tuple(
    (Family(f"hotspot_interface_{name}_total", "counter", doc, _IF), attr)
    for name, attr, doc in (
        ("receive_bytes", "rx_bytes", "Bytes received."),
        ("transmit_bytes", "tx_bytes", "Bytes sent."),
        ("receive_packets", "rx_packets", "Packets received."),
        ("transmit_packets", "tx_packets", "Packets sent."),
        ("receive_errors", "rx_errors", "Receive errors."),
        ("transmit_errors", "tx_errors", "Transmit errors."),
        ("receive_drops", "rx_drops", "Received packets dropped."),
        ("transmit_drops", "tx_drops", "Outgoing packets dropped."),
    )
)
CPU = Family("hotspot_system_cpu_usage_ratio", "gauge", "CPU busy share over the last sample, all cores.")
LOAD1 = Family("hotspot_system_load1", "gauge", "1-minute load average.")
MEMORY_TOTAL = Family("hotspot_system_memory_total_bytes", "gauge", "Memory in all.")
MEMORY_AVAILABLE = Family("hotspot_system_memory_available_bytes", "gauge", "Memory available.")
DISK_TOTAL = Family("hotspot_system_disk_total_bytes", "gauge", "Disk size.", ("path",))
DISK_FREE = Family("hotspot_system_disk_free_bytes", "gauge", "Disk space free.", ("path",))
TEMPERATURE = Family("hotspot_system_temperature_celsius", "gauge", "Temperature.", ("sensor",))
BOOT_TIME = Family("hotspot_system_boot_time_seconds", "gauge", "When the device booted (Unix time).")
AGENT_RSS = Family("hotspot_agent_resident_memory_bytes", "gauge", "The agent's resident memory.")
AGENT_CPU = Family("hotspot_agent_cpu_seconds_total", "counter", "The agent's CPU time.")


def _show(r: Result[SystemStats], out: Samples) -> None:
    if (d := r.data) is None:
        return
    for i in d.interfaces:
        out.add(INTERFACE_UP, 1 if i.up else 0, interface=i.interface)
        out.add(INTERFACE_SPEED, None if i.speed_bps is None else i.speed_bps / 8, interface=i.interface)
        for family, attr in INTERFACE_COUNTERS:
            out.add(family, getattr(i, attr), interface=i.interface)
    out.add(CPU, d.cpu_ratio)
    out.add(LOAD1, d.load1)
    out.add(MEMORY_TOTAL, d.memory_total_bytes)
    out.add(MEMORY_AVAILABLE, d.memory_available_bytes)
    for path, total, free in d.disks:
        out.add(DISK_TOTAL, total, path=path)
        out.add(DISK_FREE, free, path=path)
    for sensor, celsius in d.temperatures_c:
        out.add(TEMPERATURE, celsius, sensor=sensor)
    out.add(BOOT_TIME, d.boot_time_s)
    out.add(AGENT_RSS, d.agent_rss_bytes)
    out.add(AGENT_CPU, d.agent_cpu_s)


METRICS = ProbeMetrics[Settings, SystemStats](
    families=(
        INTERFACE_UP,
        INTERFACE_SPEED,
        *(family for family, _ in INTERFACE_COUNTERS),
        CPU,
        LOAD1,
        MEMORY_TOTAL,
        MEMORY_AVAILABLE,
        DISK_TOTAL,
        DISK_FREE,
        TEMPERATURE,
        BOOT_TIME,
        AGENT_RSS,
        AGENT_CPU,
    ),
    show=per_result(_show),
)
SPEC = ProbeSpec("system", Settings, run, metrics=METRICS)
