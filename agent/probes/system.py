"""Interfaces and system health from psutil: counters and link state per interface, CPU, memory,
disk, temperature, uptime and the agent's own footprint."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import psutil

from agent.probes.base import ProbeContext, ProbeSettings, ProbeSpec
from agent.result import Result, failure
from agent.schema import positive

PROBE = "system"
IFF_UP = 0x1


@dataclass(frozen=True)
class Settings(ProbeSettings):
    interval_s: float = 15.0
    jitter_s: float = 1.0
    timeout_s: float = 10.0
    disk_paths: tuple[str, ...] = ("/",)
    # Interfaces whose names start with these are left out (loopback, containers).
    ignore_interfaces: tuple[str, ...] = ("lo", "docker", "veth", "br-")
    # CPU use is measured over this window inside each run, so it never depends on a previous call.
    cpu_sample_s: float = 0.5

    def validate(self) -> list[str]:
        errs = super().validate()
        if (msg := positive(self.cpu_sample_s)) is not None:
            errs.append(f"cpu_sample_s: {msg}")
        elif self.cpu_sample_s >= self.timeout_s:
            errs.append("cpu_sample_s: must be shorter than timeout_s")
        return errs


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


def run(settings: Settings, context: ProbeContext) -> list[Result]:
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


SPEC = ProbeSpec("system", Settings, run)
