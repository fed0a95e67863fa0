"""The embedding backend's interface: what ingest, retrieval and the reader ask of a model."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np


@dataclass(frozen=True)
class Embedded:
    """Unit vectors, one a text, and each text's token states (the input of the model's
    ``state_layer``, float16, padding left out): what the reader reads (``klausa.reader``);
    None for a model without a state layer."""

    vectors: np.ndarray
    states: list[np.ndarray] | None = None


class Embedder(Protocol):
    name: str
    #: Questions run in bfloat16 (the reader then reads in bfloat16 too).
    queries_in_bfloat16: bool

    def document_text(self, title: str, text: str) -> str: ...

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray: ...

    def embed_documents_and_states(self, texts: Sequence[str]) -> Embedded:
        """Vectors and token states (``states`` None: this embedder has none)."""
        ...

    def embed_query(self, text: str) -> np.ndarray: ...

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray: ...

    def embed_queries_and_states(self, texts: Sequence[str]) -> Embedded: ...

    def run(self, work: Callable[[], Any]) -> Any:
        """Run ``work`` where the model runs (torch code that must not start a second
        OpenMP pool, such as the reader)."""
        ...

    def wait_for_compiled(self, timeout_s: float, *, build: bool = True) -> bool:
        """Switch to a faster compiled path if the model has one (False when it has none)."""
        ...


__all__ = ["Embedded", "Embedder"]
