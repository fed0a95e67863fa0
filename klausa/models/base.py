"""What every bundled model module shares: the names, the spec type, the build error."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

E5_SMALL = "multilingual-e5-small-offline"
EMBEDDINGGEMMA = "embeddinggemma-300m-offline"
#: The deterministic test embedder (``klausa.testing``).
HASHING_TEST = "hashing-test"


def torch_capability_limit() -> str:
    """The instruction set torch's kernels are limited to ("avx2", "default" …; "" when not
    limited): ``ATEN_CPU_CAPABILITY``, how a CPU without AVX-512 or AMX is emulated on one
    that has them."""
    return os.environ.get("ATEN_CPU_CAPABILITY", "").strip().lower()


def cpu_info() -> dict[str, str]:
    """The first processor's fields in /proc/cpuinfo ("model name", "flags" …); empty where
    there is none (not Linux)."""
    fields: dict[str, str] = {}
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return fields
    for line in lines:
        if not line.strip():
            break  # the end of the first processor
        name, _, value = line.partition(":")
        fields.setdefault(name.strip(), value.strip())
    return fields


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
    #: Swaps a loaded model's float32 word-embedding table for the compact copy its build
    #: wrote into the folder; False when the folder has none (``loading``).
    compact_table: Callable[[Any, Path], bool] | None = None
    #: The layer whose input Klausa keeps for every token (the reader's starting point,
    #: ``klausa.models.reader``); None: no token states, so no reader.
    state_layer: int | None = None

    def document(self, title: str, text: str) -> str:
        if title:
            return self.document_prompt.format(title=title, text=text)
        return self.untitled_prompt.format(text=text)
