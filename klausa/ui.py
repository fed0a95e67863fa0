"""Pure helpers for the app's pages: interface text, highlighting, section text.

No Streamlit here, so each helper is tested on its own."""

from __future__ import annotations

import html
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from klausa.prompts import phrases
from klausa.types import Language, ParsedPolicy


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


def section_source(policy: ParsedPolicy, label: str, language: Language | None = None) -> str:
    """The whole section as the policy has it, or as its version in ``language`` has it."""
    section = policy.section(label)
    if section is None:
        return ""
    version = policy.version(language) if language else None
    if version is not None and label in version.sections:
        *_, start, end = version.sections[label]
        return version.source_text[start:end].strip()
    return policy.source_text[section.start : section.end].strip()


def readable_time(stamp: str | None, zone: str | None = None) -> str:
    """An ISO time as staff read it, in their time zone: "1 Dec 2026, 17:28" ("" for none)."""
    if not stamp:
        return ""
    try:
        moment = datetime.fromisoformat(stamp)
    except ValueError:
        return stamp
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        tz = ZoneInfo(zone) if zone else UTC
    except (ZoneInfoNotFoundError, ValueError):
        tz = UTC
    local = moment.astimezone(tz)
    suffix = "" if zone and tz is not UTC else " UTC"
    return f"{local.day} {local:%b %Y, %H:%M}{suffix}"
