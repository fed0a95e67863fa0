"""Library: the policies and their sections; add, re-index or remove policies."""

from __future__ import annotations

import streamlit as st

from app_pages.common import interface_language, load_assistant, staff_signed_in
from ingest.pipeline import IngestBusyError, ingest
from ingest.uploads import UploadError, add_upload, remove_upload
from klausa import Assistant
from klausa.catalog import load_manifest
from klausa.ui import section_source, section_tree, ui


def run_ingest(assistant: Assistant, label: str) -> None:
    with st.status(label, expanded=True) as status:
        try:
            report = ingest(assistant.settings, embedder=assistant.embedder)
        except IngestBusyError as error:
            status.update(label=str(error), state="error")
            return
        for error in report.errors:
            st.error(error)
        for policy in report.policies:
            st.write(f"{policy.policy}: {policy.added} added, {policy.updated} updated, "
                     f"{policy.removed} removed, {policy.unchanged} unchanged")
        assistant.reload()
        status.update(label=f"{label} — done", state="error" if report.errors else "complete")


def library_page() -> None:
    language = interface_language()
    st.title(ui(language, "library_page"))
    if not staff_signed_in(language):
        return
    assistant = load_assistant()
    settings = assistant.settings
    for policy_id, policy in assistant.catalog.policies.items():
        info = policy.info
        with st.expander(f"{info.title} · {info.id} · {info.language} · "
                         f"{len(policy.sections)} sections"):
            tree = section_tree(policy)
            label = st.selectbox("Section", [t[1] for t in tree], key=f"tree-{policy_id}",
                                 format_func=lambda lab, tree=tree: next(
                                     "  " * d + f"§{lab} — {t}" for d, lab2, t in tree
                                     if lab2 == lab))
            st.text(section_source(policy, label))
    st.subheader("Add a policy")
    with st.form("upload", clear_on_submit=True):
        upload = st.file_uploader("Policy file", type=["txt", "md", "html", "htm", "pdf"])
        columns = st.columns(3)
        policy_id = columns[0].text_input("Id (e.g. tokoku)")
        title = columns[1].text_input("Title")
        spoken = columns[2].selectbox("Language", ["en", "id"])
        replace = st.checkbox("Replace a policy with the same id")
        submitted = st.form_submit_button("Upload and index")
    if submitted and upload is not None:
        try:
            add_upload(settings, upload.name, upload.getvalue(), policy_id=policy_id,
                       title=title, language=spoken, replace=replace)  # type: ignore[arg-type]
        except UploadError as error:
            st.error(str(error))
        else:
            run_ingest(assistant, f"Indexing {policy_id}")
    columns = st.columns(2)
    if columns[0].button("Re-index everything"):
        run_ingest(assistant, "Re-indexing")
    uploaded = [i.id for i in load_manifest(settings.uploads_dir)]
    if uploaded:
        with columns[1].popover("Remove a policy"):
            target = st.selectbox("Uploaded policy", uploaded)
            if st.button("Remove", type="primary"):
                remove_upload(settings, target)
                run_ingest(assistant, f"Removing {target}")



library_page()
