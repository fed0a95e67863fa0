"""Where Klausa decides: does a clause answer the question, or does the policy not say?

Every answer / refuse / cite decision is made here, and only here:
- the **support score** of a clause (one formula, used by answers and by ``klausa eval
  --calibrate``);
- the **single-policy verdict**: the best clause answers when its support reaches the refusal
  threshold and the question's words are heard of; a question asking for a number, a contact
  or a date (``klausa.asked``) is answered only by a clause that gives one;
- the **across-policies verdict**: which policies' best clauses answer a question asked of all
  of them (also what the compare page shows);
- which clauses are **cited** (the best one and close runners-up).

The result is a ``Judgement``: the outcome (answered / not covered / not stated), the chosen
clauses, and the reason in words the support desk shows.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from klausa.asked import AskedFact, asked_fact, states
from klausa.lexical import chunk_terms
from klausa.scope import has_topic
from klausa.settings import Settings
from klausa.text import STOPWORDS, analyse, default_lexicon, words
from klausa.trace import AskedFactCheck, CandidateReading, Outcome, ReaderTrace, SupportScore, Trace
from klausa.types import Hit, Language
from klausa.ui import escape_markdown

if TYPE_CHECKING:
    from klausa.reader import Reader
    from klausa.token_states import TokenStates

#: A policy's best clause is cited for an all-policies question only above this share of the
#: best clause's fused score, within ``settings.policy_margin`` of the best policy's dense
#: similarity (or above ``settings.policy_floor``), and when its own support passes the
#: refusal threshold (tuned on the dev all-policies questions of both splits: cited-policy
#: precision 0.76 → 0.89 at recall 0.91).
ALSO_CITE_FLOOR = 0.6
MAX_POLICIES_CITED = 5
#: A question asking for a number, a contact or a date is answered when one of this many best
#: clauses gives one.
ASKED_FACT_DEPTH = 3
#: A further clause of the same policy is cited when its fused score is within this share of
#: the best one.
ALSO_CITE_RATIO = 0.92
MAX_CITATIONS = 3
#: A support this close to the threshold is a close call (the review queue puts such
#: answers before the rest).
CLOSE_CALL = 0.05

#: A further clause is cited beside the reader's best when it answers too and reads at least
#: this share of the best one's probability; retrieval's order decides which comes first.
#: (0.8 until session 15; 0.5 on the dev splits: gold first citation 0.962 → 0.972, realistic
#: unchanged; test splits unchanged; gold dev answers cite 1.29 sections on average, was 1.15.)
READER_RUNNER_UP = 0.5
#: For a question about all policies, the reader also reads this many best clauses of each
#: policy beyond the common candidates (a policy's answer may rank low overall).
READER_PER_POLICY = 2
#: A question read as a follow-up is also read alone; a clause it answers alone with at least
#: this probability answers it.
STANDS_ALONE = 0.5
#: A question about one policy is read first against its best ``READ_FIRST`` candidates; when
#: one of them answers with at least ``SURE`` the rest are not read. On the dev and test splits
#: (263 such questions) 59 % stop there with the same verdict and first citation as reading
#: all ten; 4 lose a "see also" citation from further down. The reader's time for them halves.
#: (Not for follow-ups, all-policies questions, nor questions asking for a number or contact.)
READ_FIRST = 5
SURE = 0.8

log = logging.getLogger(__name__)

ASKED_FACTS = {"number": "a number", "phone": "a phone number", "email": "an email address",
               "contact": "a phone number or email address", "date": "a date"}


def support_value(dense: float, coverage: float, unknown: float, coverage_weight: float,
                  unknown_weight: float) -> float:
    """The support formula: the clause's dense similarity, plus the share of the question's
    terms it contains, minus the share of the question's terms that no policy uses ("refund",
    "garansi": a topic the corpus lacks). The weights are calibrated on dev."""
    return dense + coverage_weight * coverage - unknown_weight * unknown


@dataclass(frozen=True)
class Question:
    """What the judge reads of a question: the words searched, their language, whether it
    borrowed its topic from earlier questions (a follow-up), and the token states the reader
    reads (the earlier questions', then its own; None: no reader input)."""

    text: str
    language: Language
    follow_up: bool = False
    states: Sequence[np.ndarray] | None = None
    #: The language ``text`` is in, when not the asker's: "Kalau Webdeskers?" restates an
    #: English question (``Scope.restated``).
    text_language: Language | None = None

    @property
    def analysed_as(self) -> Language:
        return self.text_language or self.language


@dataclass(frozen=True)
class Reading:
    """The reader's probability that a candidate clause answers the question."""

    hit: Hit
    probability: float


@dataclass(frozen=True)
class Judgement:
    outcome: Outcome
    #: The clauses to cite, best first (empty when refused).
    chosen: list[Hit]
    #: The best clause's support (what a single-policy refusal is judged on).
    support: SupportScore
    threshold: float | None
    #: The fact the clauses were read for, with whether one was stated (None: not asked, or
    #: refused before the clauses were read).
    asked: AskedFactCheck | None = None
    reason: str = ""
    unmatched_terms: list[str] = field(default_factory=list)
    unknown_terms: list[str] = field(default_factory=list)
    #: What the reader said, when it read (the candidates, best first).
    reader: ReaderTrace | None = None

    @property
    def refused(self) -> bool:
        return self.outcome != "answered"


class Judge:
    """Decides for one index generation (its vocabulary tells which words no policy uses)."""

    def __init__(self, settings: Settings, vocabulary: set[str], mode: str = "hybrid", *,
                 reader: Reader | None = None, clause_states: TokenStates | None = None,
                 policy_digests: Mapping[str, str] | None = None) -> None:
        self.settings = settings
        self.vocabulary = vocabulary
        self.mode = mode
        assert settings.refusal_threshold is not None
        self.threshold: float = settings.refusal_threshold
        #: The reader decides when there is one and the index holds the clauses' token states.
        self.reader = reader if clause_states is not None and mode != "bm25" else None
        self.clause_states = clause_states
        self.reader_threshold = (settings.reader_threshold if settings.reader_threshold
                                 is not None else reader.threshold if reader else 1.0)
        #: Indexed policies the reader was not trained on (or whose text changed since): its
        #: probabilities run lower there, so they get their own threshold.
        trained_on = self.reader.trained_on if self.reader else None
        self.unseen: set[str] = set() if trained_on is None else {
            policy for policy, digest in (policy_digests or {}).items()
            if trained_on.get(policy) != digest}
        self.unseen_threshold = self.reader.unseen_threshold if self.reader else 1.0

    def reader_threshold_of(self, policy: str) -> float:
        return self.unseen_threshold if policy in self.unseen else self.reader_threshold

    # --- the support score -------------------------------------------------------------
    def support(self, hit: Hit | None, variants: Sequence[set[str]]) -> SupportScore:
        """How well a clause supports an answer; ``variants``: each question term with its
        translations (``term_variants``)."""
        if hit is None:
            return SupportScore(unknown=1.0)
        clause = set(chunk_terms(hit.chunk))
        covered = sum(bool(v & clause) for v in variants)
        unknown = sum(not (v & self.vocabulary) for v in variants)
        coverage = covered / len(variants) if variants else 0.0
        unknown_share = unknown / len(variants) if variants else 0.0
        dense = hit.dense if hit.dense is not None else 0.0
        value = support_value(dense, coverage, unknown_share, self.settings.coverage_weight or 0.0,
                              self.settings.unknown_weight or 0.0)
        return SupportScore(dense=round(dense, 4), coverage=round(coverage, 4),
                            unknown=round(unknown_share, 4), support=round(value, 4))

    def passes(self, support: SupportScore) -> bool:
        return support.support >= self.threshold

    # --- the verdicts ------------------------------------------------------------------
    def judge(self, question: Question, ranked: list[Hit], single_policy: str | None
              ) -> Judgement:
        """The verdict on the retrieved clauses (``ranked``, best first): one policy's answer
        when ``single_policy`` is set, else each policy's best clause on its own."""
        hits = ranked[: self.settings.hits]
        variants = term_variants(question.text, question.analysed_as)
        support = self.support(hits[0] if hits else None, variants)
        unmatched, unknown = self.missing_terms(hits[0] if hits else None, question)
        # A question none of whose words any policy uses ("warm up", "refund?") is refused
        # whatever its dense similarity: nothing in the corpus speaks of it. (A follow-up
        # borrows its topic from the previous question, so it is judged on support alone.)
        unheard_of = support.unknown >= 1 and not question.follow_up
        refused = not hits or (self.mode != "bm25" and (not self.passes(support) or unheard_of))
        asked = asked_fact(question.text) if self.mode != "bm25" else None
        # A question asking for a number or contact is read in full: the clause that gives
        # it may rank below a sure answer that does not.
        read = self.read(question, ranked, single_policy, early=asked is None) if hits else None
        if read is not None:
            judgement = self._by_reading(*read, single_policy, asked, unheard_of,
                                         on_topic=self.passes(support))
            return replace(judgement, support=support, threshold=self.threshold,
                           unmatched_terms=unmatched, unknown_terms=unknown)
        checked = None
        chosen: list[Hit] = []
        if not refused and single_policy:
            chosen, checked = self._cite_one_policy(hits, asked)
        elif not refused:
            chosen = self.across_policies(ranked, variants, asked)
            checked = asked and AskedFactCheck(kind=asked.kind, cue=asked.cue,
                                               stated=bool(chosen))
        outcome: Outcome = ("not_covered" if refused else
                            "not_stated" if checked and not checked.stated else "answered")
        reason = explain(support, self.threshold, outcome, checked,
                         unheard_of=unheard_of and self.mode != "bm25")
        return Judgement(outcome, chosen if outcome == "answered" else [], support,
                         self.threshold, checked, reason=reason,
                         unmatched_terms=unmatched, unknown_terms=unknown)

    # --- the reader -----------------------------------------------------------------------
    def read(self, question: Question, ranked: list[Hit], single_policy: str | None,
             early: bool = True) -> tuple[list[Reading], float] | None:
        """The reader's probability for the best candidates (for a question about all
        policies, also each policy's best few), best first, and the milliseconds it took;
        None when it cannot read (no reader, or token states missing)."""
        if self.reader is None or self.clause_states is None or not question.states:
            return None
        candidates = ranked[: self.reader.card.depth]
        if single_policy is None:
            taken: dict[str, int] = {}
            for hit in ranked:
                taken[hit.chunk.policy] = taken.get(hit.chunk.policy, 0) + 1
                if taken[hit.chunk.policy] <= READER_PER_POLICY and hit not in candidates:
                    candidates = [*candidates, hit]
        states = [self.clause_states.of_chunk(hit.chunk.id) for hit in candidates]
        if any(s is None for s in states):
            log.warning("reader: clause token states missing from the index; judged on "
                        "similarity (re-run `klausa ingest`)")
            return None
        started = time.perf_counter()
        if (early and single_policy is not None and len(question.states) == 1
                and len(states) > READ_FIRST):
            probabilities = self.reader.read(question.states, states[:READ_FIRST])  # type: ignore[arg-type]
            if probabilities.max() >= SURE:
                candidates = candidates[:READ_FIRST]
            else:
                probabilities = np.concatenate([probabilities, self.reader.read(
                    question.states, states[READ_FIRST:])])  # type: ignore[arg-type]
        else:
            probabilities = self.reader.read(question.states, states)  # type: ignore[arg-type]
        if len(question.states) > 1 and has_topic(question.text):
            # Read as a follow-up is a guess (the same company, no topic of its own?): the
            # question is also read alone, and a clause it plainly answers alone answers
            # ("Does Webdeskers use cookies?" after a question on refunds: 0.0001 read with
            # it, 0.998 alone). Only plainly: a vague follow-up read alone ("does anything
            # break if I do it?") half-matches clauses on other topics, and one with no word
            # of its own ("and?", "why?") is not read alone at all.
            alone = self.reader.read(question.states[-1:], states)  # type: ignore[arg-type]
            probabilities = np.where(alone >= STANDS_ALONE,
                                     np.maximum(probabilities, alone), probabilities)
        readings = [Reading(hit, float(p)) for hit, p in zip(candidates, probabilities,
                                                              strict=True)]
        return (sorted(readings, key=lambda r: (-r.probability, r.hit.rank)),
                (time.perf_counter() - started) * 1000)

    def _by_reading(self, readings: list[Reading], ms: float, single_policy: str | None,
                    asked: AskedFact | None, unheard_of: bool, *, on_topic: bool) -> Judgement:
        """The verdict when the reader has read the candidates: a clause answers when its
        probability reaches the reader's threshold; the most probable answers first.

        A question asking for a number, contact or date is answered only by a clause that
        gives one: an answering clause, or — the policy on the question's topic (the support
        score passes) — one of the ``ASKED_FACT_DEPTH`` best retrieved, the reader unsure
        ("What's the email address of the privacy team?": the contact clause that gives one
        answers it, whatever its wording). None gives one: *not stated*, so the asker is told
        what is missing."""
        tau = self.reader_threshold
        answering = [] if unheard_of else [
            r for r in readings if r.probability >= self.reader_threshold_of(r.hit.chunk.policy)]
        checked = None
        if asked is not None and not unheard_of and (answering or on_topic):
            giving = [r for r in answering if states(asked.kind, r.hit.chunk.text)]
            if not giving and on_topic:
                giving = [r for r in readings if r.hit.rank <= ASKED_FACT_DEPTH
                          and states(asked.kind, r.hit.chunk.text)]
            checked = AskedFactCheck(kind=asked.kind, cue=asked.cue, stated=bool(giving))
            answering = giving
        if single_policy is not None:
            chosen = choose_read(answering)
        else:
            # Policies in the order of their most probable clause; each cites its lead.
            by_policy: dict[str, list[Reading]] = {}
            for reading in answering:
                by_policy.setdefault(reading.hit.chunk.policy, []).append(reading)
            chosen = [choose_read(readings)[0] for readings in by_policy.values()
                      ][:MAX_POLICIES_CITED]
        outcome: Outcome = ("answered" if chosen else
                            "not_stated" if checked is not None else "not_covered")
        unseen = sorted({r.hit.chunk.policy for r in readings} & self.unseen)
        trace = ReaderTrace(model=self.reader.card.name if self.reader else "", threshold=tau,
                            candidates=[CandidateReading(
                                chunk_id=r.hit.chunk.id, policy=r.hit.chunk.policy,
                                label=r.hit.chunk.label, probability=round(r.probability, 4))
                                for r in readings],
                            ms=round(ms, 2), unseen_policies=unseen,
                            unseen_threshold=self.unseen_threshold if unseen else None)
        reason = explain_reading(readings, self.reader_threshold_of, outcome, checked,
                                 unheard_of=unheard_of)
        return Judgement(outcome, chosen if outcome == "answered" else [],
                         SupportScore(), None, checked, reason=reason, reader=trace)

    def _cite_one_policy(self, hits: list[Hit], asked: AskedFact | None
                         ) -> tuple[list[Hit], AskedFactCheck | None]:
        chosen = choose(hits)
        if asked is None:
            return chosen, None
        kind, cue = asked.kind, asked.cue
        # On topic is not enough when the question asks for a number, a contact or a date:
        # "how many days" is not answered by a clause that gives none.
        giving = [h for h in hits[:ASKED_FACT_DEPTH] if states(kind, h.chunk.text)]
        if not giving:
            return [], AskedFactCheck(kind=kind, cue=cue, stated=False)
        # The clause that gives it comes first ("How do I email …?": CONTACT US, not the
        # clause listing the data collected).
        first = giving[0]
        return [first, *(h for h in chosen if h is not first)], AskedFactCheck(
            kind=kind, cue=cue, stated=True)

    def across_policies(self, ranked: list[Hit], variants: Sequence[set[str]],
                        asked: AskedFact | None = None) -> list[Hit]:
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
            and self.addresses(hit.dense or 0.0, top_dense)
            and self.passes(self.support(hit, variants))
            and (asked is None or states(asked.kind, hit.chunk.text))
        ]
        return chosen[:MAX_POLICIES_CITED] or ([] if asked else ranked[:1])

    def addresses(self, dense: float, best_dense: float) -> bool:
        """Whether a policy whose best clause has this dense similarity answers a question
        asked of every policy, the best policy's being ``best_dense``."""
        margin, floor = self.settings.policy_margin, self.settings.policy_floor
        assert margin is not None and floor is not None
        return dense >= min(best_dense - margin, floor)

    def addressing(self, traces: Mapping[str, Trace]) -> set[str]:
        """Of one question asked of each policy alone (policy → its answer's trace), the
        policies that address it: answered, and not far below the best policy's similarity
        (the compare page; the same rule as an all-policies answer)."""
        if any(t.reader is not None for t in traces.values()):
            # The reader read each policy's clauses: a policy addresses the question when its
            # answer was one.
            return {p for p, t in traces.items() if t.outcome == "answered"}
        similarity = {p: t.support.dense for p, t in traces.items()
                      if t.outcome == "answered" and t.support is not None}
        best = max(similarity.values(), default=0.0)
        return {p for p, value in similarity.items() if self.addresses(value, best)}

    # --- words ------------------------------------------------------------------------
    def missing_terms(self, hit: Hit | None, question: Question) -> tuple[list[str], list[str]]:
        """The question's words the best clause does not contain (across languages), and
        those no policy uses at all: what the support desk shows as "not matched"."""
        clause = set(chunk_terms(hit.chunk)) if hit else set()
        lexicon = default_lexicon()
        unmatched: list[str] = []
        unknown: list[str] = []
        for word in dict.fromkeys(words(question.text)):
            terms = analyse(word, question.analysed_as, informal=True)
            if not terms or _says_nothing(word, question.analysed_as):
                continue  # a stop word, "what's", "how much": nothing a policy could lack
            variants = {*terms, *lexicon.translate(terms, question.analysed_as)}
            if not variants & clause:
                unmatched.append(word)
            if not variants & self.vocabulary:
                unknown.append(word)
        return unmatched, unknown


