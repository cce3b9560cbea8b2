"""`hotspot-agent`: run the agent, check a config, measure once, print the version."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import queue
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

from agent import __version__
from agent import config as config_module
from agent.config import Config, ConfigError
from agent.i18n import _
from agent.probes import PROBES
from agent.probes.bandwidth import BandwidthRun
from agent.redact import RedactingFormatter, escape_controls
from agent.scheduler import ProbeScheduler
from agent.schema import is_host_port, secrets_in
from agent.site import Site
from agent.verdict import describe_results

DEFAULT_CONFIG = "/etc/hotspot-agent/config.yaml"
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

log = logging.getLogger("agent")


def _load(path: str) -> Config | None:
    try:
        return config_module.load(path)
    except ConfigError as exc:
        print(_("{path}: {count} problem(s):").format(path=path, count=len(exc.problems)), file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        print(
            _(
                "The agent's settings file has mistakes (listed above): tell the province's technician, "
                "or correct those lines and run the check again."
            ),
            file=sys.stderr,
        )
        return None


def _setup_logging(level: str) -> None:
    # systemd's journal adds its own timestamps; a terminal user still wants them.
    fmt = (
        "%(levelname)s %(name)s: %(message)s"
        if not sys.stderr.isatty()
        else "%(asctime)s %(levelname)s %(message)s"
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter(fmt))
    logging.basicConfig(level=level.upper(), handlers=[handler])
    logging.getLogger("apscheduler").setLevel(logging.WARNING)


def cmd_run(args: argparse.Namespace) -> int:
    from agent.daemon import Agent

    config = _load(args.config)
    if config is None:
        return EXIT_USAGE
    if args.listen is not None and (problem := is_host_port(args.listen)):
        print(f"--listen {args.listen}: {problem}", file=sys.stderr)
        return EXIT_USAGE
    _setup_logging(config.log_level)
    RedactingFormatter.install(secrets_in(config))
    try:
        agent = Agent(config, args.config, args.listen)
    except OSError as exc:
        log.error("cannot start: %s", exc)
        return EXIT_FAILED
    # Handlers only queue the signal (SimpleQueue.put is safe in a signal handler; Event.set is not).
    # The main thread waits with a timeout: a signal delivered to another thread only runs its
    # Python handler once the main thread wakes up.
    signals: queue.SimpleQueue[int] = queue.SimpleQueue()
    for handled in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(handled, lambda signum, frame: signals.put(signum))
    try:
        agent.start()
    except OSError as exc:  # e.g. the push queue cannot be opened
        log.error("cannot start: %s", exc)
        return EXIT_FAILED
    while True:
        try:
            received = signals.get(timeout=0.5)
        except queue.Empty:
            continue
        if received != signal.SIGHUP:
            break
        agent.reload()
    agent.stop()
    return EXIT_OK


def cmd_check_config(args: argparse.Namespace) -> int:
    config = _load(args.path)
    if config is None:
        return EXIT_USAGE
    enabled = ", ".join(config.probes.enabled()) or _("none")
    site = config.site
    print(
        _("{path}: ok — site {site} ({commune}, {province}); probes: {probes}").format(
            path=args.path, site=site.id, commune=site.commune, province=site.province, probes=enabled
        )
    )
    return EXIT_OK


class _Discard:
    def record_run(self, *args: Any) -> None:
        pass


def cmd_measure(args: argparse.Namespace) -> int:
    config = _load(args.config) if args.config else None
    if args.config and config is None:
        return EXIT_USAGE
    if config is not None:
        site, settings = config.site, getattr(config.probes, args.probe)
    else:
        # Without a config: an ad-hoc site with the default requirement (100 Mbps) and default settings.
        site = Site(id="adhoc", commune="-", province="-")
        settings = PROBES[args.probe].settings()
    if args.server or args.engine:
        if args.probe != "bandwidth":
            print("--server and --engine are for `measure bandwidth`", file=sys.stderr)
            return EXIT_USAGE
        changes = {k: v for k, v in (("server", args.server), ("engine", args.engine)) if v}
        settings = dataclasses.replace(settings, **changes)
    if args.probe == "bandwidth":
        settings = _manual_bandwidth(settings)
    interactive = sys.stderr.isatty() and not args.json
    with tempfile.TemporaryDirectory(prefix="hotspot-measure-") as tmp:
        state_dir = Path(config.state_dir) if config is not None else Path(tmp)
        scheduler = ProbeScheduler(PROBES, _Discard(), state_dir, progress=_progress if interactive else None)
        scheduler.apply(site, {})
        if interactive:
            print(_("measuring {probe} …").format(probe=args.probe), file=sys.stderr)
        results = scheduler.run_once(PROBES[args.probe], settings)
    if interactive:
        print("\r\033[K", end="", file=sys.stderr)
    ok = bool(results) and all(r.ok for r in results)
    if args.json:
        print(json.dumps(_json(args.probe, results, ok), ensure_ascii=False, default=str))
    else:
        # Details quote the other side (status lines, names): no control character reaches the terminal.
        print(
            "\n".join(
                escape_controls(line) for line in describe_results(args.probe, results, site).split("\n")
            )
        )
    return EXIT_OK if ok else EXIT_FAILED


def _manual_bandwidth(settings: Any) -> Any:
    """A test someone asked for runs now: no deferral, no budget bookkeeping."""
    return dataclasses.replace(settings, defer_threshold_bytes_per_s=0, monthly_budget_bytes=0)


def _progress(phase: str, value: float) -> None:
    if phase in ("download", "upload"):
        print(f"\r\033[K{phase}: {value / 1e6:7.1f} Mbit/s", end="", file=sys.stderr, flush=True)
    else:
        print(f"\r\033[K{phase} …", end="", file=sys.stderr, flush=True)


def _json(probe: str, results: list[Any], ok: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"probe": probe, "ok": ok}
    if probe == "bandwidth":
        # The flat fields docs/agent.md promises; null where a direction was not measured.
        first = results[0] if results else None
        run = first.data if first is not None and isinstance(first.data, BandwidthRun) else None
        test = run.test if run is not None else None
        out.update(
            download_bps=test.download_bps if test else None,
            upload_bps=test.upload_bps if test else None,
            # True: the figure is what the line carried at least (a limit stopped it early).
            download_lower_bound=test.download_lower_bound if test else False,
            upload_lower_bound=test.upload_lower_bound if test else False,
            download_bytes=test.download_bytes if test else 0,
            upload_bytes=test.upload_bytes if test else 0,
            latency_ms=_ms(test.latency_idle_s) if test else None,
            loaded_latency_ms=_ms(test.latency_loaded_s) if test else None,
            duration_s=test.duration_s if test else None,
            engine=test.engine if test else None,
            server=test.server if test else None,
            reason=None if first is None else first.reason,
            detail="" if first is None else first.detail,
        )
    out["results"] = [r.to_json() for r in results]
    return out


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def cmd_version(args: argparse.Namespace) -> int:
    print(f"hotspot-agent {__version__}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hotspot-agent", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("run", help="run the agent (the daemon)")
    p.add_argument("--config", default=DEFAULT_CONFIG, help=f"config file (default {DEFAULT_CONFIG})")
    p.add_argument("--listen", help="HOST:PORT for /metrics, overriding the config")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("check-config", help="validate a config file: exit 0 if valid, 2 with every problem")
    p.add_argument("path")
    p.set_defaults(func=cmd_check_config)
    p = sub.add_parser("measure", help="run one probe once, now, and show the result")
    p.add_argument("probe", choices=sorted(PROBES))
    p.add_argument("--config", help="use this config's site and probe settings (default: built-in defaults)")
    p.add_argument("--json", action="store_true", help="print one JSON object and nothing else on stdout")
    p.add_argument("--server", help="bandwidth: the test server (URL for the http engine)")
    p.add_argument("--engine", choices=["http", "speedtest", "iperf3"], help="bandwidth: the engine")
    p.set_defaults(func=cmd_measure)
    p = sub.add_parser("version", help="print the version")
    p.set_defaults(func=cmd_version)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
