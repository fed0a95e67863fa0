"""The fast tier: where Klausa decides (judge), what it searches (scope) and what the asker
reads (compose), over the seed corpus indexed with the test embedder shipped with the library.
`pytest -m fast` runs these in seconds; the real model's answers are tested elsewhere."""

from __future__ import annotations

import numpy as np
import pytest

from klausa.assistant import Assistant, UnknownPolicyError
from klausa.cases import Case
from klausa.evaluation import AssistantAsker, calibrate_refusal, run
from klausa.judge import Judge, Question, support_value
from klausa.scope import Scope, find_scope
from klausa.settings import Settings
from klausa.trace import SupportScore, Trace
from klausa.types import Chunk, Hit, Turn

pytestmark = pytest.mark.fast


def hit(policy: str, dense: float, score: float, label: str = "1", text: str = "A clause.",
        rank: int = 1) -> Hit:
    chunk = Chunk(id=f"{policy}-{label}", policy=policy, language="en", label=label,
                  section_title=label, title_path=[label], text=text, start=0, end=len(text))
    return Hit(chunk=chunk, dense=dense, lexical=1.0, score=score, rank=rank)


def test_the_support_score_is_one_formula_for_answers_and_calibration(
        quick_assistant: Assistant, hashing_settings: Settings) -> None:
    """`klausa eval --calibrate` tunes the very score answers are refused on: the threshold it
    finds, set, refuses exactly the questions it said it would."""
    cases = [Case(id=str(n), policy=policy, lang="en", question=question, answerable=ok)
             for n, (policy, question, ok) in enumerate([
                 ("jubelio", "Does Jubelio sell or rent my personal data?", True),
                 ("webdeskers", "Can I reject cookies?", True),
                 ("interindo", "How long do you keep my data?", True),
                 ("netmarks", "Do you record visitors with cameras?", True),
                 ("jubelio", "Do you offer a warranty on blenders?", False),
                 ("webdeskers", "Is there a loyalty discount for pensioners?", False),
                 ("interindo", "What colour is the logo?", False)])]
    records = run(AssistantAsker(quick_assistant, "hybrid"), cases)
    for record in records:
        support = record.trace.support
        assert support is not None
        settings = quick_assistant.settings
        assert support.support == pytest.approx(support_value(
            support.dense, support.coverage, support.unknown, settings.coverage_weight or 0.0,
            settings.unknown_weight or 0.0), abs=1e-3)
    found = calibrate_refusal(records, max_false_refusal=0.0)
    assert found is not None and found.refusal_recall > 0
    tuned = Assistant(hashing_settings.model_copy(update={
        "refusal_threshold": found.refusal_threshold, "coverage_weight": found.coverage_weight,
        "unknown_weight": found.unknown_weight}))
    again = run(AssistantAsker(tuned, "hybrid"), cases)
    refused = [r.case.id for r in again if r.refused]
    expected_recall = sum(not r.case.answerable for r in again if r.refused) / 3
    assert expected_recall == pytest.approx(found.refusal_recall, abs=0.01), refused
    assert not any(r.refused for r in again if r.case.answerable)


def test_a_topic_no_policy_speaks_of_is_not_covered_with_the_reason(
        quick_assistant: Assistant) -> None:
    answer = quick_assistant.ask("Do you offer a warranty on broken blenders?", policy="jubelio")
    assert answer.refused and not answer.citations
    assert answer.trace.outcome == "not_covered"
    assert "blenders" in (answer.trace.unknown_terms or [])
    assert "below the refusal threshold" in answer.trace.reason
    assert answer.answer.splitlines()[0].startswith("Jubelio Privacy Notice")
    nothing = quick_assistant.ask("warm up", policy="jubelio")
    assert nothing.refused and "No policy uses any of the question's words" in (
        nothing.trace.reason)


def test_a_number_the_policy_does_not_give_is_not_stated(quick_assistant: Assistant) -> None:
    answer = quick_assistant.ask("How many days do you keep my data?", policy="netmarks")
    assert answer.refused and answer.trace.outcome == "not_stated"
    assert answer.trace.not_stated
    assert answer.trace.asked_fact is not None and answer.trace.asked_fact.kind == "number"
    assert "asks for a number" in answer.trace.reason
    assert "does not give a number" in answer.answer
    phone = quick_assistant.ask("What is the phone number of the data protection officer?",
                                policy="interindo")
    assert phone.trace.outcome == "not_stated" and "a phone number" in phone.trace.reason


