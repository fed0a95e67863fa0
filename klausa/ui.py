"""Pure helpers for the app's pages: interface text, highlighting, the staff password gate.

No Streamlit here, so each helper is tested on its own."""

from __future__ import annotations

import hmac
import html
import re
import threading
import time
from collections.abc import Iterator

from klausa.prompts import phrases
from klausa.types import Language, ParsedPolicy

MAX_FAILURES = 5
LOCKOUT_SECONDS = 300


def ui(language: Language, key: str, **values: object) -> str:
    text = phrases("ui", language)[key]
    return text.format(**values) if values else text


def starters(language: Language) -> list[str]:
    return list(phrases("ui", language)["starters"])


def highlight_html(clause: str, start: int, end: int) -> str:
    """The clause as escaped text with the supporting words in <mark>: the document's own
    characters are never interpreted as HTML, nor as markdown (line breaks are written as
    character references, so a blank line in the clause cannot end the HTML block and let
    the rest be read as markdown). Offsets outside the clause are clamped: every character
    of the clause is shown exactly once."""
    start = max(0, min(start, len(clause)))
    end = max(start, min(end, len(clause)))

    def text(part: str) -> str:
        return html.escape(part).replace("\r", "&#13;").replace("\n", "&#10;")

    before, quote, after = clause[:start], clause[start:end], clause[end:]
    return (
        '<div class="klausa-clause" style="white-space: pre-wrap">'
        f"{text(before)}<mark class=\"klausa-quote\">{text(quote)}</mark>"
        f"{text(after)}</div>"
    )


def escape_markdown(text: str) -> str:
    """Text shown through st.markdown exactly as written (no links, emphasis, headings,
    entities or HTML)."""
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|<>~$:&=])", r"\\\1", text)


def stream_words(text: str, delay: float = 0.0) -> Iterator[str]:
    """The answer word by word, for ``st.write_stream``."""
    for piece in re.findall(r"\S+\s*|\s+", text):
        yield piece
        if delay:
            time.sleep(delay)


def section_tree(policy: ParsedPolicy) -> list[tuple[int, str, str]]:
    """(depth, label, title) of every section, in document order."""
    return [(s.level - 1, s.label, s.title) for s in policy.sections]


def section_source(policy: ParsedPolicy, label: str) -> str:
    section = policy.section(label)
    if section is None:
        return ""
    return policy.source_text[section.start : section.end].strip()


class PasswordGate:
    """Constant-time password check with a lockout after repeated failures (per process)."""

    def __init__(self, max_failures: int = MAX_FAILURES, lockout: float = LOCKOUT_SECONDS):
        self.max_failures = max_failures
        self.lockout = lockout
        self._failures: list[float] = []
        self._locked_until = 0.0
        self._lock = threading.Lock()

    def locked_for(self) -> int:
        """Seconds left of a lockout (0 when open)."""
        return max(0, int(self._locked_until - time.monotonic() + 0.999))

    def check(self, given: str, expected: str) -> bool:
        with self._lock:
            if self.locked_for():
                return False
            ok = hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))
            if ok:
                self._failures.clear()
                return True
            now = time.monotonic()
            self._failures = [t for t in self._failures if now - t < self.lockout]
            self._failures.append(now)
            if len(self._failures) >= self.max_failures:
                self._locked_until = now + self.lockout
                self._failures.clear()
            return False
