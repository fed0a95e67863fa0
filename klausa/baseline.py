"""The "tutorial RAG" baseline: fixed-size character chunks in Chroma, same embedding model.

It shows what section-aware clause chunking buys; it is measured, never served.
"""

from __future__ import annotations

import time

from klausa.cases import (
    Asker,
    Case,
    Record,
    label_matches,
    passage_matches,
    policy_language,
)
from klausa.catalog import Catalog
from klausa.embeddings import Embedder
from klausa.stores import LangChainEmbeddings, policy_filter
from klausa.text import detect_language

CHUNK_SIZE = 1000
CHUNK_OVERLAP = 100
#: A baseline chunk "is" a gold clause when it holds at least this share of the clause.
CLAUSE_COVERAGE = 0.5


class TutorialRAG(Asker):
    name = "tutorial"

    def __init__(self, catalog: Catalog, embedder: Embedder, k: int = 10) -> None:
        import chromadb
        from chromadb.config import Settings as ChromaSettings
        from langchain_chroma import Chroma
        from langchain_core.documents import Document
        from langchain_text_splitters import RecursiveCharacterTextSplitter

        self.catalog = catalog
        self.k = k
        splitter = RecursiveCharacterTextSplitter(
            chunk_size=CHUNK_SIZE, chunk_overlap=CHUNK_OVERLAP, add_start_index=True
        )
        documents = [
            Document(page_content=policy.source_text, metadata={"policy": policy_id})
            for policy_id, policy in catalog.policies.items()
        ]
        chunks = splitter.split_documents(documents)
        client = chromadb.EphemeralClient(settings=ChromaSettings(anonymized_telemetry=False))
        self.store = Chroma(
            client=client,
            collection_name="tutorial-rag",
            embedding_function=LangChainEmbeddings(embedder),
            collection_metadata={"hnsw:space": "cosine"},
        )
        for start in range(0, len(chunks), 64):
            self.store.add_documents(chunks[start : start + 64])

    def gold_spans(self, case: Case) -> list[tuple[str, int, int]]:
        """Source spans of the clauses in the gold sections."""
        return [
            (chunk.policy, chunk.start, chunk.end)
            for chunk in self.catalog.chunks.values()
            if label_matches(chunk.policy, chunk.label, case, self.catalog)
        ]

    def __call__(self, case: Case) -> Record:
        started = time.perf_counter()
        policies = [case.policy] if case.policy else None
        found = self.store.similarity_search_with_score(
            case.question, k=self.k, filter=policy_filter(policies)
        )
        latency = (time.perf_counter() - started) * 1000
        spans = [] if case.gold_passages else self.gold_spans(case)
        rank = None
        for position, (document, _) in enumerate(found, 1):
            start = int(document.metadata["start_index"])
            end = start + len(document.page_content)
            if case.gold_passages:
                hit = passage_matches(document.page_content, case.gold_passages)
            else:
                hit = any(
                    policy == document.metadata["policy"]
                    and min(end, e) - max(start, s) >= CLAUSE_COVERAGE * (e - s)
                    for policy, s, e in spans
                )
            if hit:
                rank = position
                break
        shown = found[0][0].page_content if found else ""
        return Record(
            question=case.question,
            language=detect_language(case.question),
            answer=shown,
            refused=False,
            case=case,
            retriever=self.name,
            rank=rank,
            # What such a system shows is the chunk itself, in the policy's language.
            answer_language=detect_language(shown) if shown else case.lang,
            latency_ms=round(latency, 2),
            policy_language=policy_language(case, self.catalog),
        )
