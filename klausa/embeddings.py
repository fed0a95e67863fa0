"""Embedding backends (the interface: ``klausa.embedder``), chosen by name in the settings,
loaded lazily."""

from __future__ import annotations

import copy
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from klausa.embedder import Embedded, Embedder
from klausa.models import (
    EMBEDDING_MODELS,
    HASHING_TEST,
    EmbeddingModelSpec,
    ModelBuildError,
    embedding_model,
)
from klausa.models.base import cpu_info, torch_capability_limit
from klausa.models.compiled import CompiledTransformer
from klausa.models.loading import StateTap, load_sentence_transformer
from klausa.settings import Settings

log = logging.getLogger(__name__)


class ModelLoadError(RuntimeError):
    """The embedding model could not be built or loaded; the message says what to do."""


class SentenceTransformerEmbedder:
    """Any sentence-transformers model. A bundled model (``spec``) is prompted as its card
    says, with the clause's section path as the document title; another model uses its own
    ``query``/``document``/``passage`` prompts when it has them.

    Everything the model does runs on one ``ModelThread``: questions from many threads (one
    Streamlit server, many sessions) are embedded together in one batch, two cores doing one
    matrix product at a time instead of eight threads fighting over them; passages go
    between."""

    def __init__(self, name_or_path: str, batch_size: int = 32,
                 passage_precision: str = "float32", spec: EmbeddingModelSpec | None = None,
                 dimensions: int | None = None, query_precision: str = "float32",
                 compiled: bool = False) -> None:
        self.name = name_or_path
        self.spec = spec
        self.batch_size = batch_size
        self.dimensions = dimensions
        self.passages_in_bfloat16 = passage_precision == "bfloat16" or (
            passage_precision == "auto" and cpu_has_fast_bfloat16()
        )
        self.queries_in_bfloat16 = query_precision == "bfloat16" or (
            query_precision == "auto" and self.passages_in_bfloat16
        )
        self._model = None
        self._bfloat16 = None  # the bfloat16 model, made on first use (False: not possible)
        #: Use (and build, in the background) the compiled transformer of the model questions
        #: and passages both run on: the bfloat16 one, or the float32 one where bfloat16 is
        #: slow (not when the two differ: then the float32 model is only for questions).
        self.compiled = compiled and self.passages_in_bfloat16 == self.queries_in_bfloat16
        self._compiled: CompiledTransformer | None = None
        self._thread = ModelThread(self._encode_queries)

    @property
    def model(self):  # type: ignore[no-untyped-def]
        """The loaded model (loaded on first use, by the model thread: only it touches it)."""
        if self._model is None:
            if not self._thread.is_current():
                return self._thread.call(lambda: self.model)
            self._model = self._load()
        return self._model

    def _load(self):  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        try:
            model = load_sentence_transformer(
                self.name, self.spec.compact_table if self.spec else None)
        except Exception as error:  # any failure here means "no model": say which and why
            raise ModelLoadError(
                f"could not load embedding model {self.name!r}: {error}. Set "
                f"KLAUSA_EMBEDDING_MODEL to a sentence-transformers model folder or name, or "
                f"to one of the bundled models ({', '.join(EMBEDDING_MODELS)})."
            ) from error
        if self.spec is not None and self.spec.state_layer is not None:
            StateTap(model[0].auto_model, self.spec.state_layer)
        log.info("loaded embedding model %s in %.1f s", self.name, time.perf_counter() - started)
        if self.compiled and not self.queries_in_bfloat16:
            self._compiled = self._compiled_transformer(model)
        return model

    def _compiled_transformer(self, model: Any) -> CompiledTransformer:
        assert self.spec is not None  # only a bundled model compiles
        return CompiledTransformer(Path(self.name), model,
                                   probe=self.spec.query_prompt + CompiledTransformer.PROBE)

    def document_text(self, title: str, text: str) -> str:
        """What the model reads for a clause (prompt included for a bundled model): the text
        ingest embeds and whose digest decides whether a stored vector can be reused."""
        if self.spec is not None:
            return self.spec.document(title, text)
        return "\n".join(part for part in (title, text) if part)

    def _prompt(self, role: str, model: Any) -> str | None:
        if self.spec is not None:
            # A bundled model's document text carries its prompt (``document_text``).
            return self.spec.query_prompt if role == "query" else None
        names = ("document", "passage") if role == "document" else ("query",)
        prompts = model.prompts or {}
        return next((prompts[n] for n in names if n in prompts), None)

    def _encode(self, texts: Sequence[str], role: str, model: Any = None) -> Embedded:
        """One batch through the model: what ``SentenceTransformer.encode`` computes (the
        same preprocessing, prompt and pooling), keeping the token states as well."""
        import torch

        model = model or self.model
        if self._compiled is not None:
            self._compiled.poll()
        features = model.preprocess(list(texts), prompt=self._prompt(role, model))
        tap: StateTap | None = getattr(model[0].auto_model, "klausa_state_tap", None)
        with torch.inference_mode():
            out = model(features)
        tapped = tap.take() if tap is not None else None
        vectors = out["sentence_embedding"].float()
        if self.dimensions:
            vectors = vectors[:, : self.dimensions]
        # Unit length in float32: a Matryoshka prefix is no longer unit length, and under
        # bfloat16 autocast the model's own normalisation is off by up to ~0.5 %.
        vectors = vectors.numpy()
        vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True).clip(1e-12)
        if tapped is None:
            return Embedded(vectors)
        mask = features["attention_mask"].bool()
        return Embedded(vectors, [tapped[i][mask[i]].to(torch.float16).numpy()
                                  for i in range(len(texts))])

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self.embed_documents_and_states(texts).vectors

    def embed_documents_and_states(self, texts: Sequence[str]) -> Embedded:
        """Embed texts made by ``document_text``: on the model thread, a batch at a time, so
        questions asked meanwhile (a re-index from the library page) go between batches."""
        texts, size = list(texts), self.batch_size
        if not texts:
            return Embedded(np.zeros((0, 0), dtype=np.float32), [])
        # Longest first, as `SentenceTransformer.encode` does: a batch is padded to its
        # longest text, so texts of like length go together (3× faster on the seed corpus).
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        parts = [self._thread.call(partial(self._embed_document_batch,
                                           [texts[i] for i in order[start:start + size]]))
                 for start in range(0, len(texts), size)]
        if len(parts) == 1 and order == list(range(len(texts))):
            return parts[0]
        back = np.argsort(order)
        vectors = np.concatenate([p.vectors for p in parts])[back]
        if any(p.states is None for p in parts):
            return Embedded(vectors)
        states = [state for p in parts for state in p.states or []]
        return Embedded(vectors, [states[i] for i in back])

    def _embed_document_batch(self, texts: Sequence[str]) -> Embedded:
        if not self.passages_in_bfloat16:
            return self._encode(texts, "document")
        import torch

        # Ingest is matrix work; on CPUs with bfloat16 units it runs faster in bfloat16 and
        # the vectors stay within cosine 0.9995 of float32. The bfloat16 model beats
        # autocast, which casts every weight on every call (seed chunks, EmbeddingGemma:
        # 37 vs 31 chunks/s, float32 13); a model whose compact table cannot follow a cast
        # (e5's 4-bit blocks) uses autocast.
        passage_model = self.bfloat16_model()
        if passage_model is not None:
            return self._encode(texts, "document", passage_model)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return self._encode(texts, "document")

    def bfloat16_model(self):  # type: ignore[no-untyped-def]
        """The model in bfloat16, or None where its word table cannot follow a cast (e5's
        4-bit blocks). When questions and passages both use it, the model itself is cast (no
        float32 weights kept: ~400 MB less for a server); otherwise a copy is made."""
        if self._bfloat16 is None:
            if not self._thread.is_current():
                return self._thread.call(self.bfloat16_model)
            import torch

            model = self.model
            table = model[0].auto_model.get_input_embeddings()
            if not (isinstance(table, torch.nn.Embedding)
                    or getattr(table, "follows_model_dtype", False)):
                self._bfloat16 = False
            elif self.passages_in_bfloat16 and self.queries_in_bfloat16:
                self._bfloat16 = model.to(torch.bfloat16)
                if self.compiled:
                    self._compiled = self._compiled_transformer(self._bfloat16)
            else:
                # Integer buffers (the int8 rows) and the tokenizer are shared, not copied
                # (copying the tokenizer's vocabulary alone takes seconds).
                memo = {id(b): b for b in table.buffers() if not b.is_floating_point()}
                tokenizer = getattr(model, "tokenizer", None)
                memo[id(tokenizer)] = tokenizer
                self._bfloat16 = copy.deepcopy(model, memo).to(torch.bfloat16)
        return self._bfloat16 or None

    @property
    def compiled_transformer(self) -> CompiledTransformer | None:
        return self._compiled

    def wait_for_compiled(self, timeout_s: float, *, build: bool = True) -> bool:
        """Wait until questions run through the compiled transformer (building it if need
        be, unless ``build`` is false); False when this model has none or it was not ready
        in time."""
        def wait() -> bool:
            if not self.compiled:
                return False
            # The model questions run on (loading it makes its compiled transformer); asking
            # for the bfloat16 one regardless made a copy that a float32 server held unused.
            _ = self.bfloat16_model() if self.queries_in_bfloat16 else self.model
            compiled = self._compiled
            if compiled is None or not (build or compiled.target.is_file()):
                return False
            return compiled.wait(timeout_s)

        return bool(self._thread.call(wait))

    def run(self, work: Callable[[], Any]) -> Any:
        """Run ``work`` on the model thread (for code that drives the model itself, such as
        the query-speed benchmark), so the process keeps one thread running torch."""
        return self._thread.call(work)

    def _encode_queries(self, texts: Sequence[str]) -> Embedded:
        model = self.bfloat16_model() if self.queries_in_bfloat16 else None
        return self._encode(texts, "query", model)

    def embed_query(self, text: str) -> np.ndarray:
        return self._thread.embed([text]).vectors[0]

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Several questions (a follow-up and the turns it follows) in one batch."""
        return self._thread.embed(texts).vectors

    def embed_queries_and_states(self, texts: Sequence[str]) -> Embedded:
        return self._thread.embed(texts)


class ModelThread:
    """The one thread that runs the embedding model. Questions queued by any thread are
    embedded together in one batch; other work (passage batches, loading) runs between
    them, questions first.

    One thread, because torch's OpenMP pool belongs to the thread that calls it: once a
    second thread has run the model, the process holds more OpenMP threads than cores and
    libgomp stops spin-waiting — an EmbeddingGemma question then takes 66 instead of 44 ms in
    bfloat16, for good (measured; the same as ``OMP_WAIT_POLICY=PASSIVE``)."""

    def __init__(self, encode_queries: Callable[[Sequence[str]], Embedded],
                 max_batch: int = 16) -> None:
        self.encode = encode_queries
        self.max_batch = max_batch
        self._pending: list[_Pending] = []
        self._jobs: deque[_Job] = deque()
        self._ready = threading.Condition()
        self._thread: threading.Thread | None = None

    def is_current(self) -> bool:
        return threading.current_thread() is self._thread

    def _start(self) -> None:  # under self._ready
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="klausa-model", daemon=True)
            self._thread.start()
        self._ready.notify()

    def embed(self, texts: Sequence[str]) -> Embedded:
        """Question vectors and token states, batched with whatever other threads have
        queued."""
        if self.is_current():
            return self.encode(texts)
        items = [_Pending(text) for text in texts]
        with self._ready:
            self._pending.extend(items)
            self._start()
        for item in items:
            item.done.wait()
            if item.error is not None:
                raise item.error
        states = [item.state for item in items]
        return Embedded(np.stack([item.vector for item in items]),
                        None if any(s is None for s in states) else states)  # type: ignore[misc]

    def call(self, work: Callable[[], Any]) -> Any:
        """Run ``work`` on the model thread and return its result (or raise its error)."""
        if self.is_current():
            return work()
        job = _Job(work)
        with self._ready:
            self._jobs.append(job)
            self._start()
        job.done.wait()
        if job.error is not None:
            raise job.error
        return job.result

    def _run(self) -> None:
        while True:
            with self._ready:
                self._ready.wait_for(lambda: self._pending or self._jobs)
                batch = self._pending[: self.max_batch]
                del self._pending[: self.max_batch]
                job = None if batch else self._jobs.popleft()
            if job is not None:
                try:
                    job.result = job.work()
                except BaseException as error:  # handed to the caller, not lost here
                    job.error = error
                job.done.set()
                continue
            try:
                embedded = self.encode([item.text for item in batch])
                states = embedded.states or [None] * len(batch)
                for item, vector, state in zip(batch, embedded.vectors, states, strict=True):
                    item.vector, item.state = vector, state
            except BaseException as error:  # handed to the askers, not lost in this thread
                for item in batch:
                    item.error = error
            for item in batch:
                item.done.set()


@dataclass
class _Job:
    work: Callable[[], Any]
    result: Any = None
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)


@dataclass
class _Pending:
    text: str
    vector: np.ndarray | None = None
    state: np.ndarray | None = None
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)


def resolve_model_path(settings: Settings) -> str:
    """The bundled model's folder (built on first use), or the configured name/path as is."""
    spec = embedding_model(settings.embedding_model)
    if spec is None:
        return settings.embedding_model
    try:
        path: Path = spec.ensure(settings.models_dir)
    except ModelBuildError as error:
        raise ModelLoadError(str(error)) from None
    except Exception as error:
        others = ", ".join(n for n in EMBEDDING_MODELS if n != spec.name)
        raise ModelLoadError(f"could not build {spec.name}: {error}; or set "
                             f"KLAUSA_EMBEDDING_MODEL to {others}") from error
    # A local folder needs no hub; never let a library try to reach one.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    return str(path)


def cpu_has_fast_bfloat16() -> bool:
    """AMX or AVX-512 BF16 on this CPU (Linux): where bfloat16 matrix products pay. Not when
    torch is limited to AVX2 or less."""
    if torch_capability_limit() in ("default", "avx2"):
        return False
    flags = cpu_info().get("flags", "").split()
    return "amx_bf16" in flags or "avx512_bf16" in flags


def load_embedder(settings: Settings) -> Embedder:
    if settings.embedding_model == HASHING_TEST:
        from klausa.testing import HashingEmbedder

        return HashingEmbedder()
    spec = embedding_model(settings.embedding_model)
    return SentenceTransformerEmbedder(
        resolve_model_path(settings),
        settings.embedding_batch_size,
        settings.passage_precision,
        spec=spec,
        dimensions=settings.embedding_dimensions,
        query_precision=settings.query_precision,
        compiled=settings.compiled_model == "auto" and bool(spec and spec.compiles),
    )
