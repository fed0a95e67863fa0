"""What the app's pages share: cached resources, session state, answer rendering."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import streamlit as st

from klausa import Answer, Assistant, Citation, QuestionError, Settings, SmallTalk
from klausa.catalog import IndexMissingError
from klausa.compose import nearest_sections, section_name
from klausa.database import Database
from klausa.embeddings import ModelLoadError
from klausa.feedback import AnswerLog
from klausa.review import ReviewDesk
from klausa.serving import warmed_assistant
from klausa.staff import MAX_PASSWORD, SignInError, StaffDirectory, StaffMember
from klausa.types import Language
from klausa.ui import (
    escape_markdown,
    highlight_html,
    readable_time,
    section_source,
    stream_words,
    ui,
)

log = logging.getLogger("klausa.app")
LANGUAGE_CHOICES = {"auto": None, "English": "en", "Bahasa Indonesia": "id"}

@st.cache_resource(show_spinner=False)
def _assistant(data_dir: str) -> Assistant:
    # `klausa serve` warmed one before the server started; `streamlit run` did not.
    assistant = warmed_assistant(Path(data_dir))
    if assistant is None:
        assistant = Assistant(Settings(data_dir=data_dir))
        assistant.warm()
    return assistant


def load_assistant() -> Assistant:
    """Model and index, once per server process and data dir (warmed before any question)."""
    return _assistant(str(Settings().data_dir))


def assistant_or_error(language: Language) -> Assistant | None:
    """The loaded assistant (with the index opened), or None after showing why not: no index
    yet, or a model that cannot load."""
    try:
        with st.spinner(ui(language, "loading")):
            assistant = load_assistant()
            _ = assistant.catalog
    except IndexMissingError:
        st.error(ui(language, "index_missing"))
        return None
    except ModelLoadError as error:
        st.error(str(error))
        return None
    return assistant


@st.cache_resource(show_spinner=False)
def _database(data_dir: str, database_url: str | None) -> Database:
    # The arguments are the cache key: another data dir or database, another engine.
    return Database.from_settings(Settings(data_dir=data_dir))


def database() -> Database:
    """The deployment's database, once per server process."""
    settings = Settings()
    url = settings.database_url.get_secret_value() if settings.database_url else None
    return _database(str(settings.data_dir), url)


def answer_log() -> AnswerLog:
    return AnswerLog(database())


def staff_directory() -> StaffDirectory:
    return StaffDirectory(database(), bootstrap_password=admin_password(),
                          bootstrap_name=Settings().admin_name)


def review_desk() -> ReviewDesk:
    return ReviewDesk(database(), staff_directory())


# --- state -------------------------------------------------------------------------------
state = st.session_state


def init_state() -> None:
    state.setdefault("messages", [])
    state.setdefault("session_id", uuid.uuid4().hex)
    state.setdefault("detected_language", None)


def still_listed(key: str, options: list[str]) -> list[str]:
    """``options`` plus what was chosen under widget ``key`` before, if it has gone since
    (another admin removed it). Otherwise Streamlit moves the choice silently to another
    entry, and the action meant for the gone one hits that entry instead."""
    chosen = state.get(key)
    return [*options, chosen] if chosen and chosen not in options else options


def interface_language() -> Language:
    chosen = LANGUAGE_CHOICES.get(state.get("language_choice", "auto"))
    return chosen or state.detected_language or Settings().default_language


def bilingual(key: str) -> str:
    """An interface text in both languages ("All policies · Semua kebijakan"), for options
    whose shown text must not change with the interface language."""
    english, indonesian = ui("en", key), ui("id", key)
    return english if english == indonesian else f"{english} · {indonesian}"


def admin_password() -> str | None:
    configured = Settings().admin_password
    if configured:
        return configured.get_secret_value()
    try:
        return st.secrets.get("admin_password")
    except (FileNotFoundError, KeyError, st.errors.StreamlitSecretNotFoundError):
        return None


