"""Replace a generated file whole or not at all: readers (Prometheus' file_sd, vmauth, an agent
fetching its config) never see half a file, and an unchanged file keeps its mtime."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomic(path: Path, text: str, mode: int = 0o644) -> bool:
    """Write `text` (UTF-8) to `path` with permission bits `mode` by renaming a temporary file in the
    same directory over it, creating missing parent directories.

    Returns False, touching nothing, when `path` already holds exactly `text` with `mode`; True when
    it was written. The mode is set before any byte is written, so a secret is never readable by
    others, even for a moment. Raises OSError when the directory cannot be written; the temporary
    file is then removed and `path` is as it was.
    """
    try:
        if path.read_text(encoding="utf-8") == text and (path.stat().st_mode & 0o777) == mode:
            return False
    except (OSError, UnicodeDecodeError):
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)  # before any secret byte is written
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True