def test_a_follow_up_is_judged_with_the_topic_it_borrows(quick_assistant: Assistant) -> None:
    first = quick_assistant.ask("Does Webdeskers use cookies?")
    follow = quick_assistant.ask("can I block them?", history=[first])
    assert follow.trace.follow_up_of == ["Does use cookies?"]
    assert follow.policy == "webdeskers"
    # Another company named: a new topic, not a follow-up.
    other = quick_assistant.ask("Does Jubelio sell it?", history=[first])
    assert other.trace.follow_up_of == [] and other.policy == "jubelio"


def test_scope_takes_the_named_company_else_the_last_answers(
        quick_assistant: Assistant) -> None:
    snapshot = quick_assistant.snapshot()
    named = find_scope("Does LaciMart share data with the police?", None, [],
                       snapshot.catalog, snapshot.mentions)
    assert named.policies == ["lacimart"] and "LaciMart" not in named.search_text
    every = find_scope("Who shares data with the police?", None, [], snapshot.catalog,
                       snapshot.mentions)
    assert every.policies is None and every.single_policy is None
    # One slip in a name is still the name; a word the policies use is not ("guardian" is
    # one slip from the alias "Guardia").
    for typed, policy in [("Webdesker", "webdeskers"), ("Net marks", "netmarks"),
                          ("Interindio", "interindo"), ("Jubleio", "jubelio")]:
        scope = find_scope(f"Does {typed} sell my data?", None, [], snapshot.catalog,
                           snapshot.mentions)
        assert scope.policies == [policy] and scope.search_text == "Does sell my data?"
    guardian = find_scope("Does my guardian have to agree?", None, [], snapshot.catalog,
                          snapshot.mentions)
    assert guardian.policies is None


def test_eval_scores_a_declined_question_as_a_refusal(quick_assistant: Assistant) -> None:
    """A Q&A line Klausa declines ("hi", a company with no question) is scored as refused,
    with the reply as its answer; it does not stop the run."""
    cases = [Case(id="hi", policy=None, lang="en", question="hi", answerable=False),
             Case(id="about", policy=None, lang="en", question="What about Interindo?",
                  answerable=False)]
    records = run(AssistantAsker(quick_assistant, "hybrid"), cases)
    assert [r.refused for r in records] == [True, True]
    assert records[0].answer.startswith("Hello!") and not records[1].citations
    # A broken line is not a refusal: a policy the index lacks still stops the run.
    with pytest.raises(UnknownPolicyError):
        run(AssistantAsker(quick_assistant, "hybrid"),
            [Case(id="x", policy="nosuch", lang="en", question="cookies?", answerable=True)])


def test_which_questions_follow_up_and_which_restate(quick_assistant: Assistant) -> None:
    snapshot = quick_assistant.snapshot()

    def scope(text: str, *turns: Turn) -> Scope:
        return find_scope(text, None, list(turns), snapshot.catalog, snapshot.mentions)

    cookies = Turn(question="Does use cookies?", policy="webdeskers")
    block = Turn(question="can I block them?", policy="webdeskers", topic=["Does use cookies?"])
    # No topic of its own, another company: the last question asked of it, with its topic.
    again = scope("What about Netmarks?", cookies, block)
    assert again.restated and again.search_text == "can I block them?"
    assert again.policies == ["netmarks"] and again.previous == ["Does use cookies?"]
    # The same company named again: a new topic of its own starts over, a pointer back not.
    assert not scope("Does Webdeskers sell my data?", cookies).previous
    assert scope("Does Webdeskers store them?", cookies).previous == ["Does use cookies?"]
    # No company named: a short question follows up, as before.
    assert scope("and for how long?", cookies).previous == ["Does use cookies?"]


def judge(**overrides: object) -> Judge:
    settings = Settings(embedding_model="hashing-test").model_copy(update=overrides)
    return Judge(settings, vocabulary={"sell", "data"})