# --- rendering an answer -----------------------------------------------------------------
def answer_markdown(answer: Answer) -> str:
    """The answer as safe markdown: the policy's words are escaped, quotes are blockquotes."""
    lines = []
    for line in answer.answer.splitlines():
        if line.startswith("> "):
            lines.append("> " + escape_markdown(line[2:]))
        elif line.startswith("- "):  # a refusal's nearest sections, as a list
            lines.append("- " + escape_markdown(line[2:]))
        else:
            lines.append(escape_markdown(line))
    return "  \n".join(lines)


def render_clause(assistant: Assistant, citation: Citation, language: Language) -> None:
    """The cited clause with its supporting words highlighted, and the whole section; a
    clause quoted from a translation also as the policy has it, highlighted too."""
    st.markdown(highlight_html(citation.text, citation.quote_start, citation.quote_end),
                unsafe_allow_html=True)
    policy = assistant.catalog.policies.get(citation.policy)
    if policy is not None:
        with st.expander(ui(language, "show_section")):
            st.text(section_source(policy, citation.label, citation.language))
    original = citation.original
    if original is not None:
        # Both texts may be the company's: only a translation makes the other "its own".
        key = "original_clause" if citation.provided_by == "klausa" else "other_text"
        with st.expander(ui(language, f"{key}_{original.language}")):
            st.markdown(highlight_html(original.text, original.quote_start,
                                       original.quote_end), unsafe_allow_html=True)


def render_citations(assistant: Assistant, answer: Answer, language: Language) -> None:
    for citation in answer.citations:
        with st.container(border=True):
            st.markdown(
                f"**{escape_markdown(citation.policy_title)}** · "
                f"**{escape_markdown(section_name(citation.label, citation.title))}**"
            )
            render_clause(assistant, citation, language)


def save_feedback(message_id: str, answer_id: str) -> None:
    rating = state.get(f"rating-{message_id}")
    comment = state.get(f"comment-{message_id}")
    answer_log().rate(answer_id, rating, comment)


def render_answer_body(assistant: Assistant, answer: Answer, *, stream: bool = False) -> None:
    """The answer as the asker sees it: a refusal, or the text and the cited clauses."""
    language = answer.language
    if answer.refused:
        # "Not stated": the policy speaks of the topic but lacks the number or contact asked.
        heading = "not_stated_heading" if answer.trace.not_stated else "not_covered_heading"
        with st.container(border=True):
            st.markdown(f"**{ui(language, heading)}**")
            st.warning(answer_markdown(answer), icon=":material/block:")
            # The nearest sections are one click away: the asker can read what the policy
            # does say about the topic.
            for hit in nearest_sections(answer.hits):
                policy = assistant.catalog.policies.get(hit.chunk.policy)
                if policy is not None:
                    title = assistant.catalog.policy_title(policy.info.id, language)
                    with st.expander(ui(language, "read_section",
                                        section=f"{title} §{hit.chunk.label}")):
                        st.text(section_source(policy, hit.chunk.label, language))
        return
    text = answer_markdown(answer)
    generation = answer.trace.generation
    # Said only when a written answer was rejected; a model that is down or cannot load
    # is the staff's business (the support desk shows it), not the asker's.
    if generation is not None and generation.rejected:
        st.caption(ui(language, "generation_rejected"))
    if stream:
        st.write_stream(stream_words(text))
    else:
        st.markdown(text)
    render_citations(assistant, answer, language)


