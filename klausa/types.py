"""Typed data passed between the stages: parse → chunk → index → retrieve → compose."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from klausa.trace import Trace

Language = Literal["en", "id"]
#: Who wrote a policy's text: the company, or Klausa (a translation provided with it).
ProvidedBy = Literal["company", "klausa"]


class VersionInfo(BaseModel):
    """A policy's text in another language, as the manifest lists it (``[[policy.versions]]``)."""

    language: Language
    source: str
    #: "company": the company publishes this text too; "klausa": a translation written for
    #: Klausa and reviewed against the original (never presented as the company's words).
    provided_by: ProvidedBy = "klausa"
    title: str | None = None


class PolicyInfo(BaseModel):
    """One policy as described by a corpus manifest."""

    id: str
    title: str
    company: str
    language: Language
    source: str
    effective_date: str | None = None
    prevailing_language: Language | None = None
    aliases: list[str] = Field(default_factory=list)
    #: The same policy in the other language, aligned section by section with ``source``.
    versions: list[VersionInfo] = Field(default_factory=list)

    def version_info(self, language: Language) -> VersionInfo | None:
        return next((v for v in self.versions if v.language == language), None)


class Section(BaseModel):
    """A node of a policy's section tree, labelled with the document's own numbering."""

    label: str
    title: str
    level: int
    parent: str | None
    title_path: list[str]
    #: Character span of the whole section (heading, own text and sub-sections) in the source.
    start: int
    end: int
    #: From the first to the last of the section's own clauses (sub-sections may lie between).
    text_start: int
    text_end: int
    #: The section's own clauses, without its sub-sections, separated by blank lines.
    text: str


class Chunk(BaseModel):
    """One clause: the unit that is embedded, searched, cited and quoted."""

    id: str
    policy: str
    language: Language
    label: str
    section_title: str
    title_path: list[str]
    text: str
    #: Offsets into the source text: ``source[start:end] == text``.
    start: int
    end: int
    #: Lead-in sentence of the parent list ("…in the following cases:"), for search only.
    context: str = ""
    ordinal: int = 0
    #: A machine translation of ``context`` + ``text`` and of the title path (Indonesian
    #: clauses only, ``klausa.glosses``): searched beside the clause, never cited.
    gloss: str = ""
    gloss_title: str = ""


class Version(BaseModel):
    """A policy's text in another language, aligned with the original by ``ingest.align``:
    every section and clause of the original has its twin here, found by the original's
    label and chunk id."""

    info: VersionInfo
    source_text: str
    #: sha256 of the version's file: what "stale" compares.
    digest: str
    #: Original section label → (label, title, start, end) of its twin in ``source_text``.
    sections: dict[str, tuple[str, str, int, int]]
    #: Original chunk id → (start, end) of its clause's twin (a clause split into several
    #: chunks for search maps each part to the whole twin clause).
    clauses: dict[str, tuple[int, int]]


class ParsedPolicy(BaseModel):
    info: PolicyInfo
    sections: list[Section]
    chunks: list[Chunk]
    #: The text offsets index into (the file itself for .txt/.md, extracted text otherwise).
    source_text: str
    #: sha256 of the source file's bytes and of the manifest entry: what "stale" compares.
    digest: str
    versions: list[Version] = Field(default_factory=list)

    def version(self, language: Language) -> Version | None:
        return next((v for v in self.versions if v.info.language == language), None)

    def section(self, label: str) -> Section | None:
        return next((s for s in self.sections if s.label == label), None)

    def subtree(self, label: str) -> list[Section]:
        """The section and all its sub-sections, in document order."""
        found = self.section(label)
        if found is None:
            return []
        return [
            s
            for s in self.sections
            if found.start <= s.start
            and s.end <= found.end
            and (s.label == label or _descends(s, label, self.sections))
        ]


def _descends(section: Section, ancestor: str, sections: list[Section]) -> bool:
    parents = {s.label: s.parent for s in sections}
    parent = section.parent
    while parent is not None:
        if parent == ancestor:
            return True
        parent = parents.get(parent)
    return False


class Hit(BaseModel):
    """A retrieved clause with the scores that ranked it."""

    chunk: Chunk
    dense: float | None = None
    lexical: float | None = None
    score: float = 0.0
    rank: int = 0
    #: Similarity of the clause's gloss (``Chunk.gloss``), when it has one.
    gloss: float | None = None

    @property
    def via_gloss(self) -> bool:
        """Ranked by its gloss: the translation was closer to the question than the clause."""
        return self.gloss is not None and self.gloss > (self.dense if self.dense is not None
                                                         else -2.0)


class Citation(BaseModel):
    chunk_id: str
    policy: str
    policy_title: str
    label: str
    title: str
    text: str
    quote: str
    #: Offsets of the quote inside ``text`` (the clause), and inside the source file.
    quote_start: int
    quote_end: int
    source_start: int
    source_end: int
    language: Language
    #: The quote stops before the end of the list it quotes (the rest is in ``text``).
    list_continues: bool = False
    #: Who wrote the quoted text: the company, or Klausa (a translation of the policy, in
    #: the asker's language; ``original`` is then the company's clause).
    provided_by: ProvidedBy = "company"
    #: The same clause in the policy's own language, when this one quotes a translation.
    original: Citation | None = None


class Turn(BaseModel):
    """An earlier exchange of a conversation, as much as a follow-up needs of it."""

    question: str
    policy: str | None = None
    labels: list[str] = Field(default_factory=list)
    #: The earlier questions this one followed up on (oldest first): a follow-up of a
    #: follow-up ("cookies?" → "can I turn them off?" → "will the site still work?") keeps
    #: the topic the conversation started with.
    topic: list[str] = Field(default_factory=list)


class Answer(BaseModel):
    question: str
    language: Language
    answer: str
    refused: bool
    policy: str | None = None
    citations: list[Citation] = Field(default_factory=list)
    hits: list[Hit] = Field(default_factory=list)
    timings_ms: dict[str, float] = Field(default_factory=dict)
    trace: Trace = Field(default_factory=Trace)

    def as_turn(self) -> Turn:
        return Turn(
            # What was searched: "What about Interindo?" searched the question it restated.
            question=self.trace.search_text or self.question,
            policy=self.citations[0].policy if self.citations else self.policy,
            labels=[c.label for c in self.citations],
            topic=list(self.trace.follow_up_of),
        )