def test_across_policies_cites_only_policies_close_to_the_best() -> None:
    """An all-policies answer cites a policy whose best clause is within the margin of the
    best policy's similarity (or above the floor), and the compare page agrees."""
    decide = judge(policy_margin=0.15, policy_floor=0.5, refusal_threshold=0.1)
    ranked = [hit("a", 0.45, 1.0), hit("b", 0.35, 0.9, rank=2), hit("c", 0.2, 0.8, rank=3)]
    chosen = decide.across_policies(ranked, [{"sell"}])
    assert [h.chunk.policy for h in chosen] == ["a", "b"]
    traces = {h.chunk.policy: Trace(outcome="answered", support=SupportScore(dense=h.dense or 0))
              for h in ranked}
    assert decide.addressing(traces) == {"a", "b"}
    # A clause above the floor counts however far the best one is.
    assert decide.addresses(0.52, 0.9) and not decide.addresses(0.49, 0.9)


def test_a_single_policy_verdict_refuses_below_the_threshold_and_cites_runners_up() -> None:
    decide = judge(refusal_threshold=0.3, coverage_weight=0.0, unknown_weight=0.0)
    question = Question("does it sell data", "en")
    low = decide.judge(question, [hit("a", 0.25, 1.0)], "a")
    assert low.outcome == "not_covered" and not low.chosen and "below" in low.reason
    ranked = [hit("a", 0.5, 1.0, "1"), hit("a", 0.48, 0.95, "2", rank=2),
              hit("a", 0.4, 0.5, "3", rank=3)]
    high = decide.judge(question, ranked, "a")
    assert high.outcome == "answered" and [h.chunk.label for h in high.chosen] == ["1", "2"]
    assert "above the refusal threshold" in high.reason


def test_a_fact_asked_for_is_cited_from_the_clause_that_gives_it() -> None:
    decide = judge(refusal_threshold=0.1, coverage_weight=0.0, unknown_weight=0.0)
    ranked = [hit("a", 0.6, 1.0, "1", "We delete data when you ask."),
              hit("a", 0.5, 0.7, "2", "Deletion takes up to 30 days.", rank=2)]
    found = decide.judge(Question("how many days until my data is deleted", "en"), ranked, "a")
    assert found.outcome == "answered" and found.chosen[0].chunk.label == "2"
    assert found.asked is not None and found.asked.stated
    missing = decide.judge(Question("how many days until my data is deleted", "en"),
                           ranked[:1], "a")
    assert missing.outcome == "not_stated" and not missing.chosen


def test_compose_names_the_policies_that_do_not_address_an_all_policies_question(
        quick_assistant: Assistant) -> None:
    answer = quick_assistant.ask("Do you sell or rent my personal data?")
    assert not answer.refused
    cited = {c.policy_title for c in answer.citations}
    assert cited
    others = [p.info.title for p in quick_assistant.catalog.policies.values()
              if p.info.title not in cited]
    last = answer.answer.splitlines()[-1]
    assert all(title in last for title in others)


class ScriptedReader:
    """A reader whose probabilities are given per clause (the judge's plumbing, not the
    model: the shipped reader is tested on the real index in test_reader.py)."""

    def __init__(self, probabilities: dict[str, float], threshold: float = 0.5) -> None:
        from klausa.reader import ReaderCard

        self.probabilities = probabilities
        self.card = ReaderCard(name="scripted", embedding_model="hashing-test",
                               threshold=threshold, depth=10, shape={})
        self.threshold = threshold

    def read(self, question: object, clauses: list[object]) -> np.ndarray:
        return np.array([self.probabilities[str(c)] for c in clauses])


class ClauseIds:
    """Token states that are the chunk's id (what ScriptedReader reads)."""

    def of_chunk(self, chunk_id: str) -> str:
        return chunk_id


def reading_judge(probabilities: dict[str, float],
                  trained_on: dict[str, str] | None = None) -> Judge:
    reader = ScriptedReader(probabilities)
    reader.trained_on = trained_on  # type: ignore[attr-defined]
    reader.unseen_threshold = 0.1  # type: ignore[attr-defined]
    return Judge(Settings(refusal_threshold=0.9, coverage_weight=0.0, unknown_weight=0.0),
                 {"delete", "account", "sell", "data"}, reader=reader,  # type: ignore[arg-type]
                 clause_states=ClauseIds(),  # type: ignore[arg-type]
                 policy_digests={"a": "text-a", "b": "text-b", "c": "text-c"})


