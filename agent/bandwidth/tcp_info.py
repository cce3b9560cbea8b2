"""TCP's own byte and RTT counters for a socket: struct tcp_info (getsockopt(TCP_INFO), Linux)."""

from __future__ import annotations

import socket
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class TcpInfo:
    delivered: int  # bytes of ours the peer has: acknowledged, plus SACKed past a hole
    received: int  # bytes we received in order
    rtt_s: float  # sender's smoothed RTT (0: none yet)
    rcv_rtt_s: float  # receiver's RTT estimate (0: none yet)
    arrived: int = 0  # data segments received, in order or not, × receiver's MSS (0: not known)
    ooo_packets: int = 0  # packets that arrived out of order, cumulative


def read(sock: socket.socket) -> TcpInfo | None:
    """Counters from struct tcp_info (Linux 4.1+); None where TCP_INFO is missing.

    Offsets: tcpi_snd_mss u32 at 16, tcpi_rcv_mss u32 at 20, tcpi_sacked u32 at 28, tcpi_rtt u32
    (µs) at 68, tcpi_rcv_rtt u32 (µs) at 92, tcpi_bytes_acked u64 at 120, tcpi_bytes_received u64
    at 128, tcpi_data_segs_in u32 at 152, tcpi_rcv_ooopack u32 at 224 (Linux 5.4+; older kernels
    return less, and then `arrived` is 0). SACKed segments count as delivered: else a stream
    waiting for one retransmission holds back a window of bytes that then arrive "at once" in a
    later sample; `arrived` and `ooo_packets` let a download see the same (`estimator.HeldBytes`).
    """
    opt = getattr(socket, "TCP_INFO", None)
    if opt is None:
        return None
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, opt, 232)
    except OSError:
        return None
    if len(info) < 136:
        return None

    def field(offset: int, size: int = 4) -> int:
        return int.from_bytes(info[offset : offset + size], sys.byteorder)

    return TcpInfo(
        delivered=field(120, 8) + field(28) * field(16),
        received=field(128, 8),
        rtt_s=field(68) / 1e6,
        rcv_rtt_s=field(92) / 1e6,
        arrived=field(152) * field(20) if len(info) >= 228 else 0,
        ooo_packets=field(224) if len(info) >= 228 else 0,
    )
