"""The gold set itself: format, coverage, and the figures CI holds Klausa to."""

from __future__ import annotations

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
SPLITS = ("dev.jsonl", "test.jsonl")


def all_cases():
    return [case for split in SPLITS for case in load_cases(QA / split)]


def test_gold_set_has_the_required_coverage(assistant: Assistant) -> None:
    cases = all_cases()
    ids = [c.id for c in cases]
    assert len(ids) == len(set(ids)) >= 150
    assert sum(c.lang == "id" for c in cases) / len(cases) >= 0.40
    catalog = assistant.catalog
    languages = {pid: p.info.language for pid, p in catalog.policies.items()}
    cross = [c for c in cases if c.policy and c.lang != languages[c.policy]]
    assert len(cross) >= 30
    assert sum(not c.answerable for c in cases) >= 20
    assert sum(bool(c.history) for c in cases) >= 10
    assert sum(c.policy is None for c in cases) >= 10
    cited: set[tuple[str, str]] = set()
    for case in cases:
        for gold in case.sections:
            policy, label = gold.rsplit(":", 1) if case.policy is None else (case.policy, gold)
            assert catalog.find_label(policy, label) == label, f"{case.id}: unknown {gold}"
            cited.add((policy, label))
        assert case.answerable == bool(case.sections), case.id
    # Every section with text of its own answers at least one question; a heading with only
    # sub-sections is covered through them.
    for policy_id, policy in catalog.policies.items():
        for section in policy.sections:
            if section.text.strip():
                assert (policy_id, section.label) in cited, (
                    f"uncovered {policy_id} §{section.label}"
                )


@pytest.mark.parametrize("split", SPLITS)
def test_gold_set_meets_the_thresholds(assistant: Assistant, split: str) -> None:
    records = run(AssistantAsker(assistant, "hybrid"), load_cases(QA / split))
    figures = report(records)
    failures = check_thresholds(figures, load_thresholds(QA / "thresholds.toml"))
    assert not failures, failures
