"""Support desk: the review queue, each answer as the asker saw it with its trace made
readable, a verdict per answer, and reviewed answers exported as test cases."""

from __future__ import annotations

from datetime import date, timedelta

import streamlit as st

from app_pages.common import (
    interface_language,
    load_assistant,
    local_time,
    render_answer_body,
    review_desk,
    staff_member,
    state,
)
from klausa import Answer, Assistant
from klausa.compose import section_name
from klausa.feedback import AnswerLog, LoggedAnswer
from klausa.judge import explain
from klausa.review import (
    NEAR_THRESHOLD,
    NEEDS_SECTION,
    REASON_LABELS,
    VERDICT_LABELS,
    VERDICTS,
    ReviewDesk,
    jsonl,
    reason,
)
from klausa.staff import StaffMember
from klausa.ui import escape_markdown, section_tree, ui

ALL = ""
RATINGS = {ALL: "all", "down": "👎 thumbs-down", "up": "👍 thumbs-up", "none": "not rated"}
REVIEWED = {"no": "not reviewed", "yes": "reviewed", "all": "all"}


def support_page() -> None:
    language = interface_language()
    st.title(ui(language, "support_page"))
    member = staff_member(language, "review")
    if member is None:
        return
    desk = review_desk()
    assistant = load_assistant()
    if saved := state.pop("review_saved", None):
        st.success(saved)
    rows = queue(desk, assistant)
    downloads(desk, rows)
    if not rows:
        st.info("Nothing to review with these filters.")
        return
    chosen = st.selectbox(
        "Answer to review (most urgent first)", rows,
        format_func=lambda r: " · ".join(
            part for part in (REASON_LABELS[reason(r)], local_time(r.asked_at), r.question)
            if part),
    )
    answer = desk.log.answer(chosen.id)
    seen, why = st.columns([3, 2], gap="large")
    with seen:
        as_the_asker_saw_it(assistant, chosen, answer)
    with why:
        explanation(assistant, answer)
    candidates(assistant, answer)
    verdict_form(desk, assistant, member, chosen, answer)


def queue(desk: ReviewDesk, assistant: Assistant) -> list[LoggedAnswer]:
    columns = st.columns([2, 1, 1.3, 1.2, 2])
    policy = columns[0].selectbox("Policy", [ALL, *assistant.catalog.policies],
                                  format_func=lambda p: p or "all")
    spoken = columns[1].selectbox("Language", [ALL, "en", "id"], format_func=lambda v: v or "all")
    rating = columns[2].selectbox("Rating", list(RATINGS), format_func=RATINGS.get)
    reviewed = columns[3].selectbox("Reviewed", list(REVIEWED), format_func=REVIEWED.get)
    today = date.today()
    days = columns[4].date_input("Asked between", (today - timedelta(days=30), today),
                                 max_value=today + timedelta(days=1), format="YYYY-MM-DD")
    picked = [*days] if isinstance(days, tuple | list) else [days]
    since, until = [*picked, None, None][:2]  # a range being picked has one end so far
    rows = desk.queue(policy=policy or None, language=spoken or None, rating=rating or None,
                      reviewed=reviewed, since=since, until=until)  # type: ignore[arg-type]
    st.caption(f"{len(rows)} answer{'' if len(rows) == 1 else 's'}. Most urgent first: "
               f"thumbs-down, then refusals, then support within {NEAR_THRESHOLD} of the "
               "refusal threshold (closest first), then rejected generations; newest first "
               "within each.")
    if not rows:
        return rows
    st.dataframe(
        [{"why first": REASON_LABELS[reason(r)], "asked": local_time(r.asked_at),
          "question": r.question, "lang": r.language, "policy": r.policy or "all",
          "answer": "not stated" if r.refused else "; ".join(r.citations),
          "rating": {1: "👍 up", 0: "👎 down"}.get(r.rating, ""), "comment": r.comment or "",
          "verdict": VERDICT_LABELS.get(r.verdict or "", ""), "reviewer": r.reviewer or ""}
         for r in rows],
        width="stretch", hide_index=True, height=min(38 + 35 * len(rows), 320),
    )
    return rows


