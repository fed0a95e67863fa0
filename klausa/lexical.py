"""BM25 over clause chunks (bm25s), analysed per language and saved beside the vector index."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import bm25s
import numpy as np

from klausa.text import analyse
from klausa.types import Chunk

log = logging.getLogger(__name__)
# bm25s sets its own logger to DEBUG; its chatter is not ours to print.
logging.getLogger("bm25s").setLevel(logging.WARNING)


def chunk_terms(chunk: Chunk) -> list[str]:
    """What BM25 sees of a clause: its section titles, its list lead-in and its words."""
    text = " ".join([*chunk.title_path, chunk.context, chunk.text])
    return analyse(text, chunk.language)


class LexicalIndex:
    def __init__(self, ids: list[str], policies: list[str], bm25: bm25s.BM25) -> None:
        self.ids = ids
        self.policies = np.asarray(policies, dtype=object)
        self.bm25 = bm25
        self.vocabulary: frozenset[str] = frozenset(getattr(bm25, "vocab_dict", {}) or {})
        self.position = {chunk_id: i for i, chunk_id in enumerate(ids)}

    @classmethod
    def build(cls, chunks: Sequence[Chunk]) -> LexicalIndex:
        bm25 = bm25s.BM25()
        corpus = [chunk_terms(chunk) or [""] for chunk in chunks]
        if corpus:
            bm25.index(corpus, show_progress=False)
        return cls([c.id for c in chunks], [c.policy for c in chunks], bm25)

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        if self.ids:
            self.bm25.save(str(directory), show_progress=False)
        (directory / "chunks.json").write_text(
            json.dumps({"ids": self.ids, "policies": self.policies.tolist()}), "utf-8"
        )

    @classmethod
    def load(cls, directory: Path) -> LexicalIndex:
        meta = json.loads((directory / "chunks.json").read_text("utf-8"))
        bm25 = (
            bm25s.BM25.load(str(directory), show_progress=False) if meta["ids"] else (bm25s.BM25())
        )
        return cls(meta["ids"], meta["policies"], bm25)

    def scores(self, terms: Sequence[str], policies: Sequence[str] | None = None) -> np.ndarray:
        """BM25 score of every chunk (zero outside ``policies``)."""
        known = [t for t in terms if t in self.vocabulary]
        if not known or not self.ids:
            return np.zeros(len(self.ids), dtype=np.float32)
        scores = np.asarray(self.bm25.get_scores(known), dtype=np.float32)
        if policies:
            scores = np.where(np.isin(self.policies, list(policies)), scores, 0.0)
        return scores

    def top(self, scores: np.ndarray, k: int) -> list[tuple[str, float]]:
        if not len(scores):
            return []
        top = np.argpartition(-scores, min(k, len(scores) - 1))[:k]
        top = top[np.argsort(-scores[top])]
        return [(self.ids[i], float(scores[i])) for i in top if scores[i] > 0]

    def score_of(self, scores: np.ndarray, chunk_id: str) -> float:
        index = self.position.get(chunk_id)
        return float(scores[index]) if index is not None else 0.0
