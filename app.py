"""Klausa's face: a chat for end users, a support desk and a library for staff.

The pages render and call ``klausa.Assistant``; everything else lives in the library."""

from __future__ import annotations

import streamlit as st

from app_pages.common import init_state, interface_language
from klausa.ui import ui

# The favicon first, so that the pages' Material icons (the font bundled with Streamlit) do
# not become the favicon, which the browser would fetch from Google's font host.
st.set_page_config(page_title="Klausa", page_icon="§")
init_state()
language = interface_language()
PAGES = [  # (file, interface-text key, icon, layout): staff pages are tables, the whole width
    ("app_pages/chat.py", "chat_page", ":material/chat:", "centered"),
    ("app_pages/compare.py", "compare_page", ":material/compare_arrows:", "centered"),
    ("app_pages/support.py", "support_page", ":material/support_agent:", "wide"),
    ("app_pages/library.py", "library_page", ":material/library_books:", "wide"),
]
pages = {
    path: st.Page(path, title=ui(language, key), icon=icon, default=number == 0)
    for number, (path, key, icon, _) in enumerate(PAGES)
}
page = st.navigation(list(pages.values()))
layout = next(lay for path, _, _, lay in PAGES if pages[path] is page)
st.set_page_config(layout=layout)  # type: ignore[arg-type]
page.run()
