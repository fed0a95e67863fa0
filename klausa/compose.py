"""Ranked clauses → a cited answer in the asker's language (extractive: quotes, never invents)."""

from __future__ import annotations

import re

from klausa.asked import FactKind
from klausa.catalog import Catalog
from klausa.prompts import phrase
from klausa.text import analyse, default_lexicon, sentence_spans
from klausa.types import Citation, Hit, Language

#: Clauses up to this long are quoted whole; longer ones by their best sentences.
QUOTE_WHOLE_CHARS = 320
#: A further clause is cited when its fused score is within this share of the best one.
ALSO_CITE_RATIO = 0.92
MAX_CITATIONS = 3


def supporting_span(text: str, language: Language, terms: set[str]) -> tuple[int, int]:
    """Offsets in ``text`` of the words that carry the answer: the sentence(s) sharing most
    terms with the question, or the whole clause when it is short."""
    if len(text) <= QUOTE_WHOLE_CHARS:
        return 0, len(text.rstrip())
    spans = sentence_spans(text)
    if not spans:
        return 0, len(text)

    def overlap(span: tuple[int, int]) -> int:
        return len(terms & set(analyse(text[span[0] : span[1]], language)))

    best = max(range(len(spans)), key=lambda i: (overlap(spans[i]), -i))
    start, end = spans[best]
    # A very short sentence ("We will not sell it.") reads better with its neighbour.
    if end - start < 80 and best + 1 < len(spans):
        end = spans[best + 1][1]
    return start, end


def terms_in(
    language: Language, question_terms: list[str], question_language: Language
) -> set[str]:
    """The question's terms as they appear in a clause of ``language``."""
    if language == question_language:
        return set(question_terms)
    return set(question_terms) | set(default_lexicon().translate(question_terms, question_language))


def cite(hit: Hit, catalog: Catalog, question_terms: list[str], language: Language) -> Citation:
    chunk = hit.chunk
    info = catalog.info(chunk.policy)
    start, end = supporting_span(
        chunk.text, chunk.language, terms_in(chunk.language, question_terms, language)
    )
    return Citation(
        chunk_id=chunk.id,
        policy=chunk.policy,
        policy_title=info.title,
        label=chunk.label,
        title=chunk.section_title or chunk.label,
        text=chunk.text,
        quote=chunk.text[start:end],
        quote_start=start,
        quote_end=end,
        source_start=chunk.start + start,
        source_end=chunk.start + end,
        language=chunk.language,
    )


#: How many of the best hits a refusal names as the nearest sections.
NEAREST_ON_REFUSAL = 3


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


def render_answer(citations: list[Citation], catalog: Catalog, language: Language,
                  unaddressed: list[str] | None = None) -> str:
    """The cited clauses, quoted. ``unaddressed`` (an answer about all policies): the titles of
    the policies none of whose clauses answers; each cited policy then gets its own part."""
    parts: list[str] = []
    prevailing_noted = False
    for number, citation in enumerate(citations):
        key = "lead_policy" if unaddressed is not None else "lead" if number == 0 else (
            "lead_more")
        parts.append(phrase("answer", language, key, policy=citation.policy_title,
                            section=section_name(citation.label, citation.title)))
        if citation.language != language:
            parts.append(phrase("answer", language, "quoted_other_language"))
        parts.append(f"> “{collapse(citation.quote)}”")
        parts.append("")
        info = catalog.info(citation.policy)
        if citation.language == "en" and info.prevailing_language == "id":
            prevailing_noted = True
    if prevailing_noted:
        parts.append(phrase("answer", language, "prevails"))
    if unaddressed:
        parts.append(phrase("answer", language, "not_addressed", policies=", ".join(unaddressed)))
    return "\n".join(parts).strip()


def nearest_sections(hits: list[Hit]) -> list[Hit]:
    """What a refusal points to: the best few hits, one per section, best first (the answer
    names them; the chat opens each to its text)."""
    unique: dict[tuple[str, str], Hit] = {}
    for hit in hits[:NEAREST_ON_REFUSAL]:
        unique.setdefault((hit.chunk.policy, hit.chunk.label), hit)
    return sorted(unique.values(), key=lambda h: h.rank)


def render_refusal(
    hits: list[Hit], catalog: Catalog, language: Language, policy: str | None,
    unstated: FactKind | None = None,
) -> str:
    """"Not covered", or with ``unstated`` "does not give a number (a phone number, an email
    address, a date) for this", then the nearest sections."""
    key = f"not_stated_{unstated}" if unstated else "not_covered"
    if policy:
        lines = [phrase("answer", language, key, policy=catalog.info(policy).title)]
    else:
        lines = [phrase("answer", language, f"{key}_all")]
    nearest = nearest_sections(hits)
    if nearest:
        lines.append(phrase("answer", language, "nearest"))
        for hit in nearest:
            lines.append(
                f"- {catalog.info(hit.chunk.policy).title} §{hit.chunk.label} "
                f"({hit.chunk.section_title or hit.chunk.label})"
            )
    return "\n".join(lines)


def section_name(label: str, title: str) -> str:
    """``§C.1.8 (Disclosure …)``, or just ``§GOVERNING LAW`` when the label is the title."""
    return f"§{label}" if not title or title == label else f"§{label} ({title})"


def collapse(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()