def test_a_policy_the_reader_never_read_is_judged_on_its_own_threshold() -> None:
    """The reader's probabilities run lower on policies it was not trained on; those (and a
    trained-on policy whose text changed) answer from the lower threshold."""
    ranked = [hit("a", 0.6, 1.0, "1"), hit("b", 0.58, 0.95, "1", rank=2),
              hit("c", 0.5, 0.9, "1", rank=3)]
    question = Question("do you sell my data", "en", states=[np.zeros((3, 4))])
    judged = reading_judge({"a-1": 0.3, "b-1": 0.3, "c-1": 0.05},
                           trained_on={"a": "text-a", "b": "an older text"}
                           ).judge(question, ranked, None)
    assert {h.chunk.policy for h in judged.chosen} == {"b"}
    assert judged.reader is not None and judged.reader.unseen_policies == ["b", "c"]
    unknown = reading_judge({"a-1": 0.3, "b-1": 0.3, "c-1": 0.05}).judge(question, ranked, None)
    assert not unknown.chosen  # no list of what it was trained on: one threshold for all


def test_the_reader_decides_what_answers_and_what_comes_first() -> None:
    """Not the similarity (0.9 would refuse all of these): the reader's probability does,
    and its most probable clause is cited first, though retrieval ranked it third."""
    ranked = [hit("a", 0.5, 1.0, "1"), hit("a", 0.45, 0.9, "2", rank=2),
              hit("a", 0.4, 0.8, "3", rank=3)]
    question = Question("can I delete my account", "en", states=[np.zeros((3, 4))])
    answered = reading_judge({"a-1": 0.2, "a-2": 0.1, "a-3": 0.95}).judge(question, ranked, "a")
    assert answered.outcome == "answered"
    assert [h.chunk.label for h in answered.chosen] == ["3"]
    assert answered.reader is not None and answered.reader.candidates[0].chunk_id == "a-3"
    assert "0.95" in answered.reason
    refused = reading_judge({"a-1": 0.4, "a-2": 0.1, "a-3": 0.3}).judge(question, ranked, "a")
    assert refused.outcome == "not_covered" and not refused.chosen
    assert "No candidate reaches the reader's threshold" in refused.reason


def test_a_sure_answer_among_the_first_five_candidates_ends_the_reading() -> None:
    """Reading stops after the first five when one answers surely (the reader's time halves
    for most questions); an unsure first five reads all ten, and the best of them answers."""
    ranked = [hit("a", 0.5, 1.0 - i / 20, str(i), rank=i) for i in range(1, 11)]
    question = Question("can I delete my account", "en", states=[np.zeros((3, 4))])
    unsure = {f"a-{i}": 0.1 for i in range(1, 11)}
    sure = reading_judge(unsure | {"a-2": 0.9, "a-8": 0.99}).judge(question, ranked, "a")
    assert [h.chunk.label for h in sure.chosen] == ["2"]
    assert sure.reader is not None and len(sure.reader.candidates) == 5
    read_on = reading_judge(unsure | {"a-2": 0.4, "a-8": 0.99}).judge(question, ranked, "a")
    assert [h.chunk.label for h in read_on.chosen] == ["8"]
    assert read_on.reader is not None and len(read_on.reader.candidates) == 10
    # A clause read at over half the best probability is cited too, in retrieval's order.
    both = reading_judge(unsure | {"a-2": 0.6, "a-8": 0.99}).judge(question, ranked, "a")
    assert [h.chunk.label for h in both.chosen] == ["2", "8"]


def test_an_all_policies_answer_cites_only_the_policies_whose_clause_answers() -> None:
    ranked = [hit("a", 0.6, 1.0, "1"), hit("b", 0.58, 0.95, "1", rank=2),
              hit("c", 0.3, 0.4, "1", rank=3)]
    question = Question("do you sell my data", "en", states=[np.zeros((3, 4))])
    judged = reading_judge({"a-1": 0.9, "b-1": 0.05, "c-1": 0.7}).judge(question, ranked, None)
    assert judged.outcome == "answered"
    assert {h.chunk.policy for h in judged.chosen} == {"a", "c"}
