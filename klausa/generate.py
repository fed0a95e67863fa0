"""Generative answers that keep Klausa's promise: the model quotes a retrieved clause, then
answers; every quote, label and yes/no is checked against the clauses before it is shown, and
a generation that fails a check falls back to the extractive answer (the reason is traced)."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cache

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from langchain_core.prompts import ChatPromptTemplate

from klausa.catalog import Catalog
from klausa.compose import collapse, render_answer, section_name
from klausa.prompts import phrases
from klausa.text import (
    LANGUAGES,
    NEGATIONS,
    TOKEN,
    analyse,
    default_lexicon,
    detect_language,
    normalise,
    words,
)
from klausa.trace import GenerationTrace
from klausa.types import Answer, Chunk, Citation, Hit, Language

log = logging.getLogger(__name__)

#: A quote shorter than this many words proves nothing ("we", "your data").
MIN_QUOTE_WORDS = 3
#: Share of the answer's content words that must come from the quoted words (directly, through
#: the bilingual lexicon, or as a policy's name). Calibrated on the bundled model's replies to
#: the dev questions, judged by hand (``tests/qa/generations.dev.jsonl``): at 0.70, 31 of 87
#: are accepted, 28 of them faithful (of 34 faithful); 0.75 accepts the same 3 unfaithful
#: replies and 5 fewer faithful ones; 0.65 lets 2 more unfaithful ones through.
MIN_SUPPORTED_SHARE = 0.70
ELLIPSIS = re.compile(r"\.\.\.|…")
#: A citation: ``[1]``, ``[§C.1.8]``, ``[C.1.8]`` (not "[your name]" quoted from a clause).
REFERENCE = re.compile(r"\[\s*(\d{1,2}|§\s*[^\[\]\n]{1,60}?|[^\s\[\]]{1,20})\s*\]")


@dataclass
class Source:
    """A clause given to the model, by its number in the prompt."""

    number: int
    chunk: Chunk
    policy_title: str


@dataclass
class Draft:
    """What the model wrote, parsed."""

    quotes: list[tuple[str, str]] = field(default_factory=list)  # (reference, quoted words)
    answer: str = ""
    references: list[str] = field(default_factory=list)  # every [n] / [§label] it cited


@dataclass
class Verdict:
    problems: list[str]
    #: (source number, start, end) of each verified quote inside its clause.
    spans: list[tuple[int, int, int]]
    #: Share of the answer's content words the quotes carry (None: nothing to measure).
    supported: float | None = None

    @property
    def passed(self) -> bool:
        return not self.problems


@cache
def templates(language: Language) -> tuple[ChatPromptTemplate, dict[str, object]]:
    prompt = phrases("llm", language)
    template = ChatPromptTemplate.from_messages([
        ("system", str(prompt["system"])),
        # A worked exchange as an earlier turn: it shows the format without being quoted.
        ("human", str(prompt["example_human"])),
        ("ai", str(prompt["example_ai"])),
        ("human", str(prompt["human"])),
    ])
    return template, prompt


def choose_sources(answer: Answer, hits: Iterable[Hit], catalog: Catalog, limit: int
                   ) -> list[Source]:
    """The extractive answer's cited clauses first, then the next best distinct sections."""
    by_id = {h.chunk.id: h.chunk for h in hits}
    chunks: list[Chunk] = [by_id[c.chunk_id] for c in answer.citations if c.chunk_id in by_id]
    seen = {(c.policy, c.label) for c in chunks}
    for chunk in by_id.values():
        if len(chunks) >= limit:
            break
        if (chunk.policy, chunk.label) not in seen:
            seen.add((chunk.policy, chunk.label))
            chunks.append(chunk)
    return [Source(n, chunk, catalog.info(chunk.policy).title)
            for n, chunk in enumerate(chunks[:limit], start=1)]


