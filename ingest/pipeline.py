"""Documents → index: parse, chunk, embed what changed, and keep Chroma, BM25 and the catalog
in step. Re-running on an unchanged corpus changes nothing."""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ingest.align import align, file_digest
from ingest.chunk import build_chunks
from ingest.loaders import SUPPORTED_SUFFIXES, DocumentError, load_text
from ingest.parse import INTRO_LABEL, parse_sections
from klausa.catalog import MANIFEST, Catalog, load_manifest
from klausa.embeddings import Embedder, load_embedder
from klausa.glosses import GLOSS_SUFFIX, attach_glosses, clause_body, gloss_path, load_glosses
from klausa.lexical import LexicalIndex
from klausa.models import embedding_model
from klausa.settings import Settings
from klausa.stores import (
    VectorStore,
    copy_server_collection,
    drop_server_collection,
    open_store,
    stored_vector_count,
)
from klausa.text import detect_language
from klausa.token_states import TokenStates, write_token_states
from klausa.types import Chunk, ParsedPolicy, PolicyInfo

log = logging.getLogger(__name__)

#: Texts per call to the model: sorted longest-first over the whole ingest, so each call (and
#: each of the model's batches in it) holds texts of similar length; the block only sets how
#: often progress is reported.
EMBED_BLOCK = 256


class IngestBusyError(RuntimeError):
    pass


@dataclass
class PolicyReport:
    policy: str
    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    sections: int = 0
    chunks: int = 0


@dataclass
class IngestReport:
    policies: list[PolicyReport] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    #: Rows (re)written to the vector store (a clause, or a clause's gloss), distinct texts
    #: the model embedded for them, and rows whose vector was copied from a stored row with
    #: the same text.
    written: int = 0
    embedded: int = 0
    vectors_reused: int = 0
    #: Chunks whose BM25 terms were analysed in this ingest, and those taken from disk.
    analysed: int = 0
    terms_reused: int = 0

    @property
    def changed(self) -> bool:
        return any(p.added or p.updated or p.removed for p in self.policies)


@dataclass
class Document:
    info: PolicyInfo
    path: Path


def info_for_file(path: Path) -> PolicyInfo:
    """A policy described by its file alone: ``name.id.txt`` → id ``name``, Indonesian."""
    stem = path.name[: -len(path.suffix)] if path.suffix else path.name
    language_tag = stem.rsplit(".", 1)[-1] if "." in stem else ""
    if language_tag in ("en", "id"):
        stem = stem[: -len(language_tag) - 1]
    policy_id = re.sub(r"[^a-z0-9._-]+", "-", stem.lower()).strip("-.") or "policy"
    return PolicyInfo(
        id=policy_id,
        title=stem,
        company=stem,
        language=language_tag if language_tag in ("en", "id") else "en",  # type: ignore[arg-type]
        source=path.name,
    )


def discover(settings: Settings, paths: Sequence[Path]) -> tuple[list[Document], list[str]]:
    """The documents to ingest: the corpus manifest by default, else the given files/folders."""
    documents: list[Document] = []
    errors: list[str] = []
    default = [settings.corpus_dir]
    if (settings.uploads_dir / MANIFEST).exists():
        default.append(settings.uploads_dir)
    for target in paths or default:
        if target.is_dir():
            infos = load_manifest(target)
            if infos:
                documents += [Document(info, target / info.source) for info in infos]
            else:
                documents += [
                    Document(info_for_file(p), p)
                    for p in sorted(target.iterdir())
                    if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES
                ]
        elif target.is_file():
            listed = {i.source: i for i in load_manifest(target.parent)}
            documents.append(Document(listed.get(target.name) or info_for_file(target), target))
        else:
            errors.append(f"{target}: no such file or folder")
    return documents, errors


def parse_document(document: Document) -> ParsedPolicy:
    """Parse one document; a file with no usable text raises ``DocumentError``."""
    text = load_text(document.path)
    info = document.info
    if document.path.name != info.source or info.title == info.id:
        # A file ingested without a manifest entry: trust its words over its name.
        first_line = next((line.strip() for line in text.splitlines() if line.strip()), "")
        title = first_line if 0 < len(first_line) <= 80 else info.title
        info = info.model_copy(update={"language": detect_language(text[:5000]),
                                       "title": title, "company": title})
    tree = parse_sections(text, INTRO_LABEL[info.language])
    chunks = build_chunks(info, text, tree)
    if not chunks:
        raise DocumentError(document.path, "no text to index")
    chunks = attach_glosses(chunks, load_glosses(gloss_path(document.path)))
    versions = []
    for version in info.versions:
        if version.language == info.language:
            raise DocumentError(document.path, f"its version {version.source} is in the "
                                "policy's own language; a version is in the other one")
        path = document.path.parent / version.source
        versions.append(align(path, version, load_text(path), tree, chunks))
    return ParsedPolicy(
        info=info,
        sections=tree.sections,
        chunks=chunks,
        source_text=text,
        digest=document_digest(document),
        versions=versions,
    )