def choose(hits: list[Hit]) -> list[Hit]:
    """The best clause, and close runners-up from other sections of the same policy."""
    if not hits:
        return []
    best = hits[0]
    chosen = [best]
    for hit in hits[1:]:
        if len(chosen) >= MAX_CITATIONS or hit.score < best.score * ALSO_CITE_RATIO:
            break
        if (hit.chunk.policy, hit.chunk.label) not in {(h.chunk.policy, h.chunk.label)
                                                       for h in chosen}:
            chosen.append(hit)
    return chosen


def choose_read(answering: list[Reading]) -> list[Hit]:
    """The clauses that answer about as surely as the most probable one (at least
    ``READER_RUNNER_UP`` of its probability), one a section, in retrieval's order: near the
    top the reader's probabilities saturate, and retrieval's order breaks the tie (on the dev
    splits: gold first citation 0.96 either way, realistic 18 → 19 of 19)."""
    if not answering:
        return []
    top = answering[0].probability * READER_RUNNER_UP
    chosen: list[Hit] = []
    for reading in sorted((r for r in answering if r.probability >= top),
                          key=lambda r: r.hit.rank):
        if len(chosen) >= MAX_CITATIONS:
            break
        if (reading.hit.chunk.policy, reading.hit.chunk.label) not in {
                (h.chunk.policy, h.chunk.label) for h in chosen}:
            chosen.append(reading.hit)
    return chosen


