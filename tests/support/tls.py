"""Certificates for TLS tests, made with the openssl command."""

from __future__ import annotations

import subprocess


def openssl(*args: str) -> None:
    """Run `openssl ARGS...`; raises CalledProcessError (with its output) when it fails."""
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)
