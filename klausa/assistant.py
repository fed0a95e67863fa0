"""The one entry point every shell calls: ``Assistant.ask(question) -> Answer``.

A question goes through named steps: check → scope (which policies, which earlier questions a
follow-up reads with) → retrieve → judge (``klausa.judge``: answered, not covered or not
stated, and what to cite) → compose (``klausa.compose``) → generate (optional)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from functools import cached_property
from typing import TYPE_CHECKING

from klausa.catalog import Catalog
from klausa.compose import compose
from klausa.embeddings import Embedder, load_embedder
from klausa.judge import Judge, Judgement, Question
from klausa.prompts import phrase
from klausa.scope import Scope, as_turn, find_scope, has_topic, small_talk
from klausa.settings import Settings
from klausa.snapshot import Snapshot, load_snapshot
from klausa.text import detect_language, load_language_identifier, normalise, words
from klausa.trace import GenerationTrace, Trace
from klausa.types import Answer, Language, Turn

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

    from klausa.generate import Generator
    from klausa.reader import Reader
    from klausa.retrieve import Retrieval

log = logging.getLogger(__name__)


class QuestionError(ValueError):
    """A question that cannot be answered as typed; the message is in the asker's language."""

    def __init__(self, message: str, language: Language) -> None:
        super().__init__(message)
        self.language = language


class UnknownPolicyError(QuestionError):
    pass


class Declined(QuestionError):
    """A message with nothing a clause could answer ("What about Interindo?" with nothing
    before it): the message says what to ask instead. ``klausa eval`` scores it a refusal."""


class SmallTalk(Declined):
    """A greeting or thanks, not a question: the message is Klausa's reply (what it answers
    from, with an example question), to show as an answer, not as an error."""


