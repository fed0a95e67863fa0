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

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from klausa.asked import AskedFact, asked_fact, states
from klausa.lexical import chunk_terms
from klausa.settings import Settings
from klausa.text import STOPWORDS, analyse, default_lexicon, words
from klausa.trace import AskedFactCheck, Outcome, SupportScore, Trace
from klausa.types import Hit, Language
from klausa.ui import escape_markdown

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
    """What the judge reads of a question: the words searched, their language, and whether
    it borrowed its topic from earlier questions (a follow-up)."""

    text: str
    language: Language
    follow_up: bool = False


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

    @property
    def refused(self) -> bool:
        return self.outcome != "answered"


class Judge:
    """Decides for one index generation (its vocabulary tells which words no policy uses)."""

    def __init__(self, settings: Settings, vocabulary: set[str], mode: str = "hybrid") -> None:
        self.settings = settings
        self.vocabulary = vocabulary
        self.mode = mode
        assert settings.refusal_threshold is not None
        self.threshold: float = settings.refusal_threshold

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
        variants = term_variants(question.text, question.language)
        support = self.support(hits[0] if hits else None, variants)
        unmatched, unknown = self.missing_terms(hits[0] if hits else None, question)
        # A question none of whose words any policy uses ("warm up", "refund?") is refused
        # whatever its dense similarity: nothing in the corpus speaks of it. (A follow-up
        # borrows its topic from the previous question, so it is judged on support alone.)
        unheard_of = support.unknown >= 1 and not question.follow_up
        refused = not hits or (self.mode != "bm25" and (not self.passes(support) or unheard_of))
        asked = asked_fact(question.text) if self.mode != "bm25" else None
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
            terms = analyse(word, question.language)
            if not terms or _says_nothing(word, question.language):
                continue  # a stop word, "what's", "how much": nothing a policy could lack
            variants = {*terms, *lexicon.translate(terms, question.language)}
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
        what = ASKED_FACTS.get(asked.kind, "a fact")
        sentences.append(
            f"The question asks for {what} (“{escape_markdown(asked.cue)}”); " + (
                "a clause Klausa would cite gives one." if asked.stated else
                "**no clause Klausa would cite gives one**, so it said the policy does not "
                "state it."))
    return " ".join(sentences)


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
    return [{term, *lexicon.translate([term], language)} for term in analyse(text, language)]
