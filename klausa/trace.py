"""Why an answer is what it is: the typed trace every answer carries, written by the assistant
and the judge, read by the support desk, the review queue, compare, evaluation and the CLI.

Answers are logged as JSON. Older logs hold traces of other shapes (a follow-up stored as one
string, a generation without a share, a field a later version dropped); ``Trace`` reads all of
them: a value it cannot read is dropped with a debug line rather than failing the page that
shows the answer."""

from __future__ import annotations

import logging
from functools import cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from klausa.asked import FactKind

log = logging.getLogger(__name__)

Outcome = Literal["answered", "not_covered", "not_stated"]


class _Part(BaseModel):
    model_config = ConfigDict(extra="ignore")


class SupportScore(_Part):
    """The support score of a clause and the signals it is made of (``klausa.judge``)."""

    dense: float = 0.0
    coverage: float = 0.0
    unknown: float = 0.0
    support: float = 0.0


class AskedFactCheck(_Part):
    """The question asks for a fact of this kind (``cue``: its words); ``stated``: a clause
    Klausa would cite gives one."""

    kind: FactKind
    cue: str = ""
    stated: bool = True


class CandidateReading(_Part):
    """The reader's probability that one candidate clause answers the question."""

    chunk_id: str
    policy: str
    label: str
    probability: float


class ReaderTrace(_Part):
    """What the reader model said about the best candidates (``klausa.reader``)."""

    model: str
    threshold: float
    candidates: list[CandidateReading] = Field(default_factory=list)
    ms: float | None = None
    #: Policies among the candidates that the reader was not trained on, and their threshold.
    unseen_policies: list[str] = Field(default_factory=list)
    unseen_threshold: float | None = None


class GenerationTrace(_Part):
    """A generated answer and its verification (``klausa.generate``)."""

    provider: str = ""
    passed: bool = False
    problems: list[str] = Field(default_factory=list)
    supported_share: float | None = None
    raw: str = ""
    sources: list[str] = Field(default_factory=list)
    ms: float | None = None

    @property
    def rejected(self) -> bool:
        """A written answer that failed verification (not a model that was unavailable)."""
        return bool(self.raw) and not self.passed


class Trace(_Part):
    retriever: str = "hybrid"
    #: The question as searched (company names taken out).
    search_text: str = ""
    #: The earlier questions a follow-up borrowed its topic from (oldest first).
    follow_up_of: list[str] = Field(default_factory=list)
    #: The policies searched; None: all.
    policies: list[str] | None = None
    terms: list[str] = Field(default_factory=list)
    #: The judge's decision and why, in words the support desk shows.
    outcome: Outcome | None = None
    reason: str = ""
    support: SupportScore | None = None
    refusal_threshold: float | None = None
    asked_fact: AskedFactCheck | None = None
    reader: ReaderTrace | None = None
    #: The question's words the best clause lacks, and those no policy uses at all.
    unmatched_terms: list[str] | None = None
    unknown_terms: list[str] | None = None
    generation: GenerationTrace | None = None

    def decisive_score(self) -> tuple[float | None, float | None]:
        """The score the decision was taken on and its threshold: the reader's best
        probability when the reader read, else the support score."""
        if self.reader is not None and self.reader.candidates:
            return self.reader.candidates[0].probability, self.reader.threshold
        return (self.support.support if self.support is not None else None,
                self.refusal_threshold)

    @property
    def not_stated(self) -> bool:
        """Refused because the asked number, contact or date is not given."""
        return self.outcome == "not_stated" or bool(self.asked_fact and
                                                    not self.asked_fact.stated)

    @model_validator(mode="before")
    @classmethod
    def _read_older_shapes(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return {}
        data = dict(data)
        followed = data.get("follow_up_of")
        if isinstance(followed, str):  # answers logged before follow-up chains
            data["follow_up_of"] = [followed] if followed else []
        for name, value in list(data.items()):
            adapter = _field_adapter(name)
            if adapter is None:
                continue
            try:
                adapter.validate_python(value)
            except ValidationError:
                log.debug("trace: dropped an unreadable %s: %r", name, value)
                del data[name]
        return data


@cache
def _field_adapter(name: str) -> TypeAdapter[Any] | None:
    field = Trace.model_fields.get(name)
    return None if field is None else TypeAdapter(field.annotation)
