"""The support desk's review workflow: the queue of answers that most need a human, the
verdicts staff give them, and reviewed answers written out as Q&A-set cases.

The queue's order, most urgent first: thumbs-down; refusals ("the policy does not say");
answers whose support lies close to the refusal threshold (closest first); answers whose
generated text was rejected; then the rest. Within a tier, newest first."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from datetime import date
from pathlib import Path
from typing import Literal

import sqlalchemy as sa

from klausa.cases import Case
from klausa.database import Database
from klausa.feedback import AnswerLog, LoggedAnswer, answer_filters, now
from klausa.judge import CLOSE_CALL
from klausa.schema import ANSWERS, REVIEWS
from klausa.settings import Settings
from klausa.staff import StaffDirectory
from klausa.types import Answer

log = logging.getLogger(__name__)

Verdict = Literal["right", "wrong_clause", "should_refuse", "should_answer"]
VERDICTS: tuple[Verdict, ...] = ("right", "wrong_clause", "should_refuse", "should_answer")
VERDICT_LABELS: dict[str, str] = {
    "right": "Right",
    "wrong_clause": "Wrong clause",
    "should_refuse": "Should have said “not stated”",
    "should_answer": "Should have answered",
}
#: The verdicts that name the section the answer should have cited.
NEEDS_SECTION: frozenset[str] = frozenset({"wrong_clause", "should_answer"})
#: Support within this distance of the refusal threshold is "close" (either side).
NEAR_THRESHOLD = CLOSE_CALL
#: Questions before a reviewed one in the same conversation kept as its case's ``history``.
HISTORY_TURNS = 3

Reason = Literal["thumbs_down", "refused", "near_threshold", "generation_rejected", ""]
#: Why an answer stands where it does in the queue, by its tier (``_tier``).
REASONS: tuple[Reason, ...] = ("thumbs_down", "refused", "near_threshold",
                               "generation_rejected", "")
REASON_LABELS: dict[str, str] = {
    "thumbs_down": "👎 thumbs-down",
    "refused": "not stated",
    "near_threshold": "close call",
    "generation_rejected": "generation rejected",
    "": "",
}
Reviewed = Literal["no", "yes", "all"]


class ReviewError(ValueError):
    """A verdict that cannot be stored as given; the message says why."""


def _distance() -> sa.ColumnElement[float]:
    return sa.func.abs(ANSWERS.c.support - ANSWERS.c.threshold)


def _tier() -> sa.ColumnElement[int]:
    return sa.case(
        (ANSWERS.c.rating == 0, 0),
        (ANSWERS.c.refused.is_(True), 1),
        (sa.and_(ANSWERS.c.support.is_not(None), ANSWERS.c.threshold.is_not(None),
                 _distance() <= NEAR_THRESHOLD), 2),
        (ANSWERS.c.generation_rejected.is_(True), 3),
        else_=4,
    )


def reason(row: LoggedAnswer) -> Reason:
    """Why an answer read through the queue stands where it does: its tier, as SQL ordered it."""
    return REASONS[row.urgency] if row.urgency is not None else ""


class ReviewDesk:
    """The queue and the verdicts, over the answer log (and its staff, for who did what)."""

    def __init__(self, database: Database, staff: StaffDirectory | None = None) -> None:
        self.log = AnswerLog(database)
        self.staff = staff or StaffDirectory(database)

    @classmethod
    def from_settings(cls, settings: Settings) -> ReviewDesk:
        database = Database.from_settings(settings)
        return cls(database, StaffDirectory.from_settings(settings, database))

    def queue(self, *, policy: str | None = None, language: str | None = None,
              rating: str | None = None, reviewed: Reviewed = "no",
              since: date | None = None, until: date | None = None,
              limit: int = 200) -> list[LoggedAnswer]:
        """Answers in review order. ``rating``: "up", "down", "none" or None (all);
        ``since``/``until``: asked on or after / on or before these (UTC) days."""
        conditions = answer_filters(policy, language, rating)
        if reviewed == "no":
            conditions.append(REVIEWS.c.verdict.is_(None))
        elif reviewed == "yes":
            conditions.append(REVIEWS.c.verdict.is_not(None))
        if since:
            conditions.append(ANSWERS.c.asked_at >= since.isoformat())
        if until:
            conditions.append(ANSWERS.c.asked_at < _day_after(until))
        tier = _tier().label("urgency")
        closeness = sa.case((_tier() == 2, _distance()), else_=0.0)
        return self.log.select(sa.and_(sa.true(), *conditions), limit,
                               order=(tier, closeness), columns=(tier,))

    def review(self, answer_id: str, verdict: Verdict, reviewer: str, *,
               section: str | None = None, policy: str | None = None,
               note: str | None = None) -> None:
        """Store (or replace) the verdict on one answer, with who gave it and when."""
        if verdict not in VERDICTS:
            raise ReviewError(f"A verdict is one of: {', '.join(VERDICTS)}.")
        answer = self.log.answer(answer_id)  # KeyError for an unknown answer
        if verdict in NEEDS_SECTION:
            policy = policy or answer.policy
            if not section or not policy:
                raise ReviewError("This verdict needs the section the answer should have cited.")
        else:
            section = policy = None
        note = (note or "").strip()[:4000] or None
        values = {"verdict": verdict, "policy": policy, "section": section, "note": note,
                  "reviewer": reviewer, "reviewed_at": now()}
        with self.log.engine.begin() as db:
            updated = db.execute(REVIEWS.update().where(REVIEWS.c.answer_id == answer_id)
                                 .values(**values)).rowcount
            if not updated:
                db.execute(REVIEWS.insert().values(answer_id=answer_id, **values))
        target = f" → {policy} §{section}" if section else ""
        self.staff.record(reviewer, "review", f"{answer_id}: {verdict}{target}")

    def reviewed(self, *, since: date | None = None,
                 verdicts: Sequence[str] = ()) -> list[LoggedAnswer]:
        conditions = [REVIEWS.c.verdict.is_not(None)]
        if since:
            conditions.append(REVIEWS.c.reviewed_at >= since.isoformat())
        if verdicts:
            conditions.append(REVIEWS.c.verdict.in_(list(verdicts)))
        return self.log.select(sa.and_(*conditions), limit=100_000)

    # --- reviewed answers as test cases ------------------------------------------------------
    def cases(self, *, since: date | None = None, verdicts: Sequence[str] = ()) -> list[dict]:
        """Reviewed answers as Q&A-set lines (``klausa eval`` reads them as they are). The same
        question in the same conversation context, reviewed more than once, is one case: the
        latest review counts."""
        latest: dict[str, dict] = {}
        rows = self.reviewed(since=since, verdicts=verdicts)
        for row in sorted(rows, key=lambda r: r.reviewed_at or ""):
            case = self.as_case(row)
            latest[case["id"]] = case
        return list(latest.values())

    def as_case(self, row: LoggedAnswer) -> dict:
        answer = self.log.answer(row.id)
        history = self.history(row, answer)
        if row.verdict == "right":
            answerable = not answer.refused
            sections = [_gold_label(c.policy, c.label, answer.policy)
                        for c in answer.citations] if answerable else []
            # The policy's own words (what `klausa eval` looks for in the cited clause), not
            # a translation's.
            first = answer.citations[0] if answerable and answer.citations else None
            quote = (first.original or first).quote if first else None
        elif row.verdict in NEEDS_SECTION:
            answerable = True
            sections = [_gold_label(row.verdict_policy or "", row.verdict_section or "",
                                    answer.policy)]
            quote = None
        else:
            answerable, sections, quote = False, [], None
        case = Case(id=case_id(answer, history), policy=answer.policy, lang=answer.language,
                    question=answer.question, answerable=answerable, sections=sections,
                    quote=quote, history=history, group="reviewed")
        return {**case.model_dump(), "verdict": row.verdict, "note": row.review_note,
                "reviewer": row.reviewer, "reviewed_at": row.reviewed_at, "answer_id": row.id}

    def history(self, row: LoggedAnswer, answer: Answer) -> list[str]:
        """The questions asked just before this one in the same conversation, when it was
        read as their follow-up (otherwise they did not change its answer)."""
        if not row.session or not answer.trace.follow_up_of:
            return []
        with self.log.engine.connect() as db:
            earlier = db.execute(
                sa.select(ANSWERS.c.question)
                .where(ANSWERS.c.session == row.session, ANSWERS.c.asked_at < row.asked_at)
                .order_by(ANSWERS.c.asked_at.desc()).limit(HISTORY_TURNS)
            ).scalars().all()
        return list(reversed(earlier))


def _gold_label(policy: str, label: str, asked_policy: str | None) -> str:
    # A case about one policy names its sections by label; one about all policies as
    # "policy:label" (what ``klausa.cases.label_matches`` reads).
    return label if asked_policy else f"{policy}:{label}"


def _normalised(question: str) -> str:
    return " ".join(re.findall(r"\w+", question.lower()))


def case_id(answer: Answer, history: Sequence[str]) -> str:
    """Stable for the same question, policy, language and conversation before it."""
    key = json.dumps([answer.policy, answer.language, _normalised(answer.question),
                      [_normalised(h) for h in history]])
    return "review-" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:12]


def _same_question(line: dict, case: dict) -> bool:
    return line.get("id") == case["id"] or (
        line.get("policy") == case["policy"] and line.get("lang") == case["lang"]
        and _normalised(str(line.get("question", ""))) == _normalised(case["question"])
        and [_normalised(h) for h in line.get("history") or []]
        == [_normalised(h) for h in case["history"]]
    )


def merge_cases(existing: Iterable[dict], reviewed: Sequence[dict]) -> list[dict]:
    """An exported set with reviewed cases merged in: a line asking the same question (same
    id, or same policy, language, question and history) is replaced where it stands; the
    others are appended."""
    merged = list(existing)
    for case in reviewed:
        for index, line in enumerate(merged):
            if _same_question(line, case):
                merged[index] = {**case, "id": line.get("id", case["id"])}
                break
        else:
            merged.append(case)
    return merged


def jsonl(lines: Iterable[dict]) -> str:
    return "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)


def update_case_file(path: Path, reviewed: Sequence[dict]) -> tuple[int, int]:
    """Merge reviewed cases into a JSONL set in place (atomically); (replaced, added)."""
    existing: list[dict] = []
    if path.exists():
        for number, line in enumerate(path.read_text("utf-8").splitlines(), 1):
            if line.strip():
                try:
                    existing.append(json.loads(line))
                except ValueError as error:
                    raise ReviewError(f"{path}:{number}: not a JSON line ({error})") from None
    merged = merge_cases(existing, reviewed)
    added = len(merged) - len(existing)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        out.write(jsonl(merged))
    os.replace(temporary, path)
    return len(reviewed) - added, added


def _day_after(day: date) -> str:
    return date.fromordinal(day.toordinal() + 1).isoformat()
