"""A small deterministic embedder shipped with the library, for tests and demos of the logic
(judge, scope, compose, trace) that must not wait for a 300M-parameter model.

``KLAUSA_EMBEDDING_MODEL=hashing-test`` selects it. Each text becomes the hashed bag of its
analysed terms (stemmed per language, stop words out) and their bilingual-lexicon
translations, so "sell" finds "menjual". It loads in no time and embeds thousands of texts a
second; its answers are far worse than a real model's, and its similarities live on their own
scale (its refusal settings in ``klausa.models``). Never the default."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from klausa.embedder import Embedded
from klausa.models.base import HASHING_TEST
from klausa.text import analyse, default_lexicon, detect_language

DIMENSIONS = 512


class HashingEmbedder:
    name = HASHING_TEST
    spec = None
    queries_in_bfloat16 = False

    def __init__(self, dimensions: int = DIMENSIONS) -> None:
        self.dimensions = dimensions

    def document_text(self, title: str, text: str) -> str:
        return "\n".join(part for part in (title, text) if part)

    def _vector(self, text: str) -> np.ndarray:
        language = detect_language(text)
        terms = analyse(text, language)
        terms += default_lexicon().translate(terms, language)
        vector = np.zeros(self.dimensions, dtype=np.float32)
        for term in terms:
            code = zlib.crc32(term.encode())
            vector[code % self.dimensions] += 1.0 if code & 1 << 31 else -1.0
        norm = float(np.linalg.norm(vector))
        if norm == 0.0:
            vector[0] = 1.0  # a text without terms: some unit vector, the same each time
            return vector
        return vector / norm

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return np.stack([self._vector(t) for t in texts]) if texts else np.zeros(
            (0, self.dimensions), dtype=np.float32)

    def embed_documents_and_states(self, texts: Sequence[str]) -> Embedded:
        return Embedded(self.embed_documents(texts))  # no token states: no reader

    def embed_query(self, text: str) -> np.ndarray:
        return self._vector(text)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self.embed_documents(texts)

    def embed_queries_and_states(self, texts: Sequence[str]) -> Embedded:
        return Embedded(self.embed_documents(texts))

    def run(self, work: Callable[[], Any]) -> Any:
        return work()

    def wait_for_compiled(self, timeout_s: float, *, build: bool = True) -> bool:
        return False
