"""Klausa's reader, as shipped: the real weights read the real model's token states of a real
index, and decide what is answered, what is refused and which clause comes first. And when the
reader cannot be used, Klausa still answers, on similarity, and says so once."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from klausa.assistant import Assistant
from klausa.embeddings import Embedder
from klausa.reader import READER_DIR, WEIGHTS, WEIGHTS_SHA256, load_reader, sha256
from klausa.settings import Settings
from tests.conftest import make_settings


def test_the_shipped_reader_is_the_pinned_one_and_loads(embedder: Embedder,
                                                        seed_settings: Settings) -> None:
    assert WEIGHTS_SHA256, "the shipped reader's hash is pinned in klausa/reader.py"
    assert sha256(READER_DIR / WEIGHTS) == WEIGHTS_SHA256
    assert (READER_DIR / WEIGHTS).stat().st_size <= 64 * 1024 * 1024
    reader = load_reader(seed_settings, embedder)
    assert reader is not None
    assert reader.card.embedding_model == seed_settings.embedding_model
    assert 0 < reader.threshold < 1


def test_the_reader_answers_from_the_clause_that_answers(assistant: Assistant) -> None:
    answer = assistant.ask("Does Jubelio sell or rent my personal data?", policy="jubelio",
                           generate=False)
    reading = answer.trace.reader
    assert reading is not None and not answer.refused
    best = reading.candidates[0]
    assert best.probability >= reading.threshold
    # The first citation is the clause the reader found most likely to answer, and the
    # support desk is told why in words.
    assert answer.citations[0].chunk_id == best.chunk_id
    assert "reader" in answer.trace.reason


@pytest.mark.parametrize("question", [
    "Does Netmarks use my data to train AI models?",
    "Apakah Netmarks memakai data saya untuk melatih model AI?",
])
def test_a_question_the_policy_does_not_answer_is_refused_by_the_reader(
        assistant: Assistant, question: str) -> None:
    """Netmarks' policy lists what it uses data for, and training AI models is not among
    them: the general use clause is on the topic but does not answer."""
    answer = assistant.ask(question, policy="netmarks", generate=False)
    reading = answer.trace.reader
    assert reading is not None and reading.candidates
    assert all(c.probability < reading.threshold for c in reading.candidates)
    assert answer.refused and answer.trace.outcome == "not_covered"
    assert not answer.citations


def test_without_its_weights_klausa_answers_on_similarity_and_says_so_once(
        seed_settings: Settings, embedder: Embedder, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    settings = seed_settings.model_copy(update={"reader_dir": tmp_path})
    with caplog.at_level(logging.WARNING, logger="klausa.reader"):
        assistant = Assistant(settings, embedder=embedder)
        first = assistant.ask("Does Jubelio sell or rent my personal data?", policy="jubelio",
                              generate=False)
        assistant.ask("Can I reject cookies?", policy="webdeskers", generate=False)
    unavailable = [r for r in caplog.records if "reader unavailable" in r.getMessage()]
    assert len(unavailable) == 1 and "reader.safetensors" in unavailable[0].getMessage()
    assert first.trace.reader is None
    assert not first.refused and first.citations
    assert first.trace.support is not None and "Support" in first.trace.reason


def test_altered_weights_are_not_used(seed_settings: Settings, embedder: Embedder,
                                      tmp_path: Path, caplog: pytest.LogCaptureFixture
                                      ) -> None:
    altered = tmp_path / WEIGHTS
    shutil.copyfile(READER_DIR / WEIGHTS, altered)
    with open(altered, "r+b") as handle:  # one byte of a weight, not of the header
        handle.seek(-100, 2)
        byte = handle.read(1)
        handle.seek(-100, 2)
        handle.write(bytes([byte[0] ^ 0xFF]))
    with caplog.at_level(logging.WARNING, logger="klausa.reader"):
        assert load_reader(seed_settings, embedder, folder=tmp_path,
                           pinned=WEIGHTS_SHA256) is None
    assert "is not the reader this version ships" in caplog.text


def test_the_reader_can_be_switched_off(tmp_path: Path, embedder: Embedder) -> None:
    settings = make_settings(tmp_path, reader="off")
    assert load_reader(settings, embedder) is None


NEW_POLICY = (
    "KEDAI KOPI PRIVACY NOTICE\n"
    "1. Data we collect\n"
    "Kedai Kopi collects your name, phone number and order history when you order online.\n"
    "2. Retention\n"
    "We keep order history for two years, then delete it.\n"
)


def test_a_policy_the_reader_was_not_trained_on_gets_its_own_threshold(
        assistant: Assistant, seed_settings: Settings, embedder: Embedder,
        tmp_path: Path) -> None:
    """The five seed policies are the ones it was trained on, text for text (a seed policy
    edited without retraining would fail here); a policy added later is read against the
    threshold calibrated on policies it never saw, and the support desk is told so."""
    from ingest.pipeline import ingest
    from klausa.reader import UNSEEN_THRESHOLD

    assert assistant.snapshot().judge.unseen == set()
    shutil.copytree(seed_settings.index_dir, tmp_path / "index")
    added = tmp_path / "kedaikopi.en.txt"
    added.write_text(NEW_POLICY, "utf-8")
    settings = seed_settings.model_copy(update={"data_dir": tmp_path})
    assert not ingest(settings, [added], prune=False, embedder=embedder).errors
    judge = Assistant(settings, embedder=embedder).snapshot().judge
    assert judge.unseen == {"kedaikopi"}
    assert judge.reader_threshold_of("kedaikopi") == UNSEEN_THRESHOLD
    assert judge.reader_threshold_of("webdeskers") == judge.reader_threshold > UNSEEN_THRESHOLD
    answer = Assistant(settings, embedder=embedder).ask(
        "How long do you keep my order history?", policy="kedaikopi", generate=False)
    assert not answer.refused and answer.citations[0].label == "2"
    assert answer.trace.reader is not None
    assert answer.trace.reader.unseen_policies == ["kedaikopi"]


def test_without_its_list_of_training_policies_every_policy_gets_the_calibrated_threshold(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A missing or garbled trained_on.json must not make every policy 'unseen' (the far lower
    threshold would let near-misses through): it is said once, and nothing is unseen."""
    from klausa.reader import load_trained_on

    caplog.set_level(logging.WARNING, logger="klausa.reader")
    assert load_trained_on(tmp_path / "missing.json") is None
    garbled = tmp_path / "trained_on.json"
    garbled.write_text("[1, 2", "utf-8")
    assert load_trained_on(garbled) is None
    assert sum("every policy gets its calibrated threshold" in r.message
               for r in caplog.records) == 2


def test_training_asks_each_question_as_the_product_does(assistant: Assistant) -> None:
    """`klausa reader train` builds its examples from Klausa's own retrieval, a follow-up
    after its earlier turn: the question's token states and the candidates, labelled."""
    from klausa.reader_training import ask_all

    records = [
        {"id": "retention", "group": "paraphrase", "answerable": True, "policy": "interindo",
         "question": "How long does Interindo keep my data?", "history": []},
        {"id": "follow-up", "group": "follow_up", "answerable": True, "policy": None,
         "question": "and can I turn them off?", "history": ["Does Webdeskers use cookies?"]},
    ]
    wanted = {"retention": ("interindo", "6"), "follow-up": ("webdeskers", "D.3")}
    examples = ask_all(assistant, records, "dev",
                       lambda r, c: int((c.policy, c.label) == wanted[r["id"]]), limit=5)
    assert [e.id for e in examples] == ["retention", "follow-up"]
    for example in examples:
        assert example.states and example.states[0].ndim == 2
        assert len(example.candidates) == 5
        assert example.candidates[0][1] == 1, example.candidates  # the answer ranks first
