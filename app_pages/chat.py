"""The chat: end users ask, Klausa answers with the cited clause."""

from __future__ import annotations

import streamlit as st

from app_pages.common import (
    LANGUAGE_CHOICES,
    ask,
    assistant_or_error,
    bilingual,
    interface_language,
    render_answer,
    state,
)
from klausa import Settings
from klausa.ui import starters, ui


def chat_page() -> None:
    language = interface_language()
    assistant = assistant_or_error(language)
    if assistant is None:
        return
    catalog = assistant.catalog
    with st.sidebar:
        options = ["", *catalog.policies]
        default = Settings().default_policy
        if "policy_choice" not in state:
            state.policy_choice = default if default in catalog.policies else ""
        # Streamlit keeps a radio's or selectbox's value as the option's shown text: options
        # must read the same in both interface languages, or a switch of language unselects
        # them. Keyed widgets keep their identity when their label changes.
        st.selectbox(ui(language, "policy_picker"), options, key="policy_choice",
                     format_func=lambda p: catalog.policies[p].info.title if p
                     else bilingual("all_policies"))
        st.radio(ui(language, "language_picker"), list(LANGUAGE_CHOICES), key="language_choice",
                 format_func=lambda c: bilingual("language_auto") if c == "auto" else c,
                 horizontal=True)
        if st.button(ui(language, "new_conversation"), icon=":material/add_comment:",
                     key="new-conversation"):
            state.messages = []
            state.detected_language = None
            st.rerun()

    st.title(ui(language, "title"))
    st.caption(ui(language, "tagline"))
    for message in state.messages:
        with st.chat_message("user"):
            st.text(message["question"])
        with st.chat_message("assistant"):
            render_answer(assistant, message)

    pending = None
    starter_box = st.empty()
    if not state.messages:
        with starter_box.container():
            st.markdown(f"**{ui(language, 'starters_heading')}**")
            columns = st.columns(2)
            for number, question in enumerate(starters(language)):
                if columns[number % 2].button(question, key=f"starter-{number}",
                                              width="stretch"):
                    pending = question
    # Keyed: without a key the input's identity includes its placeholder, so a question
    # typed just before the interface changed language was dropped on the rerun.
    typed = st.chat_input(ui(language, "input_placeholder"), key="question",
                          max_chars=Settings().max_question_chars)
    question = typed or pending
    if question:
        starter_box.empty()
        ask(assistant, question)
        if interface_language() != language:
            st.rerun()  # the answer changed the interface language: redraw it all in it



chat_page()
