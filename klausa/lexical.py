"""BM25 over clause chunks (bm25s), analysed per language and saved beside the vector index."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from klausa.files import write_atomically
from klausa.text import analyse
from klausa.types import Chunk

if TYPE_CHECKING:
    import bm25s

log = logging.getLogger(__name__)
# bm25s sets its own logger to DEBUG; its chatter is not ours to print.
logging.getLogger("bm25s").setLevel(logging.WARNING)


TERMS_FILE = "terms.json"


def lexical_text(chunk: Chunk) -> str:
    """What BM25 reads of a clause: its section titles, its list lead-in and its words."""
    return " ".join([*chunk.title_path, chunk.context, chunk.text])


def chunk_terms(chunk: Chunk) -> list[str]:
    """What BM25 sees of a clause: its section titles, its list lead-in and its words."""
    return analyse(lexical_text(chunk), chunk.language)


def terms_digest(chunk: Chunk) -> str:
    """Identifies the analysis of a chunk: same text and language → same terms."""
    return hashlib.sha1(f"{chunk.language}\0{lexical_text(chunk)}".encode()).hexdigest()


@dataclass
class TermsUpdate:
    """What one incremental build did: chunks analysed now vs. terms taken from disk."""

    analysed: int = 0
    reused: int = 0


class TermStore:
    """The analysed terms of every indexed chunk (chunk id → digest, terms), saved beside the
    BM25 index so an ingest analyses only added or changed chunks."""

    def __init__(self, entries: dict[str, tuple[str, list[str]]] | None = None) -> None:
        self.entries = entries or {}

    @classmethod
    def load(cls, directory: Path) -> TermStore:
        path = directory / TERMS_FILE
        try:
            data = json.loads(path.read_text("utf-8"))
        except FileNotFoundError:
            return cls()
        except ValueError:
            log.warning("%s is unreadable; every chunk will be analysed again", path)
            return cls()
        return cls({chunk_id: (digest, terms) for chunk_id, (digest, terms) in data.items()})

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        write_atomically(directory / TERMS_FILE, json.dumps(self.entries, ensure_ascii=False))

    def update(self, chunks: Sequence[Chunk]) -> tuple[list[list[str]], TermsUpdate]:
        """The terms of ``chunks`` in order: stored ones reused (by chunk id and digest, or
        another chunk with the same text), the rest analysed; entries of other chunks are
        dropped."""
        by_digest = {digest: terms for digest, terms in self.entries.values()}
        entries: dict[str, tuple[str, list[str]]] = {}
        stats = TermsUpdate()
        corpus: list[list[str]] = []
        for chunk in chunks:
            digest = terms_digest(chunk)
            stored = self.entries.get(chunk.id)
            if stored is not None and stored[0] == digest:
                terms = stored[1]
                stats.reused += 1
            elif digest in by_digest:
                terms = by_digest[digest]
                stats.reused += 1
            else:
                terms = chunk_terms(chunk)
                by_digest[digest] = terms
                stats.analysed += 1
            entries[chunk.id] = (digest, terms)
            corpus.append(terms)
        self.entries = entries
        return corpus, stats


class LexicalIndex:
    def __init__(self, ids: list[str], policies: list[str], bm25: bm25s.BM25) -> None:
        self.ids = ids
        self.policies = np.asarray(policies, dtype=object)
        self.bm25 = bm25
        self.vocabulary: frozenset[str] = frozenset(getattr(bm25, "vocab_dict", {}) or {})
        self.position = {chunk_id: i for i, chunk_id in enumerate(ids)}

    @classmethod
    def build(cls, chunks: Sequence[Chunk]) -> LexicalIndex:
        return cls.from_terms(chunks, [chunk_terms(chunk) for chunk in chunks])

    @classmethod
    def from_terms(cls, chunks: Sequence[Chunk], corpus: Sequence[list[str]]) -> LexicalIndex:
        """BM25 over already analysed chunks (``corpus[i]`` are the terms of ``chunks[i]``)."""
        import bm25s

        bm25 = bm25s.BM25()
        if corpus:
            bm25.index([terms or [""] for terms in corpus], show_progress=False)
        return cls([c.id for c in chunks], [c.policy for c in chunks], bm25)

    @classmethod
    def update(cls, directory: Path, chunks: Sequence[Chunk]) -> TermsUpdate:
        """Rebuild the index saved in ``directory`` for ``chunks``, analysing only the chunks
        whose terms are not stored there yet (bm25s has no incremental add; rebuilding its
        matrix from stored terms is cheap next to stemming)."""
        terms = TermStore.load(directory)
        before = list(terms.entries.items())
        corpus, stats = terms.update(chunks)
        if list(terms.entries.items()) == before and (directory / "chunks.json").exists():
            log.info("lexical index: unchanged (%d chunks)", stats.reused)
            return stats
        cls.from_terms(chunks, corpus).save(directory)
        terms.save(directory)
        log.info("lexical index: %d chunks analysed, %d reused", stats.analysed, stats.reused)
        return stats

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        if self.ids:
            self.bm25.save(str(directory), show_progress=False)
        (directory / "chunks.json").write_text(
            json.dumps({"ids": self.ids, "policies": self.policies.tolist()}), "utf-8"
        )

    @classmethod
    def load(cls, directory: Path) -> LexicalIndex:
        import bm25s

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
