"""The answer log on SQLite (default) and on a real PostgreSQL server started by the test."""

from __future__ import annotations

from pathlib import Path

import pytest

from klausa.database import Database
from klausa.feedback import AnswerLog
from klausa.settings import Settings
from klausa.types import Answer, Citation


def sample_answer(question: str, language: str = "en", policy: str | None = "jubelio") -> Answer:
    citation = Citation(chunk_id="c1", policy="jubelio", policy_title="Jubelio Privacy Notice",
                        label="GOVERNING LAW", title="GOVERNING LAW", text="Indonesian law.",
                        quote="Indonesian law.", quote_start=0, quote_end=15, source_start=0,
                        source_end=15, language="en")
    return Answer(question=question, language=language, answer="According to …",  # type: ignore[arg-type]
                  refused=False, policy=policy, citations=[citation])


def exercise(store: AnswerLog) -> None:
    first = store.record(sample_answer("Which law applies?"), session="s1")
    second = store.record(sample_answer("Hukum apa yang berlaku?", "id"), session="s1")
    store.rate(first, 1, "  clear answer ")
    store.rate(second, 0)
    with pytest.raises(KeyError):
        store.rate("missing", 1)
    rows = store.recent()
    assert [r.question for r in rows] == ["Hukum apa yang berlaku?", "Which law applies?"]
    assert [r.question for r in store.recent(rating="up")] == ["Which law applies?"]
    assert [r.question for r in store.recent(language="id")] == ["Hukum apa yang berlaku?"]
    assert store.recent(rating="none") == []
    up = store.get(first)
    assert up is not None and up.comment == "clear answer" and up.rating == 1
    assert up.citations == ["Jubelio Privacy Notice §GOVERNING LAW"]
    assert store.answer(first).citations[0].label == "GOVERNING LAW"
    csv_text = store.to_csv(rows)
    assert csv_text.splitlines()[0].startswith("id,asked_at,question")
    assert "Jubelio Privacy Notice §GOVERNING LAW" in csv_text
    assert len(store.to_jsonl(rows).splitlines()) == 2


def test_sqlite_answer_log(tmp_path: Path) -> None:
    store = AnswerLog(Database.from_settings(Settings(data_dir=tmp_path)))
    assert store.engine.dialect.name == "sqlite"
    exercise(store)
    # Reopening finds everything (the schema is created once, not overwritten).
    assert len(AnswerLog(Database.at(tmp_path / "klausa.sqlite3")).recent()) == 2


def test_postgresql_answer_log(postgres_url: str, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, database_url=postgres_url)
    store = AnswerLog(Database.from_settings(settings))
    assert store.engine.dialect.name == "postgresql"
    exercise(store)
    assert not (tmp_path / "klausa.sqlite3").exists()
    assert len(AnswerLog(Database(postgres_url)).recent()) == 2
