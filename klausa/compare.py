"""One question across every policy: per policy, the clause that answers or "not stated".

The compare page and the CSV export call this; each row is the answer ``Assistant.ask`` gives
for that policy alone, so a row is right exactly when the chat would be."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

from klausa.assistant import Assistant
from klausa.compose import collapse
from klausa.types import Answer, Language


@dataclass(frozen=True)
class PolicyRow:
    policy: str
    title: str
    answer: Answer
    #: False when the policy's best clause is far weaker than another policy's (see compare).
    addresses: bool = True

    @property
    def stated(self) -> bool:
        return self.addresses and not self.answer.refused and bool(self.answer.citations)


def compare(assistant: Assistant, question: str,
            language: Language | None = None) -> list[PolicyRow]:
    """The question asked of each indexed policy, in the catalog's order. A policy the judge
    finds not addressing it beside the others (``Judge.addressing``) is "not stated", as in an
    all-policies answer in the chat. Raises ``QuestionError`` (in the asker's language) for an
    empty or oversized question."""
    _, language = assistant.check_question(question, language)
    catalog = assistant.catalog
    answers = {policy_id: assistant.ask(question, policy=policy_id, language=language,
                                        generate=False)
               for policy_id in catalog.policies}
    addressing = assistant.judge.addressing({p: a.trace for p, a in answers.items()})
    return [PolicyRow(policy_id, catalog.policy_title(policy_id, language), answer,
                      addresses=policy_id in addressing)
            for policy_id, answer in answers.items()]


def rows_csv(rows: list[PolicyRow]) -> str:
    """The comparison as CSV: policy, status, section, the supporting words, the clause, and
    whose words they are (with the policy's own when they are a translation's)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["policy", "title", "status", "section", "section_title", "quote",
                     "clause", "question", "language", "quoted_from", "original_quote"])
    for row in rows:
        citation = row.answer.citations[0] if row.stated else None
        original = citation.original if citation else None
        writer.writerow([
            row.policy, row.title, "answered" if citation else "not stated",
            citation.label if citation else "", citation.title if citation else "",
            collapse(citation.quote) if citation else "",
            collapse(citation.text) if citation else "",
            row.answer.question, row.answer.language,
            # Whose words the quote is (a translation provided with Klausa, or the company's),
            # and, for a translation, the company's own.
            citation.provided_by if citation else "",
            collapse(original.quote) if original else "",
        ])
    return out.getvalue()
