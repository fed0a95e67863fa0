"""A log of every answer with its feedback: what support staff review and export."""

from __future__ import annotations

import csv
import io
import json
import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from pydantic import BaseModel

from klausa.database import Database
from klausa.schema import ANSWERS, REVIEWS, review_columns
from klausa.types import Answer

log = logging.getLogger(__name__)

EXPORT_FIELDS = ("id", "asked_at", "question", "language", "policy", "answer", "refused",
                 "citations", "rating", "comment", "rated_at", "verdict", "verdict_policy",
                 "verdict_section", "review_note", "reviewer", "reviewed_at")


WITH_REVIEWS = ANSWERS.outerjoin(REVIEWS, REVIEWS.c.answer_id == ANSWERS.c.id)
LOGGED_COLUMNS = [
    *(c for c in ANSWERS.c if c.name != "record"),
    REVIEWS.c.verdict,
    REVIEWS.c.policy.label("verdict_policy"),
    REVIEWS.c.section.label("verdict_section"),
    REVIEWS.c.note.label("review_note"),
    REVIEWS.c.reviewer,
    REVIEWS.c.reviewed_at,
]


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
    support: float | None = None
    threshold: float | None = None
    generation_rejected: bool | None = None
    #: The latest review, if any (``klausa.review``).
    verdict: str | None = None
    verdict_policy: str | None = None
    verdict_section: str | None = None
    review_note: str | None = None
    reviewer: str | None = None
    reviewed_at: str | None = None
    #: The review queue's tier for this answer (0 most urgent; ``klausa.review``), when read
    #: through the queue.
    urgency: int | None = None


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def answer_filters(policy: str | None, language: str | None,
                   rating: str | None) -> list[sa.ColumnElement[bool]]:
    """Conditions on logged answers; ``rating``: "up", "down", "none" (not rated) or None."""
    conditions: list[sa.ColumnElement[bool]] = []
    if policy:
        conditions.append(ANSWERS.c.policy == policy)
    if language:
        conditions.append(ANSWERS.c.language == language)
    if rating in ("up", "down"):
        conditions.append(ANSWERS.c.rating == (1 if rating == "up" else 0))
    elif rating == "none":
        conditions.append(ANSWERS.c.rating.is_(None))
    return conditions


class AnswerLog:
    """Every answer given, with the asker's rating and comment, in the deployment's
    ``Database``."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.engine = database.engine

    def record(self, answer: Answer, session: str | None = None) -> str:
        """Store an answer; returns its id (what feedback refers to)."""
        answer_id = uuid.uuid4().hex
        citations = [f"{c.policy_title} §{c.label}" for c in answer.citations]
        with self.engine.begin() as db:
            db.execute(ANSWERS.insert().values(
                id=answer_id, asked_at=now(), session=session, question=answer.question,
                language=answer.language, policy=answer.policy, answer=answer.answer,
                refused=answer.refused, citations=json.dumps(citations, ensure_ascii=False),
                record=answer.model_dump_json(),
                **review_columns(answer.model_dump(mode="json")),
            ))
        return answer_id

    def rate(self, answer_id: str, rating: int | None, comment: str | None = None) -> None:
        """Thumbs up (1) or down (0), and an optional comment; the latest one counts."""
        with self.engine.begin() as db:
            updated = db.execute(
                ANSWERS.update().where(ANSWERS.c.id == answer_id).values(
                    rating=rating, comment=(comment or "").strip() or None, rated_at=now())
            ).rowcount
        if not updated:
            raise KeyError(answer_id)

    def answer(self, answer_id: str) -> Answer:
        with self.engine.connect() as db:
            record = db.execute(
                sa.select(ANSWERS.c.record).where(ANSWERS.c.id == answer_id)).scalar()
        if record is None:
            raise KeyError(answer_id)
        return Answer.model_validate_json(record)

    def get(self, answer_id: str) -> LoggedAnswer | None:
        rows = self.select(ANSWERS.c.id == answer_id, limit=1)
        return rows[0] if rows else None

    def recent(self, *, policy: str | None = None, language: str | None = None,
               rating: str | None = None, limit: int = 200) -> list[LoggedAnswer]:
        """Newest first. ``rating``: "up", "down", "none" (not rated) or None (all)."""
        return self.select(sa.and_(sa.true(), *answer_filters(policy, language, rating)), limit)

    def select(self, condition: sa.ColumnElement[bool], limit: int,
               order: Sequence[sa.ColumnElement] = (),
               columns: Sequence[sa.ColumnElement] = ()) -> list[LoggedAnswer]:
        """Logged answers (newest first after ``order``); ``columns``: extra labelled columns
        read into the ``LoggedAnswer`` field of the same name."""
        query = (sa.select(*LOGGED_COLUMNS, *columns).select_from(WITH_REVIEWS).where(condition)
                 .order_by(*order, ANSWERS.c.asked_at.desc(), ANSWERS.c.id).limit(limit))
        with self.engine.connect() as db:
            rows = db.execute(query).mappings().all()
        return [LoggedAnswer(**{**row, "citations": json.loads(row["citations"])})
                for row in rows]

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
