"""Question → ranked clauses: dense (multilingual) and lexical (BM25 + lexicon), fused."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from klausa.catalog import Catalog
from klausa.embeddings import Embedder
from klausa.glosses import GLOSS_SUFFIX
from klausa.lexical import LexicalIndex
from klausa.stores import VectorStore
from klausa.text import QueryTerms, query_term_groups, standardise
from klausa.types import Hit, Language

log = logging.getLogger(__name__)

RETRIEVERS = ("hybrid", "dense", "bm25")
#: BM25 weight of each group of query terms (``QueryTerms``). A grid on the dev split found
#: equal weights best; the groups stay separate because each scores only its own language.
TERM_WEIGHTS = {"own": 1.0, "translated": 1.0, "variants": 1.0, "synonyms": 1.0, "raw": 1.0}


@dataclass
class Query:
    """What is searched: the question's words, and for a follow-up the earlier questions it
    follows, each with its language (they lend their topic, each with a smaller weight)."""

    text: str
    language: Language
    policies: Sequence[str] | None = None
    previous: Sequence[tuple[str, Language]] = ()
    previous_weight: float = 0.35

    def weighted_previous(self) -> list[tuple[str, Language, float]]:
        """The earlier questions with their weights: the last weighs ``previous_weight``, each
        one before it half the one after it (the latest turn says most about what "it" is)."""
        count = len(self.previous)
        return [(text, language, self.previous_weight / 2 ** (count - 1 - i))
                for i, (text, language) in enumerate(self.previous)]


@dataclass
class Retrieval:
    hits: list[Hit]
    terms: list[str]
    timings_ms: dict[str, float] = field(default_factory=dict)
    #: The token states of the earlier questions a follow-up reads with (oldest first) and of
    #: the question, as the embedding model computed them (None: no dense model, or one that
    #: gives none): what the reader reads.
    question_states: list[np.ndarray] | None = None


class Retriever:
    def __init__(
        self,
        catalog: Catalog,
        lexical: LexicalIndex,
        store: VectorStore | None,
        embedder: Embedder | None,
        *,
        mode: str = "hybrid",
        dense_weight: float = 0.6,
        candidates: int = 40,
    ) -> None:
        if mode not in RETRIEVERS:
            raise ValueError(f"unknown retriever {mode!r}; choose one of {', '.join(RETRIEVERS)}")
        self.catalog = catalog
        self.lexical = lexical
        self.store = store
        self.embedder = embedder
        self.mode = mode
        self.dense_weight = {"dense": 1.0, "bm25": 0.0}.get(mode, dense_weight)
        self.candidates = candidates
        self.languages = np.asarray(
            [c.language if (c := catalog.chunks.get(i)) else "" for i in lexical.ids],
            dtype=object,
        )
        self.glossed = sum(1 for chunk in catalog.chunks.values() if chunk.gloss)

    def _query_vector(self, query: Query, timings: dict[str, float]
                      ) -> tuple[np.ndarray, list[np.ndarray] | None]:
        assert self.embedder is not None
        started = time.perf_counter()

        texts = [(query.text, query.language, 1.0), *query.weighted_previous()]
        embedded = self.embedder.embed_queries_and_states(
            [standardise(text) if language == "id" else text for text, language, _ in texts]
        )
        vector = sum(weight * v for (_, _, weight), v in zip(texts, embedded.vectors,
                                                              strict=True))
        if query.previous:
            vector = vector / (np.linalg.norm(vector) or 1.0)
        timings["embed"] = (time.perf_counter() - started) * 1000
        states = embedded.states
        return vector, None if states is None else [*states[1:], states[0]]

    def _weighted_scores(
        self, terms: QueryTerms, language: Language, policies: Sequence[str] | None
    ) -> np.ndarray:
        """Each group of terms scores the clauses of its own language only: a translation
        searches the other language's policies; the question's own words (and its lexicon
        synonyms) its own."""
        other: Language = "id" if language == "en" else "en"
        total = np.zeros(len(self.lexical.ids), dtype=np.float32)
        for group in QueryTerms.GROUPS:
            weight, group_terms = TERM_WEIGHTS[group], getattr(terms, group)
            if weight and group_terms:
                target = language if group in QueryTerms.SAME_LANGUAGE else other
                scores = self.lexical.scores(group_terms, policies)
                total += weight * np.where(self.languages == target, scores, 0.0)
        return total

    def _lexical_scores(self, query: Query) -> tuple[np.ndarray, list[str]]:
        terms = query_term_groups(query.text, query.language)
        scores = self._weighted_scores(terms, query.language, query.policies)
        for previous, language, weight in query.weighted_previous():
            scores = scores + weight * self._weighted_scores(
                query_term_groups(previous, language), language, query.policies
            )
        return scores, terms.all()

    def search(self, query: Query, k: int = 10) -> Retrieval:
        timings: dict[str, float] = {}
        started = time.perf_counter()
        scores, terms = self._lexical_scores(query)
        lexical = dict(self.lexical.top(scores, self.candidates)) if self.dense_weight < 1 else {}
        timings["lexical"] = (time.perf_counter() - started) * 1000

        own: dict[str, float] = {}
        glossed: dict[str, float] = {}
        vector = states = None
        if self.dense_weight > 0:
            vector, states = self._query_vector(query, timings)
            started = time.perf_counter()
            assert self.store is not None
            # A glossed clause can fill two rows: ask for enough to keep `candidates` clauses.
            found = self.store.search(vector, self.candidates + min(
                self.glossed, self.candidates), query.policies)
            self._split_rows(found, own, glossed)
            best = sorted({*own, *glossed}, key=lambda i: -max(
                own.get(i, -2.0), glossed.get(i, -2.0)))[: self.candidates]
            own = {i: own[i] for i in best if i in own}
            glossed = {i: glossed[i] for i in best if i in glossed}
            timings["dense"] = (time.perf_counter() - started) * 1000

        started = time.perf_counter()
        candidates = [i for i in dict.fromkeys([*own, *glossed, *lexical])
                      if i in self.catalog.chunks]
        if vector is not None:
            rows = [*(i for i in candidates if i not in own),
                    *(i + GLOSS_SUFFIX for i in candidates
                      if i not in glossed and self.catalog.chunks[i].gloss)]
            stored = self.store.vectors(rows).items()  # type: ignore[union-attr]
            self._split_rows([(row_id, float(v @ vector)) for row_id, v in stored], own, glossed)
        for chunk_id in candidates:
            if chunk_id not in lexical:
                lexical[chunk_id] = self.lexical.score_of(scores, chunk_id)
        hits = self._fuse(candidates, own, glossed, lexical)
        timings["fuse"] = (time.perf_counter() - started) * 1000
        return Retrieval(hits=hits[:k], terms=terms, timings_ms=timings, question_states=states)

    @staticmethod
    def _split_rows(found: Sequence[tuple[str, float]], own: dict[str, float],
                    glossed: dict[str, float]) -> None:
        """Store rows → the similarity of each clause's own words and of its gloss."""
        for row_id, similarity in found:
            if row_id.endswith(GLOSS_SUFFIX):
                glossed[row_id.removesuffix(GLOSS_SUFFIX)] = similarity
            else:
                own[row_id] = similarity

    def _fuse(
        self, candidates: list[str], own: dict[str, float], glossed: dict[str, float],
        lexical: dict[str, float],
    ) -> list[Hit]:
        """Weighted sum of min-max scaled signals: each ranks on its own scale first. A clause
        ranks by the closer of its own words and its gloss; its ``dense`` stays its own words'
        similarity, which is what the refusal threshold and the policy margins were
        calibrated on (letting the gloss decide too made LaciMart's merger clause an answer
        to "Does the company sell my personal data?")."""
        dense = {i: max(own.get(i, -2.0), glossed.get(i, -2.0)) for i in candidates
                 if i in own or i in glossed}

        def scaled(values: dict[str, float], floor: float | None = None) -> dict[str, float]:
            present = [values[i] for i in candidates if i in values]
            if not present:
                return {}
            low = min(present) if floor is None else floor
            span = (max(present) - low) or 1.0
            return {i: (values[i] - low) / span for i in candidates if i in values}

        # A BM25 score of 0 means "no shared word", not merely "the least".
        dense_scaled, lexical_scaled = scaled(dense), scaled(lexical, floor=0.0)
        w = self.dense_weight
        hits = [
            Hit(
                chunk=self.catalog.chunks[i],
                dense=own.get(i),
                gloss=glossed.get(i),
                lexical=lexical.get(i),
                score=w * dense_scaled.get(i, 0.0) + (1 - w) * lexical_scaled.get(i, 0.0),
            )
            for i in candidates
        ]
        hits.sort(key=lambda h: (-h.score, -dense.get(h.chunk.id, 0.0)))
        for rank, hit in enumerate(hits, 1):
            hit.rank = rank
        return hits
