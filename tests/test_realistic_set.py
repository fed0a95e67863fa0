"""The realistic split (written from the policy texts, never from Klausa's answers): its shape
as the honesty issue asks for it, and the figures CI holds Klausa to on each half."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from klausa.assistant import Assistant
from klausa.evaluation import (
    AssistantAsker,
    check_thresholds,
    load_cases,
    load_thresholds,
    report,
    run,
)

QA = Path(__file__).parent / "qa"
SPLITS = ("realistic.dev.jsonl", "realistic.test.jsonl")
COMPANIES = ("webdeskers", "netmarks", "interindo", "jubelio", "lacimart")


def company_of(case, assistant: Assistant) -> str | None:
    if case.policy:
        return case.policy
    named = {s.partition(":")[0] for s in case.sections if ":" in s}
    if len(named) == 1:
        return named.pop()
    text = " ".join([case.question, *case.history]).lower()
    found = [c for c in COMPANIES if c in text]
    return found[0] if len(found) == 1 else None


def test_the_realistic_split_has_the_groups_the_honesty_issue_asks_for(
        assistant: Assistant) -> None:
    cases = [case for split in SPLITS for case in load_cases(QA / split)]
    ids = [c.id for c in cases]
    assert len(ids) == len(set(ids))
    groups = Counter(c.group for c in cases)
    assert groups["near_miss"] >= 60 and groups["all_policies"] >= 30
    assert groups["paraphrase"] >= 40 and groups["sibling"] >= 15
    catalog = assistant.catalog
    for case in cases:
        assert case.answerable == bool(case.sections), case.id
        if case.group == "near_miss":
            assert not case.answerable, case.id
        for gold in case.sections:
            policy, label = gold.rsplit(":", 1) if case.policy is None else (case.policy, gold)
            assert catalog.find_label(policy, label) == label, f"{case.id}: unknown {gold}"
    for split in SPLITS:
        half = load_cases(QA / split)
        for group in ("near_miss", "all_policies", "paraphrase", "sibling"):
            assert {c.lang for c in half if c.group == group} == {"en", "id"}, (split, group)
        near_miss = {company_of(c, assistant) for c in half if c.group == "near_miss"}
        assert set(COMPANIES) <= near_miss, (split, near_miss)


@pytest.mark.parametrize("split", SPLITS)
def test_realistic_split_meets_its_thresholds(assistant: Assistant, split: str) -> None:
    records = run(AssistantAsker(assistant, "hybrid"), load_cases(QA / split))
    failures = check_thresholds(report(records),
                                load_thresholds(QA / "realistic.thresholds.toml"))
    assert not failures, failures
