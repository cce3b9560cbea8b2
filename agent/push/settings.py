"""Push settings (the `push:` section of the agent config)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PushSettings:
    enabled: bool = False
    url: str = ""  # the receiver's remote-write URL, e.g. https://collector.example/api/v1/write

    def validate(self) -> list[str]:
        return ["url: required when push is enabled"] if self.enabled and not self.url else []
