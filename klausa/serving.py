"""Assistants warmed before the web server starts, so its first visitor does not wait for the
model: ``klausa serve`` loads one here, then runs Streamlit in the same process, and the app
takes it instead of loading its own."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from klausa.assistant import Assistant
from klausa.settings import Settings

log = logging.getLogger(__name__)

_warmed: dict[Path, Assistant] = {}
_lock = threading.Lock()


def warm_assistant(settings: Settings) -> Assistant:
    """An Assistant for ``settings.data_dir`` with its models and index loaded; kept for the
    app. Errors (no index yet, a model that cannot load) propagate: the caller decides."""
    assistant = Assistant(settings)
    assistant.warm()
    with _lock:
        _warmed[settings.data_dir.resolve()] = assistant
    return assistant


def warmed_assistant(data_dir: Path) -> Assistant | None:
    with _lock:
        return _warmed.get(Path(data_dir).resolve())
