"""The one database of a deployment: every answer with its feedback and review, the staff
accounts and their sign-in attempts, and the activity record (tables: ``klausa.schema``).

SQLite in the data dir by default (``klausa.sqlite3``, WAL), any SQLAlchemy URL by
``KLAUSA_DATABASE_URL`` (PostgreSQL). It owns the engine and brings the schema up to date on
open; the answer log, the staff directory and the review desk each take it."""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
from pathlib import Path

import sqlalchemy as sa

from klausa.schema import migrate
from klausa.settings import Settings

log = logging.getLogger(__name__)

#: What the SQLite file (``Settings.database_path``) was called in data dirs of sessions 1–8,
#: when it held only feedback; it is renamed on first open.
FORMER_FILE = "feedback.sqlite3"


def _sqlite_pragmas(connection: object, _record: object) -> None:
    # WAL: a writer killed mid-stream loses at most the record in flight.
    cursor = connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = sa.create_engine(url, pool_pre_ping=True)
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        #: The schema version found on open (0: a new database).
        self.migrated_from = migrate(self.engine)

    @classmethod
    def at(cls, path: Path) -> Database:
        """The SQLite database in this file (created with its folder when missing)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        return cls(f"sqlite:///{path}")

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        if settings.database_url:
            return cls(settings.database_url.get_secret_value())
        adopt_former_file(settings.database_path)
        return cls.at(settings.database_path)

    def dispose(self) -> None:
        self.engine.dispose()


def adopt_former_file(target: Path) -> bool:
    """Rename a data dir's ``feedback.sqlite3`` to ``target`` (``klausa.sqlite3``) when only
    the former exists; True when it did. Its write-ahead log is first checkpointed into the file, so
    nothing committed stays behind in a side file. One process at a time (a lock file); stop
    servers of an older Klausa on that data dir first."""
    former = target.with_name(FORMER_FILE)
    if target.exists() or not former.exists():
        return False
    with open(target.with_name(".database.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.exists() or not former.exists():
            return False
        connection = sqlite3.connect(former)
        try:
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            connection.close()
        os.replace(former, target)
        for suffix in ("-wal", "-shm"):
            side = former.with_name(FORMER_FILE + suffix)
            if side.exists():
                os.replace(side, target.with_name(target.name + suffix))
    log.info("database: %s renamed to %s", former, target)
    return True