def document_digest(document: Document) -> str:
    """What a catalog entry was built from: the file's bytes and its entry as discovered (not
    as refined from its text, so ``index_is_current`` can recompute it without parsing)."""
    glosses = gloss_path(document.path)
    # Without its versions: a policy's clauses (and the reader's record of the policies it
    # was trained on) do not change when a translation is added; ``version_digests`` does.
    return hashlib.sha256(
        document.path.read_bytes() + document.info.model_dump_json(exclude={"versions"}).encode()
        + (glosses.read_bytes() if glosses.is_file() else b"")
    ).hexdigest()


def version_digests(document: Document) -> dict[str, str]:
    """Each version's file digest and how it is listed, by language: what ``index_is_current``
    compares with ``indexed_versions``."""
    return {v.language: file_digest(document.path.parent / v.source) + v.model_dump_json()
            for v in document.info.versions}


def indexed_versions(policy: ParsedPolicy) -> dict[str, str]:
    """``version_digests`` of the versions the catalog holds."""
    return {v.info.language: v.digest + v.info.model_dump_json() for v in policy.versions}


def embedding_text(chunk: Chunk, embedder: Embedder) -> str:
    """What the dense model reads: the clause (with the lead-in of its list) titled by its
    section path, which gives it its topic; the policy's own name is left out (the same for
    every clause of a policy, it only blurs topics)."""
    return embedder.document_text(" › ".join(chunk.title_path), clause_body(chunk))


#: A row of the vector store to (re)write: its id, the chunk it belongs to, the text the
#: model reads and that text's digest.
Row = tuple[str, Chunk, str, str]


def text_digest(text: str) -> str:
    """What a vector and a clause's token states are stored under: the digest of the text
    the model read (an unchanged text keeps both across ingests)."""
    return hashlib.sha1(text.encode()).hexdigest()


def chunk_rows(chunk: Chunk, embedder: Embedder) -> list[Row]:
    """The clause's vector row, and its gloss's when it has one (same chunk, other words)."""
    texts = [(chunk.id, embedding_text(chunk, embedder))]
    if chunk.gloss:
        texts.append((chunk.id + GLOSS_SUFFIX,
                      embedder.document_text(chunk.gloss_title, chunk.gloss)))
    return [(row_id, chunk, text, text_digest(text)) for row_id, text in texts]


def chunk_metadata(row_id: str, chunk: Chunk, digest: str) -> dict[str, str | int]:
    return {
        "policy": chunk.policy,
        "label": chunk.label,
        "ordinal": chunk.ordinal,
        "language": chunk.language,
        "digest": digest,
        "gloss": int(row_id != chunk.id),
    }


def expected_rows(chunks: Sequence[Chunk]) -> int:
    return sum(2 if chunk.gloss else 1 for chunk in chunks)


