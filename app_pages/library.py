"""Library: the policies and their sections; add, re-index or remove policies."""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from app_pages.common import (
    interface_language,
    load_assistant,
    local_time,
    staff_directory,
    staff_member,
    state,
    still_listed,
)
from ingest.loaders import MAX_FILE_BYTES
from ingest.pipeline import IngestBusyError, ingest
from ingest.uploads import UploadError, add_upload, add_version, remove_upload, remove_version
from klausa import Assistant
from klausa.catalog import load_manifest
from klausa.glosses import GLOSS_LANGUAGE
from klausa.staff import MAX_PASSWORD, ROLES, AccountError, StaffMember
from klausa.ui import section_source, section_tree, ui


def run_ingest(assistant: Assistant, label: str, member: StaffMember, action: str,
               detail: str = "") -> None:
    """Index while showing progress; then rerun, so the policy list shows the new index, with
    the report kept above it."""
    staff_directory().record(member.name, action, detail)
    with st.status(label, expanded=True) as status:
        try:
            report = ingest(assistant.settings, embedder=assistant.embedder)
        except IngestBusyError as error:
            status.update(label=str(error), state="error")
            return
        assistant.reload()
        status.update(label=f"{label} — done", state="error" if report.errors else "complete")
    state.ingest_report = (f"{label} — done", report.errors, [
        f"{p.policy}: {p.added} added, {p.updated} updated, {p.removed} removed, "
        f"{p.unchanged} unchanged" for p in report.policies])
    st.rerun()


def change_and_index(change: Callable[[], object], assistant: Assistant, label: str,
                     member: StaffMember, action: str, detail: str) -> None:
    """Make a change to the uploaded files (refused: its reason, nothing indexed), then
    index it."""
    try:
        change()
    except UploadError as error:
        st.error(str(error))
    else:
        run_ingest(assistant, label, member, action, detail)


def show_ingest_report() -> None:
    report = state.pop("ingest_report", None)
    if report is None:
        return
    heading, errors, lines = report
    with st.status(heading, state="error" if errors else "complete", expanded=True):
        for error in errors:
            st.error(error)
        for line in lines:
            st.write(line)