def explain_reading(readings: list[Reading], threshold_of: Callable[[str], float],
                    outcome: Outcome, asked: AskedFactCheck | None, *,
                    unheard_of: bool = False) -> str:
    """The reader's decision in sentences a reviewer reads (Markdown); ``threshold_of``: the
    reader's threshold for a policy."""
    if unheard_of:
        return explain(None, None, outcome, None, unheard_of=True)
    best = readings[0] if readings else None
    if best is None:
        return "Nothing was retrieved to read."
    where = f"§{escape_markdown(best.hit.chunk.label)} ({best.hit.chunk.policy})"
    above = sum(r.probability >= threshold_of(r.hit.chunk.policy) for r in readings)
    threshold = threshold_of(best.hit.chunk.policy)
    if best.probability >= threshold:
        # .2g: a policy the reader was not trained on has a threshold of a few thousandths.
        sentence = (f"**The reader gives {where} {best.probability:.2g}** that it answers "
                    f"(threshold {threshold:.2g}; {above} of the {len(readings)} candidates "
                    "read reach it)")
        sentence += ", so Klausa answered." if outcome == "answered" else "."
    else:
        sentence = (f"**No candidate reaches the reader's threshold {threshold:.2g}**: the "
                    f"best, {where}, reads {best.probability:.2g}, so Klausa said the policy "
                    "does not say.")
    sentences = [sentence]
    if asked is not None:
        sentences.append(explain_asked(asked))
    return " ".join(sentences)


