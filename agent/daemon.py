"""The running agent: config -> scheduler -> results/metrics -> /metrics and push; SIGHUP reloads."""

from __future__ import annotations

import logging
import time
from typing import Any

from prometheus_client import CollectorRegistry

from agent import config as config_module
from agent.config import Config, ConfigError, state_dir_for
from agent.metrics import AgentMetrics
from agent.probes import PROBES
from agent.redact import RedactingFormatter
from agent.scheduler import ProbeScheduler
from agent.schema import secrets_in
from agent.server import MetricsServer

log = logging.getLogger(__name__)


class Agent:
    def __init__(self, config: Config, config_path: str | None = None, listen: str | None = None) -> None:
        self.config = config
        self.config_path = config_path
        self.listen = listen  # --listen overrides the config, across reloads too
        self.state_dir = state_dir_for(config)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.metrics = AgentMetrics(config.site)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.metrics)
        self.scheduler = ProbeScheduler(PROBES, self.metrics, self.state_dir)
        self.server = MetricsServer(config.exposition, self.registry, self.health, listen)
        self.pusher: Any = None
        self._started_with = config  # what the restart-only settings hold until a restart
        self._started = time.monotonic()  # uptime must not jump with the wall clock

    def start(self) -> None:
        """Start everything; raises OSError (with nothing left running) when it cannot."""
        self._start_pusher()  # first: a queue that cannot be opened stops the start before anything runs
        enabled = self.config.probes.enabled()
        self.metrics.set_probes(enabled)
        self.scheduler.apply(self.config.site, enabled)
        self.server.start()
        self.scheduler.start()
        host, port = self.server.address
        log.info(
            "agent started for site %s (%s); metrics on %s://%s:%d/metrics",
            self.config.site.id,
            self.config.site.name or self.config.site.commune,
            self.server.scheme,
            host,
            port,
        )

    def _start_pusher(self) -> None:
        if not self.config.push.enabled:
            return
        from agent.push.pusher import Pusher  # only sites that push pay for its imports

        self.pusher = Pusher(self.config.push, self.registry, self.state_dir, self.config.site.labels())
        self.registry.register(self.pusher.metrics)
        self.pusher.start()

    def _stop_pusher(self) -> None:
        if self.pusher is not None:
            self.pusher.stop()
            self.registry.unregister(self.pusher.metrics)
            self.pusher = None

    def stop(self) -> None:
        self.scheduler.stop()
        self._stop_pusher()
        self.server.stop()
        log.info("agent stopped")

    def reload(self) -> bool:
        """Re-read the config file; an invalid one is refused and the running config kept."""
        assert self.config_path is not None
        try:
            new = config_module.load(self.config_path)
        except ConfigError as exc:
            self.metrics.config_ok = False
            self.metrics.reloads["failure"] += 1
            log.error(
                "config reload refused, still running the previous config; %d problem(s):", len(exc.problems)
            )
            for problem in exc.problems:  # one record each: the log escapes line breaks inside arguments
                log.error("  %s", problem)
            return False
        # The listener first: a setting the file allows but the host refuses (a port in use, a CA
        # file that is no certificate) refuses the whole reload, with the previous one serving.
        # With --listen, the address stays but TLS and basic auth still follow the file.
        if new.exposition != self.config.exposition and not self._serve(new):
            self.metrics.config_ok = False
            self.metrics.reloads["failure"] += 1
            return False
        old, self.config = self.config, new
        RedactingFormatter.install(secrets_in(new))
        self.metrics.site = new.site
        enabled = new.probes.enabled()
        self.metrics.set_probes(enabled)
        self.scheduler.apply(new.site, enabled)
        if new.push != old.push or new.site != old.site:
            self._stop_pusher()
            try:
                self._start_pusher()
            except OSError as exc:  # the queue cannot be opened: measuring goes on, /metrics serves all
                log.error("push not restarted after the reload: %s", exc)
        logging.getLogger().setLevel(new.log_level.upper())
        self.metrics.config_ok = True
        self.metrics.reloads["success"] += 1
        waiting = config_module.restart_only_changes(self._started_with, new)
        self.metrics.restart_required = bool(waiting)
        if waiting:
            log.warning(
                "config reloaded from %s, except what needs a restart (systemctl restart hotspot-agent): %s",
                self.config_path,
                "; ".join(waiting),
            )
        else:
            log.info("config reloaded from %s", self.config_path)
        return True

    def _serve(self, new: Config) -> bool:
        """Move /metrics to `new`'s exposition settings; on failure serve the previous ones again."""
        self.server.stop()
        try:
            server = MetricsServer(new.exposition, self.registry, self.health, self.listen)
            server.start()
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            log.error(
                "config reload refused, still running the previous config: cannot serve /metrics with "
                "the new exposition settings: %s",
                exc,
            )
            self.server = MetricsServer(self.config.exposition, self.registry, self.health, self.listen)
            self.server.start()
            return False
        self.server = server
        host, port = server.address
        log.info("metrics now on %s://%s:%d/metrics", server.scheme, host, port)
        return True

    def health(self) -> tuple[bool, dict[str, Any]]:
        now = time.time()
        next_runs = self.scheduler.next_run_times()
        probes = {
            name: {"next_run_in_s": round(t.timestamp() - now, 1)} for name, t in sorted(next_runs.items())
        }
        healthy = bool(next_runs) or not self.config.probes.enabled()
        return healthy, {
            "site": self.config.site.id,
            "uptime_s": round(time.monotonic() - self._started, 1),
            "probes": probes,
        }
