"""The typed trace reads every answer already logged, whatever shape its trace had."""

from __future__ import annotations

import json

import pytest

from klausa.trace import Trace
from klausa.types import Answer

pytestmark = pytest.mark.fast


def test_older_trace_shapes_are_read() -> None:
    trace = Trace.model_validate({
        "follow_up_of": "Does Webdeskers use cookies?",  # one string, before chains
        "support": "0.31",  # not a support record: dropped, not fatal
        "asked_fact": {"kind": "number", "cue": "how many days", "stated": False},
        "generation": {"provider": "local", "passed": False, "raw": "Yes."},
        "a_key_from_a_later_version": [1, 2],
    })
    assert trace.follow_up_of == ["Does Webdeskers use cookies?"]
    assert trace.support is None
    assert trace.not_stated and trace.asked_fact is not None
    assert trace.generation is not None and trace.generation.rejected
    assert trace.generation.problems == []


def test_a_logged_answer_round_trips_through_json() -> None:
    answer = Answer(question="q", language="id", answer="a", refused=True,
                    trace={"outcome": "not_covered", "reason": "**Support 0.1**",
                           "support": {"dense": 0.1, "support": 0.1}, "refusal_threshold": 0.245})
    again = Answer.model_validate_json(answer.model_dump_json())
    assert again.trace == answer.trace
    assert json.loads(answer.model_dump_json())["trace"]["support"]["dense"] == 0.1


def test_a_trace_that_is_not_a_mapping_reads_as_empty() -> None:
    assert Trace.model_validate(None) == Trace()
    assert Answer.model_validate({"question": "q", "language": "en", "answer": "a",
                                  "refused": False, "trace": ["junk"]}).trace == Trace()
