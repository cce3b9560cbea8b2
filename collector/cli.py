"""`hotspot-collector`: the central side's commands."""

from __future__ import annotations

import argparse
import importlib
import sys

# command name -> module; each module has add_arguments(parser) and command(args) -> exit code.
COMMANDS = {
    "speedtest-server": (
        "collector.speedtest_server",
        "serve the bandwidth test target the agents measure against",
    ),
    "targets": ("collector.targets", "site inventory -> Prometheus file_sd target files"),
    "provision": (
        "collector.provision",
        "site inventory -> every site's agent config and push credential, vmauth users, targets",
    ),
    "requirement": (
        "collector.requirement",
        "check the province's requirement file; write its recording rules",
    ),
    "backfill": (
        "collector.backfill",
        "backfill a realistic month for an inventory into a Prometheus data dir",
    ),
    "report": ("collector.report", "the monthly report (HTML and .xlsx) of every inventory site"),
    "inventory": (
        "collector.inventory_example",
        "(re)generate an example inventory from the real communes in data/",
    ),
}


def main(argv: list[str] | None = None) -> int:
    """Parse `argv` (default sys.argv[1:]) and run one command; returns its exit code (130 on Ctrl-C).
    argparse exits with 2 for unknown commands or options.
    """
    parser = argparse.ArgumentParser(prog="hotspot-collector", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        module.add_arguments(sub.add_parser(name, help=help_text, description=help_text))
    args = parser.parse_args(argv)
    module = importlib.import_module(COMMANDS[args.command][0])
    try:
        return int(module.command(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