def downloads(desk: ReviewDesk, rows: list[LoggedAnswer]) -> None:
    # Built when clicked, not on every rerun of the page (the cases read every reviewed answer).
    columns = st.columns(3)
    columns[0].download_button("Export these answers (CSV)", lambda: AnswerLog.to_csv(rows),
                               "klausa-answers.csv", "text/csv")
    columns[1].download_button("Export these answers (JSONL)", lambda: AnswerLog.to_jsonl(rows),
                               "klausa-answers.jsonl", "application/jsonl")
    columns[2].download_button(
        "Reviewed answers as test cases", lambda: jsonl(desk.cases()),
        "klausa-reviewed-cases.jsonl",
        "application/jsonl", help="Q&A-set lines that `klausa eval FILE` scores; the same as "
        "`klausa review export`.")


def as_the_asker_saw_it(assistant: Assistant, row: LoggedAnswer, answer: Answer) -> None:
    st.subheader("As the asker saw it")
    st.caption(f"Asked {local_time(row.asked_at)} · {row.language} · "
               f"{row.policy or 'all policies'}")
    with st.chat_message("user"):
        st.text(answer.question)
    with st.chat_message("assistant"):
        render_answer_body(assistant, answer)
    if row.rating is not None or row.comment:
        rating = {1: "👍 thumbs-up", 0: "👎 thumbs-down"}.get(row.rating, "no rating")
        comment = f": “{escape_markdown(row.comment)}”" if row.comment else ""
        st.markdown(f"**The asker's feedback** ({local_time(row.rated_at)}): {rating}{comment}")


def explanation(assistant: Assistant, answer: Answer) -> None:
    st.subheader("Why this answer")
    for sentence in why_sentences(assistant, answer):
        st.markdown(sentence)
    generation = answer.trace.generation
    if generation is not None:
        verdict = "passed" if generation.passed else "failed: " + "; ".join(generation.problems)
        share = generation.supported_share
        carried = f"; {share:.0%} of its words carried by the quote" if share is not None else ""
        took = f"{generation.ms} ms" if generation.ms is not None else "– ms"
        st.markdown(f"**Generated answer** ({escape_markdown(generation.provider)}, {took}): "
                    f"verification {escape_markdown(verdict)}{carried}")
        if generation.raw:
            st.code(generation.raw, language=None, wrap_lines=True)
    if answer.timings_ms:
        st.caption("Time: " + " · ".join(f"{stage} {ms:.0f} ms"
                                         for stage, ms in answer.timings_ms.items()))


def _words(items: list[str]) -> str:
    return ", ".join(f"“{escape_markdown(i)}”" for i in items)


def why_sentences(assistant: Assistant, answer: Answer) -> list[str]:
    """The trace as sentences a reviewer reads (never a raw dict): the judge's reason, then
    the words, what was searched and the follow-up it was read as."""
    trace = answer.trace
    catalog = assistant.catalog
    # Answers logged before the judge wrote its reason get it told from their trace.
    outcome = trace.outcome or ("answered" if not answer.refused else
                                "not_stated" if trace.not_stated else "not_covered")
    reason = trace.reason or explain(trace.support, trace.refusal_threshold, outcome,
                                     trace.asked_fact)
    sentences = [reason] if reason else []
    unmatched, unknown = trace.unmatched_terms, trace.unknown_terms
    if unknown:
        sentences.append(f"No policy uses: {_words(unknown)}.")
    if unmatched:
        sentences.append(f"Not in the best clause: {_words(unmatched)}.")
    elif unmatched is not None and not answer.refused:
        sentences.append("Every word of the question is in the best clause.")
    policies = trace.policies
    searched = ", ".join(catalog.info(p).title if p in catalog.policies else p
                         for p in policies) if policies else "all policies"
    sentences.append(f"Searched {escape_markdown(searched)} as “"
                     f"{escape_markdown(trace.search_text or answer.question)}”.")
    if trace.follow_up_of:
        sentences.append("Read as a follow-up of: " + "; ".join(
            f"“{escape_markdown(q)}”" for q in trace.follow_up_of) + ".")
    return sentences


