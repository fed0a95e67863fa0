"""Atomic re-index, concurrency and crashes: nothing breaks, nothing is lost."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import ingest.pipeline as pipeline
from ingest.pipeline import IngestBusyError, ingest, ingest_lock
from klausa.assistant import Assistant
from klausa.catalog import Catalog
from klausa.database import Database
from klausa.embeddings import Embedder
from klausa.feedback import AnswerLog
from klausa.settings import Settings
from tests.conftest import MODELS, REPO, make_settings

QUESTIONS = [
    ("Does Jubelio sell my personal data?", "jubelio"),
    ("Berapa lama data saya disimpan?", "interindo"),
    ("Can I refuse cookies?", "webdeskers"),
    ("Apakah LaciMart bisa mengubah kebijakan privasi?", "lacimart"),
    ("Do they register visitors at their sites?", "netmarks"),
]


def answers(assistant: Assistant) -> list[tuple[str, ...]]:
    return [tuple(c.text for c in assistant.ask(q, policy=p).citations) for q, p in QUESTIONS]


@pytest.fixture
def indexed(tmp_path: Path, corpus_copy: Path, embedder: Embedder) -> Settings:
    settings = make_settings(tmp_path / "data", corpus_copy)
    ingest(settings, embedder=embedder)
    return settings


def edit_jubelio(corpus: Path) -> None:
    path = corpus / "jubelio.en.txt"
    path.write_text(path.read_text("utf-8").replace(
        "We will not sell or rent your Personal Data.",
        "We will never sell, rent or trade your Personal Data."), "utf-8")


def test_a_failing_ingest_leaves_the_previous_index_answering(
    indexed: Settings, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    assistant = Assistant(indexed, embedder=embedder)
    before = answers(assistant)
    generation = indexed.current_generation()
    edit_jubelio(indexed.corpus_dir)

    def explode(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    # Fails after the new vectors were written, before the switch.
    monkeypatch.setattr(pipeline.LexicalIndex, "update", explode)
    with pytest.raises(RuntimeError, match="disk full"):
        ingest(indexed, embedder=embedder)
    assert indexed.current_generation() == generation
    assert [p.name for p in indexed.index_dir.glob("g-*")] == [generation]
    assert answers(Assistant(indexed, embedder=embedder)) == before
    monkeypatch.undo()

    # A successful ingest switches at once, for an assistant that is already running too.
    ingest(indexed, embedder=embedder)
    assert indexed.current_generation() != generation
    quote = assistant.ask("Does Jubelio sell my personal data?", policy="jubelio")
    assert "never sell, rent or trade" in quote.citations[0].text


KILLED_INGEST = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import ingest.pipeline as pipeline
    from klausa.settings import Settings
    from klausa import stores
    real = stores.ChromaStore.add_vectors
    def slow(self, *args, **kwargs):
        real(self, *args, **kwargs)
        Path(sys.argv[2]).write_text("writing")
        time.sleep(600)
    stores.ChromaStore.add_vectors = slow
    settings = Settings(data_dir=Path(sys.argv[1]), corpus_dir=Path(sys.argv[3]),
                        models_path=Path(sys.argv[4]))
    pipeline.ingest(settings)
""")


def test_kill_9_mid_ingest_leaves_the_previous_index_answering(
    indexed: Settings, embedder: Embedder, tmp_path: Path
) -> None:
    before = answers(Assistant(indexed, embedder=embedder))
    generation = indexed.current_generation()
    edit_jubelio(indexed.corpus_dir)
    flag = tmp_path / "writing"
    process = subprocess.Popen(
        [sys.executable, "-c", KILLED_INGEST, str(indexed.data_dir), str(flag),
         str(indexed.corpus_dir), str(MODELS)], cwd=REPO)
    deadline = time.monotonic() + 180
    while not flag.exists():
        assert process.poll() is None, "ingest ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.2)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert indexed.current_generation() == generation
    assert answers(Assistant(indexed, embedder=embedder)) == before
    # The next ingest succeeds, switches, and clears what the killed one left.
    report = ingest(indexed, embedder=embedder)
    assert next(p for p in report.policies if p.policy == "jubelio").updated == 1
    generations = {p.name for p in indexed.index_dir.glob("g-*")}
    assert generations == {generation, indexed.current_generation()}


def test_questions_during_a_reingest_never_fail(indexed: Settings, embedder: Embedder) -> None:
    assistant = Assistant(indexed, embedder=embedder)
    old = {c.text for c in Catalog.load(indexed.catalog_dir).chunks.values()}
    edit_jubelio(indexed.corpus_dir)
    failures: list[BaseException] = []
    results: list = []
    start = threading.Barrier(9)

    def worker(number: int) -> None:
        start.wait()
        for i in range(50):
            question, policy = QUESTIONS[(number + i) % len(QUESTIONS)]
            try:
                results.append(assistant.ask(question, policy=policy))
            except BaseException as error:  # any failure at all is what this test is about
                failures.append(error)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    start.wait()
    ingest(indexed, embedder=embedder)
    for thread in threads:
        thread.join()
    new = {c.text for c in Catalog.load(indexed.catalog_dir).chunks.values()}
    assert not failures, failures[:3]
    assert len(results) == 400
    assert all(a.answer.strip() and (a.citations or a.refused) for a in results)
    for answer in results:
        for citation in answer.citations:
            # (A quote from a translation: its original is the indexed clause.)
            clause = (citation.original or citation).text
            assert clause in old or clause in new


def test_a_second_ingest_process_is_told_one_is_running(indexed: Settings) -> None:
    with ingest_lock(indexed):
        with pytest.raises(IngestBusyError), ingest_lock(indexed):
            pass
        result = subprocess.run(
            [sys.executable, "-m", "klausa.cli", "--data-dir", str(indexed.data_dir), "ingest"],
            cwd=REPO, capture_output=True, text=True, timeout=120,
            env={**os.environ, "KLAUSA_MODELS_PATH": str(MODELS),
                 "KLAUSA_CORPUS_DIR": str(indexed.corpus_dir)},
        )
    assert result.returncode == 1
    assert "ingest already running" in result.stderr


FEEDBACK_WRITER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from klausa.database import Database
    from klausa.feedback import AnswerLog
    from klausa.types import Answer
    log = AnswerLog(Database.at(Path(sys.argv[1])))
    answer = Answer(question="q", language="en", answer="a", refused=True)
    n = 0
    while True:
        answer_id = log.record(answer)
        log.rate(answer_id, n % 2, "comment")
        n += 1
        print(n, flush=True)
""")


def test_feedback_survives_a_killed_writer(tmp_path: Path) -> None:
    database = tmp_path / "klausa.sqlite3"
    process = subprocess.Popen([sys.executable, "-c", FEEDBACK_WRITER, str(database)],
                               cwd=REPO, stdout=subprocess.PIPE, text=True)
    acknowledged = 0
    assert process.stdout is not None
    for line in process.stdout:
        acknowledged = int(line)
        if acknowledged >= 200:
            break
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    db = sqlite3.connect(database)
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    stored = db.execute("SELECT COUNT(*) FROM answers").fetchone()[0]
    assert stored >= acknowledged  # at most the record in flight is lost
    AnswerLog(Database.at(database)).record(
        __import__("klausa").Answer(question="after", language="en", answer="a", refused=True))
