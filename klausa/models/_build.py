"""What every bundled-model builder shares: an atomic build folder, a marker that says the
folder is complete, hashing and JSON writing."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MARKER_FILE = "klausa-build.json"


def write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def marker_ok(target: Path, build_format: int, weights: str) -> bool:
    """A folder is taken as built only when its marker says so and every file it lists is
    there with the weights at their recorded size (a half-written folder has no marker)."""
    try:
        marker = json.loads((target / MARKER_FILE).read_text(encoding="utf-8"))
        return (
            marker.get("build_format") == build_format
            and (target / weights).stat().st_size == marker["weights_bytes"]
            and all((target / f).is_file() for f in marker["files"])
        )
    except (OSError, ValueError, KeyError, TypeError):
        return False


def folder_marker(folder: Path, build_format: int, model: str, weights: str,
                  **extra: Any) -> dict[str, Any]:
    """The marker of a finished build: what is in it, and the weights' size and hash."""
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    return {
        "build_format": build_format,
        "model": model,
        **extra,
        "weights_sha256": sha256_file(folder / weights),
        "weights_bytes": (folder / weights).stat().st_size,
        "files": files,
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def build_atomically(target: Path, build_into: Callable[[Path], dict[str, Any]],
                     is_built: Callable[[Path], bool]) -> Path:
    """Build the folder ``target`` in a temporary folder beside it, write its marker, and
    rename it into place: a failed or killed build never leaves a folder taken as good.
    ``build_into(folder)`` fills the empty folder and returns its marker."""
    target.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.build-", dir=target.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the cache may be shared
    old = target.parent / f".{target.name}.old-{os.getpid()}"
    try:
        marker = build_into(tmp)
        write_json(tmp / MARKER_FILE, marker)
        if target.exists():
            target.rename(old)  # stale, invalid or forced: move aside, then swap in
        try:
            tmp.rename(target)
        except OSError:
            if not is_built(target):  # a concurrent build did not win either
                raise
            log.info("another process finished building %s first", target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    log.info("built %s in %.1f s", target, time.monotonic() - started)
    return target