def library_page() -> None:
    language = interface_language()
    st.title(ui(language, "library_page"))
    member = staff_member(language, "library")
    if member is None:
        return
    show_ingest_report()
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
            for version in policy.versions:
                whose = ("the company's own text" if version.info.provided_by == "company"
                         else "a translation provided with Klausa")
                st.caption(f"Also in {version.info.language} ({version.info.source}): {whose}, "
                           "aligned section by section; askers in that language are quoted "
                           "from it.")
            if info.language in GLOSS_LANGUAGE:
                glossed = sum(1 for chunk in policy.chunks if chunk.gloss)
                st.caption(
                    f"English glosses (a search aid for English questions, never shown to "
                    f"askers): {glossed} of {len(policy.chunks)} clauses. A clause without "
                    "one is searched by its own words; `klausa gloss` (needs the `llm` "
                    "extra) writes the missing ones, then re-index.")
    st.subheader("Add a policy")
    with st.form("upload", clear_on_submit=True):
        upload = st.file_uploader("Policy file", type=["txt", "md", "html", "htm", "pdf"],
                                  max_upload_size=MAX_FILE_BYTES // 2**20)
        columns = st.columns(3)
        policy_id = columns[0].text_input("Id (e.g. tokoku)")
        title = columns[1].text_input("Title")
        spoken = columns[2].selectbox("Language", ["en", "id"])
        replace = st.checkbox("Replace a policy with the same id")
        submitted = st.form_submit_button("Upload and index")
    if submitted and upload is not None:
        change_and_index(
            lambda: add_upload(settings, upload.name, upload.getvalue(), policy_id=policy_id,
                               title=title, language=spoken,  # type: ignore[arg-type]
                               replace=replace),
            assistant, f"Indexing {policy_id}", member, "upload",
            f"{policy_id} ({upload.name}{', replacing' if replace else ''})")
    versions_section(assistant, member)
    columns = st.columns(2)
    if columns[0].button("Re-index everything"):
        run_ingest(assistant, "Re-indexing", member, "reindex")
    uploaded = still_listed("remove-policy", [i.id for i in load_manifest(settings.uploads_dir)])
    if uploaded:
        with columns[1].popover("Remove a policy"):
            target = st.selectbox("Uploaded policy", uploaded, key="remove-policy")
            if st.button("Remove", type="primary"):
                change_and_index(lambda: remove_upload(settings, target), assistant,
                                 f"Removing {target}", member, "remove", target)
    accounts_section(member)
    activity_section()


def versions_section(assistant: Assistant, member: StaffMember) -> None:
    """An uploaded policy's text in its other language: answers then quote the asker's
    language. It must line up with the policy section by section."""
    settings = assistant.settings
    uploaded = {i.id: i for i in load_manifest(settings.uploads_dir)}
    if not uploaded:
        return
    st.subheader("Add the other language's version of a policy")
    with st.form("version", clear_on_submit=True):
        policy_id = st.selectbox("Uploaded policy", list(uploaded), key="version-policy",
                                 format_func=lambda p: f"{uploaded[p].title} ({p}, "
                                 f"{uploaded[p].language})")
        upload = st.file_uploader("The same policy in the other language",
                                  type=["txt", "md", "html", "htm", "pdf"],
                                  max_upload_size=MAX_FILE_BYTES // 2**20)
        provided_by = st.radio(
            "Whose text is it?", ["company", "klausa"], horizontal=True,
            format_func={"company": "The company's own", "klausa": "Our translation (answers "
                         "say it is one)"}.get)
        replace = st.checkbox("Replace its version")
        submitted = st.form_submit_button("Upload and index the version")
    if submitted and upload is not None and policy_id is not None:
        change_and_index(
            lambda: add_version(settings, upload.name, upload.getvalue(), policy_id=policy_id,
                                provided_by=provided_by,  # type: ignore[arg-type]
                                replace=replace),
            assistant, f"Indexing {policy_id}'s version", member, "upload-version",
            f"{policy_id} ({upload.name})")
    with_version = [p for p, info in uploaded.items() if info.versions]
    if with_version:
        with st.popover("Remove a version"):
            target = st.selectbox("Policy", with_version, key="remove-version")
            if st.button("Remove its version", type="primary"):
                change_and_index(lambda: remove_version(settings, target), assistant,
                                 f"Removing {target}'s version", member, "remove-version",
                                 target)


def accounts_section(member: StaffMember) -> None:
    """Admins manage the staff accounts here (or with `klausa users`)."""
    staff = staff_directory()
    st.subheader("Staff accounts")
    members = staff.members()
    st.dataframe(
        [{"name": m.name, "role": m.role, "added": local_time(m.created_at),
          "last sign-in": local_time(m.last_sign_in) or "never"} for m in members],
        width="stretch", hide_index=True,
    )
    columns = st.columns(2)
    with columns[0].form("add-account", clear_on_submit=True):
        st.markdown("**Add an account**")
        name = st.text_input("Name", key="new-account-name", max_chars=64)
        role = st.selectbox("Role", ROLES, key="new-account-role")
        password = st.text_input("Password", type="password", key="new-account-password",
                                 autocomplete="new-password", max_chars=MAX_PASSWORD)
        again = st.text_input("Password again", type="password", key="new-account-again",
                              autocomplete="new-password", max_chars=MAX_PASSWORD)
        if st.form_submit_button("Add account"):
            if password != again:
                st.error("The two passwords differ.")
            else:
                try:
                    added = staff.add(name, password, role, by=member.name)
                except AccountError as error:
                    st.error(str(error))
                else:
                    st.success(f"Added {added.name} ({added.role}).")
    others = still_listed("change-account-name",
                          [m.name for m in members if m.name != member.name])
    if others:
        with columns[1].form("change-account"):
            st.markdown("**Change an account**")
            target = st.selectbox("Account", others, key="change-account-name")
            new_role = st.selectbox("Role", ROLES, key="change-account-role")
            remove = st.checkbox("Remove this account", key="change-account-remove")
            if st.form_submit_button("Apply"):
                try:
                    if remove:
                        staff.remove(target, by=member.name)
                        st.success(f"Removed {target}.")
                    else:
                        staff.set_role(target, new_role, by=member.name)
                        st.success(f"{target} is now {new_role}.")
                except AccountError as error:
                    st.error(str(error))


def activity_section() -> None:
    st.subheader("Activity")
    st.caption("Who did what: sign-ins, reviews, library changes and account changes.")
    st.dataframe(
        [{"when": local_time(a.at), "who": a.actor, "what": a.action.replace("_", " "),
          "detail": a.detail} for a in staff_directory().activity(limit=100)],
        width="stretch", hide_index=True,
    )



library_page()
