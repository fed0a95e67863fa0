"""The review workflow over a real database (SQLite and the tests' PostgreSQL server): schema
migration from the version-1 answer log, staff accounts and sign-in, the queue order,
verdicts, and reviewed answers exported as cases that `klausa eval` scores."""

from __future__ import annotations

import json
import logging
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from klausa.assistant import Assistant
from klausa.cases import load_cases
from klausa.cli import cli
from klausa.database import Database
from klausa.feedback import AnswerLog
from klausa.review import ReviewDesk, ReviewError, merge_cases, reason, update_case_file
from klausa.schema import SCHEMA_VERSION
from klausa.settings import Settings
from klausa.staff import AccountError, SignInError, StaffDirectory
from klausa.types import Answer, Citation

PASSWORD = "a reviewer's long password"
THRESHOLD = 0.245


def logged(question: str, *, support: float = 0.5, refused: bool = False,
           rejected_generation: bool = False, policy: str | None = "jubelio",
           label: str = "GOVERNING LAW", language: str = "en") -> Answer:
    citations = [] if refused else [Citation(
        chunk_id="c1", policy="jubelio", policy_title="Jubelio Privacy Notice", label=label,
        title=label, text="This notice is governed by Indonesian law.", quote="Indonesian law",
        quote_start=27, quote_end=41, source_start=0, source_end=41, language="en")]
    trace: dict = {"support": {"dense": support, "coverage": 0.5, "unknown": 0.0,
                               "support": support},
                   "refusal_threshold": THRESHOLD, "follow_up_of": []}
    if rejected_generation:
        trace["generation"] = {"provider": "local", "passed": False, "raw": "Made up.",
                               "problems": ["unsupported"]}
    return Answer(question=question, language=language,  # type: ignore[arg-type]
                  answer="The policy does not say." if refused else "According to …",
                  refused=refused, policy=policy, citations=citations, trace=trace)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'klausa.sqlite3'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def desk(database_url: str) -> ReviewDesk:
    return ReviewDesk(Database(database_url))


# --- migration ---------------------------------------------------------------------------
def version_1_schema() -> sa.Table:
    """The answer log as sessions 1–4 created it: one table, no review columns."""
    return sa.Table(
        "answers", sa.MetaData(),
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
    )


def test_a_version_1_log_is_migrated_without_losing_an_answer_or_a_rating(
    database_url: str,
) -> None:
    old = version_1_schema()
    engine = sa.create_engine(database_url)
    old.metadata.create_all(engine)
    answers = [logged("Which law applies?"), logged("Refund?", refused=True, support=0.1),
               logged("Is it close?", support=0.26, rejected_generation=True)]
    with engine.begin() as db:
        for number, answer in enumerate(answers):
            db.execute(old.insert().values(
                id=f"a{number}", asked_at=f"2026-11-2{number}T10:00:00+00:00", session="s",
                question=answer.question, language="en", policy="jubelio",
                answer=answer.answer, refused=answer.refused, citations="[]",
                record=answer.model_dump_json(), rating=[1, 0, None][number],
                comment=["clear", "wrong", None][number],
                rated_at="2026-11-29T10:00:00+00:00" if number < 2 else None))
    engine.dispose()

    answer_log = AnswerLog(Database(database_url))
    assert answer_log.database.migrated_from == 1
    rows = {r.id: r for r in answer_log.recent()}
    assert len(rows) == 3
    assert [(rows[f"a{n}"].rating, rows[f"a{n}"].comment) for n in range(3)] == [
        (1, "clear"), (0, "wrong"), (None, None)]
    assert answer_log.answer("a1").refused
    # The review columns were filled from each stored record.
    assert (rows["a2"].support, rows["a2"].threshold, rows["a2"].generation_rejected) == (
        0.26, THRESHOLD, True)
    assert rows["a0"].generation_rejected is False
    tables = set(sa.inspect(answer_log.engine).get_table_names())
    assert {"staff", "reviews", "activity", "sign_in_attempts", "klausa_schema"} <= tables
    # Opening again finds it current and changes nothing.
    again = AnswerLog(Database(database_url))
    assert again.database.migrated_from == SCHEMA_VERSION
    assert len(again.recent()) == 3


