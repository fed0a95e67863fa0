"""The one entry point every shell calls: ``Assistant.ask(question) -> Answer``."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property

from langchain_core.language_models import BaseChatModel

from klausa.asked import AskedFact, asked_fact, states
from klausa.catalog import Catalog
from klausa.chat_models import ChatModelError
from klausa.compose import choose, cite, render_answer, render_refusal
from klausa.embeddings import Embedder, load_embedder
from klausa.generate import Generator
from klausa.lexical import LexicalIndex, chunk_terms
from klausa.prompts import phrase
from klausa.retrieve import Query, Retriever
from klausa.settings import Settings
from klausa.stores import IndexMissingError, open_store
from klausa.text import STOPWORDS, analyse, default_lexicon, detect_language, normalise, words
from klausa.types import Answer, Hit, Language, Turn

log = logging.getLogger(__name__)

FOLLOW_UP_CUES = re.compile(
    r"^(and|but|also|what about|how about|then|so|dan|lalu|terus|kalau|bagaimana dengan|"
    r"gimana dengan|juga|trus)\b|\b(it|they|them|this|that|those|these|its|their|itu|"
    r"tersebut|ini|mereka)\b|\w+nya\b",
    re.I,
)
FOLLOW_UP_MAX_WORDS = 8
#: How many earlier questions a follow-up borrows its topic from (a chain of follow-ups).
FOLLOW_UP_DEPTH = 2
#: A policy's best clause is cited for an all-policies question only above this share of the
#: best clause's fused score, within ``settings.policy_margin`` of the best policy's dense
#: similarity (or above ``settings.policy_floor``), and when its own support passes the
#: refusal threshold (tuned on the dev all-policies questions of both splits: cited-policy
#: precision 0.76 → 0.89 at recall 0.91).
ALSO_CITE_FLOOR = 0.6
MAX_POLICIES_CITED = 5
#: A question asking for a number, a contact or a date (``klausa.asked``) is answered when
#: one of this many best clauses gives one.
ASKED_FACT_DEPTH = 3


@dataclass(frozen=True)
class Snapshot:
    """One index generation, loaded: everything a question reads."""

    generation: str
    catalog: Catalog
    retriever: Retriever
    mentions: list[tuple[str, re.Pattern[str]]]


def mention_patterns(catalog: Catalog) -> list[tuple[str, re.Pattern[str]]]:
    """Per policy, a pattern of the names users type for it (id, aliases, one-word company)."""
    patterns = []
    for policy_id, policy in catalog.policies.items():
        info = policy.info
        names = {policy_id, *info.aliases}
        if len(info.company.split()) == 1:
            names.add(info.company)
        alternatives = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
        patterns.append((policy_id, re.compile(rf"\b({alternatives})\b", re.I)))
    return patterns


def strip_names(text: str, mentions: list[tuple[str, re.Pattern[str]]]) -> str:
    """The question without company names: the topic, not the name, should rank clauses."""
    for _, pattern in mentions:
        text = pattern.sub(" ", text)
    return re.sub(r"\s+", " ", text).strip()


class QuestionError(ValueError):
    """A question that cannot be answered as typed; the message is in the asker's language."""

    def __init__(self, message: str, language: Language) -> None:
        super().__init__(message)
        self.language = language


