"""Embedding backends: one small interface, chosen by name in the settings, loaded lazily."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from klausa.settings import OFFLINE_EMBEDDING_MODEL, Settings

log = logging.getLogger(__name__)


class ModelLoadError(RuntimeError):
    """The embedding model could not be built or loaded; the message says what to do."""


class Embedder(Protocol):
    name: str

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray: ...

    def embed_query(self, text: str) -> np.ndarray: ...


class SentenceTransformerEmbedder:
    """Any sentence-transformers model; uses its ``query``/``passage`` prompts when it has them."""

    def __init__(self, name_or_path: str, batch_size: int = 32) -> None:
        self.name = name_or_path
        self.batch_size = batch_size
        self._model = None
        self._lock = threading.Lock()

    @property
    def model(self):  # type: ignore[no-untyped-def]
        if self._model is None:
            with self._lock:
                if self._model is None:
                    self._model = self._load()
        return self._model

    def _load(self):  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        try:
            import transformers
            from sentence_transformers import SentenceTransformer

            # Library progress bars would land in CLI output and JSON; we log instead.
            transformers.utils.logging.disable_progress_bar()
            transformers.utils.logging.set_verbosity_error()
            model = SentenceTransformer(self.name, device="cpu")
        except Exception as error:  # any failure here means "no model": say which and why
            raise ModelLoadError(
                f"could not load embedding model {self.name!r}: {error}. Set "
                f"KLAUSA_EMBEDDING_MODEL to a sentence-transformers model folder or name, or "
                f"unset it to use the bundled {OFFLINE_EMBEDDING_MODEL}."
            ) from error
        log.info("loaded embedding model %s in %.1f s", self.name, time.perf_counter() - started)
        return model

    def _encode(self, texts: Sequence[str], prompt_name: str) -> np.ndarray:
        model = self.model
        prompt = prompt_name if prompt_name in (model.prompts or {}) else None
        vectors = model.encode(
            list(texts),
            prompt_name=prompt,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, "passage")

    def embed_query(self, text: str) -> np.ndarray:
        return self._encode([text], "query")[0]


def resolve_model_path(settings: Settings) -> str:
    """The bundled model's folder (built on first use), or the configured name/path as is."""
    if settings.embedding_model != OFFLINE_EMBEDDING_MODEL:
        return settings.embedding_model
    from klausa.model_build import ensure_offline_e5

    try:
        path: Path = ensure_offline_e5(settings.models_dir)
    except Exception as error:
        raise ModelLoadError(f"could not build {OFFLINE_EMBEDDING_MODEL}: {error}") from error
    # A local folder needs no hub; never let a library try to reach one.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    return str(path)


def load_embedder(settings: Settings) -> Embedder:
    return SentenceTransformerEmbedder(resolve_model_path(settings), settings.embedding_batch_size)
