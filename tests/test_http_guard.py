"""The shared HTTP front closes every socket it holds when the server closes, not when the garbage
collector finds them: an idle kept-alive connection, one waiting for its head, one in the middle
of a download its client stopped reading, and the listening socket.

Which sockets the server still holds is read from the kernel: this process' descriptors
(/proc/self/fd) whose TCP entry (/proc/net/tcp) has the server's port as its local port.
"""

from __future__ import annotations

import os
import re
import socket
import time
from pathlib import Path

from collector.speedtest_server import ServerSettings
from tests.support.speedtest import start


def server_side_sockets(port: int) -> int:
    """How many of this process' open descriptors are TCP sockets whose local port is `port`."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    mine = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # closed meanwhile
            continue
        m = re.fullmatch(r"socket:\[(\d+)\]", target)
        mine += bool(m and m.group(1) in inodes)
    return mine


def test_server_close_closes_every_connection_at_once() -> None:
    server = start(ServerSettings())
    port = int(server.server_address[1])
    clients = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(3)]
    try:
        idle, head, download = clients
        idle.sendall(b"GET /empty HTTP/1.1\r\nHost: x\r\n\r\n")
        assert idle.recv(4096).startswith(b"HTTP/1.1 200")  # then kept alive, idle
        head.sendall(b"GET /empty HTTP/1.1\r\nHost:")  # a head not complete yet
        download.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        download.sendall(b"GET /garbage?ckSize=100 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert download.recv(4096).startswith(b"HTTP/1.1 200")  # then never read: the worker blocks
        deadline = time.monotonic() + 10
        while server.busy != 1:
            assert time.monotonic() < deadline, "the download did not start"
            time.sleep(0.05)
        assert server_side_sockets(port) == 4  # listening + 3 connections
        server.shutdown()
        started = time.monotonic()
        server.server_close()
        assert time.monotonic() - started < 2  # the blocked download does not hold it up
        assert server_side_sockets(port) == 0
        assert server.open_connections == 0
        for client in (idle, head):
            assert client.recv(4096) == b""  # closed, not left for the garbage collector
    finally:
        for client in clients:
            client.close()