def build_messages(question: str, language: Language, sources: list[Source]
                   ) -> list[BaseMessage]:
    template, prompt = templates(language)
    listed = "\n\n".join(
        str(prompt["source"]).format(
            number=s.number, policy=s.policy_title,
            section=section_name(s.chunk.label, s.chunk.section_title),
            text=collapse(s.chunk.text),
        )
        for s in sources
    )
    return template.format_messages(sources=listed, question=question)


@cache
def _tag_pattern(key: str) -> re.Pattern[str]:
    """A line tag (QUOTE / KUTIPAN …) of either language: a model may answer in the other."""
    tags = sorted({str(phrases("llm", lang)[key]) for lang in LANGUAGES}, key=len, reverse=True)
    return re.compile(rf"^\W*({'|'.join(map(re.escape, tags))})\b\W*", re.I | re.M)


def parse(text: str) -> Draft:
    draft = Draft()
    quote_tag, answer_tag = _tag_pattern("quote_tag"), _tag_pattern("answer_tag")
    answer_at = answer_tag.search(text)
    head = text[: answer_at.start()] if answer_at else text
    for match in quote_tag.finditer(head):
        line_end = head.find("\n", match.end())
        line = head[match.start() : line_end if line_end >= 0 else len(head)]
        reference = REFERENCE.search(line)
        quoted = re.search(r"[\"“”„«](.+)[\"“”»]", line)
        body = quoted.group(1) if quoted else line[match.end() - match.start():]
        if reference and not quoted:
            body = body.replace(reference.group(0), " ")
        body = body.strip().strip(":").strip().strip("\"“”'")
        draft.quotes.append((reference.group(1) if reference else "", body))
    if answer_at:
        draft.answer = text[answer_at.end() :].strip()
    draft.references = [r for r, _ in draft.quotes if r] + [
        m.group(1).strip() for m in REFERENCE.finditer(draft.answer)
    ]
    return draft


def resolve(reference: str, sources: list[Source]) -> Source | None:
    """``1`` or ``§C.1.8`` / ``C.1.8`` → the source it names, if it was given."""
    reference = reference.strip().lstrip("§").strip()
    if reference.isdigit():
        number = int(reference)
        return next((s for s in sources if s.number == number), None)
    return next((s for s in sources if s.chunk.label.lower() == reference.lower()), None)


def quote_pattern(quote: str) -> re.Pattern[str] | None:
    """The quote's words in order, anything but letters and digits between them: whitespace,
    line breaks and typographic quotes of the clause do not matter, the words do."""
    tokens = TOKEN.findall(normalise(quote))
    if not tokens:
        return None
    parts = [re.escape(t).replace("'", "['’]") for t in tokens]
    return re.compile(r"(?<![^\W_])" + r"[\W_]+".join(parts) + r"(?![^\W_])", re.I)


def find_quote(quote: str, sources: list[Source], preferred: Source | None
               ) -> tuple[Source, int, int] | None:
    """Where ``quote`` occurs verbatim; each piece around an ellipsis must occur, in order."""
    pieces = [p for p in ELLIPSIS.split(quote) if words(p)]
    candidates = [preferred] if preferred else sources
    for source in candidates:
        text, position, first = source.chunk.text, 0, None
        for piece in pieces:
            pattern = quote_pattern(piece)
            found = pattern.search(text, position) if pattern else None
            if found is None:
                break
            first = first or found
            position = found.end()
        else:
            if first is not None:
                # The sentence's own closing punctuation belongs to the quote.
                if text[position : position + 1] in (".", "!", "?"):
                    position += 1
                return source, first.start(), position
    return None


def polarity(answer: str, language: Language) -> str | None:
    """``yes``/``no`` when the answer opens with one (in either language), else None."""
    opening = words(answer[:40])[:1]
    if not opening:
        return None
    for lang in (language, *LANGUAGES):
        prompt = phrases("llm", lang)
        if opening[0] in prompt["yes_words"]:  # type: ignore[operator]
            return "yes"
        if opening[0] in prompt["no_words"]:  # type: ignore[operator]
            return "no"
    return None


