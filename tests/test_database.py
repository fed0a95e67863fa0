"""One database object: a data dir written by an earlier Klausa keeps working, its file renamed
to say what it holds, every answer, rating, account and review still there and readable."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from klausa.database import FORMER_FILE, Database
from klausa.feedback import AnswerLog
from klausa.review import ReviewDesk
from klausa.schema import SCHEMA_VERSION
from klausa.settings import Settings
from klausa.staff import StaffDirectory

pytestmark = pytest.mark.fast

TODAY = Path(__file__).parent / "golden" / "answer-log-v2.sql"


@pytest.fixture
def former_data_dir(tmp_path: Path) -> Path:
    """A data dir as session 8 left it: ``feedback.sqlite3`` at schema version 2."""
    db = sqlite3.connect(tmp_path / FORMER_FILE)
    db.executescript(TODAY.read_text("utf-8"))
    db.close()
    return tmp_path


def test_a_former_data_dir_is_adopted_with_everything_in_it(former_data_dir: Path) -> None:
    settings = Settings(data_dir=former_data_dir)
    database = Database.from_settings(settings)
    assert settings.database_path.is_file() and settings.database_path.name == "klausa.sqlite3"
    assert not (former_data_dir / FORMER_FILE).exists()
    assert database.migrated_from == SCHEMA_VERSION  # nothing else to migrate

    log = AnswerLog(database)
    rows = {row.question: row for row in log.recent()}
    assert len(rows) == 5
    assert rows["Does Webdeskers use cookies?"].rating == 1
    # Each stored answer reads with its typed trace, whatever the code that wrote it.
    follow = log.answer(rows["can I block them?"].id)
    assert follow.trace.follow_up_of == ["Does use cookies?"]
    unstated = log.answer(rows["Berapa hari setelah akun Webdeskers saya ditutup, data saya "
                               "dihapus?"].id)
    assert unstated.refused and unstated.trace.not_stated
    assert unstated.trace.support is not None and unstated.trace.refusal_threshold == 0.245

    desk = ReviewDesk(database)
    assert [r.verdict for r in desk.queue(reviewed="yes")] == ["right"]
    assert desk.queue()[0].question == "Do you offer a warranty on broken blenders?"  # 👎 first
    assert StaffDirectory(database).sign_in("rina", "a long enough password").role == "reviewer"


def test_opening_again_changes_nothing(former_data_dir: Path) -> None:
    settings = Settings(data_dir=former_data_dir)
    AnswerLog(Database.from_settings(settings)).rate(
        AnswerLog(Database.from_settings(settings)).recent()[0].id, 0, "second visit")
    again = AnswerLog(Database.from_settings(settings))
    assert len(again.recent()) == 5
    assert any(r.comment == "second visit" for r in again.recent())


def test_a_new_file_beside_a_former_one_is_the_one_used(former_data_dir: Path) -> None:
    """Both present (a copy put back by hand): the new file is used and the old left as is."""
    settings = Settings(data_dir=former_data_dir)
    Database.at(settings.database_path)  # an empty database of today
    assert AnswerLog(Database.from_settings(settings)).recent() == []
    assert (former_data_dir / FORMER_FILE).exists()
