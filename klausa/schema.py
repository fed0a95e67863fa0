"""The answer-log database: its tables and the migrations that bring an older one up to date.

One schema for SQLite (the default, under the data dir) and PostgreSQL (``KLAUSA_DATABASE_URL``),
written through SQLAlchemy Core. ``migrate`` runs on every open; each step is idempotent, so
two processes opening an old database at once both end with the same schema."""

from __future__ import annotations

import json
import logging

import sqlalchemy as sa

from klausa.trace import Trace

log = logging.getLogger(__name__)

#: Version 1: the answers and their ratings (sessions 1–4). Version 2: review columns on the
#: answers (support, threshold, rejected generation), staff accounts, sign-in attempts,
#: reviews, and the activity record.
SCHEMA_VERSION = 2

METADATA = sa.MetaData()

ANSWERS = sa.Table(
    "answers",
    METADATA,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("asked_at", sa.String(32), nullable=False, index=True),
    sa.Column("session", sa.String(64)),
    sa.Column("question", sa.Text, nullable=False),
    sa.Column("language", sa.String(8), nullable=False),
    sa.Column("policy", sa.String(128)),
    sa.Column("answer", sa.Text, nullable=False),
    sa.Column("refused", sa.Boolean, nullable=False),
    sa.Column("citations", sa.Text, nullable=False),
    sa.Column("record", sa.Text, nullable=False),
    sa.Column("rating", sa.Integer),
    sa.Column("comment", sa.Text),
    sa.Column("rated_at", sa.String(32)),
    # Version 2: what the review queue orders by, copied out of the record.
    sa.Column("support", sa.Float),
    sa.Column("threshold", sa.Float),
    sa.Column("generation_rejected", sa.Boolean),
)

STAFF = sa.Table(
    "staff",
    METADATA,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("role", sa.String(16), nullable=False),
    # An argon2id hash (salt and cost inside it); never the password.
    sa.Column("password_hash", sa.Text, nullable=False),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("created_by", sa.String(64)),
    sa.Column("last_sign_in", sa.String(32)),
)

SIGN_IN_ATTEMPTS = sa.Table(
    "sign_in_attempts",
    METADATA,
    # Any name typed into the form, known or not: the lockout is per account name.
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("failures", sa.Integer, nullable=False),
    sa.Column("first_failure", sa.Float, nullable=False),
    sa.Column("locked_until", sa.Float, nullable=False),
)

REVIEWS = sa.Table(
    "reviews",
    METADATA,
    sa.Column("answer_id", sa.String(32), sa.ForeignKey("answers.id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("verdict", sa.String(24), nullable=False),
    # The section the answer should have cited (wrong clause / should have answered).
    sa.Column("policy", sa.String(128)),
    sa.Column("section", sa.String(256)),
    sa.Column("note", sa.Text),
    sa.Column("reviewer", sa.String(64), nullable=False),
    sa.Column("reviewed_at", sa.String(32), nullable=False, index=True),
)

ACTIVITY = sa.Table(
    "activity",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.String(32), nullable=False, index=True),
    sa.Column("actor", sa.String(64), nullable=False),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("detail", sa.Text, nullable=False, default=""),
)

VERSION = sa.Table(
    "klausa_schema",
    METADATA,
    sa.Column("version", sa.Integer, nullable=False),
)

#: The columns version 2 adds to a version-1 ``answers`` table.
ADDED_ANSWER_COLUMNS = ("support", "threshold", "generation_rejected")


def review_columns(record: dict) -> dict[str, object]:
    """What the review queue orders by, read out of a stored answer record (of any age): the
    score that decided and its threshold (the reader's, or the similarity support's)."""
    trace = Trace.model_validate(record.get("trace") or {})
    support, threshold = trace.decisive_score()
    return {
        "support": support,
        "threshold": threshold,
        "generation_rejected": trace.generation is not None and trace.generation.rejected,
    }


def migrate(engine: sa.Engine) -> int:
    """Bring the database to ``SCHEMA_VERSION`` (creating it when empty); returns the
    version it was at. Nothing is dropped or rewritten: answers and ratings stay as they are."""
    with engine.begin() as db:
        if engine.dialect.name == "postgresql":
            # One migrating process at a time; the others wait, then find nothing to do.
            db.execute(sa.text("SELECT pg_advisory_xact_lock(7242011)"))
        tables = set(sa.inspect(db).get_table_names())
        found = _stored_version(db, tables)
        if found >= SCHEMA_VERSION:
            return found
        if "answers" in tables:
            present = {c["name"] for c in sa.inspect(db).get_columns("answers")}
            for name in ADDED_ANSWER_COLUMNS:
                if name not in present:
                    column = ANSWERS.c[name]
                    kind = column.type.compile(dialect=engine.dialect)
                    try:
                        db.execute(sa.text(f"ALTER TABLE answers ADD COLUMN {name} {kind}"))
                    except sa.exc.OperationalError:
                        # SQLite: another process added it between our look and our ALTER.
                        columns = sa.inspect(db).get_columns("answers")
                        if name not in {c["name"] for c in columns}:
                            raise
        METADATA.create_all(db)
        backfilled = _backfill_review_columns(db)
        db.execute(VERSION.delete())
        db.execute(VERSION.insert().values(version=SCHEMA_VERSION))
    if found:
        log.info("answer log migrated from schema %d to %d (%d answers backfilled)",
                 found, SCHEMA_VERSION, backfilled)
    return found


def _stored_version(db: sa.Connection, tables: set[str]) -> int:
    if "klausa_schema" in tables:
        return int(db.execute(sa.select(sa.func.max(VERSION.c.version))).scalar() or 0)
    return 1 if "answers" in tables else 0


def _backfill_review_columns(db: sa.Connection, batch: int = 500) -> int:
    done = 0
    while True:
        rows = db.execute(
            sa.select(ANSWERS.c.id, ANSWERS.c.record)
            .where(ANSWERS.c.generation_rejected.is_(None)).limit(batch)
        ).all()
        if not rows:
            return done
        for answer_id, record in rows:
            try:
                values = review_columns(json.loads(record))
            except (ValueError, TypeError):
                values = review_columns({})  # an unreadable record: nothing to order by
            db.execute(ANSWERS.update().where(ANSWERS.c.id == answer_id).values(**values))
        done += len(rows)