#: "including but not limited to" / "termasuk namun tidak terbatas pada" negate nothing.
NOT_A_NEGATION = re.compile(
    r"\b(?:but\s+)?not\s+limited\s+to\b|\b(?:namun\s+|tetapi\s+)?tidak\s+terbatas\s+pada\b",
    re.I,
)


def negated(text: str) -> bool:
    # "non" is the prefix of "non-personal information" (split off as its own word).
    tokens = words(NOT_A_NEGATION.sub(" ", normalise(text)))
    negations = NEGATIONS["en"] | NEGATIONS["id"] | {"tak", "non"}
    return any(t in negations or t.endswith("n't") for t in tokens)


def verify(draft: Draft, sources: list[Source], question: str, language: Language) -> Verdict:
    """Every check a generated answer must pass before an asker sees it."""
    problems: list[str] = []
    spans: list[tuple[int, int, int]] = []
    if not draft.quotes:
        problems.append("format: no quote")
    if not draft.answer:
        problems.append("format: no answer")
    for reference in draft.references:
        if resolve(reference, sources) is None:
            problems.append(f"foreign label: [{reference}] was not retrieved")
    quoted_words: list[str] = []
    share: float | None = None
    for reference, quote in draft.quotes:
        if len(words(quote)) < MIN_QUOTE_WORDS:
            problems.append(f"quote too short: {quote!r}")
            continue
        preferred = resolve(reference, sources) if reference else None
        found = find_quote(quote, sources, preferred) or find_quote(quote, sources, None)
        if found is None:
            problems.append(f"quote not in the clauses: {quote[:120]!r}")
            continue
        source, start, end = found
        spans.append((source.number, start, end))
        quoted_words.append(source.chunk.text[start:end])
    if draft.answer and quoted_words and not negated(question):
        # A "yes" that the quoted words deny ("We will not sell …" → "Yes, it sells"), or a
        # "no" that nothing quoted denies (the prompt asks for "No" only over a "not").
        stance, denied = polarity(draft.answer, language), any(map(negated, quoted_words))
        if stance == "yes" and denied:
            problems.append("negation: the answer says yes, the quoted clause says not")
        if stance == "no" and not denied:
            problems.append("negation: the answer says no, the quoted clause denies nothing")
    if draft.answer:
        answer_text = REFERENCE.sub(" ", draft.answer)
        if len(words(answer_text)) >= 4 and detect_language(answer_text) != language:
            problems.append(f"language: the answer is not in {language}")
        if quoted_words:
            names = " ".join(f"{s.policy_title} {s.chunk.policy}" for s in sources)
            share, unsupported = supported_share(answer_text, quoted_words, language, names)
            if share < MIN_SUPPORTED_SHARE:
                problems.append(f"unsupported: {share:.2f} of the answer's words are in the "
                                f"quote (missing: {', '.join(unsupported[:8])})")
    return Verdict(problems, spans, share)


def supported_share(answer: str, quotes: list[str], language: Language, names: str
                    ) -> tuple[float, list[str]]:
    """How much of the answer the quoted words carry: the share of its content words found in
    the quotes (in either language, through the lexicon), and the words that are not."""
    lexicon = default_lexicon()
    allowed = set(analyse(names, language)) | set(framing_words(language))
    allowed |= NEGATIONS[language]
    for quote in quotes:
        for clause_language in LANGUAGES:
            terms = analyse(quote, clause_language)
            allowed |= set(terms)
            if clause_language != language:
                variants, _ = lexicon.expand(terms, clause_language)
                allowed |= set(lexicon.translate(terms, clause_language)) | set(variants)
            else:
                allowed |= set(lexicon.expand(terms, clause_language)[1])
    terms = analyse(answer, language)
    unsupported = [t for t in terms if t not in allowed]
    return (1 - len(unsupported) / len(terms) if terms else 1.0), unsupported


@cache
def framing_words(language: Language) -> tuple[str, ...]:
    """Words that frame an answer ("the policy says") rather than claim anything."""
    return tuple(analyse(" ".join(phrases("llm", language)["framing_words"]), language))