def explain(support: SupportScore | None, threshold: float | None, outcome: Outcome | None,
            asked: AskedFactCheck | None, *, unheard_of: bool = False) -> str:
    """The decision in sentences a reviewer reads (Markdown)."""
    if unheard_of:
        return ("**No policy uses any of the question's words**, so Klausa said the policy "
                "does not say, whatever the similarity.")
    sentences = []
    if support is not None and threshold is not None:
        gap = support.support - threshold
        decided = {"answered": "answered", "not_stated": "read the clauses for the fact asked"
                   }.get(outcome or "", "said the policy does not say")
        close = f" — within {CLOSE_CALL} of it, a close call" if abs(gap) <= CLOSE_CALL else ""
        sentences.append(
            f"**Support {support.support:.3f}** (dense similarity {support.dense:.3f}, "
            f"{support.coverage:.0%} of the question's words in the clause, "
            f"{support.unknown:.0%} used by no policy) is **{abs(gap):.3f} "
            f"{'above' if gap >= 0 else 'below'} the refusal threshold {threshold:.3f}**"
            f"{close}, so Klausa {decided}.")
    if asked is not None:
        sentences.append(explain_asked(asked))
    return " ".join(sentences)


def explain_asked(asked: AskedFactCheck) -> str:
    what = ASKED_FACTS.get(asked.kind, "a fact")
    return f"The question asks for {what} (“{escape_markdown(asked.cue)}”); " + (
        "a clause Klausa would cite gives one." if asked.stated else
        "**no clause Klausa would cite gives one**, so it said the policy does not state it.")


#: Words that carry no topic but are no BM25 stopwords either (dropping them there would
#: change every stored clause's terms); only the "not matched" lists skip them.
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
    return [{term, *lexicon.translate([term], language)}
            for term in analyse(text, language, informal=True)]
