"""One index generation, loaded: everything a question reads (catalog, retriever, the names
that select a policy, the judge)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from klausa.catalog import Catalog, IndexMissingError
from klausa.judge import Judge
from klausa.scope import Mentions, mention_patterns
from klausa.settings import Settings
from klausa.token_states import TokenStates

if TYPE_CHECKING:
    from klausa.embeddings import Embedder
    from klausa.reader import Reader
    from klausa.retrieve import Retriever

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Snapshot:
    generation: str
    catalog: Catalog
    retriever: Retriever
    mentions: Mentions
    judge: Judge


def load_snapshot(settings: Settings, generation: str | None, mode: str,
                  embedder: Callable[[], Embedder],
                  reader: Callable[[], Reader | None] = lambda: None) -> Snapshot:
    """Load ``generation`` of the index in ``settings.data_dir`` (``embedder``: the question
    embedder, ``reader``: the reader; each asked for only when the retriever is dense)."""
    from klausa.lexical import LexicalIndex
    from klausa.retrieve import Retriever
    from klausa.stores import open_store

    if generation is None:
        raise IndexMissingError(f"no index in {settings.data_dir}; run `klausa ingest` first")
    settings = settings.model_copy(update={"generation": generation})
    catalog = Catalog.load(settings.catalog_dir)
    if not catalog.policies or not (settings.lexical_dir / "chunks.json").exists():
        raise IndexMissingError(
            f"no policies indexed in {settings.data_dir}; run `klausa ingest` first"
        )
    dense = mode != "bm25"
    lexical = LexicalIndex.load(settings.lexical_dir)
    retriever = Retriever(
        catalog,
        lexical,
        open_store(settings, embedder(), create=False) if dense else None,
        embedder() if dense else None,
        mode=mode,
        dense_weight=settings.dense_weight,
        candidates=settings.candidates,
    )
    log.info("answering from index generation %s", generation)
    judge = Judge(settings, lexical.vocabulary, mode,
                  reader=reader() if dense else None,
                  clause_states=TokenStates.load(settings.generation_dir) if dense else None,
                  policy_digests={p: policy.digest for p, policy in catalog.policies.items()})
    return Snapshot(generation, catalog, retriever, mention_patterns(catalog, lexical.vocabulary),
                    judge)
