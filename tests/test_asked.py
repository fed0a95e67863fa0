"""A question asking for a number or a contact is answered only from a clause that gives one:
otherwise "the policy does not give a number for this", in the asker's language."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.pipeline import ingest
from klausa.asked import asked_fact, states
from klausa.assistant import Assistant
from klausa.embeddings import Embedder
from tests.conftest import make_settings


@pytest.mark.parametrize(
    ("question", "kind"),
    [
        ("How many days after I delete my account is my data erased?", "number"),
        ("Exactly how many years do they keep my order records?", "number"),
        ("How much is the admin fee for a data access request?", "number"),
        ("What's the minimum age to open an account?", "number"),
        ("Berapa hari setelah akun ditutup data gue dihapus?", "number"),
        ("Umur minimal buat daftar berapa?", "number"),
        ("kalo ada kebocoran data, paling lambat berapa hari gue dikabarin?", "number"),
        ("harga langganan jubelio per bulan berapa?", "number"),
        ("What's the phone number for their data protection officer?", "phone"),
        ("How do I email Netmarks' data protection officer?", "email"),
        ("Nomor telepon CS LaciMart berapa?", "phone"),
        ("Nomor telepon atau email CS LaciMart berapa?", "contact"),
        ("Apa nomor WhatsApp CS Webdeskers?", "phone"),
        ("Apa alamat email tim privasi mereka?", "email"),
        ("When did this privacy policy take effect?", "date"),
        ("Kebijakan mana yang nyebutin tanggal mulai berlakunya?", "date"),
        ("Kapan kebijakan ini terakhir diperbarui?", "date"),
        # Answered by a condition, a list or a yes/no, not by a number or an address.
        ("How long do you keep my data?", None),
        ("berapa lama data saya disimpan?", None),
        ("How much data do you collect about me?", None),
        ("Berapa banyak data yang dikumpulkan?", None),
        ("How quickly will LaciMart answer my complaint?", None),
        ("Interindo nyatet jam berapa gue masuk ke akun?", None),
        ("Riwayat biaya langganan saya disimpan berapa lama?", None),
        ("Do you collect my phone number when I sign up?", None),
        ("Can marketing companies pass my email address on to them?", None),
        ("Will they tell me when the privacy policy changes?", None),
        ("Kapan data saya dihapus?", None),
    ],
)
def test_what_a_question_asks_for(question: str, kind: str | None) -> None:
    found = asked_fact(question)
    assert (found.kind if found else None) == kind


def test_what_a_clause_states() -> None:
    assert states("number", "We delete your data within 30 days.")
    assert states("number", "Data disimpan selama dua tahun.")
    assert not states("number", "Data is kept as long as your account is active.")
    assert states("number", "You may request a copy of your data free of charge.")
    assert states("number", "Permintaan salinan data tidak dikenakan biaya.")
    assert states("contact", "Write to privacy@tokoku.co.id or call +62 21 555 0123.")
    assert states("phone", "Call +62 21 555 0123.") and not states("phone", "privacy@x.id")
    # The seed's scraped pages hide addresses as "[email protected]": one is given there.
    assert states("email", "Please send an email to [email protected].")
    assert not states("email", "Call +62 21 555 0123.")
    assert not states("contact", "We collect your email address and phone number.")
    assert states("date", "This Privacy Statement is effective as of 21 July 2021.")
    assert not states("date", "We may change this policy from time to time.")


@pytest.mark.parametrize(
    ("question", "policy", "said", "nearest"),
    [
        ("How many days after I delete my Interindo account is my data erased?", None,
         "Interindo Privacy Policy does not give a number for this.", "§6"),
        ("Berapa hari setelah akun ditutup data saya dihapus?", "webdeskers",
         "Kebijakan Privasi Webdeskers tidak menyebutkan angka untuk hal ini.", "§F"),
        ("What's the phone number for Jubelio's data protection officer?", None,
         "Jubelio Privacy Notice does not give a phone number for this.", "§CONTACT US"),
        ("Which of these companies list a phone number for their data protection officer?",
         None, "None of the policies give a phone number for this.", "§"),
        ("When did this privacy policy take effect?", "lacimart",
         "LaciMartKTUM Privacy Policy does not give a date for this.", "§"),
    ],
)
def test_a_number_or_contact_the_policy_does_not_give_is_not_stated(
    assistant: Assistant, question: str, policy: str | None, said: str, nearest: str
) -> None:
    answer = assistant.ask(question, policy=policy)
    assert answer.refused and not answer.citations
    first, *rest = answer.answer.splitlines()
    assert first == said
    assert any(nearest in line for line in rest)  # where the policy speaks of the topic
    assert answer.trace.asked_fact is not None and answer.trace.asked_fact.stated is False
    assert answer.trace.outcome == "not_stated"


def test_an_email_address_the_policy_gives_is_answered(assistant: Assistant) -> None:
    answer = assistant.ask("How do I email Jubelio about my personal data?")
    assert not answer.refused and answer.citations[0].label == "CONTACT US"
    assert answer.trace.asked_fact is not None and answer.trace.asked_fact.kind == "email"


def test_a_question_about_the_topic_without_asking_a_number_is_still_answered(
    assistant: Assistant,
) -> None:
    answer = assistant.ask("How long does Interindo keep my data?")
    assert not answer.refused and answer.citations[0].label == "6"
    assert answer.trace.asked_fact is None


def test_a_number_the_policy_gives_is_answered(tmp_path: Path, embedder: Embedder) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "policies.toml").write_text(
        '[[policy]]\nid = "tokoku"\ntitle = "Tokoku Privacy Policy"\ncompany = "Tokoku"\n'
        'source = "tokoku.md"\n'
        'language = "en"\n')
    (corpus / "tokoku.md").write_text(
        "# Tokoku Privacy Policy\n\n## 1. Deletion\n\nWhen you close your account, we delete "
        "your personal data within 30 days.\n\n## 2. Contact\n\nQuestions about your data go "
        "to privacy@tokoku.example or +62 21 555 0123.\n\n## 3. Sharing\n\nWe never sell "
        "your personal data.\n")
    settings = make_settings(tmp_path / "data", corpus)
    assert not ingest(settings, embedder=embedder).errors
    assistant = Assistant(settings, embedder=embedder)
    days = assistant.ask("How many days after I close my account is my data deleted?")
    assert not days.refused and days.citations[0].label == "1"
    assert "30 days" in days.citations[0].quote
    assert days.trace.asked_fact is not None
    assert days.trace.asked_fact.model_dump() == {"kind": "number", "cue": "How many days",
                                                  "stated": True}
    contact = assistant.ask("What's the email address of Tokoku's privacy team?")
    assert not contact.refused and contact.citations[0].label == "2"
