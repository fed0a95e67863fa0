"""Answers through the real model and index: the cited label and the asker's language."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from klausa.assistant import Assistant, QuestionError, SmallTalk, UnknownPolicyError
from klausa.cli import cli
from klausa.compose import cite, collapse, render_answer
from klausa.evaluation import answer_language
from klausa.prompts import phrase
from klausa.settings import Settings
from klausa.text import detect_language, informal_root, query_term_groups, stem
from klausa.types import Hit


@pytest.mark.parametrize(
    ("question", "policy", "language", "label", "quoted", "original"),
    [
        # EN→EN
        ("Does Jubelio sell my personal data?", "jubelio", "en",
         "DISCLOSURE OF PERSONAL DATA WE COLLECT", "will not sell", None),
        # ID→ID
        ("Berapa lama LaciMart membalas keluhan saya?", "lacimart", "id", "C.2",
         "kurun waktu yang wajar", None),
        # ID→EN: quoted from the Indonesian translation, the policy's English one click away
        ("Bisakah saya menolak cookies lewat pengaturan browser?", "webdeskers", "id",
         "D.3", "menolak cookies", "reject cookies"),
        ("berapa lama data saya disimpan?", "interindo", "id", "6", "menyimpan informasi",
         "retain information"),
        # EN→ID
        ("Can LaciMart change this privacy policy at any time?", "lacimart", "en", "D",
         "at any time", "sewaktu-waktu"),
    ],
)
def test_answers_cite_the_section_in_the_askers_language(
    assistant: Assistant, question: str, policy: str, language: str, label: str, quoted: str,
    original: str | None,
) -> None:
    answer = assistant.ask(question, policy=policy)
    assert answer.language == language
    assert not answer.refused
    first = answer.citations[0]
    assert first.label == label
    assert first.language == language
    assert quoted in first.quote
    assert first.text[first.quote_start : first.quote_end] == first.quote
    assert f"§{label}" in answer.answer
    assert f"> “{collapse(first.quote.splitlines()[0])}" in answer.answer
    assert answer_language(answer, assistant.catalog) == language
    marker = {"en": "Quoted from the English translation provided with Klausa",
              "id": "Dikutip dari terjemahan bahasa Indonesia yang disediakan Klausa"}
    # A translation is never passed off as the company's text: the answer says whose it is,
    # and the company's own clause goes with it, its supporting words found in it too.
    assert (marker[language] in answer.answer) == (original is not None)
    assert (first.provided_by == "klausa") == (original is not None)
    if original is not None:
        assert first.original is not None and first.original.label == label
        assert first.original.language != language
        assert original in first.original.quote


def test_a_policy_without_a_version_in_the_askers_language_is_quoted_as_it_is(
    assistant: Assistant,
) -> None:
    """Without a version in the asker's language (an upload, say), the clause is quoted in
    the policy's language, and the answer says so."""
    catalog = assistant.catalog
    hit = Hit(chunk=next(c for c in catalog.chunks.values() if c.policy == "interindo"
                         and c.label == "6"))
    saved = catalog.policies["interindo"].versions
    catalog.policies["interindo"].versions = []
    try:
        citation = cite(hit, catalog, ["simpan"], "id")
    finally:
        catalog.policies["interindo"].versions = saved
    assert citation.language == "en" and citation.original is None
    assert citation.provided_by == "company"
    text = render_answer([citation], catalog, "id")
    assert "Kutipan dari teks bahasa Inggris:" in text
    assert "retain information" in text


def test_english_quotes_say_the_indonesian_version_prevails(assistant: Assistant) -> None:
    answer = assistant.ask("Does Jubelio sell my personal data?", policy="jubelio")
    assert "Indonesian version prevails" in answer.answer
    answer = assistant.ask("How long does Interindo keep my data?", policy="interindo")
    assert "prevails" not in answer.answer


def test_follow_up_stays_on_the_policy_and_topic(assistant: Assistant) -> None:
    first = assistant.ask("Does Jubelio sell my personal data?")
    assert first.citations[0].policy == "jubelio"
    follow = assistant.ask("and how long do they keep it?", history=[first])
    assert not follow.refused
    assert follow.citations[0].policy == "jubelio"
    assert follow.citations[0].label == "STORAGE OF PERSONAL DATA"