def render_answer(assistant: Assistant, message: dict, *, stream: bool = False) -> None:
    if "reply" in message:  # a greeting's or thanks' reply
        st.markdown(escape_markdown(message["reply"]))
        return
    answer = Answer.model_validate(message["answer"])
    language = answer.language
    render_answer_body(assistant, answer, stream=stream)
    message_id = message["id"]
    st.feedback("thumbs", key=f"rating-{message_id}", on_change=save_feedback,
                args=(message_id, message["answer_id"]))
    with st.popover(ui(language, "feedback_comment")):
        st.text_area(ui(language, "feedback_comment"), key=f"comment-{message_id}",
                     max_chars=2000, label_visibility="collapsed")
        if st.button(ui(language, "feedback_send"), key=f"send-{message_id}"):
            save_feedback(message_id, message["answer_id"])
            st.success(ui(language, "feedback_thanks"))


def ask(assistant: Assistant, question: str) -> None:
    policy = state.get("policy_choice") or None
    language = LANGUAGE_CHOICES.get(state.get("language_choice", "auto"))
    history = [Answer.model_validate(m["answer"]) for m in state.messages if "answer" in m]
    with st.chat_message("user"):
        st.text(question)
    with st.chat_message("assistant"):
        draft = st.empty()
        written: list[str] = []

        def show_draft(text: str) -> None:
            # The generated answer as it is written; replaced once it has been verified.
            written.append(text)
            draft.markdown(f"{escape_markdown(''.join(written))} ▌  \n"
                           f":gray[{ui(interface_language(), 'drafting')}]")

        try:
            with st.spinner(ui(interface_language(), "thinking")):
                answer = assistant.ask(question, policy=policy, history=history,
                                       language=language, on_text=show_draft)
        except SmallTalk as reply:
            # Kept in the transcript (not an answer: no feedback, no log, no history).
            state.detected_language = reply.language
            state.messages.append({"id": uuid.uuid4().hex, "question": question,
                                   "reply": str(reply)})
            st.markdown(escape_markdown(str(reply)))
            return
        except QuestionError as error:
            st.error(str(error))
            return
        except Exception:
            log.exception("answering failed")
            st.error(ui(interface_language(), "error"))
            return
        draft.empty()
        state.detected_language = answer.language
        message = {"id": uuid.uuid4().hex, "question": question,
                   "answer": answer.model_dump(mode="json"),
                   "answer_id": answer_log().record(answer, state.session_id)}
        state.messages.append(message)
        render_answer(assistant, message, stream=not written)


def staff_member(language: Language, permission: str) -> StaffMember | None:
    """The signed-in staff member when they may do ``permission`` ("review", "library");
    otherwise None, after showing the sign-in form or why not. The account is read afresh on
    every run: a removed account or a changed role counts at once."""
    staff = staff_directory()
    if not staff.enabled:
        st.info(ui(language, "staff_pages_off"))
        return None
    member = staff.get(state.staff_name) if state.get("staff_name") else None
    if member is None:
        state.pop("staff_name", None)
        sign_in_form(staff, language)
        return None
    with st.sidebar:
        st.markdown(ui(language, "signed_in_as", name=escape_markdown(member.name),
                       role=member.role))
        if st.button(ui(language, "sign_out"), key="sign-out"):
            state.pop("staff_name", None)
            st.rerun()
    if not member.may(permission):
        st.error(ui(language, "not_permitted", role=member.role))
        return None
    return member


def sign_in_form(staff: StaffDirectory, language: Language) -> None:
    with st.form("sign-in"):
        name = st.text_input(ui(language, "staff_name"), autocomplete="username", max_chars=64)
        given = st.text_input(ui(language, "password"), type="password", max_chars=MAX_PASSWORD,
                              autocomplete="current-password")
        submitted = st.form_submit_button(ui(language, "sign_in"))
    if not submitted:
        return
    try:
        member = staff.sign_in(name, given)
    except SignInError as error:
        st.error(ui(language, "locked_out", seconds=error.locked_for) if error.locked_for
                 else ui(language, "wrong_password"))
        return
    state.staff_name = member.name
    st.rerun()


def local_time(stamp: str | None) -> str:
    """A stored time in the browser's time zone, readable."""
    return readable_time(stamp, st.context.timezone)
