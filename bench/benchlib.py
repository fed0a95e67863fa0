"""What both benchmark scripts share; light on purpose (no torch, no klausa): the scale
benchmark's parent process imports it before its children measure memory."""

from __future__ import annotations

import json
from pathlib import Path


def status_mb(field: str) -> float | None:
    """A field of /proc/self/status (VmRSS, VmHWM) in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return round(int(line.split()[1]) / 1024, 1)
    return None


def write_results(path: Path, results: dict) -> None:
    """The figures as JSON, beside the printed table."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", "utf-8")
