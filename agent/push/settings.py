"""Push settings (the `push:` section of the agent config)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from agent.schema import BasicAuth, Secret, check, is_url, positive

MIB = 1024 * 1024
# The collector's Prometheus accepts samples up to its out_of_order_time_window (6 h) old; the
# margin covers clock skew between agent and collector and the time a batch spends in flight.
DEFAULT_MAX_SAMPLE_AGE_S = 6 * 3600 - 30 * 60


def url_or_empty(value: object) -> str | None:
    """An http(s) URL, or empty while push is disabled (validate() requires it when enabled)."""
    return None if value == "" else is_url(value)


@dataclass(frozen=True)
class PushSettings:
    """The `push:` section of the agent's config: remote write to a receiver, through an on-disk
    queue. Units are in the names (`_s` seconds, `_bytes` bytes); defaults and examples in
    config.example.yaml and docs/push.md.
    """

    enabled: bool = False
    # The receiver's remote-write URL, e.g. https://collector.example:8427/api/v1/write
    url: str = check(url_or_empty, default="")
    interval_s: float = check(positive, default=15.0)  # how often the registry is snapshotted, like a scrape
    max_samples_per_request: int = check(positive, default=5000)
    # The queue on disk (in state_dir): bounded by size and by sample age, oldest dropped first.
    max_queue_bytes: int = check(positive, default=64 * MIB)
    # Must stay below what the receiver accepts (Prometheus: its out_of_order_time_window).
    max_sample_age_s: float = check(positive, default=float(DEFAULT_MAX_SAMPLE_AGE_S))
    timeout_s: float = check(positive, default=30.0)  # one deadline: connect, send, the whole answer
    min_backoff_s: float = check(positive, default=1.0)
    max_backoff_s: float = check(positive, default=60.0)
    tls_ca_file: str = ""  # verify the receiver with this CA bundle instead of the system's
    basic_auth: BasicAuth | None = None
    bearer_token: Secret | None = None

    def validate(self) -> list[str]:
        """Problems that involve more than one field, each prefixed with its key ("url: ..."); [] when
        none. Single fields are checked by their `check(...)` metadata.
        """
        errs = []
        if self.enabled and not self.url:
            errs.append("url: required when push is enabled")
        if self.basic_auth is not None and self.bearer_token is not None:
            errs.append("bearer_token: use either basic_auth or bearer_token, not both")
        if self.tls_ca_file and not Path(self.tls_ca_file).is_file():
            errs.append(f"tls_ca_file: no such file: {self.tls_ca_file}")
        if self.tls_ca_file and self.url.startswith("http://"):
            errs.append("tls_ca_file: the url is http://, so no TLS is used")
        if self.max_queue_bytes < MIB:
            errs.append("max_queue_bytes: must be at least 1048576 (1 MiB)")
        if self.max_sample_age_s <= self.interval_s:
            errs.append("max_sample_age_s: must be longer than interval_s")
        if self.max_backoff_s < self.min_backoff_s:
            errs.append("max_backoff_s: must not be shorter than min_backoff_s")
        return errs