# --- staff accounts ----------------------------------------------------------------------
def test_accounts_sign_in_with_roles_and_lock_out_per_account(
    desk: ReviewDesk, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    staff = StaffDirectory(desk.log.database, max_failures=3, lockout=60)
    staff.add("Rina", PASSWORD, "reviewer", by="test")
    staff.add("budi", "budi's admin password", "admin")
    with pytest.raises(AccountError, match="already an account"):
        staff.add("rina", PASSWORD, "admin")
    with pytest.raises(AccountError, match="at least 10"):
        staff.add("short", "short", "reviewer")
    member = staff.sign_in(" RINA ", PASSWORD)
    assert (member.name, member.role) == ("rina", "reviewer")
    assert member.may("review") and not member.may("library")
    assert staff.sign_in("budi", "budi's admin password").may("library")
    for _ in range(3):
        with pytest.raises(SignInError) as failed:
            staff.sign_in("rina", "not the password")
    assert failed.value.locked_for == 60
    with pytest.raises(SignInError):  # the right password waits out the lockout
        staff.sign_in("rina", PASSWORD)
    assert staff.sign_in("budi", "budi's admin password")  # other accounts are not locked
    with pytest.raises(SignInError):
        staff.sign_in("nobody", PASSWORD)
    # Stored as argon2id hashes; neither the right nor a wrong password is stored or logged.
    with desk.log.engine.connect() as db:
        stored = " ".join(str(v) for row in db.execute(sa.text(
            "SELECT * FROM staff UNION ALL SELECT name, '', '', '', '', '' FROM "
            "sign_in_attempts")) for v in row)
        activity = " ".join(str(v) for row in db.execute(sa.text("SELECT * FROM activity"))
                            for v in row)
    assert stored.count("$argon2id$") == 2
    for secret in (PASSWORD, "budi's admin password", "not the password"):
        assert secret not in stored and secret not in activity and secret not in caplog.text
    assert [a.action for a in staff.activity(action="signed_in")] == ["signed_in"] * 3


def test_the_bootstrap_password_signs_in_an_admin_until_that_account_exists(
    desk: ReviewDesk,
) -> None:
    staff = StaffDirectory(desk.log.database, bootstrap_password="bootstrap password")
    assert staff.enabled
    assert staff.sign_in("admin", "bootstrap password").bootstrap
    with pytest.raises(SignInError):
        staff.sign_in("admin", "bootstrap passwor")
    staff.add("admin", "the admin's own password", "admin")
    with pytest.raises(SignInError):
        staff.sign_in("admin", "bootstrap password")
    assert not staff.sign_in("admin", "the admin's own password").bootstrap
    assert not StaffDirectory(Database("sqlite://")).enabled  # no accounts, no password


# --- the queue ---------------------------------------------------------------------------
def test_the_queue_puts_what_needs_a_human_first(desk: ReviewDesk) -> None:
    store = desk.log
    ids = {name: store.record(answer, session=name) for name, answer in [
        ("plain", logged("Which law applies?")),
        ("refused", logged("Can I get a refund?", refused=True, support=0.1)),
        ("near", logged("Is the data sold?", support=0.28)),
        ("nearer", logged("Is the data shared?", support=0.25)),
        ("rejected", logged("Who is the controller?", rejected_generation=True)),
        ("disliked", logged("How long is data kept?")),
        ("indonesian", logged("Hukum apa yang berlaku?", language="id")),
    ]}
    store.rate(ids["disliked"], 0, "wrong section")
    store.rate(ids["plain"], 1)
    order = [r.session for r in desk.queue()]
    assert order[:5] == ["disliked", "refused", "nearer", "near", "rejected"]
    assert set(order[5:]) == {"plain", "indonesian"}
    assert [reason(r) for r in desk.queue()] == [
        "thumbs_down", "refused", "near_threshold", "near_threshold", "generation_rejected",
        "", ""]
    assert [r.session for r in desk.queue(language="id")] == ["indonesian"]
    assert [r.session for r in desk.queue(rating="up")] == ["plain"]
    assert desk.queue(until=date(2020, 1, 1)) == []

    desk.review(ids["disliked"], "wrong_clause", "rina", section="7.2", note=" cite 7.2 ")
    assert desk.queue()[0].session == "refused"  # reviewed answers leave it
    reviewed = desk.queue(reviewed="yes")
    assert [(r.session, r.verdict, r.verdict_section, r.review_note, r.reviewer)
            for r in reviewed] == [("disliked", "wrong_clause", "7.2", "cite 7.2", "rina")]
    # A second verdict replaces the first; both are in the activity record.
    desk.review(ids["disliked"], "right", "budi")
    again = desk.queue(reviewed="yes")[0]
    assert (again.verdict, again.verdict_section, again.reviewer) == ("right", None, "budi")
    assert [a.actor for a in desk.staff.activity(action="review")] == ["budi", "rina"]
    with pytest.raises(ReviewError, match="needs the section"):
        desk.review(ids["near"], "should_answer", "rina")
    with pytest.raises(KeyError):
        desk.review("no-such-answer", "right", "rina")
    # The log's exports carry the verdict.
    exported = AnswerLog.to_csv(desk.queue(reviewed="yes")).splitlines()
    assert exported[0].endswith("verdict,verdict_policy,verdict_section,review_note,reviewer,"
                                "reviewed_at")
    assert ",right,,,,budi," in exported[1]


# --- reviewed answers as cases -----------------------------------------------------------
def test_verdicts_become_cases_and_update_an_exported_set(desk: ReviewDesk,
                                                          tmp_path: Path) -> None:
    store = desk.log
    right = store.record(logged("Which law applies?"), "a")
    wrong = store.record(logged("How long is data kept?"), "b")
    refuse = store.record(logged("Can I pay in instalments?"), "c")
    answer = store.record(logged("Is data sold?", refused=True, support=0.1), "d")
    everywhere = store.record(logged("Who sells data?", policy=None), "e")
    desk.review(right, "right", "rina")
    desk.review(wrong, "wrong_clause", "rina", section="RETENTION")
    desk.review(refuse, "should_refuse", "rina")
    desk.review(answer, "should_answer", "rina", section="DISCLOSURE")
    desk.review(everywhere, "wrong_clause", "rina", policy="netmarks", section="5")
    cases = {c["question"]: c for c in desk.cases()}
    assert (cases["Which law applies?"]["answerable"], cases["Which law applies?"]["sections"],
            cases["Which law applies?"]["quote"]) == (True, ["GOVERNING LAW"], "Indonesian law")
    assert cases["How long is data kept?"]["sections"] == ["RETENTION"]
    assert not cases["Can I pay in instalments?"]["answerable"]
    assert cases["Can I pay in instalments?"]["sections"] == []
    assert cases["Is data sold?"]["answerable"] and cases["Is data sold?"]["sections"] == [
        "DISCLOSURE"]
    assert cases["Who sells data?"]["policy"] is None
    assert cases["Who sells data?"]["sections"] == ["netmarks:5"]
    assert {c["group"] for c in cases.values()} == {"reviewed"}
    assert [c["question"] for c in desk.cases(verdicts=["should_refuse"])] == [
        "Can I pay in instalments?"]
    assert desk.cases(since=date(2999, 1, 1)) == []

    # The same question asked again and reviewed again is still one case (latest verdict).
    again = store.record(logged("How long is data kept?"), "f")
    desk.review(again, "should_refuse", "budi")
    kept = [c for c in desk.cases() if c["question"] == "How long is data kept?"]
    assert len(kept) == 1 and kept[0]["answerable"] is False

    # Merged into an exported set: a question already there is replaced where it stands.
    exported = tmp_path / "cases.jsonl"
    exported.write_text(json.dumps({"id": "hand-1", "policy": "jubelio", "lang": "en",
                                    "question": "how long is data KEPT", "answerable": True,
                                    "sections": ["OLD"]}) + "\n", "utf-8")
    assert update_case_file(exported, desk.cases()) == (1, 4)
    assert update_case_file(exported, desk.cases()) == (5, 0)
    lines = load_cases(exported)
    assert len(lines) == 5 and lines[0].id == "hand-1" and not lines[0].answerable
    assert merge_cases([], []) == []


def test_a_reviewed_answer_exported_by_the_cli_is_scored_by_klausa_eval(
    assistant: Assistant, seed_settings: Settings, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KLAUSA_MODELS_PATH", str(seed_settings.models_dir))
    review_dir = tmp_path / "desk"
    runner = CliRunner()
    added = runner.invoke(cli, ["--data-dir", str(review_dir), "users", "add", "rina",
                                "--role", "reviewer"], input=f"{PASSWORD}\n{PASSWORD}\n")
    assert added.exit_code == 0, added.output
    desk = ReviewDesk.from_settings(Settings(data_dir=review_dir))
    assert desk.staff.sign_in("rina", PASSWORD).role == "reviewer"
    asked = assistant.ask("How long does Interindo keep my data?", generate=False)
    answer_id = desk.log.record(asked, session="s1")
    desk.log.rate(answer_id, 0)
    desk.review(answer_id, "wrong_clause", "rina", section="6", note="retention is §6")

    exported = runner.invoke(cli, ["--data-dir", str(review_dir), "review", "export",
                                   "--verdict", "wrong_clause"])
    assert exported.exit_code == 0, exported.output
    cases_file = tmp_path / "reviewed.jsonl"
    cases_file.write_text(exported.output, "utf-8")
    [case] = load_cases(cases_file)
    assert (case.policy, case.lang, case.sections, case.group) == (
        "interindo", "en", ["6"], "reviewed")
    assert PASSWORD not in (review_dir / "klausa.sqlite3").read_bytes().decode("latin-1")

    records = tmp_path / "records.jsonl"
    scored = runner.invoke(cli, ["--data-dir", str(seed_settings.data_dir), "eval",
                                 str(cases_file), "--per-question", str(records)])
    assert "hit@1" in scored.output, scored.output
    [record] = [json.loads(line) for line in records.read_text("utf-8").splitlines()]
    assert record["case"]["question"] == "How long does Interindo keep my data?"
    assert record["rank"] == 1 and record["cited_ok"]