class UnknownPolicyError(QuestionError):
    pass


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
    def generator(self) -> Generator | None:
        """The generative stage (``settings.llm``), or None for extractive answers only."""
        if not self.wants_generation:
            return None
        from klausa.chat_models import load_chat_model

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
                    snapshot = self._load(generation)
                    self._snapshot = snapshot
        return snapshot

    def _load(self, generation: str | None) -> Snapshot:
        if generation is None:
            raise IndexMissingError(
                f"no index in {self.settings.data_dir}; run `klausa ingest` first"
            )
        settings = self.settings.model_copy(update={"generation": generation})
        catalog = Catalog.load(settings.catalog_dir)
        if not catalog.policies or not (settings.lexical_dir / "chunks.json").exists():
            raise IndexMissingError(
                f"no policies indexed in {settings.data_dir}; run `klausa ingest` first"
            )
        dense = self.mode != "bm25"
        retriever = Retriever(
            catalog,
            LexicalIndex.load(settings.lexical_dir),
            open_store(settings, self.embedder, create=False) if dense else None,
            self.embedder if dense else None,
            mode=self.mode,
            dense_weight=self.settings.dense_weight,
            candidates=self.settings.candidates,
        )
        log.info("answering from index generation %s", generation)
        return Snapshot(generation, catalog, retriever, mention_patterns(catalog))

    @property
    def catalog(self) -> Catalog:
        return self.snapshot().catalog

    def warm(self) -> None:
        """Load the models and indexes now (a server calls this at start), not on the first
        question; the chat model is loaded too, but nothing is generated."""
        self.ask("warm up", language="en", generate=False)
        # A compiled transformer already built for this machine is switched to now (~1.5 s),
        # not on the first visitor's question; one still being built is not waited for.
        if self.mode != "bm25":
            self.embedder.wait_for_compiled(10.0, build=False)
        if self.wants_generation:
            self.load_generator()

    def load_generator(self) -> Generator | None:
        """The generator, or None when its model cannot load (remembered: a model that
        cannot load is not retried on every question)."""
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

    # --- answering -----------------------------------------------------------------------
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
        text, language = self.check_question(question, language)
        snapshot = self.snapshot()
        catalog = snapshot.catalog
        if policy is not None and policy not in catalog.policies:
            raise UnknownPolicyError(
                phrase("answer", language, "unknown_policy", policy=policy), language
            )
        turns = [as_turn(t) for t in history]
        mentioned = [pid for pid, pattern in snapshot.mentions if pattern.search(text)]
        policies: list[str] | None
        if policy:
            policies = [policy]
        elif mentioned:
            policies = mentioned
        elif turns and turns[-1].policy and turns[-1].policy in catalog.policies:
            policies = [turns[-1].policy]  # a follow-up stays on the policy it was about
        else:
            policies = None
        search_text = strip_names(text, snapshot.mentions) or text
        previous: list[str] = []
        # A question naming another company than the last answer's starts a new topic, however
        # short ("Will LaciMart give my data to the police?" after a question about Netmarks).
        changes_company = bool(mentioned) and bool(turns) and turns[-1].policy not in mentioned
        if turns and self.looks_like_follow_up(search_text) and not changes_company:
            last = turns[-1]
            earlier = [*last.topic, strip_names(last.question, snapshot.mentions)]
            previous = [t for t in earlier if t][-FOLLOW_UP_DEPTH:]

        query = Query(
            search_text,
            language,
            policies,
            previous=[(t, detect_language(t)) for t in previous],
        )
        retrieval = snapshot.retriever.search(query, k=self.settings.candidates)
        ranked = retrieval.hits
        hits = ranked[: self.settings.hits]
        variants = term_variants(search_text, language)
        support = self.support(snapshot, hits[0] if hits else None, variants)
        # The lexical baseline has no calibrated support score; it never refuses.
        # A question none of whose words any policy uses ("warm up", "refund?") is refused
        # whatever its dense similarity: nothing in the corpus speaks of it. (A follow-up
        # borrows its topic from the previous question, so it is judged on support alone.)
        unheard_of = support["unknown"] >= 1 and not previous
        refused = not hits or (
            self.mode != "bm25"
            and (support["support"] < self.settings.refusal_threshold or unheard_of)
        )
        single_policy = policies[0] if policies and len(policies) == 1 else None
        compose_started = time.perf_counter()
        asked = asked_fact(search_text) if self.mode != "bm25" else None
        # On topic is not enough when the question asks for a number, a contact or a date: "how
        # many days" is not answered by a clause that gives none. Then the policy does not
        # state it.
        unstated: AskedFact | None = None
        checked = None if refused else asked  # what the clauses were read for, if anything
        chosen: list[Hit] = []
        if not refused and single_policy:
            chosen = choose(hits)
            if asked:
                giving = [h for h in hits[:ASKED_FACT_DEPTH] if states(asked.kind, h.chunk.text)]
                if not giving:
                    unstated = asked
                else:
                    # The clause that gives it comes first ("How do I email …?": CONTACT US,
                    # not the clause listing the data collected).
                    chosen = [giving[0], *(h for h in chosen if h is not giving[0])]
        elif not refused:
            chosen = self.choose_across_policies(snapshot, ranked, variants, asked)
            unstated = None if chosen else asked
        if unstated:
            refused, chosen = True, []
        if refused:
            answer_text = render_refusal(hits, catalog, language, single_policy,
                                         unstated.kind if unstated else None)
            citations = []
        else:
            citations = [cite(h, catalog, retrieval.terms, language) for h in chosen]
            # A clause cited from further down the candidates is shown in the trace too.
            hits = hits + [h for h in chosen if h not in hits]
            # An answer about several policies groups its citations by policy (one each)
            # and names the searched policies that do not address the question.
            unaddressed = None if single_policy else [
                catalog.info(p).title for p in (policies or catalog.policies)
                if p not in {c.policy for c in citations}
            ]
            answer_text = render_answer(citations, catalog, language, unaddressed)
        timings = dict(retrieval.timings_ms)
        timings["compose"] = (time.perf_counter() - compose_started) * 1000
        timings["total"] = (time.perf_counter() - started) * 1000
        answer = Answer(
            question=question,
            language=language,
            answer=answer_text,
            refused=refused,
            policy=single_policy,
            citations=citations,
            hits=hits,
            timings_ms={k: round(v, 2) for k, v in timings.items()},
            trace={
                "retriever": self.mode,
                "search_text": search_text,
                "follow_up_of": previous,
                "policies": policies,
                "terms": retrieval.terms,
                "support": support,
                "refusal_threshold": self.settings.refusal_threshold,
                **({"asked_fact": {"kind": checked.kind, "cue": checked.cue,
                                   "stated": unstated is None}} if checked else {}),
                **self.missing_concepts(snapshot, hits[0] if hits else None, search_text,
                                        language),
            },
        )
        if refused or not citations or not generate or not self.wants_generation:
            return answer
        generator = self.load_generator()
        if generator is None:
            unavailable = {"provider": self.settings.llm, "passed": False,
                           "problems": [f"unavailable: {self._generator_error}"]}
            return answer.model_copy(update={"trace": {**answer.trace,
                                                       "generation": unavailable}})
        return generator(answer, hits, catalog, on_text)

    @property
    def wants_generation(self) -> bool:
        return self._chat_model is not None or self.settings.llm != "none"

    def choose_across_policies(
        self, snapshot: Snapshot, ranked: list[Hit], variants: list[set[str]],
        asked: AskedFact | None = None,
    ) -> list[Hit]:
        """For a question about all policies: each policy's best clause, judged on its own
        with the same calibrated support as a single-policy answer (and, when the question
        asks for a number or a contact, only if the clause gives one: then none may answer)."""
        best: dict[str, Hit] = {}
        for hit in ranked:
            best.setdefault(hit.chunk.policy, hit)
        top_score = ranked[0].score
        top_dense = max(hit.dense or 0.0 for hit in best.values())
        chosen = [
            hit
            for hit in best.values()
            if hit.score >= ALSO_CITE_FLOOR * top_score
            and self.settings.addresses(hit.dense or 0.0, top_dense)
            and self.support(snapshot, hit, variants)["support"]
            >= self.settings.refusal_threshold
            and (asked is None or states(asked.kind, hit.chunk.text))
        ]
        return chosen[:MAX_POLICIES_CITED] or ([] if asked else ranked[:1])

    @staticmethod
    def looks_like_follow_up(text: str) -> bool:
        return len(words(text)) <= FOLLOW_UP_MAX_WORDS or bool(FOLLOW_UP_CUES.search(text))

    def support(self, snapshot: Snapshot, hit: Hit | None,
                variants: list[set[str]]) -> dict[str, float]:
        """How well a clause supports an answer. Three signals, weighted by calibration on the
        gold dev set: the clause's dense similarity; the share of the question's terms it
        contains (through the lexicon across languages); and the share of the question's terms
        that no policy uses at all ("refund", "garansi": a topic the corpus lacks).
        ``variants``: each question term with its translations (``term_variants``)."""
        if hit is None:
            return {"dense": 0.0, "coverage": 0.0, "unknown": 1.0, "support": 0.0}
        clause = set(chunk_terms(hit.chunk))
        vocabulary = snapshot.retriever.lexical.vocabulary
        covered = sum(bool(v & clause) for v in variants)
        unknown = sum(not (v & vocabulary) for v in variants)
        coverage = covered / len(variants) if variants else 0.0
        unknown_share = unknown / len(variants) if variants else 0.0
        dense = hit.dense if hit.dense is not None else 0.0
        settings = self.settings
        value = dense + settings.coverage_weight * coverage - settings.unknown_weight * (
            unknown_share
        )
        return {"dense": round(dense, 4), "coverage": round(coverage, 4),
                "unknown": round(unknown_share, 4), "support": round(value, 4)}


    def missing_concepts(self, snapshot: Snapshot, hit: Hit | None, text: str,
                         language: Language) -> dict[str, list[str]]:
        """The question's words the best clause does not contain (across languages), and
        those no policy uses at all: what the support desk shows as "not matched"."""
        clause = set(chunk_terms(hit.chunk)) if hit else set()
        vocabulary = snapshot.retriever.lexical.vocabulary
        lexicon = default_lexicon()
        unmatched: list[str] = []
        unknown: list[str] = []
        for word in dict.fromkeys(words(text)):
            terms = analyse(word, language)
            if not terms or _says_nothing(word, language):
                continue  # a stop word, "what's", "how much": nothing a policy could lack
            variants = {*terms, *lexicon.translate(terms, language)}
            if not variants & clause:
                unmatched.append(word)
            if not variants & vocabulary:
                unknown.append(word)
        return {"unmatched_terms": unmatched, "unknown_terms": unknown}


#: Words that carry no topic but are no BM25 stopwords either (dropping them there would
#: change every stored clause's terms); only the support desk's "not matched" lists skip them.
TOPICLESS: dict[Language, frozenset[str]] = {
    "en": frozenset({"much", "many", "per", "really", "anything", "something", "thing",
                     "things", "stuff", "kind", "sort"}),
    "id": frozenset({"sih", "dong", "aja", "kok", "deh", "nih"}),
}


def _says_nothing(word: str, language: Language) -> bool:
    base = re.split(r"['’]", word)[0]  # "what's" → "what"
    return base in STOPWORDS[language] or word in TOPICLESS[language]


def term_variants(text: str, language: Language) -> list[set[str]]:
    """Each analysed term of the question with its lexicon translations (computed once per
    question, then matched against every clause whose support is judged)."""
    lexicon = default_lexicon()
    return [{term, *lexicon.translate([term], language)} for term in analyse(text, language)]


def as_turn(item: Turn | Answer | str) -> Turn:
    if isinstance(item, Turn):
        return item
    if isinstance(item, Answer):
        return item.as_turn()
    return Turn(question=str(item))