class Assistant:
    """Answers questions from the index in ``settings.data_dir``; loads what it needs once."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        embedder: Embedder | None = None,
        retriever: str | None = None,
        chat_model: BaseChatModel | None = None,
    ) -> None:
        self.settings = settings or Settings()
        self._embedder = embedder
        self._chat_model = chat_model
        self._generator_error: str | None = None
        self.mode = retriever or self.settings.retriever
        self._lock = threading.Lock()
        self._snapshot: Snapshot | None = None

    # --- what answers read, loaded lazily ---------------------------------------------
    @cached_property
    def embedder(self) -> Embedder:
        return self._embedder or load_embedder(self.settings)

    @cached_property
    def reader(self) -> Reader | None:
        """The shipped reader (``klausa.reader``), or None: off, unavailable, or an
        embedding model it was not trained on (then the similarity threshold decides)."""
        from klausa.reader import load_reader

        return load_reader(self.settings, self.embedder)

    @cached_property
    def generator(self) -> Generator | None:
        """The generative stage (``settings.llm``), or None for extractive answers only."""
        if not self.wants_generation:
            return None
        from klausa.chat_models import load_chat_model
        from klausa.generate import Generator

        model = self._chat_model or load_chat_model(self.settings)
        provider = self.settings.llm if self._chat_model is None else type(model).__name__
        return Generator(model, provider, self.settings.llm_sources)

    def snapshot(self) -> Snapshot:
        """The index generation that is current now. A question uses one snapshot from start
        to end, so an ingest switching generations mid-question never mixes two indexes."""
        generation = self.settings.current_generation()
        snapshot = self._snapshot
        if snapshot is None or snapshot.generation != generation:
            with self._lock:
                snapshot = self._snapshot
                if snapshot is None or snapshot.generation != generation:
                    snapshot = load_snapshot(self.settings, generation, self.mode,
                                             lambda: self.embedder, lambda: self.reader)
                    self._snapshot = snapshot
        return snapshot

    @property
    def catalog(self) -> Catalog:
        return self.snapshot().catalog

    @property
    def judge(self) -> Judge:
        return self.snapshot().judge

    def warm(self) -> None:
        """Load the models and indexes now (a server calls this at start), not on the first
        question; the chat model is loaded too, but nothing is generated."""
        self.ask("warm up", language="en", generate=False)
        load_language_identifier()
        # A compiled transformer already built for this machine is switched to now (~1.5 s),
        # not on the first visitor's question; one still being built is not waited for.
        if self.mode != "bm25":
            self.embedder.wait_for_compiled(10.0, build=False)
        if self.wants_generation:
            self.load_generator()

    def load_generator(self) -> Generator | None:
        """The generator, or None when its model cannot load (remembered: a model that
        cannot load is not retried on every question)."""
        from klausa.chat_models import ChatModelError

        if self._generator_error is not None:
            return None
        try:
            return self.generator
        except ChatModelError as error:
            self._generator_error = str(error)
            log.error("generative answers are off: %s", error)
            return None

    def reload(self) -> None:
        """Forget the loaded index; the next question loads the current generation."""
        with self._lock:
            self._snapshot = None

    @property
    def wants_generation(self) -> bool:
        return self._chat_model is not None or self.settings.llm != "none"

    # --- answering: check → scope → retrieve → judge → compose → generate ---------------
    def ask(
        self,
        question: str,
        policy: str | None = None,
        history: Sequence[Turn | Answer | str] = (),
        language: Language | None = None,
        *,
        on_text: Callable[[str], None] | None = None,
        generate: bool = True,
    ) -> Answer:
        """Answer ``question``. With a chat model configured (and ``generate``), an answered
        (not refused) question also gets a generated answer, verified against the clauses;
        ``on_text`` receives its words as they are written (before verification)."""
        started = time.perf_counter()
        snapshot, scope, retrieval, asked = self.find(question, policy, history, language)
        judged = time.perf_counter()
        judgement = snapshot.judge.judge(asked, retrieval.hits, scope.single_policy)
        answer = self.compose(question, asked.language, snapshot, scope, retrieval, judgement)
        timings = {**retrieval.timings_ms, "compose": (time.perf_counter() - judged) * 1000,
                   "total": (time.perf_counter() - started) * 1000}
        if judgement.reader is not None and judgement.reader.ms is not None:
            timings["read"] = judgement.reader.ms  # part of "compose": judged, then composed
        answer.timings_ms = {k: round(v, 2) for k, v in timings.items()}
        if answer.refused or not answer.citations or not generate or not self.wants_generation:
            return answer
        return self.generate(answer, snapshot.catalog, on_text)

    def find(self, question: str, policy: str | None = None,
             history: Sequence[Turn | Answer | str] = (), language: Language | None = None
             ) -> tuple[Snapshot, Scope, Retrieval, Question]:
        """Check → scope → retrieve: the candidate clauses and the question as the judge
        reads them (also what ``klausa reader train`` reads)."""
        text, language = self.check_question(question, language)
        snapshot = self.snapshot()
        if kind := small_talk(text):
            raise SmallTalk(self.small_talk_reply(kind, language, snapshot.catalog), language)
        self.check_policy(policy, snapshot.catalog, language)
        scope = find_scope(text, policy, [as_turn(t) for t in history], snapshot.catalog,
                           snapshot.mentions)
        if not scope.previous and not scope.restated and not has_topic(scope.search_text):
            # "What about Interindo?" with nothing before it: no clause can answer that.
            raise Declined(phrase("answer", language, "no_topic"), language)
        searched_in = detect_language(scope.search_text) if scope.restated else language
        retrieval = self.retrieve(snapshot, scope, searched_in)
        return snapshot, scope, retrieval, Question(
            scope.search_text, language, follow_up=bool(scope.previous),
            states=retrieval.question_states, text_language=searched_in)

    def check_question(self, question: str, language: Language | None) -> tuple[str, Language]:
        limit = self.settings.max_question_chars
        raw = question or ""
        # Checked on the raw text too: 100 kB of invisible characters is still 100 kB.
        text = normalise(raw[: limit * 4]).strip()
        guess = language or (detect_language(text) if text else self.settings.default_language)
        if len(raw) > limit or len(text) > limit:
            raise QuestionError(
                phrase("answer", guess, "too_long", length=len(raw), limit=limit), guess
            )
        if not text:
            raise QuestionError(phrase("answer", guess, "empty_question"), guess)
        if not words(text):
            raise QuestionError(phrase("answer", guess, "no_words"), guess)
        return text, guess

    @staticmethod
    def small_talk_reply(kind: str, language: Language, catalog: Catalog) -> str:
        if kind == "thanks":
            return phrase("answer", language, "thanks")
        titles = [catalog.policy_title(p, language) for p in catalog.policies]
        first = next(iter(catalog.policies.values()), None)
        company = (first.info.aliases or [first.info.company])[0] if first else "the company"
        return phrase("answer", language, "greeting", policies="; ".join(titles),
                      company=company)

    @staticmethod
    def check_policy(policy: str | None, catalog: Catalog, language: Language) -> None:
        if policy is not None and policy not in catalog.policies:
            raise UnknownPolicyError(
                phrase("answer", language, "unknown_policy", policy=policy), language
            )

    def retrieve(self, snapshot: Snapshot, scope: Scope, language: Language) -> Retrieval:
        """Candidates for the question (a follow-up blends in the questions it follows)."""
        from klausa.retrieve import Query

        query = Query(scope.search_text, language, scope.policies,
                      previous=[(t, detect_language(t)) for t in scope.previous])
        return snapshot.retriever.search(query, k=self.settings.candidates)

    def compose(self, question: str, language: Language, snapshot: Snapshot, scope: Scope,
                retrieval: Retrieval, judgement: Judgement) -> Answer:
        hits = retrieval.hits[: self.settings.hits]
        composed = compose(judgement, hits, snapshot.catalog, retrieval.terms, language,
                           scope.policies)
        trace = Trace(
            retriever=self.mode, search_text=scope.search_text, follow_up_of=scope.previous,
            policies=scope.policies, terms=retrieval.terms, outcome=judgement.outcome,
            reason=judgement.reason, support=judgement.support,
            refusal_threshold=judgement.threshold, asked_fact=judgement.asked,
            unmatched_terms=judgement.unmatched_terms, unknown_terms=judgement.unknown_terms,
            reader=judgement.reader,
        )
        return Answer(question=question, language=language, answer=composed.text,
                      refused=judgement.refused, policy=scope.single_policy,
                      citations=composed.citations, hits=composed.hits, trace=trace)

    def generate(self, answer: Answer, catalog: Catalog,
                 on_text: Callable[[str], None] | None) -> Answer:
        """The generated answer in place of the extractive one when it passes verification
        (``klausa.generate``); otherwise the extractive answer, with why in the trace."""
        generator = self.load_generator()
        if generator is None:
            unavailable = GenerationTrace(provider=self.settings.llm, passed=False,
                                          problems=[f"unavailable: {self._generator_error}"])
            return answer.model_copy(update={"trace": answer.trace.model_copy(
                update={"generation": unavailable})})
        return generator(answer, answer.hits, catalog, on_text)
