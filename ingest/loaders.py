"""Read policy files (.txt, .md, .html, .pdf) into plain text, or fail with one clear line."""

from __future__ import annotations

import logging
import re
from html.parser import HTMLParser
from pathlib import Path

log = logging.getLogger(__name__)

SUPPORTED_SUFFIXES = (".txt", ".md", ".html", ".htm", ".pdf")
MAX_FILE_BYTES = 20 * 1024 * 1024


class DocumentError(ValueError):
    """A document that cannot be ingested; the message names the file and the reason."""

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(f"{Path(path).name}: {reason}")
        self.path = str(path)
        self.reason = reason


def normalise_text(text: str) -> str:
    """One newline convention, no NULs or BOM; everything else kept for exact offsets."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").lstrip("\ufeff")
    return text.replace("\x00", "")


def decode_text(data: bytes, path: Path | str) -> str:
    if b"\x00" in data[:8192]:
        raise DocumentError(path, "binary file, not text")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise DocumentError(
            path, f"not valid UTF-8 (byte {error.start}); save it as UTF-8 and try again"
        ) from None


class _HTMLText(HTMLParser):
    """Visible text of an HTML page, with headings and list items kept as lines."""

    BLOCK = frozenset(
        "p div section article br tr table ul ol header footer main nav blockquote dd dt".split()
    )
    # Code and chrome are dropped; only text a reader sees is kept.
    DROP = frozenset("script style noscript template head svg iframe object".split())

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.dropping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.DROP:
            self.dropping += 1
        elif re.fullmatch(r"h[1-6]", tag):
            self.parts.append("\n\n" + "#" * int(tag[1]) + " ")
        elif tag == "li":
            self.parts.append("\n- ")
        elif tag in self.BLOCK:
            self.parts.append("\n\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.DROP:
            self.dropping = max(0, self.dropping - 1)
        elif re.fullmatch(r"h[1-6]", tag) or tag in self.BLOCK:
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if not self.dropping:
            self.parts.append(re.sub(r"\s+", " ", data))

    def text(self) -> str:
        lines = [line.strip() for line in "".join(self.parts).split("\n")]
        return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"


def html_to_text(html: str) -> str:
    parser = _HTMLText()
    parser.feed(html)
    parser.close()
    return parser.text()


def pdf_to_text(path: Path) -> str:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(str(path))
        pages = [page.extract_text() or "" for page in reader.pages]
    except (PdfReadError, ValueError, KeyError, TypeError, OSError) as error:
        raise DocumentError(path, f"unreadable PDF ({error.__class__.__name__})") from None
    text = "\n\n".join(pages)
    if not text.strip():
        raise DocumentError(path, "PDF has no text layer (scanned?); OCR it first")
    return text


def load_text(path: Path) -> str:
    """The text Klausa parses and quotes for ``path``; offsets index into this string."""
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise DocumentError(
            path,
            f"unsupported file type {suffix or '(none)'}; "
            f"use one of {', '.join(SUPPORTED_SUFFIXES)}",
        )
    try:
        size = path.stat().st_size
    except OSError as error:
        raise DocumentError(path, f"cannot read ({error.strerror})") from None
    if size > MAX_FILE_BYTES:
        raise DocumentError(
            path, f"too large ({size / 1e6:.1f} MB; limit {MAX_FILE_BYTES / 1e6:.0f} MB)"
        )
    if suffix == ".pdf":
        text = pdf_to_text(path)
    else:
        text = decode_text(path.read_bytes(), path)
        if suffix in (".html", ".htm"):
            text = html_to_text(text)
    text = normalise_text(text)
    if not text.strip():
        raise DocumentError(path, "empty file")
    return text
