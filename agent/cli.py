"""`hotspot-agent`: run the agent, check a config, measure once, print the version."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import queue
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

from agent import __version__
from agent import config as config_module
from agent.bandwidth.budget import FILE_NAME as BUDGET_FILE
from agent.config import Config, ConfigError
from agent.i18n import _
from agent.probes import PROBES
from agent.probes.bandwidth import BandwidthRun
from agent.redact import RedactingFormatter, escape_controls
from agent.scheduler import ProbeScheduler
from agent.schema import is_host_port, secrets_in, shown
from agent.site import Site
from agent.verdict import describe_results

DEFAULT_CONFIG = "/etc/hotspot-agent/config.yaml"
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

log = logging.getLogger("agent")


def _load(path: str) -> Config | None:
    try:
        return config_module.load(path)
    except ConfigError as exc:
        advice = _(
            "The agent's settings file has mistakes (listed above): tell the province's technician, "
            "or correct those lines and run the check again."
        )
        _print_problems(path, exc.problems, advice)
        return None


def _host_problems(config: Config, path: str, listen: str | None, *, starting: bool) -> bool:
    """Print what this host refuses of a valid config (as `_load` does) and the notes; False if any."""
    found = config_module.check_host(config, listen, starting=starting)
    for note in found.notes:
        print(_("note: {note}").format(note=note), file=sys.stderr)
    if found.problems:
        advice = _(
            "This device cannot run the agent with these settings (listed above): tell the province's "
            "technician, or correct those lines and run the check again."
        )
        _print_problems(path, found.problems, advice)
    return not found.problems


def _print_problems(path: str, problems: list[str], advice: str) -> None:
    print(_("{path}: {count} problem(s):").format(path=path, count=len(problems)), file=sys.stderr)
    for problem in problems:
        print(f"  {problem}", file=sys.stderr)
    print(advice, file=sys.stderr)


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
    if not _host_problems(config, args.config, args.listen, starting=True):
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
    if config is None or not _host_problems(config, args.path, None, starting=False):
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
    settings, problems = _measure_settings(args, settings)
    if config is not None and args.probe == "bandwidth":  # its bytes are booked in the state dir
        state_problem = config_module.state_dir_problem(config_module.state_dir_for(config))
        problems += [f"state_dir: {state_problem}"] if state_problem else []
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        return EXIT_USAGE
    interactive = sys.stderr.isatty() and not args.json
    with tempfile.TemporaryDirectory(prefix="hotspot-measure-") as tmp:
        # With a config, the test is booked into that site's data budget: it used the same line.
        state_dir = config_module.state_dir_for(config) if config is not None else Path(tmp)
        scheduler = ProbeScheduler(PROBES, _Discard(), state_dir, progress=_progress if interactive else None)
        scheduler.apply(site, {})
        if interactive:
            print(_("measuring {probe} …").format(probe=args.probe), file=sys.stderr)
        results = scheduler.run_once(PROBES[args.probe], settings)
        if config is not None:
            _keep_owner(state_dir)
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
        if args.probe == "bandwidth":
            print(_booked(results, state_dir if config is not None else None))
    return EXIT_OK if ok else EXIT_FAILED


def _measure_settings(args: argparse.Namespace, settings: Any) -> tuple[Any, list[str]]:
    """The probe's settings with the command line's --server/--engine; the usage problems, if any."""
    if args.server or args.engine:
        if args.probe != "bandwidth":
            return settings, [_("--server and --engine are for `measure bandwidth`")]
        changes = {k: v for k, v in (("server", args.server), ("engine", args.engine)) if v}
        settings, problems = _override(settings, changes, args.probe)
        if problems:
            return settings, problems
    if args.probe != "bandwidth":
        return settings, []
    if settings.engine in ("http", "iperf3") and not settings.server:
        problem = _(
            "measure bandwidth: no test server for the {engine} engine: give --server "
            "(or --config with probes.bandwidth.server)"
        )
        return settings, [problem.format(engine=settings.engine)]
    return _manual_bandwidth(settings), []


def _override(settings: Any, changes: dict[str, str], probe: str) -> tuple[Any, list[str]]:
    """`settings` with command-line values, checked by the rules the config's values pass: a bad
    value is a usage error (exit 2), never a measurement that fails."""
    declared = {f.name: f.metadata.get("check") for f in dataclasses.fields(settings)}
    problems = [
        f"--{name} {shown(value)}: {msg}"
        for name, value in changes.items()
        if callable(fn := declared[name]) and (msg := fn(value))
    ]
    settings = dataclasses.replace(settings, **changes)
    for err in settings.validate():  # rules between fields: the server's form depends on the engine
        key, _sep, msg = err.partition(": ")
        flags = " ".join(f"--{k} {shown(v)}" for k, v in changes.items())
        where = f"--{key} {shown(changes[key])}" if key in changes else f"probes.{probe}.{key} (with {flags})"
        problems.append(f"{where}: {msg}")
    return settings, problems


def _manual_bandwidth(settings: Any) -> Any:
    """A test someone asked for runs now: no deferral, and a spent budget does not stop it. Its bytes
    are still booked (with --config, into that site's budget file): they went over the same line."""
    return dataclasses.replace(settings, defer_threshold_bytes_per_s=0, monthly_budget_bytes=0)


def _booked(results: list[Any], state_dir: Path | None) -> str:
    """One line: what the test cost the site's monthly data budget, or that nothing was booked."""
    run = results[0].data if results else None
    if state_dir is None or not isinstance(run, BandwidthRun):
        return _("Data budget: not booked (no --config: no site's budget).")
    moved = run.test.download_bytes + run.test.upload_bytes if run.test is not None else 0
    if run.budget.problem:  # e.g. the state dir cannot be written: the count was not kept
        return _("Data budget: {mb} MB not booked: {problem}").format(
            mb=f"{moved / 1e6:.0f}", problem=run.budget.problem
        )
    return _(
        "Data budget: booked {mb} MB to this site's budget for {month} ({path}); {used} MB used this month."
    ).format(
        mb=f"{moved / 1e6:.0f}",
        month=run.budget.month,
        path=state_dir / BUDGET_FILE,
        used=f"{run.budget.used_bytes / 1e6:.0f}",
    )


def _keep_owner(state_dir: Path) -> None:
    """Run as root, the command leaves the budget file to the state dir's owner (the service user):
    a root-owned file that the service cannot read would restart the month's count."""
    if os.geteuid() != 0:
        return
    try:
        owner = state_dir.stat()
        for name in (BUDGET_FILE, f"{BUDGET_FILE}.corrupt"):
            path = state_dir / name
            if path.exists() and (path.stat().st_uid, path.stat().st_gid) != (owner.st_uid, owner.st_gid):
                os.chown(path, owner.st_uid, owner.st_gid)
    except OSError as exc:
        print(
            _("cannot give {path} back to its owner: {why}").format(path=state_dir, why=exc), file=sys.stderr
        )


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
