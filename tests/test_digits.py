"""Numbers from other people's text are read in ASCII digits only."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.bandwidth.iperf3_engine import parse_server
from agent.bandwidth.speedtest_engine import parse_server_ids
from agent.digits import ascii_hex, ascii_uint
from agent.push.remote_write import parse_retry_after
from agent.schema import split_host_port
from collector.inventory_example import read_communes


@pytest.mark.parametrize("text", ["", "²", "١٢", "+1", "-1", " 1", "1 ", "1_0", "0x1", "1.0", "9" * 19])
def test_ascii_uint_refuses_what_is_not_plain_digits(text: str) -> None:
    """isdigit() is true for '²' and '١'; none of these is a number we accept."""
    assert ascii_uint(text) is None


def test_ascii_uint_reads_digits() -> None:
    assert ascii_uint("0") == 0
    assert ascii_uint("007") == 7
    assert ascii_uint("9" * 18) == 10**18 - 1


@pytest.mark.parametrize(("text", "value"), [("0", 0), ("ff", 255), ("1A", 26)])
def test_ascii_hex_reads_hex(text: str, value: int) -> None:
    assert ascii_hex(text) == value


@pytest.mark.parametrize("text", ["", "0x1", "+1", "1_0", "²", "g", "f" * 16])
def test_ascii_hex_refuses_the_rest(text: str) -> None:
    assert ascii_hex(text) is None


def test_inventory_refuses_a_commune_code_that_is_not_ascii_digits(tmp_path: Path) -> None:
    """The code feeds int() (site ids, ISP choice): '²' is a clear error naming the line."""
    csv_file = tmp_path / "communes.csv"
    csv_file.write_text(
        "commune_code,commune_name,commune_type,lat,lon\n13660,Giao Minh,Xã,20.2,106.5\n²,X,Xã,1,2\n"
    )
    with pytest.raises(ValueError, match=r"line 3: commune_code must be digits 0-9, got '²'"):
        read_communes(csv_file)


def test_every_parser_of_outside_numbers_refuses_other_digits() -> None:
    """Ports, server ids and Retry-After: '²' and '١' are refused (isdigit() let them through)."""
    for bad in ("²", "١٢"):
        with pytest.raises(ValueError, match="port in 1–65535"):
            parse_server(f"iperf.example.vn:{bad}")
        with pytest.raises(ValueError, match="server ids"):
            parse_server_ids(bad)
        with pytest.raises(ValueError, match="not HOST:PORT"):
            split_host_port(f"127.0.0.1:{bad}")
        assert parse_retry_after(bad, now=0.0) is None
    assert parse_server("iperf.example.vn:5201") == ("iperf.example.vn", 5201)
    assert parse_retry_after("7", now=0.0) == 7.0
