"""Klausa's face: a chat for end users, a support desk and a library for staff.

The pages render and call ``klausa.Assistant``; everything else lives in the library."""

from __future__ import annotations

import streamlit as st

from app_pages.common import init_state, interface_language
from klausa.ui import ui

st.set_page_config(page_title="Klausa", page_icon="§", layout="centered")
init_state()
language = interface_language()
page = st.navigation([
    st.Page("app_pages/chat.py", title=ui(language, "chat_page"), icon="💬", default=True),
    st.Page("app_pages/support.py", title=ui(language, "support_page"), icon="🛟"),
    st.Page("app_pages/library.py", title=ui(language, "library_page"), icon="📚"),
])
page.run()
