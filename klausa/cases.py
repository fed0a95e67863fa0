"""Evaluation cases as data, and how a retrieved clause is matched against a case's gold:
what the evaluation and the baselines it compares share (neither imports the other for it)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from klausa.catalog import Catalog
from klausa.types import Answer, Chunk, Language

#: A retrieved chunk "is" a gold passage when this share of the shorter one's words is shared.
PASSAGE_OVERLAP = 0.6


class Case(BaseModel):
    """One line of a Q&A set (unknown keys are ignored)."""

    model_config = ConfigDict(extra="ignore")

    id: str
    policy: str | None = None
    lang: Language
    question: str
    answerable: bool = True
    sections: list[str] = Field(default_factory=list)
    quote: str | None = None
    gold_passages: list[str] = Field(default_factory=list)
    history: list[str] = Field(default_factory=list)
    #: What the question tests (``near_miss``, ``all_policies``, ``paraphrase``, ``sibling``,
    #: …): ``klausa eval`` reports each group on its own.
    group: str | None = None


def load_cases(path: Path) -> list[Case]:
    cases = []
    for number, line in enumerate(path.read_text("utf-8").splitlines(), 1):
        if line.strip():
            try:
                cases.append(Case.model_validate_json(line))
            except ValueError as error:
                raise ValueError(f"{path}:{number}: {error}") from None
    return cases


# --- matching retrieved clauses against the gold ------------------------------------------


def _tokens(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.lower()))


def passage_matches(text: str, passages: Sequence[str]) -> bool:
    chunk = _tokens(text)
    for passage in passages:
        gold = _tokens(passage)
        shorter = min(len(chunk), len(gold))
        if shorter and len(chunk & gold) / shorter >= PASSAGE_OVERLAP:
            return True
    return False


def label_matches(chunk_policy: str, chunk_label: str, case: Case, catalog: Catalog) -> bool:
    """The chunk lies in a gold section (the section itself or one of its sub-sections)."""
    for gold in case.sections:
        policy, _, label = gold.rpartition(":") if case.policy is None else ("", "", gold)
        if policy and policy != chunk_policy:
            continue
        if case.policy and case.policy != chunk_policy:
            continue
        if chunk_label == label or _is_descendant(catalog, chunk_policy, chunk_label, label):
            return True
    return False


def _is_descendant(catalog: Catalog, policy: str, label: str, ancestor: str) -> bool:
    parsed = catalog.policies.get(policy)
    if parsed is None:
        return False
    parents = {s.label: s.parent for s in parsed.sections}
    parent = parents.get(label)
    while parent is not None:
        if parent == ancestor:
            return True
        parent = parents.get(parent)
    return False


def chunk_matches(chunk: Chunk, case: Case, catalog: Catalog) -> bool:
    if case.gold_passages:
        return passage_matches(chunk.text, case.gold_passages)
    return label_matches(chunk.policy, chunk.label, case, catalog)


class Record(Answer):
    """One question of an evaluation run: the answer as given, the case it answers, and how it
    scored (one JSON line of ``klausa eval --per-question``)."""

    case: Case
    retriever: str
    #: Rank of the first retrieved clause that matches the gold (None: none did).
    rank: int | None = None
    cited_ok: bool = False
    #: The case's ``quote`` is in the first cited clause (None: the case has none).
    quote_ok: bool | None = None
    answer_language: Language
    latency_ms: float
    #: Language of the policy asked about, or "all".
    policy_language: str


class Asker:
    """Anything that answers a case: the assistant, or a baseline."""

    name: str

    def __call__(self, case: Case) -> Record:
        raise NotImplementedError


def policy_language(case: Case, catalog: Catalog) -> str:
    policy = case.policy
    if policy is None and case.sections:
        policy = case.sections[0].rpartition(":")[0] or None
    if policy and policy in catalog.policies:
        return catalog.policies[policy].info.language
    return "all"
