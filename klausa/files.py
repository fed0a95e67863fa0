"""Writing files that other processes read while they change."""

from __future__ import annotations

import os
from pathlib import Path


def write_atomically(target: Path, text: str) -> None:
    """Write ``text`` to ``target`` so that a reader sees the old file or the new one, never
    half of one (the temporary file beside it is renamed over it)."""
    temporary = target.with_name(f"{target.name}.tmp")
    temporary.write_text(text, "utf-8")
    os.replace(temporary, target)