def test_a_short_question_naming_another_company_is_not_a_follow_up(
    assistant: Assistant,
) -> None:
    first = assistant.ask("How long does Netmarks keep my personal information?")
    assert first.citations[0].policy == "netmarks"
    other = assistant.ask("Will LaciMart give my data to the police?", history=[first])
    assert not other.trace.follow_up_of
    assert [c.label for c in other.citations][:1] == ["B.5"]  # penegakan hukum
    # Naming the same company again still lets a short question follow up.
    same = assistant.ask("Does Netmarks delete it after that?", history=[first])
    assert same.trace.follow_up_of


def test_what_about_another_company_asks_it_the_last_question(assistant: Assistant) -> None:
    """"What about Interindo?" asks Interindo what the last question asked of Jubelio, in
    either language, and the conversation can go on from there ("Kalau Webdeskers?")."""
    first = assistant.ask("Does Jubelio sell my personal data?")
    assert [c.label for c in first.citations][:1] == ["DISCLOSURE OF PERSONAL DATA WE COLLECT"]
    other = assistant.ask("What about Interindo?", history=[first])
    assert other.policy == "interindo" and other.trace.search_text == "Does sell my personal data?"
    assert [c.label for c in other.citations][:1] == ["3"]  # "no sale … without permission"
    third = assistant.ask("Kalau Webdeskers?", history=[first, other])
    assert third.language == "id" and third.policy == "webdeskers"
    assert [c.label for c in third.citations][:1] == ["C.1"]  # "no … sale … of the User's data"


def test_naming_the_company_again_with_a_new_topic_is_not_a_follow_up(
        assistant: Assistant) -> None:
    """A short question that names the company and asks something new is read on its own,
    not with the last question's topic (it used to be cited the cookies clause)."""
    first = assistant.ask("Can I turn off cookies on Interindo?")
    assert [c.label for c in first.citations][:1] == ["4"]
    cv = assistant.ask("Does Interindo send my CV to companies?", history=[first])
    assert not cv.trace.follow_up_of
    assert [c.label for c in cv.citations][:1] == ["3"]  # "processing user resumes"
    sell = assistant.ask("Interindo jual data gue ga?", history=[first, cv])
    assert not sell.trace.follow_up_of and [c.label for c in sell.citations][:1] == ["3"]


def test_a_question_with_nothing_to_ask_gets_a_clear_error(assistant: Assistant) -> None:
    """With nothing before it, "What about Interindo?" names no topic: the asker is told to
    name one, not quoted a clause that its reader half-matched."""
    for question, language in [("What about Interindo?", "en"), ("Kalau Netmarks gimana?", "id")]:
        with pytest.raises(QuestionError) as error:
            assistant.ask(question)
        assert error.value.language == language
        assert str(error.value) == phrase("answer", language, "no_topic")


def test_greetings_and_thanks_get_a_reply_in_the_askers_language(
        assistant: Assistant) -> None:
    """Not "None of the policies say anything about this", nor clauses matched to "what can
    you do?": what Klausa answers from, with an example, or "you're welcome"."""
    for message, language in [("hi", "en"), ("What can you do?", "en"), ("Halo kak!", "id")]:
        with pytest.raises(SmallTalk) as reply:
            assistant.ask(message)
        assert reply.value.language == language
        assert str(reply.value).startswith({"en": "Hello!", "id": "Halo!"}[language])
        assert "Webdeskers" in str(reply.value) and "Jubelio" in str(reply.value)
    with pytest.raises(SmallTalk, match="Sama-sama"):
        assistant.ask("makasih ya")
    # A greeting before a question is a question.
    answer = assistant.ask("Hi, does Jubelio sell my personal data?")
    assert [c.label for c in answer.citations][:1] == ["DISCLOSURE OF PERSONAL DATA WE COLLECT"]


def test_unanswerable_questions_are_refused_in_the_askers_language(
    assistant: Assistant,
) -> None:
    answer = assistant.ask("How many days do I have to return an item for a refund?",
                           policy="webdeskers")
    assert answer.refused and not answer.citations
    assert answer.answer.startswith("Webdeskers Privacy Policy does not say")
    assert "The nearest sections are:" in answer.answer and "§" in answer.answer
    answer = assistant.ask("Berapa ongkos kirim ke luar Pulau Jawa?", policy="lacimart")
    assert answer.refused and answer.language == "id"
    assert "tidak mengatur hal ini" in answer.answer


@pytest.mark.parametrize("question", ["warm up", "zebra quasar", "blorp?"])
def test_words_no_policy_uses_are_refused(assistant: Assistant, question: str) -> None:
    """Nothing in the corpus speaks of it: no clause may be quoted as the answer, however
    close its vector happens to be."""
    answer = assistant.ask(question)
    assert answer.refused and not answer.citations


