"""Hold a lab (tests/support/netlab.py) open for experiments by hand, or only build the delay line (root).

sudo .venv/bin/python -m bench.lab.lab --rate 100 --rtt 30 --loss 0.005
# then, in another terminal: ip netns exec NAME_PRINTED_HERE iperf3 -c 10.77.2.2 ...
sudo .venv/bin/python -m bench.lab.lab --build   # compile bench/lab/delayline.c only
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys

from tests.support.netlab import Lab, LabUnavailable, delayline_binary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=100.0, help="Mbit/s each way (default %(default)s)")
    parser.add_argument("--rtt", type=float, default=0.0, help="added round-trip time, ms")
    parser.add_argument("--loss", type=float, default=0.0, help="drop probability per packet and direction")
    parser.add_argument("--build", action="store_true", help="only compile the delay line and exit")
    args = parser.parse_args()
    try:
        if args.build:
            print(delayline_binary())
            return 0
        with Lab(rate_mbit=args.rate, rtt_ms=args.rtt, loss=args.loss) as lab:
            print(
                f"client {lab.client_ns} ({lab.client_ip})  router {lab.router_ns}  "
                f"server {lab.server_ns} ({lab.server_ip})"
            )
            print(
                f"goodput limit {lab.goodput_limit_bps / 1e6:.1f} Mbit/s; Ctrl-C or SIGTERM tears it down",
                flush=True,
            )
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
            with contextlib.suppress(KeyboardInterrupt):
                signal.pause()
    except (LabUnavailable, ValueError) as exc:
        print(f"lab: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