@contextmanager
def ingest_lock(settings: Settings) -> Iterator[None]:
    """One writer per data directory; a second one is told so at once."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with open(settings.data_dir / "ingest.lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise IngestBusyError(
                f"ingest already running on {settings.data_dir}; try again when it ends"
            ) from None
        yield


def ingest(
    settings: Settings,
    paths: Sequence[Path] = (),
    *,
    prune: bool | None = None,
    embedder: Embedder | None = None,
    progress: bool = False,
) -> IngestReport:
    """Bring the index in step with the documents, atomically.

    The work is done on a copy of the current index generation; only when it has succeeded
    does ``index/CURRENT`` switch to it, in one rename. A failure or a killed process leaves
    the previous generation answering exactly as before. ``prune`` (default: when ingesting
    the whole corpus) removes policies that are no longer in it.
    """
    with ingest_lock(settings):
        previous = settings.current_generation()
        target = settings.model_copy(update={"generation": new_generation_name()})
        remove_stale_generations(settings, keep={previous})
        prepare_generation(settings, previous, target)
        try:
            report = _ingest_into(target, paths, prune, embedder, progress)
        except BaseException:
            if settings.chroma_url:
                drop_server_collection(target)
            shutil.rmtree(target.generation_dir, ignore_errors=True)
            raise
        switch_generation(settings, target.generation or "", previous)
    for error in report.errors:
        log.warning("not ingested: %s", error)
    return report


def new_generation_name() -> str:
    return f"g-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"


def prepare_generation(settings: Settings, previous: str | None, target: Settings) -> None:
    """Start the new generation as a copy of the current one (vectors, catalog, BM25)."""
    destination = target.generation_dir
    if previous and (settings.index_dir / previous).is_dir():
        shutil.copytree(settings.index_dir / previous, destination)
        if settings.chroma_url:
            copy_server_collection(settings.model_copy(update={"generation": previous}), target)
    else:
        destination.mkdir(parents=True)


def switch_generation(settings: Settings, generation: str, previous: str | None) -> None:
    pointer = settings.index_dir / "CURRENT"
    temporary = pointer.with_suffix(".tmp")
    temporary.write_text(generation, "utf-8")
    with open(temporary, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(temporary, pointer)
    # Readers still answering from the previous generation keep it until the next ingest.
    remove_stale_generations(settings, keep={generation, previous})


def remove_stale_generations(settings: Settings, keep: set[str | None]) -> None:
    """Delete generations nobody reads: left by failed or killed ingests, or superseded."""
    current = settings.current_generation()
    for path in settings.index_dir.glob("g-*"):
        if path.is_dir() and path.name not in keep and path.name != current:
            if settings.chroma_url:
                drop_server_collection(settings.model_copy(update={"generation": path.name}))
            shutil.rmtree(path, ignore_errors=True)


def _ingest_into(
    settings: Settings,
    paths: Sequence[Path],
    prune: bool | None,
    embedder: Embedder | None,
    progress: bool,
) -> IngestReport:
    prune = not paths if prune is None else prune
    report = IngestReport()
    documents, report.errors = discover(settings, paths)
    parsed: list[ParsedPolicy] = []
    for document in documents:
        try:
            parsed.append(parse_document(document))
        except DocumentError as error:
            report.errors.append(str(error))
    embedder = embedder or load_embedder(settings)
    store = open_store(settings, embedder)
    stored = store.digests()
    catalog = Catalog.load(settings.catalog_dir)

    keep = {p.info.id for p in parsed}
    failed = {d.info.id for d in documents} - keep
    gone = set(catalog.policies) | {policy for policy, _ in stored.values()}
    gone = gone - keep - failed if prune else set()

    stored_by_policy: dict[str, list[str]] = {}
    for chunk_id, (policy_id, _) in stored.items():
        stored_by_policy.setdefault(policy_id, []).append(chunk_id)
    to_embed: list[Row] = []
    to_delete: list[str] = []
    for policy in parsed:
        entry = PolicyReport(policy.info.id, sections=len(policy.sections),
                             chunks=len(policy.chunks))
        new_ids = set()
        for chunk in policy.chunks:
            rows = chunk_rows(chunk, embedder)
            new_ids.update(row_id for row_id, *_ in rows)
            # Rows whose text is new or differs from the stored row's (by digest).
            changed = [row for row in rows if stored.get(row[0], ("", ""))[1] != row[3]]
            if chunk.id not in stored:
                entry.added += 1
            elif changed:
                entry.updated += 1
            else:
                entry.unchanged += 1
            to_embed += changed
        stale = [i for i in stored_by_policy.get(policy.info.id, []) if i not in new_ids]
        entry.removed = len(stale)
        to_delete += stale
        report.policies.append(entry)
    for policy_id in sorted(gone):
        stale = stored_by_policy.get(policy_id, [])
        to_delete += stale
        report.policies.append(PolicyReport(policy_id, removed=len(stale)))

    fresh_states: dict[str, np.ndarray] = {}
    vectors = embed_or_reuse(store, embedder, to_embed, stored, report, progress, fresh_states)
    store.add_vectors([row_id for row_id, *_ in to_embed], vectors,
                      [text for _, _, text, _ in to_embed],
                      [chunk_metadata(row_id, c, d) for row_id, c, _, d in to_embed])
    store.delete(to_delete)

    for policy in parsed:
        Catalog.write(settings.catalog_dir, policy)
    for policy_id in gone:
        Catalog.remove(settings.catalog_dir, policy_id)
    all_chunks = [c for p in Catalog.load(settings.catalog_dir).policies.values()
                  for c in p.chunks]
    terms = LexicalIndex.update(settings.lexical_dir, all_chunks)
    report.analysed, report.terms_reused = terms.analysed, terms.reused
    store_token_states(settings, embedder, all_chunks, fresh_states)
    return report


def store_token_states(settings: Settings, embedder: Embedder, chunks: Sequence[Chunk],
                       fresh: dict[str, np.ndarray]) -> None:
    """Every clause's token states in the generation (``klausa.token_states``): those just
    computed, the unchanged ones carried over, and any the previous index lacked (one built
    before the reader) computed now. An embedder without token states stores none."""
    previous = TokenStates.load(settings.generation_dir)
    texts = {c.id: embedding_text(c, embedder) for c in chunks}
    digests = {chunk_id: text_digest(text) for chunk_id, text in texts.items()}
    by_digest = {digests[i]: text for i, text in texts.items()}
    missing = [d for d in by_digest if d not in fresh and (previous is None
                                                           or previous.of_digest(d) is None)]
    if missing:
        log.info("clause token states: computing %d the index lacks", len(missing))
        for start in range(0, len(missing), EMBED_BLOCK):
            block = missing[start:start + EMBED_BLOCK]
            states = embedder.embed_documents_and_states([by_digest[d] for d in block]).states
            if states is None:
                return
            fresh.update(zip(block, states, strict=True))
    write_token_states(settings.generation_dir, digests, fresh, previous)


def embed_or_reuse(
    store: VectorStore,
    embedder: Embedder,
    to_embed: Sequence[Row],
    stored: dict[str, tuple[str, str]],
    report: IngestReport,
    progress: bool = False,
    states: dict[str, np.ndarray] | None = None,
) -> np.ndarray:
    """The vectors of ``to_embed`` (row id, chunk, embedding text, digest of that text).

    A text already in the store (same digest: a clause repeated across policies, a renamed
    policy, a re-ingest) gets the stored vector; every other distinct text is embedded once,
    longest-first in one pass so that batches hold texts of similar length (little padding).
    """
    report.written = len(to_embed)
    if not to_embed:
        return np.zeros((0, 0), dtype=np.float32)
    holder = {digest: chunk_id for chunk_id, (_, digest) in stored.items() if digest}
    wanted = list(dict.fromkeys(digest for *_, digest in to_embed))
    reusable = [digest for digest in wanted if digest in holder]
    by_id = store.vectors([holder[digest] for digest in reusable])
    found = {digest: by_id[holder[digest]] for digest in reusable if holder[digest] in by_id}
    texts = {digest: text for _, _, text, digest in to_embed}
    fresh = sorted((d for d in wanted if d not in found), key=lambda d: -len(texts[d]))
    bar = tqdm(total=len(fresh), desc="embedding", unit="text", disable=not progress)
    for start in range(0, len(fresh), EMBED_BLOCK):
        block = fresh[start : start + EMBED_BLOCK]
        embedded = embedder.embed_documents_and_states([texts[digest] for digest in block])
        found.update(zip(block, embedded.vectors, strict=True))
        if states is not None and embedded.states is not None:
            states.update(zip(block, embedded.states, strict=True))
        bar.update(len(block))
    bar.close()
    report.embedded = len(fresh)
    report.vectors_reused = len(to_embed) - len(fresh)
    log.info("vectors: %d rows written, %d texts embedded, %d reused", report.written,
             report.embedded, report.vectors_reused)
    return np.stack([found[digest] for *_, digest in to_embed])


def index_is_current(settings: Settings) -> bool:
    """True when the catalog holds exactly the corpus as it is on disk now."""
    try:
        documents, errors = discover(settings, [])
    except ValueError:
        return False
    catalog = Catalog.load(settings.catalog_dir)
    if errors or set(catalog.policies) != {d.info.id for d in documents}:
        return False
    if not (settings.lexical_dir / "chunks.json").exists():
        return False
    # Another embedding model (a new default, KLAUSA_EMBEDDING_MODEL changed) has its own
    # collection, which must hold every chunk of the catalog.
    if stored_vector_count(settings) != expected_rows(list(catalog.chunks.values())):
        return False
    # The reader reads the clauses' token states: an index built without them (before the
    # reader) is out of date while the reader is on and the model keeps them.
    spec = embedding_model(settings.embedding_model)
    if settings.reader != "off" and spec is not None and spec.state_layer is not None:
        states = TokenStates.load(settings.generation_dir)
        if states is None or not states.covers(set(catalog.chunks)):
            return False
    for document in documents:
        try:
            digest, versions = document_digest(document), version_digests(document)
        except OSError:
            return False
        policy = catalog.policies[document.info.id]
        if policy.digest != digest or versions != indexed_versions(policy):
            return False
    return True


__all__ = ["MANIFEST", "IngestReport", "PolicyReport", "discover", "index_is_current", "ingest"]