def test_all_policies_question_cites_several_policies(assistant: Assistant) -> None:
    answer = assistant.ask("Which companies let me refuse cookies in my browser?")
    policies = {c.policy for c in answer.citations}
    assert not answer.refused and len(policies) >= 2
    # Each from its cookies section (Interindo's answer is its §4 clause on refusing ads
    # tailored by cookies "through the browser").
    assert all("cookie" in f"{c.title} {c.text}".lower() for c in answer.citations)
    # One part per cited policy, then the policies that do not address it, by name.
    titles = {c.policy: c.policy_title for c in answer.citations}
    for policy, title in titles.items():
        assert answer.answer.count(f"{title}, §") == 1, (policy, answer.answer)
    silent = [p.info.title for pid, p in assistant.catalog.policies.items() if pid not in titles]
    if silent:
        assert answer.answer.splitlines()[-1] == f"Not addressed by: {', '.join(silent)}."


def test_a_company_named_in_the_question_narrows_the_search(assistant: Assistant) -> None:
    answer = assistant.ask("Does Interindo use cookies?")
    assert answer.trace.policies == ["interindo"]
    assert {h.chunk.policy for h in answer.hits} == {"interindo"}
    assert answer.citations[0].label == "4"


def test_a_company_name_typed_with_a_slip_still_narrows_the_search(
        assistant: Assistant) -> None:
    """"Jubelo" is Jubelio: its answer alone, not every policy's with Webdeskers first."""
    answer = assistant.ask("Does Jubelo share my data with the government?")
    assert answer.policy == "jubelio" and "Jubelo" not in answer.trace.search_text
    assert [c.label for c in answer.citations][:1] == ["DISCLOSURE OF PERSONAL DATA WE COLLECT"]
    assert assistant.ask("Apakah Net marks memakai cookies?").policy == "netmarks"


@pytest.mark.parametrize(("question", "root", "english"), [
    ("Bisa hapusin data gue?", "hapus", "delet"),
    ("LaciMart mantau lokasi gue?", "pantau", "monitor"),    # m- for the p- of "pantau"
    ("Bisa kirimin salinan data gue?", "kirim", "send"),     # -in
])
def test_informal_verbs_the_slang_table_lacks_are_searched_by_their_root(
        question: str, root: str, english: str) -> None:
    """An informal verb the slang table does not list is searched as its root, and so by
    the lexicon's English word on an English policy (it used to be searched as typed)."""
    terms = query_term_groups(question, "id")
    assert stem(root, "id") in terms.own and english in terms.translated
    # Standard words and loanwords are the stemmer's: nothing is read into them.
    assert [informal_root(w) for w in ("dijamin", "internet", "login", "menyimpan")] == [None] * 4


def test_language_override(assistant: Assistant) -> None:
    answer = assistant.ask("cookies?", policy="webdeskers", language="id")
    assert answer.language == "id" and answer.answer.startswith("Menurut")


@pytest.mark.parametrize(
    ("text", "language"),
    [("cookies?", "en"), ("data pribadi saya dijual?", "id"), ("OTP", "en"),
     ("hapus akun", "id"), ("Can I delete my account?", "en"),
     ("gimana caranya biar nggak dapet iklan?", "id"), ("Is my data sold?", "en"),
     ("lacimart nyimpen nomer imei hp gue ga sih?", "id"),
     ("webdeskers pake cookies buat apa", "id"),
     ("Foto profil gue dipake buat face recognition ga?", "id"),
     ("Does Lacimart use my phone number?", "en")],
)
def test_language_detection_on_short_and_mixed_questions(text: str, language: str) -> None:
    assert detect_language(text) == language


@pytest.mark.parametrize("question", ["", "   \n\t", "\u200b\u200b"])
def test_empty_questions_get_a_clear_error(assistant: Assistant, question: str) -> None:
    with pytest.raises(QuestionError, match="type a question"):
        assistant.ask(question)


def test_too_long_and_wordless_questions_get_a_clear_error(assistant: Assistant) -> None:
    with pytest.raises(QuestionError, match="too long"):
        assistant.ask("cookies " * 10_000)
    with pytest.raises(QuestionError, match="any words"):
        assistant.ask("🙂🙂 ?!")
    with pytest.raises(UnknownPolicyError):
        assistant.ask("cookies?", policy="nosuch")