def render(draft: Draft, verdict: Verdict, sources: list[Source], catalog: Catalog,
           language: Language) -> tuple[str, list[Citation]]:
    """The verified answer: the model's sentence with its references as section labels,
    then the quoted words as citation cards (the same cards as an extractive answer)."""
    citations: list[Citation] = []
    for number, start, end in verdict.spans:
        source = next(s for s in sources if s.number == number)
        if any(c.chunk_id == source.chunk.id for c in citations):
            continue
        chunk = source.chunk
        citations.append(Citation(
            chunk_id=chunk.id, policy=chunk.policy, policy_title=source.policy_title,
            label=chunk.label, title=chunk.section_title or chunk.label, text=chunk.text,
            quote=chunk.text[start:end], quote_start=start, quote_end=end,
            source_start=chunk.start + start, source_end=chunk.start + end,
            language=chunk.language,
        ))

    def label_of(match: re.Match[str]) -> str:
        source = resolve(match.group(1), sources)
        return f"(§{source.chunk.label})" if source else match.group(0)

    sentence = collapse(REFERENCE.sub(label_of, draft.answer))
    return f"{sentence}\n\n{render_answer(citations, catalog, language)}", citations


class AnswerStream:
    """Passes on only the answer part of a streaming generation (after ``ANSWER:``), so the
    asker reads the answer forming while the quote is still being written and checked."""

    def __init__(self, on_text: Callable[[str], None]) -> None:
        self.on_text = on_text
        self.text = ""
        self.sent = 0
        self.pattern = _tag_pattern("answer_tag")

    def feed(self, token: str) -> None:
        self.text += token
        found = self.pattern.search(self.text)
        if found:
            start = max(self.sent, found.end())
            if len(self.text) > start:
                self.on_text(self.text[start:])
                self.sent = len(self.text)


class Generator:
    """Writes the generated answer for an extractive one, or says why it could not."""

    def __init__(self, model: BaseChatModel, provider: str, sources: int = 3) -> None:
        self.model = model
        self.provider = provider
        self.sources = sources
        # llama.cpp contexts are not thread-safe: one generation at a time per process.
        self._lock = threading.Lock()

    def __call__(self, answer: Answer, hits: list[Hit], catalog: Catalog,
                 on_text: Callable[[str], None] | None = None) -> Answer:
        sources = choose_sources(answer, hits, catalog, self.sources)
        messages = build_messages(answer.question, answer.language, sources)
        started = time.perf_counter()
        stream = AnswerStream(on_text) if on_text else None
        raw = ""
        error = None
        try:
            with self._lock:
                for chunk in self.model.stream(messages):
                    token = chunk.text if isinstance(chunk.text, str) else str(chunk.content)
                    raw += token
                    if stream:
                        stream.feed(token)
        except Exception as failure:  # a server down or a model crash: keep the extractive one
            log.warning("generation failed (%s): %s", self.provider, failure)
            error = f"error: {type(failure).__name__}: {failure}"
        elapsed = (time.perf_counter() - started) * 1000
        draft = parse(raw)
        verdict = (Verdict([error], []) if error
                   else verify(draft, sources, answer.question, answer.language))
        trace = GenerationTrace(
            provider=self.provider,
            passed=verdict.passed,
            problems=verdict.problems,
            supported_share=None if verdict.supported is None else round(verdict.supported, 3),
            raw=raw,
            sources=[f"{s.chunk.policy}:{s.chunk.label}" for s in sources],
            ms=round(elapsed, 1),
        )
        timings = {**answer.timings_ms, "generate": round(elapsed, 2),
                   "total": round(answer.timings_ms.get("total", 0.0) + elapsed, 2)}
        update: dict[str, object] = {
            "timings_ms": timings,
            "trace": answer.trace.model_copy(update={"generation": trace})}
        if verdict.passed:
            text, citations = render(draft, verdict, sources, catalog, answer.language)
            update |= {"answer": text, "citations": citations}
        else:
            log.info("generated answer rejected, extractive answer kept: %s", verdict.problems)
        return answer.model_copy(update=update)
