"""A judgement → a cited answer in the asker's language (extractive: quotes, never invents).

What to cite or whether to refuse is decided by ``klausa.judge``; this module only renders."""

from __future__ import annotations

import re
from dataclasses import dataclass

from klausa.asked import FactKind
from klausa.catalog import Catalog
from klausa.judge import Judgement
from klausa.prompts import phrase
from klausa.text import analyse, default_lexicon, sentence_spans
from klausa.types import Chunk, Citation, Hit, Language, Version

#: Clauses up to this long are quoted whole; longer ones by their best sentences.
QUOTE_WHOLE_CHARS = 320


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


#: A list is quoted whole up to this long; a longer one up to the last item that fits (the
#: asker reads the rest in the clause shown under the answer).
LIST_QUOTE_CHARS = 1200


def list_quote_end(text: str, limit: int = LIST_QUOTE_CHARS) -> int:
    """Where the quote of a list ends: its end, or the end of the last whole item within
    ``limit`` (at least the lead-in and its first item)."""
    if len(text) <= limit:
        return len(text)
    ends = [m.start() for m in re.finditer(r"\n", text)] + [len(text)]
    fitting = [e for e in ends if e <= limit]
    return fitting[-1] if len(fitting) >= 2 else ends[min(1, len(ends) - 1)]


def cite(hit: Hit, catalog: Catalog, question_terms: list[str], language: Language) -> Citation:
    """The clause quoted in the asker's language when the policy has a version in it (with
    the policy's own clause as ``original``), else as the policy has it."""
    chunk = hit.chunk
    version = catalog.version(chunk.policy, language)
    original = quote(chunk, None, catalog, question_terms, language)
    if version is None:
        return original
    return quote(chunk, version, catalog, question_terms, language).model_copy(
        update={"original": original})


def quote(chunk: Chunk, version: Version | None, catalog: Catalog, question_terms: list[str],
          language: Language) -> Citation:
    """``chunk``'s clause (or its twin in ``version``) quoted: the sentences that carry the
    answer, or — a list's lead-in, which says nothing alone — the list it introduces."""
    policy = catalog.policies[chunk.policy]
    source = version.source_text if version else policy.source_text
    text_language = version.info.language if version else chunk.language
    span = catalog.list_span(chunk, version)
    if span is not None:
        text = source[span[0] : span[1]].rstrip()
        origin, start, end = span[0], 0, list_quote_end(text)
    else:
        origin, clause_end = version.clauses[chunk.id] if version else (chunk.start, chunk.end)
        text = source[origin:clause_end]
        start, end = supporting_span(
            text, text_language, terms_in(text_language, question_terms, language))
    return Citation(
        chunk_id=chunk.id,
        policy=chunk.policy,
        policy_title=catalog.policy_title(chunk.policy, text_language),
        label=chunk.label,
        title=catalog.section_title(chunk.policy, chunk.label, text_language),
        text=text,
        quote=text[start:end],
        quote_start=start,
        quote_end=end,
        source_start=origin + start,
        source_end=origin + end,
        language=text_language,
        list_continues=span is not None and end < len(text),
        provided_by=version.info.provided_by if version else "company",
    )


#: How many of the best hits a refusal names as the nearest sections.
NEAREST_ON_REFUSAL = 3


@dataclass(frozen=True)
class Composed:
    text: str
    citations: list[Citation]
    #: The hits shown in the trace: the candidates, and any clause cited from further down.
    hits: list[Hit]


def compose(judgement: Judgement, hits: list[Hit], catalog: Catalog, terms: list[str],
            language: Language, policies: list[str] | None) -> Composed:
    """The answer as the asker reads it: the refusal with the nearest sections, or the cited
    clauses quoted (an answer about several policies: one part per policy, then the searched
    policies that do not address the question)."""
    single_policy = policies[0] if policies and len(policies) == 1 else None
    if judgement.refused:
        unstated = judgement.asked.kind if judgement.outcome == "not_stated" and (
            judgement.asked) else None
        return Composed(render_refusal(hits, catalog, language, single_policy, unstated), [],
                        hits)
    citations = [cite(h, catalog, terms, language) for h in judgement.chosen]
    unaddressed = None if single_policy else [
        catalog.info(p).title for p in (policies or catalog.policies)
        if p not in {c.policy for c in citations}
    ]
    return Composed(render_answer(citations, catalog, language, unaddressed), citations,
                    hits + [h for h in judgement.chosen if h not in hits])


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
        if citation.provided_by == "klausa":
            parts.append(phrase("answer", language, "quoted_translation"))
        elif citation.language != language:
            parts.append(phrase("answer", language, "quoted_other_language"))
        parts.extend(quote_lines(citation.quote))
        if citation.list_continues:
            parts.append(phrase("answer", language, "list_continues"))
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
        lines = [phrase("answer", language, key,
                        policy=catalog.policy_title(policy, language))]
    else:
        lines = [phrase("answer", language, f"{key}_all")]
    nearest = nearest_sections(hits)
    if nearest:
        lines.append(phrase("answer", language, "nearest"))
        for hit in nearest:
            policy, label = hit.chunk.policy, hit.chunk.label
            title = catalog.section_title(policy, label, language)
            lines.append(f"- {catalog.policy_title(policy, language)} "
                         f"{section_name(label, title)}")
    return "\n".join(lines)


def quote_lines(quote: str) -> list[str]:
    """A quote as blockquote lines: one line, or a list's lead-in and each item on its own."""
    lines = [collapse(line) for line in quote.splitlines() if line.strip()] or [""]
    # In turn, not as one tuple assignment: a one-line quote is both first and last line.
    lines[0] = f"“{lines[0]}"
    lines[-1] = f"{lines[-1]}”"
    return [f"> {line}" for line in lines]


def section_name(label: str, title: str) -> str:
    """``§C.1.8 (Disclosure …)``, or just ``§GOVERNING LAW`` when the label is the title."""
    return f"§{label}" if not title or title == label else f"§{label} ({title})"


def collapse(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()
