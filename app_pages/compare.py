"""Compare: one question across every policy, a row each — the clause that answers, or
"not stated" — with the supporting words highlighted, and a CSV of it all."""

from __future__ import annotations

import streamlit as st

from app_pages.common import assistant_or_error, interface_language, render_clause, state
from klausa import QuestionError
from klausa.compare import compare, rows_csv
from klausa.compose import section_name
from klausa.prompts import phrases
from klausa.ui import escape_markdown, ui


def compare_page() -> None:
    language = interface_language()
    assistant = assistant_or_error(language)
    if assistant is None:
        return
    st.title(ui(language, "compare_title"))
    st.caption(ui(language, "compare_caption"))

    topics = phrases("ui", language)["compare_topic_list"]

    def pick_topic() -> None:
        number = state.get("compare_topic")
        if number is not None:
            state.compare_question = topics[number][1]

    st.pills(ui(language, "compare_topics"), range(len(topics)), key="compare_topic",
             format_func=lambda number: topics[number][0], on_change=pick_topic)
    with st.form("compare-form", border=False):
        st.text_input(ui(language, "compare_input"), key="compare_question",
                      max_chars=assistant.settings.max_question_chars)
        st.form_submit_button(ui(language, "compare_page"), icon=":material/compare_arrows:")
    question = (state.get("compare_question") or "").strip()
    if not question:
        return
    try:
        with st.spinner(ui(language, "thinking")):
            rows = compare(assistant, question)
    except QuestionError as error:
        st.error(str(error))
        return
    answer_language = rows[0].answer.language if rows else language
    answered = sum(row.stated for row in rows)
    st.markdown(ui(answer_language, "compare_summary", answered=answered, total=len(rows)))
    for row in rows:
        with st.container(border=True):
            if row.stated:
                citation = row.answer.citations[0]
                st.markdown(f":green-badge[{ui(answer_language, 'compare_answered')}] "
                            f"**{escape_markdown(row.title)}** · "
                            f"**{escape_markdown(section_name(citation.label, citation.title))}**")
                render_clause(assistant, citation, answer_language)
            else:
                st.markdown(f":gray-badge[{ui(answer_language, 'compare_not_stated')}] "
                            f"**{escape_markdown(row.title)}**")
                st.caption(ui(answer_language, "compare_not_stated_detail", policy=row.title))
                nearest = row.answer.citations[0] if row.answer.citations else None
                if nearest is not None:
                    st.caption(ui(answer_language, "compare_nearest", section=escape_markdown(
                        section_name(nearest.label, nearest.title))))
    st.download_button(ui(language, "compare_download"), rows_csv(rows),
                       file_name="klausa-compare.csv", mime="text/csv",
                       icon=":material/download:")


compare_page()
