"""Loading a sentence-transformers model folder as Klausa runs it: without progress bars, and
with a bundled model's compact word-embedding table in place of the float32 one (each bundled
model's own module knows its table: ``EmbeddingModelSpec.compact_table``)."""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def load_sentence_transformer(
    name_or_path: str, compact_table: Callable[[Any, Path], bool] | None = None
) -> Any:
    # oneDNN keeps a compiled primitive per matrix shape (1,024 by default), and so does
    # torch's own cache of oneDNN bfloat16 matmuls (LRU_CACHE_CAPACITY, also 1,024); the
    # reader's shapes vary with every question and clause. 16 each keeps the speed. Measured
    # over the 215 gold questions in one server: oneDNN's cache grew it by 0.55 GB (reader
    # 121 vs 122 ms), torch's by another 0.33 GB (1.61 → 1.28 GB; p50 133 → 127 ms). Both
    # are read when first used.
    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "16")
    os.environ.setdefault("LRU_CACHE_CAPACITY", "16")
    import transformers
    from sentence_transformers import SentenceTransformer

    # Library progress bars would land in CLI output and JSON; we log instead.
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    model = SentenceTransformer(name_or_path, device="cpu")
    if compact_table is not None:
        compact_table(model, Path(name_or_path))
    gc.collect()
    release_freed_memory()
    return model


def table_sample(rows: int):  # type: ignore[no-untyped-def]
    """The first and last rows of a word-embedding table, to check a compact copy against:
    a random sample would page in most of the float32 table, which the model maps from its
    file rather than reading."""
    import torch

    return torch.cat([torch.arange(min(2048, rows)), torch.arange(max(0, rows - 2048), rows)])


def release_freed_memory() -> None:
    """Hand memory freed while loading (parsed JSON, temporary buffers) back to the system;
    glibc keeps it otherwise. A no-op where there is no glibc."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class StateTap:
    """Keeps the input of one layer of a loaded transformer from its last forward pass (the
    token states the reader starts from). The compiled transformer, which runs no layer
    module, hands it over itself (``klausa.models.compiled``)."""

    def __init__(self, text_model: Any, layer: int) -> None:
        self.layer = layer
        self.states: Any = None
        text_model.layers[layer].register_forward_pre_hook(self._keep, with_kwargs=True)
        text_model.klausa_state_tap = self

    def _keep(self, module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.states = args[0] if args else kwargs["hidden_states"]

    def take(self) -> Any:
        states, self.states = self.states, None
        return states
