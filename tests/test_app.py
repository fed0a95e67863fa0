"""The Streamlit app through AppTest: real assistant, real index, real SQLite."""

from __future__ import annotations

import csv
import io
import logging
import sqlite3
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from klausa.catalog import Catalog
from klausa.compose import collapse
from klausa.database import Database
from klausa.settings import Settings
from klausa.staff import StaffDirectory
from tests.conftest import REPO

PASSWORD = "correct horse battery staple"
REVIEWER_PASSWORD = "rina's reviewing password"


@pytest.fixture
def app(seed_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    """The app over the seed index, with its own feedback database and a staff password."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "index").symlink_to(seed_settings.index_dir)
    monkeypatch.setenv("KLAUSA_DATA_DIR", str(data_dir))
    monkeypatch.setenv("KLAUSA_MODELS_PATH", str(seed_settings.models_dir))
    monkeypatch.setenv("KLAUSA_ADMIN_PASSWORD", PASSWORD)
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120)
    at.run()
    assert not at.exception
    return at


def markdown_text(at: AppTest) -> str:
    return "\n".join(m.value for m in at.markdown)


def ask(at: AppTest, question: str) -> AppTest:
    at.chat_input[0].set_value(question).run()
    assert not at.exception, at.exception
    return at


def test_english_question_renders_the_cited_section(app: AppTest) -> None:
    ask(app, "Does Jubelio sell my personal data?")
    text = markdown_text(app)
    assert "§DISCLOSURE OF PERSONAL DATA WE COLLECT" in text
    assert '<mark class="klausa-quote">We will not sell or rent your Personal Data.</mark>' in text
    assert "Try asking" not in text  # the starters are gone once the chat starts


def test_indonesian_question_about_an_english_policy(app: AppTest) -> None:
    app.selectbox(key="policy_choice").set_value("webdeskers").run()
    ask(app, "Bisakah saya menolak cookies lewat pengaturan browser?")
    text = markdown_text(app)
    assert "Menurut Kebijakan Privasi Webdeskers §D\\.3" in text
    # Quoted from the Indonesian translation, which the answer names as Klausa's; the
    # policy's own English clause is under it, its supporting words highlighted too.
    assert "Dikutip dari terjemahan bahasa Indonesia yang disediakan Klausa" in text
    assert "menolak cookies" in text
    original = next(e for e in app.expander
                    if e.label == "Teks asli kebijakan (bahasa Inggris)")
    shown = "\n".join(m.value for m in original.markdown)
    assert '<mark class="klausa-quote">' in shown and "reject cookies" in shown
    # The interface follows the asker's language from now on.
    app.run()
    assert app.chat_input[0].placeholder.startswith("Ajukan pertanyaan")


def test_refusal_renders_as_a_refusal(app: AppTest) -> None:
    app.selectbox(key="policy_choice").set_value("webdeskers").run()
    ask(app, "How many days do I have to return an item for a refund?")
    assert len(app.warning) == 1
    assert "does not say anything about this" in app.warning[0].value
    assert "klausa-quote" not in markdown_text(app)  # no citation cards


def test_a_greeting_gets_a_reply_not_an_error_nor_a_refusal(app: AppTest) -> None:
    ask(app, "hi")
    assert not app.error and not app.warning
    text = markdown_text(app)
    assert "I answer questions about these privacy policies" in text
    assert "Webdeskers Privacy Policy" in text and "klausa-quote" not in text
    database = sqlite3.connect(Settings().database_path)
    if database.execute("SELECT 1 FROM sqlite_master WHERE name = 'answers'").fetchone():
        assert database.execute("SELECT count(*) FROM answers").fetchone() == (0,)
    # It stays in the conversation, which goes on: the next question is answered.
    ask(app, "Does Jubelio sell my personal data?")
    text = markdown_text(app)
    assert "I answer questions about these privacy policies" in text
    assert "We will not sell or rent your Personal Data." in text


def test_feedback_lands_in_sqlite(app: AppTest) -> None:
    ask(app, "How long does Interindo keep my data?")
    app.get("feedback")[0].set_value(1).run()
    rows = sqlite3.connect(Settings().database_path).execute(
        "SELECT question, rating, citations, language FROM answers").fetchall()
    assert rows == [("How long does Interindo keep my data?", 1,
                     '["Interindo Privacy Policy §6"]', "en")]
    # Feedback stays visible on rerun.
    app.run()
    assert app.get("feedback")[0].value == 1


def test_starter_question_and_new_conversation(app: AppTest) -> None:
    app.button(key="starter-0").click().run()
    assert "§" in markdown_text(app)
    app.sidebar.button[0].click().run()
    assert "Try asking" in markdown_text(app)


def sign_in(at: AppTest, page: str, name: str, password: str) -> AppTest:
    at.switch_page(page).run()
    # Inside a form the typed values are sent with the submit click, as in a browser.
    at.text_input[0].input(name)
    at.text_input[1].input(password)
    at.button[0].click().run()
    assert not at.exception, at.exception
    return at


def add_reviewer(name: str = "rina") -> None:
    staff = StaffDirectory(Database.from_settings(Settings()))
    staff.add(name, REVIEWER_PASSWORD, "reviewer", by="test")


def queue_box(at: AppTest):
    return next(box for box in at.selectbox if box.label.startswith("Answer to review"))


def test_support_page_refuses_a_wrong_password(
    app: AppTest, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    ask(app, "Does Jubelio sell my personal data?")
    sign_in(app, "app_pages/support.py", "admin", "not-the-password-1234")
    assert any("Wrong name or password" in e.value for e in app.error)
    assert not app.dataframe
    sign_in(app, "app_pages/support.py", "admin", PASSWORD)
    assert not app.error
    assert app.dataframe  # the review queue
    assert "Signed in as **admin** (admin)" in markdown_text(app)
    # Neither password, right or wrong, is ever logged.
    assert PASSWORD not in caplog.text and "not-the-password-1234" not in caplog.text


def test_support_desk_shows_how_a_follow_up_was_read(app: AppTest) -> None:
    ask(app, "Does Netmarks use cookies?")
    ask(app, "bisa saya blokir?")
    sign_in(app, "app_pages/support.py", "admin", PASSWORD)
    box = queue_box(app)
    box.select_index(next(n for n, label in enumerate(box.options)
                          if label.endswith("· bisa saya blokir?"))).run()
    candidates = app.dataframe[1].value  # the queue, then the candidates
    cited = candidates[candidates["cited"] == "✓"]
    assert list(cited["§"]) == ["Cookies and Other Website Technologies"]
    # The reader's probability beside each candidate it read; the cited one is the clause
    # that says how to refuse cookies in the browser.
    assert "adjust the settings in your browser" in cited["clause"].iloc[0]
    assert cited["reader"].iloc[0] == candidates["reader"].max()
    why = markdown_text(app)
    assert "Read as a follow-up of: “Does use cookies?”" in why
    assert "that it answers" in why and "so Klausa answered" in why
    assert "{" not in why  # a trace in sentences, not a dict


def test_support_desk_marks_a_clause_found_through_its_english_gloss(app: AppTest) -> None:
    question = "Does LaciMart look into complaints about my data?"
    ask(app, question)
    sign_in(app, "app_pages/support.py", "admin", PASSWORD)
    box = queue_box(app)
    box.select_index(next(n for n, label in enumerate(box.options)
                          if label.endswith(f"· {question}"))).run()
    candidates = app.dataframe[1].value
    assert (candidates["policy"].iloc[0], candidates["§"].iloc[0]) == ("lacimart", "C.2")
    assert candidates["via gloss"].iloc[0] == "✓"
    # The clause shown is the policy's own Indonesian text; its machine translation is beside
    # it, for staff who do not read Indonesian.
    assert "LaciMartKTUM akan menyelidiki keluhan" in candidates["clause"].iloc[0]
    assert "investigate" in candidates["English gloss"].iloc[0]
    assert "machine translation" in markdown_text(app) or any(
        "machine translation" in c.value for c in app.caption)


def test_a_number_the_policy_does_not_give_is_not_stated_and_the_desk_says_why(
    app: AppTest,
) -> None:
    question = "How many days after I delete my Interindo account is my data erased?"
    ask(app, question)
    assert "**Not stated in the policy**" in markdown_text(app)
    shown = app.warning[0].value.replace("\\", "")  # the markdown is escaped
    assert "Interindo Privacy Policy does not give a number for this." in shown
    # The nearest sections open to what the policy does say about it.
    section = next(e for e in app.expander if e.label == "Read Interindo Privacy Policy §6")
    assert "retain information as long as" in section.text[0].value
    sign_in(app, "app_pages/support.py", "admin", PASSWORD)
    box = queue_box(app)
    box.select_index(next(n for n, label in enumerate(box.options)
                          if label.endswith(f"· {question}"))).run()
    assert "The question asks for a number (“How many days”); **no clause Klausa would " \
           "cite gives one**" in markdown_text(app)


def test_the_review_queue_opens_the_thumbs_down_first_and_stores_a_verdict(
    app: AppTest,
) -> None:
    add_reviewer()
    ask(app, "How long does Interindo keep my data?")
    app.get("feedback")[0].set_value(0).run()
    app.selectbox(key="policy_choice").set_value("webdeskers").run()
    ask(app, "How many days do I have to return an item for a refund?")
    ask(app, "Does Webdeskers use cookies?")
    sign_in(app, "app_pages/support.py", "rina", REVIEWER_PASSWORD)
    order = [label.rpartition(" · ")[2] for label in queue_box(app).options]
    assert order[:2] == ["How long does Interindo keep my data?",
                         "How many days do I have to return an item for a refund?"]
    assert queue_box(app).value.question == order[0]  # the most urgent is open
    assert list(app.dataframe[0].value["why first"])[:2] == ["👎 thumbs-down", "not stated"]
    # The rating reads without the emoji too (headless browsers here draw it as a box).
    assert list(app.dataframe[0].value["rating"])[:2] == ["👎 down", ""]

    app.radio[0].set_value("wrong_clause").run()
    section = next(b for b in app.selectbox if b.label == "The section it should have cited")
    section.set_value("6").run()
    app.text_area[0].input("Retention is §6.")
    next(b for b in app.button if b.label == "Save verdict").click().run()
    assert not app.exception
    assert any("Saved: Wrong clause → §6" in s.value for s in app.success)
    rows = sqlite3.connect(Settings().database_path).execute(
        "SELECT a.question, r.verdict, r.section, r.note, r.reviewer FROM reviews r "
        "JOIN answers a ON a.id = r.answer_id").fetchall()
    assert rows == [("How long does Interindo keep my data?", "wrong_clause", "6",
                     "Retention is §6.", "rina")]
    # The reviewed answer left the queue; the next most urgent is open.
    assert queue_box(app).value.question == order[1]


def test_a_reviewer_is_refused_the_library(app: AppTest) -> None:
    add_reviewer()
    sign_in(app, "app_pages/library.py", "rina", REVIEWER_PASSWORD)
    assert any("Your account (reviewer) cannot use this page" in e.value for e in app.error)
    labels = [b.label for b in app.button]
    assert "Re-index everything" not in labels and "Upload and index" not in labels
    assert not app.get("file_uploader")
    # An admin gets the library, the accounts and the activity record (the reviewer's
    # sign-in is in it).
    app.sidebar.button(key="sign-out").click().run()
    sign_in(app, "app_pages/library.py", "admin", PASSWORD)
    assert "Re-index everything" in [b.label for b in app.button]
    # The Indonesian policy says how many of its clauses have an English gloss.
    lacimart = Catalog.load(Settings().catalog_dir).policies["lacimart"].chunks
    coverage = f"{sum(1 for c in lacimart if c.gloss)} of {len(lacimart)} clauses"
    assert any("English glosses" in c.value and coverage in c.value for c in app.caption)
    assert sum("English glosses" in c.value for c in app.caption) == 1  # LaciMart's alone
    activity = app.dataframe[-1].value
    assert ("rina", "signed in") in set(zip(activity["who"], activity["what"], strict=True))
    assert "rina" in set(app.dataframe[-2].value["name"])


def test_an_admin_adds_a_reviewer_account_on_the_library_page(app: AppTest) -> None:
    sign_in(app, "app_pages/library.py", "admin", PASSWORD)
    app.text_input(key="new-account-name").input("dewi")
    app.selectbox(key="new-account-role").set_value("reviewer")
    app.text_input(key="new-account-password").input(REVIEWER_PASSWORD)
    app.text_input(key="new-account-again").input(REVIEWER_PASSWORD + "x")
    next(b for b in app.button if b.label == "Add account").click().run()
    assert any("The two passwords differ" in e.value for e in app.error)
    app.text_input(key="new-account-name").input("dewi")
    app.text_input(key="new-account-password").input(REVIEWER_PASSWORD)
    app.text_input(key="new-account-again").input(REVIEWER_PASSWORD)
    next(b for b in app.button if b.label == "Add account").click().run()
    assert any("Added dewi (reviewer)" in m.value for m in app.success)
    staff = StaffDirectory(Database.from_settings(Settings()))
    assert staff.sign_in("dewi", REVIEWER_PASSWORD).role == "reviewer"
    added = staff.activity(action="account_added")
    assert [(a.actor, a.detail) for a in added] == [("admin", "dewi (reviewer)")]
    # Another admin removes dewi while this page still lists her (and budi is added):
    # applying a change to dewi says she is gone and changes nobody else.
    staff.add("budi", REVIEWER_PASSWORD, "reviewer", by="someone-else")
    app.run()
    app.selectbox(key="change-account-name").set_value("dewi")
    app.selectbox(key="change-account-role").set_value("admin")
    staff.remove("dewi", by="someone-else")
    next(b for b in app.button if b.label == "Apply").click().run()
    assert not app.exception
    assert any("There is no account named 'dewi'" in e.value for e in app.error)
    assert not app.success
    assert staff.get("budi").role == "reviewer"
    assert staff.get("dewi") is None


def test_removing_an_upload_that_another_admin_removed_meanwhile_removes_nothing_else(
    app: AppTest,
) -> None:
    from ingest.uploads import add_upload, remove_upload
    from klausa.catalog import load_manifest

    settings = Settings()
    for policy_id in ("tokoku", "tokobaru"):
        add_upload(settings, f"{policy_id}.md", b"# Kebijakan\n\n## 1. Data\n\nKami menyimpan.",
                   policy_id=policy_id, title=policy_id, language="id")
    sign_in(app, "app_pages/library.py", "admin", PASSWORD)
    app.selectbox(key="remove-policy").set_value("tokobaru").run()
    remove_upload(settings, "tokobaru")  # from another admin's session
    next(b for b in app.button if b.label == "Remove").click().run()
    assert not app.exception
    assert any("There is no uploaded policy 'tokobaru'" in e.value for e in app.error)
    assert [i.id for i in load_manifest(settings.uploads_dir)] == ["tokoku"]


def test_staff_pages_are_off_without_a_password_or_an_account(
    app: AppTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KLAUSA_ADMIN_PASSWORD")
    app.switch_page("app_pages/library.py").run()
    assert "klausa users add" in app.info[0].value
    assert "KLAUSA_ADMIN_PASSWORD" in app.info[0].value
    assert not app.text_input


@pytest.mark.parametrize("verified", [True, False])
def test_generated_answer_in_the_chat(seed_settings: Settings, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch, verified: bool) -> None:
    """KLAUSA_LLM on: a verified generation is the answer, with the same citation card; one
    that fails verification shows the clause and says why."""
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage

    import klausa.chat_models

    quote = "We will not sell or rent your Personal Data."
    reply = (f'QUOTE [1]: "{quote}"\nANSWER: No. Jubelio will not sell or rent it [1].'
             if verified else f'QUOTE [1]: "{quote}"\nANSWER: Yes, Jubelio sells your data [1].')
    monkeypatch.setattr(klausa.chat_models, "load_chat_model", lambda settings:
                        GenericFakeChatModel(messages=iter([AIMessage(content=reply)])))
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "index").symlink_to(seed_settings.index_dir)
    monkeypatch.setenv("KLAUSA_DATA_DIR", str(data_dir))
    monkeypatch.setenv("KLAUSA_MODELS_PATH", str(seed_settings.models_dir))
    monkeypatch.setenv("KLAUSA_LLM", "openai")
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120)
    at.run()
    ask(at, "Does Jubelio sell my personal data?")
    text = markdown_text(at)
    captions = " ".join(c.value for c in at.caption)
    assert f'<mark class="klausa-quote">{quote}</mark>' in text
    if verified:
        assert "No\\. Jubelio will not sell or rent it \\(§DISCLOSURE" in text
        assert "could not be checked" not in captions
    else:
        assert "Jubelio sells" not in text
        assert "could not be checked against the clause" in captions


def test_compare_page_gives_a_row_per_policy_answered_or_not_stated(app: AppTest) -> None:
    app.switch_page("app_pages/compare.py").run()
    assert not app.exception
    app.pills(key="compare_topic").set_value(2).run()  # "Cookies"
    assert not app.exception, app.exception
    text = markdown_text(app)
    # A row per policy, each answered (badge, policy, section) or "not stated".
    rows = [line for line in text.splitlines() if "-badge[" in line]
    assert len(rows) == 5
    assert any("Webdeskers Privacy Policy** · **§D\\.3" in row for row in rows)
    assert any("Netmarks Indonesia Privacy Policy** · **§Cookies" in row for row in rows), rows
    assert '<mark class="klausa-quote">' in text
    assert len(app.get("download_button")) == 1  # the CSV is offered


def test_compare_rows_match_the_chat_answers(assistant) -> None:
    """The compare page is the chat's answer for each policy alone (same citation), and a
    policy whose best clause is far weaker than the best policy's is "not stated", as in an
    all-policies answer."""
    from klausa.compare import compare, rows_csv

    question = "Does the company sell my personal data?"
    rows = compare(assistant, question)
    assert [r.policy for r in rows] == list(assistant.catalog.policies)
    best = max(r.answer.trace.support.dense for r in rows
               if not r.answer.refused and r.answer.trace.support)
    for row in rows:
        alone = assistant.ask(question, policy=row.policy, generate=False)
        if row.stated:
            assert not alone.refused
            assert row.answer.citations[0].label == alone.citations[0].label
        else:
            assert alone.refused or not assistant.judge.addresses(
                alone.trace.support.dense if alone.trace.support else 0.0, best)
    jubelio = next(r for r in rows if r.policy == "jubelio")
    assert jubelio.stated and "sell" in jubelio.answer.citations[0].quote
    lines = rows_csv(rows).splitlines()
    assert lines[0].startswith("policy,title,status,section")
    assert len(lines) == len(rows) + 1
    # Asked in Indonesian: quoted from the translations, each with the company's own words.
    indonesian = compare(assistant, "Apakah perusahaan menjual data pribadi saya?")
    table = [r for r in csv.DictReader(io.StringIO(rows_csv(indonesian)))
             if r["status"] == "answered"]
    assert table
    for row in table:
        policy = assistant.catalog.policies[row["policy"]]
        translated = policy.info.language == "en"
        assert row["quoted_from"] == ("klausa" if translated else "company")
        assert bool(row["original_quote"]) == translated
        if translated:  # the company's words, as its clause has them
            assert collapse(row["original_quote"]) in collapse(policy.source_text)
