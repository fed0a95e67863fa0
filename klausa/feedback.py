"""A log of every answer with its feedback, in SQLite (WAL): what support staff review."""

from __future__ import annotations

import csv
import io
import json
import logging
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel

from klausa.types import Answer

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    id TEXT PRIMARY KEY,
    asked_at TEXT NOT NULL,
    session TEXT,
    question TEXT NOT NULL,
    language TEXT NOT NULL,
    policy TEXT,
    answer TEXT NOT NULL,
    refused INTEGER NOT NULL,
    citations TEXT NOT NULL,
    record TEXT NOT NULL,
    rating INTEGER,
    comment TEXT,
    rated_at TEXT
);
CREATE INDEX IF NOT EXISTS answers_asked_at ON answers (asked_at);
"""
EXPORT_FIELDS = ("id", "asked_at", "question", "language", "policy", "answer", "refused",
                 "citations", "rating", "comment", "rated_at")


class LoggedAnswer(BaseModel):
    id: str
    asked_at: str
    session: str | None
    question: str
    language: str
    policy: str | None
    answer: str
    refused: bool
    citations: list[str]
    rating: int | None
    comment: str | None
    rated_at: str | None


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class AnswerLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=10)
        db.row_factory = sqlite3.Row
        try:
            with db:
                yield db
        finally:
            db.close()

    def record(self, answer: Answer, session: str | None = None) -> str:
        """Store an answer; returns its id (what feedback refers to)."""
        answer_id = uuid.uuid4().hex
        citations = [f"{c.policy_title} §{c.label}" for c in answer.citations]
        with self._lock, self._connect() as db:
            db.execute(
                "INSERT INTO answers (id, asked_at, session, question, language, policy, answer,"
                " refused, citations, record) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (answer_id, now(), session, answer.question, answer.language, answer.policy,
                 answer.answer, int(answer.refused), json.dumps(citations, ensure_ascii=False),
                 answer.model_dump_json()),
            )
        return answer_id

    def rate(self, answer_id: str, rating: int | None, comment: str | None = None) -> None:
        """Thumbs up (1) or down (0), and an optional comment; the latest one counts."""
        with self._lock, self._connect() as db:
            updated = db.execute(
                "UPDATE answers SET rating = ?, comment = ?, rated_at = ? WHERE id = ?",
                (rating, (comment or "").strip() or None, now(), answer_id),
            ).rowcount
        if not updated:
            raise KeyError(answer_id)

    def answer(self, answer_id: str) -> Answer:
        with self._connect() as db:
            row = db.execute("SELECT record FROM answers WHERE id = ?", (answer_id,)).fetchone()
        if row is None:
            raise KeyError(answer_id)
        return Answer.model_validate_json(row["record"])

    def get(self, answer_id: str) -> LoggedAnswer | None:
        rows = self._select("WHERE id = ?", (answer_id,), limit=1)
        return rows[0] if rows else None

    def recent(self, *, policy: str | None = None, language: str | None = None,
               rating: str | None = None, limit: int = 200) -> list[LoggedAnswer]:
        """Newest first. ``rating``: "up", "down", "none" (not rated) or None (all)."""
        clauses, values = [], []
        if policy:
            clauses.append("policy = ?")
            values.append(policy)
        if language:
            clauses.append("language = ?")
            values.append(language)
        if rating in ("up", "down"):
            clauses.append("rating = ?")
            values.append(1 if rating == "up" else 0)
        elif rating == "none":
            clauses.append("rating IS NULL")
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        return self._select(where, tuple(values), limit)

    def _select(self, where: str, values: tuple, limit: int) -> list[LoggedAnswer]:
        with self._connect() as db:
            rows = db.execute(
                f"SELECT id, asked_at, session, question, language, policy, answer, refused,"
                f" citations, rating, comment, rated_at FROM answers {where}"
                f" ORDER BY asked_at DESC, rowid DESC LIMIT ?",
                (*values, limit),
            ).fetchall()
        return [
            LoggedAnswer(**{**dict(row), "refused": bool(row["refused"]),
                            "citations": json.loads(row["citations"])})
            for row in rows
        ]

    @staticmethod
    def to_csv(rows: list[LoggedAnswer]) -> str:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=EXPORT_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            data = row.model_dump()
            data["citations"] = "; ".join(row.citations)
            writer.writerow(data)
        return buffer.getvalue()

    @staticmethod
    def to_jsonl(rows: list[LoggedAnswer]) -> str:
        return "".join(row.model_dump_json() + "\n" for row in rows)
