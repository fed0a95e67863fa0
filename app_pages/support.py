"""Support desk: recent answers, feedback, exports and the retrieval trace."""

from __future__ import annotations

import streamlit as st

from app_pages.common import (
    answer_log,
    answer_markdown,
    interface_language,
    load_assistant,
    staff_signed_in,
)
from klausa.ui import escape_markdown, ui


def support_page() -> None:
    language = interface_language()
    st.title(ui(language, "support_page"))
    if not staff_signed_in(language):
        return
    store = answer_log()
    assistant = load_assistant()
    policies = ["", *assistant.catalog.policies]
    columns = st.columns(3)
    policy = columns[0].selectbox("Policy", policies, format_func=lambda p: p or "all")
    spoken = columns[1].selectbox("Language", ["", "en", "id"], format_func=lambda v: v or "all")
    rating = columns[2].selectbox("Rating", ["", "up", "down", "none"],
                                  format_func=lambda v: v or "all")
    rows = store.recent(policy=policy or None, language=spoken or None, rating=rating or None)
    st.dataframe(
        [{"asked": r.asked_at, "question": r.question, "lang": r.language,
          "policy": r.policy or "all", "refused": r.refused, "cited": "; ".join(r.citations),
          "rating": {1: "👍", 0: "👎"}.get(r.rating, ""), "comment": r.comment or ""}
         for r in rows],
        width="stretch", hide_index=True,
    )
    downloads = st.columns(2)
    downloads[0].download_button("Export CSV", store.to_csv(rows), "klausa-answers.csv",
                                 "text/csv")
    downloads[1].download_button("Export JSONL", store.to_jsonl(rows), "klausa-answers.jsonl",
                                 "application/jsonl")
    if not rows:
        return
    st.subheader("Retrieval trace")
    chosen = st.selectbox("Question", rows, format_func=lambda r: f"{r.asked_at} · {r.question}")
    answer = store.answer(chosen.id)
    st.markdown(answer_markdown(answer))
    cited = {c.chunk_id for c in answer.citations}
    st.dataframe(
        [{"rank": h.rank, "policy": h.chunk.policy, "§": h.chunk.label,
          "dense": round(h.dense, 4) if h.dense is not None else None,
          "lexical": round(h.lexical, 3) if h.lexical is not None else None,
          "fused": round(h.score, 4), "cited": h.chunk.id in cited,
          "clause": h.chunk.text[:160]} for h in answer.hits],
        width="stretch", hide_index=True,
    )
    support = answer.trace.get("support", {})
    followed = answer.trace.get("follow_up_of")  # a list; one string in answers logged before
    followed = [followed] if isinstance(followed, str) else followed or []
    follow_up = (f" Searched as a follow-up of: {'; '.join(map(repr, followed))}."
                 if followed else "")
    st.caption(
        f"Why: the first clause ranks highest on the fused score "
        f"({assistant.settings.dense_weight:.2f} × dense + "
        f"{1 - assistant.settings.dense_weight:.2f} × lexical, each scaled over the "
        f"candidates). Support {support} against the refusal threshold "
        f"{answer.trace.get('refusal_threshold')}; searched: {answer.trace.get('policies')}."
        + follow_up
    )
    generation = answer.trace.get("generation")
    if isinstance(generation, dict):
        verdict = "passed" if generation.get("passed") else "failed: " + "; ".join(
            generation.get("problems", []))
        share = generation.get("supported_share")
        carried = f"; {share:.0%} of its words carried by the quote" if share is not None else ""
        st.markdown(f"**Generated answer** ({escape_markdown(str(generation.get('provider')))}, "
                    f"{generation.get('ms', '–')} ms): verification {escape_markdown(verdict)}"
                    f"{carried}")
        if generation.get("raw"):
            st.code(generation["raw"], language=None, wrap_lines=True)
    st.json({"timings_ms": answer.timings_ms, "trace": answer.trace}, expanded=False)



support_page()
