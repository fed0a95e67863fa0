"""Read policy files (.txt, .md, .html, .pdf) into plain text, or fail with one clear line."""

from __future__ import annotations

import logging
import math
import re
from html.parser import HTMLParser
from pathlib import Path

log = logging.getLogger(__name__)

SUPPORTED_SUFFIXES = (".txt", ".md", ".html", ".htm", ".pdf")
MAX_FILE_BYTES = 20 * 1024 * 1024


class DocumentError(ValueError):
    """A document that cannot be ingested; the message names the file and the reason."""

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(f"{display_name(path)}: {reason}")
        self.path = str(path)
        self.reason = reason


def display_name(path: Path | str) -> str:
    """A file's name for a one-line message: control characters (a newline in a name could
    forge a second message line) are shown escaped."""
    return re.sub(
        r"[\x00-\x1f\x7f-\x9f\u2028\u2029]",
        lambda m: m.group().encode("unicode_escape").decode("ascii"),
        Path(path).name,
    )


def size_text(size: int) -> str:
    """Rounded up: a file over the limit never reads as "20.0 MB" against a 20 MB limit."""
    return f"{math.ceil(size * 10 / 2**20) / 10:.1f} MB"


def check_size(path: Path | str, size: int) -> None:
    if size > MAX_FILE_BYTES:
        raise DocumentError(
            path, f"too large ({size_text(size)}; the limit is {MAX_FILE_BYTES // 2**20} MB)"
        )


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
    DROP = frozenset("script style noscript template svg iframe object title".split())
    # What may stand in <head>; anything else starts the body, as in a browser (the
    # </head> and <body> tags are optional, and a missing </head> must not hide the page).
    HEAD_CONTENT = frozenset("title meta link style script base noscript template".split())

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.dropping = 0
        self.in_head = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "head":
            self.in_head = True
            return
        if self.in_head and tag not in self.HEAD_CONTENT:
            self.in_head = False
        if tag in self.DROP:
            self.dropping += 1
        elif re.fullmatch(r"h[1-6]", tag):
            self.parts.append("\n\n" + "#" * int(tag[1]) + " ")
        elif tag == "li":
            self.parts.append("\n- ")
        elif tag in self.BLOCK:
            self.parts.append("\n\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "head":
            self.in_head = False
        elif tag in self.DROP:
            self.dropping = max(0, self.dropping - 1)
        elif re.fullmatch(r"h[1-6]", tag) or tag in self.BLOCK:
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if self.dropping:
            return
        if self.in_head and data.strip():
            self.in_head = False  # text cannot stand in <head>: the body has begun
        if not self.in_head:
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

    try:
        reader = PdfReader(str(path))
        pages = [page.extract_text() or "" for page in reader.pages]
    except Exception as error:
        # A malformed PDF can break pypdf anywhere (LimitReachedError, IndexError,
        # RecursionError…): one line naming the file, never a traceback.
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
    check_size(path, size)
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
