"""The Streamlit app through AppTest: real assistant, real index, real SQLite."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from klausa.settings import Settings
from tests.conftest import REPO

PASSWORD = "correct horse battery staple"


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
    assert "Menurut Webdeskers Privacy Policy §D\\.3" in text
    assert "Kutipan dari teks bahasa Inggris" in text
    # The interface follows the asker's language from now on.
    app.run()
    assert app.chat_input[0].placeholder.startswith("Ajukan pertanyaan")


def test_refusal_renders_as_a_refusal(app: AppTest) -> None:
    app.selectbox(key="policy_choice").set_value("webdeskers").run()
    ask(app, "How many days do I have to return an item for a refund?")
    assert len(app.warning) == 1
    assert "does not say anything about this" in app.warning[0].value
    assert "klausa-quote" not in markdown_text(app)  # no citation cards


def test_feedback_lands_in_sqlite(app: AppTest) -> None:
    ask(app, "How long does Interindo keep my data?")
    app.get("feedback")[0].set_value(1).run()
    rows = sqlite3.connect(Settings().feedback_db).execute(
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


def test_support_page_refuses_a_wrong_password(
    app: AppTest, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    app.switch_page("app_pages/support.py").run()
    # Inside a form the typed value is sent with the submit click, as in a browser.
    app.text_input[0].input("not-the-password-1234")
    app.button[0].click().run()
    assert any("Wrong password" in e.value for e in app.error)
    assert not app.dataframe
    app.text_input[0].input(PASSWORD)
    app.button[0].click().run()
    assert not app.error
    assert app.dataframe  # the recent answers table
    # Neither password, right or wrong, is ever logged.
    assert PASSWORD not in caplog.text and "not-the-password-1234" not in caplog.text


def test_support_desk_shows_why_a_follow_up_was_answered(app: AppTest) -> None:
    ask(app, "Does Netmarks use cookies?")
    ask(app, "can I block them?")
    app.switch_page("app_pages/support.py").run()
    app.text_input[0].input(PASSWORD)
    app.button[0].click().run()
    assert not app.exception
    question = next(box for box in app.selectbox if box.label == "Question")
    assert question.value.question == "can I block them?"  # the latest answer
    trace = app.dataframe[1].value  # recent answers, then the retrieval trace
    assert trace["§"].iloc[0] == "Cookies and Other Website Technologies"
    assert bool(trace["cited"].iloc[0])
    why = " ".join(c.value for c in app.caption)
    assert "Searched as a follow-up of: 'Does use cookies?'" in why
    assert "refusal threshold" in why


def test_staff_pages_are_off_without_a_password(
    app: AppTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KLAUSA_ADMIN_PASSWORD")
    app.switch_page("app_pages/library.py").run()
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
    assert any("Netmarks Indonesia Privacy Policy** · **§Cookies" in row for row in rows)
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
    margin = assistant.settings.policy_margin
    best = max(r.answer.trace["support"]["dense"] for r in rows if not r.answer.refused)
    for row in rows:
        alone = assistant.ask(question, policy=row.policy, generate=False)
        if row.stated:
            assert not alone.refused
            assert row.answer.citations[0].label == alone.citations[0].label
        else:
            assert alone.refused or alone.trace["support"]["dense"] < best - margin
    jubelio = next(r for r in rows if r.policy == "jubelio")
    assert jubelio.stated and "sell" in jubelio.answer.citations[0].quote
    # Lacimart only speaks of selling company assets in a merger: not an answer.
    assert not next(r for r in rows if r.policy == "lacimart").stated
    lines = rows_csv(rows).splitlines()
    assert lines[0].startswith("policy,title,status,section")
    assert len(lines) == len(rows) + 1