def candidates(assistant: Assistant, answer: Answer) -> None:
    st.subheader("Candidates")
    dense_weight = assistant.settings.dense_weight
    st.caption(f"Ranked by the fused score: {dense_weight:.2f} × dense + "
               f"{1 - dense_weight:.2f} × lexical, each scaled over the candidates. "
               "“gloss”: the similarity of the clause's English machine translation; "
               "“via gloss”: it was closer than the clause's own words, so it ranked the "
               "clause (refusals are judged on the clause's own similarity). “English gloss”: "
               "that translation, written by the chat model and unreviewed; askers never see "
               "it.")
    reader = answer.trace.reader
    read = {c.chunk_id: c.probability for c in reader.candidates} if reader else {}
    if reader is not None:
        took = f", {reader.ms:.0f} ms" if reader.ms is not None else ""
        st.caption(f"“reader”: the probability, by Klausa's reader "
                   f"({escape_markdown(reader.model)}), that the clause answers the question; "
                   f"it answers from {reader.threshold:.2f}"
                   + (f" ({reader.unseen_threshold:.4f} for "
                      f"{escape_markdown(', '.join(reader.unseen_policies))}, which it was not "
                      "trained on)" if reader.unseen_policies and reader.unseen_threshold
                      is not None else "")
                   + f". It read the best {len(read)} candidates{took}; the most probable of "
                   "those that answer is cited first.")
    cited = {c.chunk_id for c in answer.citations}
    lexical_top = max((h.lexical or 0.0 for h in answer.hits), default=0.0) or 1.0
    st.dataframe(
        [{"rank": h.rank, "cited": "✓" if h.chunk.id in cited else "", "policy": h.chunk.policy,
          "§": h.chunk.label, "reader": read.get(h.chunk.id), "dense": h.dense or 0.0,
          "gloss": h.gloss,
          "via gloss": "✓" if h.via_gloss else "", "lexical": h.lexical or 0.0,
          "fused": h.score, "clause": h.chunk.text, "English gloss": h.chunk.gloss}
         for h in answer.hits],
        width="stretch", hide_index=True,
        column_config={
            "reader": st.column_config.ProgressColumn("reader", min_value=0.0, max_value=1.0,
                                                      format="%.2f"),
            "dense": st.column_config.ProgressColumn("dense", min_value=0.0, max_value=1.0,
                                                     format="%.3f"),
            "gloss": st.column_config.NumberColumn("gloss", format="%.3f"),
            "lexical": st.column_config.ProgressColumn("lexical", min_value=0.0,
                                                       max_value=lexical_top, format="%.2f"),
            "fused": st.column_config.ProgressColumn("fused", min_value=0.0, max_value=1.0,
                                                     format="%.3f"),
            "clause": st.column_config.TextColumn("clause", width="large"),
            "English gloss": st.column_config.TextColumn("English gloss", width="large"),
        },
    )


def verdict_form(desk: ReviewDesk, assistant: Assistant, member: StaffMember,
                 row: LoggedAnswer, answer: Answer) -> None:
    st.subheader("Verdict")
    if row.verdict:
        target = f" → {row.verdict_policy} §{row.verdict_section}" if row.verdict_section else ""
        note = f" Note: {escape_markdown(row.review_note)}" if row.review_note else ""
        st.info(f"Reviewed by **{escape_markdown(row.reviewer or '')}** on "
                f"{local_time(row.reviewed_at)}: {VERDICT_LABELS[row.verdict]}{target}.{note}")
    key = row.id
    verdict = st.radio("What was it?", VERDICTS, format_func=VERDICT_LABELS.get,
                       horizontal=True, key=f"verdict-{key}",
                       index=VERDICTS.index(row.verdict) if row.verdict else None)
    policy = section = None
    if verdict in NEEDS_SECTION:
        policies = list(assistant.catalog.policies)
        suggested = row.verdict_policy or answer.policy or (
            answer.hits[0].chunk.policy if answer.hits else policies[0])
        policy = st.selectbox(
            "Policy of the right section", policies, key=f"verdict-policy-{key}",
            index=policies.index(suggested) if suggested in policies else 0,
            format_func=lambda p: assistant.catalog.info(p).title,
            disabled=bool(answer.policy))
        tree = section_tree(assistant.catalog.policies[policy])
        labels = [label for _, label, _ in tree]
        titles = {label: "\u2003" * depth + section_name(label, title)
                  for depth, label, title in tree}
        current = row.verdict_section if row.verdict_policy == policy else None
        section = st.selectbox("The section it should have cited", labels,
                               key=f"verdict-section-{key}-{policy}",
                               index=labels.index(current) if current in labels else None,
                               format_func=titles.get, placeholder="Pick the section")
    note = st.text_area("Note (optional)", value=row.review_note or "", key=f"note-{key}",
                        max_chars=4000)
    missing = verdict is None or (verdict in NEEDS_SECTION and not section)
    if st.button("Save verdict", type="primary", key=f"save-{key}", disabled=missing):
        desk.review(row.id, verdict, member.name, section=section, policy=policy,  # type: ignore[arg-type]
                    note=note)
        state.review_saved = (f"Saved: {VERDICT_LABELS[verdict]}"  # type: ignore[index]
                              + (f" → §{section}" if section else "") + ".")
        st.rerun()


support_page()