def test_cli_ask_json_has_the_documented_keys(seed_settings: Settings) -> None:
    result = CliRunner().invoke(cli, ["--data-dir", str(seed_settings.data_dir), "ask",
                                      "Apakah Jubelio menjual data saya?", "--json"],
                                env={"KLAUSA_MODELS_PATH": str(seed_settings.models_dir)})
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output)
    assert {"question", "language", "answer", "refused", "citations", "hits",
            "timings_ms"} <= set(answer)
    assert answer["language"] == "id"
    assert {"policy", "label", "title", "text", "quote"} <= set(answer["citations"][0])
    assert len(answer["hits"]) >= 10
    scores = [h["score"] for h in answer["hits"]]
    assert scores == sorted(scores, reverse=True)
    assert {"policy", "label", "text"} <= set(answer["hits"][0]["chunk"])


def test_cli_ask_empty_question_exits_2(seed_settings: Settings) -> None:
    result = CliRunner().invoke(cli, ["--data-dir", str(seed_settings.data_dir), "ask", " "])
    assert result.exit_code == 2 and "type a question" in result.output


def test_a_follow_up_of_a_follow_up_keeps_the_conversations_topic(assistant: Assistant) -> None:
    """"cookies?" → "can I block them?" → "does anything break then?": neither later question
    names a topic; the third still gets it from the first (before, it only looked one turn
    back and answered from the newsletter clause)."""
    turns = []
    for question in ("Apakah Netmarks memakai cookies?", "bisa saya blokir?",
                     "ada yang nggak jalan kalau saya lakukan?"):
        answer = assistant.ask(question, history=turns)
        turns.append(answer.as_turn())
    assert answer.trace.follow_up_of == ["Apakah memakai cookies?", "bisa saya blokir?"]
    assert answer.language == "id"
    # Read on its own clause with the conversation's questions: the one that answers it
    # ("If you choose not to use cookies, you may experience limited functionality") comes
    # first, cited or — the reader unsure (0.01, under its threshold) — first of the nearest.
    assert answer.trace.reader is not None
    best = assistant.catalog.chunks[answer.trace.reader.candidates[0].chunk_id]
    assert best.policy == "netmarks" and "limited functionality" in best.text
    # …and the asker is shown that section either way.
    assert "Cookies and Other Website Technologies" in answer.answer


def test_the_words_no_policy_uses_are_words_with_a_topic(assistant: Assistant) -> None:
    """What the support desk shows as "no policy uses": the question's topic words, not
    "what's" or "how much"."""
    colour = assistant.ask("What's Jubelio's favourite colour?", generate=False)
    assert colour.refused
    assert "colour" in (colour.trace.unknown_terms or [])
    assert "what's" not in (colour.trace.unknown_terms or []) + (
        colour.trace.unmatched_terms or [])
    price = assistant.ask("How much does Webdeskers charge per month?", generate=False)
    assert "month" in (price.trace.unmatched_terms or [])
    assert not {"much", "per"} & set(
        (price.trace.unknown_terms or []) + (price.trace.unmatched_terms or []))


def test_a_list_lead_in_is_quoted_with_its_items(assistant: Assistant) -> None:
    """A clause that only introduces a list ("…data provided at the time the User:") says
    nothing alone: an answer citing it quotes the lead-in and its items, each on its line, and
    the clause shown under the answer is the whole list."""
    catalog = assistant.catalog
    lead_ins = [c for c in catalog.chunks.values() if c.text.rstrip().endswith(":")]
    assert len(lead_ins) >= 20  # the five seed policies have 28
    for chunk in lead_ins:
        citation = cite(Hit(chunk=chunk), catalog, [], chunk.language)
        quoted = [line for line in render_answer([citation], catalog, chunk.language)
                  .splitlines() if line.startswith("> ")]
        assert len(quoted) >= 2, f"{chunk.policy} §{chunk.label}: the lead-in quoted alone"
        assert citation.text.startswith(chunk.text.strip()) and len(citation.text) > len(
            chunk.text)
    sign_up = next(c for c in lead_ins if c.policy == "webdeskers" and c.label == "A.1")
    citation = cite(Hit(chunk=sign_up), catalog, [], "en")
    assert "creates or updates the Webdeskers account" in citation.quote
    # The last item is in the clause shown under the answer (the quote may stop earlier).
    assert "access permission to the relevant data stored in the User" in citation.text
    # A list within a list is quoted to its own last item, not to the end of the outer one.
    inner = next(c for c in lead_ins if c.policy == "interindo"
                 and c.text.startswith("Assist users"))
    citation = cite(Hit(chunk=inner), catalog, [], "en")
    assert citation.text.endswith("Supervise and improve Interindo customer service responses.")
