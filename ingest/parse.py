"""Parse policy text into a section tree labelled with the document's own numbering.

The parser recognises numbering styles, not documents: lettered sections (``A.``), numbered
items (``1.``, ``1.2``), roman sub-parts (``I.``), markdown ``#`` headings, ALL-CAPS or
stand-alone title lines, bullets with a run-in heading, and a table of contents (a run of
headings with no text between them, repeated later), whose entries also name unnumbered
headings (``Privacy Policy Update`` → ``J``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property

from klausa.types import Section

DEBRIS = re.compile(
    r"^(top of page|bottom of page|scroll to top|back to top|back|kembali|ke atas)$", re.I
)
MARKER = re.compile(
    r"^(?P<marker>\d{1,3}(?:\.\d{1,3})+|\d{1,3}|[A-Z]|[IVXLCDM]{1,6}|[a-z]|[ivx]{1,5})"
    r"(?P<sep>[.)])\s+(?P<text>\S.*)$"
)
PAREN_MARKER = re.compile(r"^\((?P<marker>\d{1,3}|[a-z]|[ivx]{1,5})\)\s+(?P<text>\S.*)$")
BULLET = re.compile(r"^(?P<marker>[-•*–·▪◦])\s*(?P<text>\S.*)$")
MD_HEADING = re.compile(r"^(?P<hashes>#{1,6})\s+(?P<text>\S.*?)\s*#*$")
# A bullet that opens with a short run-in heading, then a sentence: "Marketing Most information…".
RUN_IN_STARTERS = (
    "We|When|Most|If|You|Your|Our|The|This|These|In|For|Where|As|It|They|Some|All|Any|Each|"
    "Kami|Jika|Apabila|Ketika|Saat|Anda|Sebagian|Dalam|Untuk"
)
RUN_IN = re.compile(
    rf"^(?P<head>[A-Z][^.!?:;]{{2,90}}?)\s+(?P<rest>(?:{RUN_IN_STARTERS})\s+[a-z].*)$"
)
FUNCTION_WORDS = {
    "a",
    "an",
    "the",
    "of",
    "to",
    "and",
    "or",
    "for",
    "in",
    "on",
    "with",
    "by",
    "yang",
    "dan",
    "atau",
    "di",
    "ke",
    "dari",
    "untuk",
}
ROMAN = {"I": 1, "V": 5, "X": 10, "L": 50, "C": 100, "D": 500, "M": 1000}
HEADING_MAX_WORDS = 12
#: Items nest no deeper than this (real policies use four or five levels); a deeper item is
#: a sibling at this depth, so a hostile staircase of indents cannot exhaust the recursion.
MAX_DEPTH = 12
NUMBERED_TITLE = re.compile(r"^(\d{1,3}(?:\.\d{1,3})*|[A-Z])[.)]?\s+(\S.*)$")


def roman_value(text: str) -> int | None:
    text = text.upper()
    if not text or any(ch not in ROMAN for ch in text):
        return None
    total = 0
    for i, ch in enumerate(text):
        value = ROMAN[ch]
        total += -value if i + 1 < len(text) and ROMAN[text[i + 1]] > value else value
    return total


@dataclass
class Line:
    start: int  # offset of the first character of the line
    raw: str

    @cached_property
    def stripped(self) -> str:
        return self.raw.strip()

    @cached_property
    def indent(self) -> int:
        return len(self.raw) - len(self.raw.lstrip())

    @property
    def is_blank(self) -> bool:
        return not self.raw.strip()

    def suffix_start(self, suffix: str) -> int:
        """Source offset of ``suffix``, the end of the stripped line (a marker's or bullet's
        text). Searching for it instead would find an earlier copy in "- XWe ab We ab"."""
        return self.start + self.indent + len(self.stripped) - len(suffix)


@dataclass
class Node:
    label: str
    title: str
    kind: str  # "heading" | "item" | "runin" | "root"
    level: int
    start: int
    key: tuple[str, int] | None = None
    parent: Node | None = None
    children: list[Node] = field(default_factory=list)
    #: (start, end) spans of the node's own paragraphs, bullets and item text.
    spans: list[tuple[int, int, str]] = field(default_factory=list)
    end: int = 0

    @property
    def title_path(self) -> list[str]:
        path: list[str] = []
        node: Node | None = self
        while node is not None and node.kind != "root":
            if node.kind != "item" and (not path or path[0] != node.title):
                path.insert(0, node.title)
            node = node.parent
        return path


def split_lines(text: str) -> list[Line]:
    lines, offset = [], 0
    for raw in text.split("\n"):
        lines.append(Line(offset, raw))
        offset += len(raw) + 1
    return lines


def is_heading_text(text: str) -> bool:
    """Short, unpunctuated, capitalised: reads as a title rather than a sentence."""
    words = text.split()
    if not words or len(words) > HEADING_MAX_WORDS or len(text) > 100:
        return False
    if text[-1] in ".,;:" or not (text[0].isupper() or text[0].isdigit()):
        return False
    return any(ch.isalpha() for ch in text) and words[-1].lower() not in FUNCTION_WORDS


def is_all_caps(text: str) -> bool:
    letters = [ch for ch in text if ch.isalpha()]
    return len(letters) >= 3 and all(ch.isupper() for ch in letters)


def normalise_title(text: str) -> str:
    return re.sub(r"[^\w]+", " ", text.lower()).strip()


class _Parser:
    def __init__(self, text: str, intro_label: str) -> None:
        self.text = text
        self.lines = split_lines(text)
        self.intro_label = intro_label
        self.root = Node(label="", title="", kind="root", level=0, start=0)
        self.stack: list[Node] = [self.root]
        self.toc: dict[str, str] = {}
        self.last_marker: dict[tuple[str, int], str] = {}
        self.labels: set[str] = set()
        #: label → the next "(n)" to try, so a thousand "1." items do not rescan 2, 3, ….
        self.next_suffix: dict[str, int] = {}

    # --- classification -------------------------------------------------------------
    def marker_of(self, line: Line) -> tuple[str, str, str] | None:
        """(style, marker, text) of a numbered/lettered line, or None."""
        stripped = line.stripped
        match = MARKER.match(stripped) or PAREN_MARKER.match(stripped)
        if not match:
            return None
        marker, text = match.group("marker"), match.group("text")
        if "." in marker and marker[0].isdigit():
            return "decimal", marker, text
        if marker.isdigit():
            return "number", marker, text
        style = self.letter_or_roman(marker, line.indent)
        return (style, marker, text) if style else None

    def letter_or_roman(self, marker: str, indent: int) -> str | None:
        upper = marker.isupper()
        letter_style = "letter" if upper else "lower"
        roman_style = "roman" if upper else "lower-roman"
        previous_letter = self.last_marker.get((letter_style, indent))
        if len(marker) == 1 and previous_letter and ord(marker) == ord(previous_letter) + 1:
            return letter_style
        previous_roman = self.last_marker.get((roman_style, indent))
        value = roman_value(marker)
        if value is not None and (
            (previous_roman and value == (roman_value(previous_roman) or 0) + 1) or value == 1
        ):
            return roman_style
        if len(marker) == 1:
            return letter_style
        return None

    def unnumbered_heading(self, index: int) -> bool:
        line = self.lines[index]
        text = line.stripped
        if line.indent > 0 or BULLET.match(text) or not is_heading_text(text):
            return False
        if is_all_caps(text):
            return True
        before = self.neighbour(index, -1)
        after = self.neighbour(index, +1)
        if after is None or (self.marker_of(after) and not after.is_blank):
            return after is not None
        after_text = after.stripped
        alone = (
            (before is None or self.lines[index - 1].is_blank) and self.lines[index + 1].is_blank
            if index + 1 < len(self.lines)
            else True
        )
        continues = (
            before is not None
            and before.stripped[-1:] in ",;:"
            and not self.lines[index - 1].is_blank
        )
        if continues:
            return False
        return alone or (len(after_text) > len(text) and after_text[-1:] in ".:;!?")

    def neighbour(self, index: int, step: int) -> Line | None:
        index += step
        while 0 <= index < len(self.lines):
            line = self.lines[index]
            if not line.is_blank and not DEBRIS.match(line.stripped):
                return line
            index += step
        return None

    # --- table of contents ----------------------------------------------------------
    def find_toc(self) -> set[int]:
        """Indices of lines forming a contents list: ≥3 top-level markers with no body.

        Linear in the number of lines: a long file of short numbered lines must not take
        hours (each line's marker is read once; "repeated later" is a last-occurrence map)."""
        markers: dict[int, tuple[str, str, str]] = {}
        for i, line in enumerate(self.lines):
            if line.indent == 0 and (m := self.marker_of(line)) and is_heading_text(m[2]):
                markers[i] = m
        runs: list[list[int]] = []
        in_run: set[tuple[str, str, str]] = set()
        for i, marker in markers.items():
            adjacent = runs and self.neighbour(runs[-1][-1], +1) is self.lines[i]
            if adjacent and marker not in in_run:
                runs[-1].append(i)
            else:
                runs.append([i])
                in_run = set()
            in_run.add(marker)
        last_at = {(m[1], normalise_title(m[2])): i for i, m in markers.items()}
        toc_lines: set[int] = set()
        for run in runs:
            if len(run) < 3:
                continue
            keys = [(markers[i][1], normalise_title(markers[i][2])) for i in run]
            repeated = sum(last_at[key] > run[-1] for key in keys)
            if repeated >= len(run) // 2:
                toc_lines.update(run)
                for marker, title in keys:
                    self.toc[title] = marker
        return toc_lines

    # --- tree building --------------------------------------------------------------
    def unique_label(self, label: str) -> str:
        candidate, n = label, self.next_suffix.get(label, 2)
        while candidate in self.labels:
            candidate = f"{label} ({n})"
            n += 1
        self.next_suffix[label] = n
        self.labels.add(candidate)
        return candidate

    def open_node(self, node: Node, parent: Node) -> Node:
        node.parent = parent
        node.level = parent.level + 1
        node.label = self.unique_label(node.label)
        parent.children.append(node)
        self.stack = [*self.stack[: self.stack.index(parent) + 1], node]
        return node

    def add_heading(self, label: str, title: str, start: int) -> None:
        self.open_node(Node(label, title, "heading", 0, start), self.root)

    def add_markdown_heading(self, text: str, depth: int, start: int) -> None:
        """``## 3.2 Sharing`` → label ``3.2``; a deeper ``#`` nests under the shallower one."""
        numbered = NUMBERED_TITLE.match(text)
        label, title = (numbered.group(1), numbered.group(2)) if numbered else (
            self.heading_label(text), text)
        parent = self.root
        for node in reversed(self.stack):
            if node.kind == "heading" and node.key and node.key[0] == "md" and (
                node.key[1] < depth
            ):
                parent = node
                break
        self.open_node(Node(label, title, "heading", 0, start, ("md", depth)), parent)

    def add_marker(self, line: Line, style: str, marker: str, text: str) -> None:
        key = (style, line.indent)
        # Forget deeper sequences: a new "1." under a new parent starts again.
        for other in [k for k in self.last_marker if k[1] > line.indent]:
            del self.last_marker[other]
        self.last_marker[key] = marker
        text_start = line.suffix_start(text)
        heading = line.indent == 0 and is_heading_text(text)
        if heading and style != "decimal":
            self.open_node(Node(marker, text.strip(), "heading", 0, line.start, key), self.root)
            return
        parent = self.stack[-1]
        for i, node in enumerate(self.stack):
            if node.key == key:
                parent = self.stack[i - 1]
                break
        else:
            while parent.kind == "runin":
                parent = parent.parent or self.root
        while parent.level >= MAX_DEPTH:
            parent = parent.parent or self.root
        if style == "decimal":
            label = marker
            parent = self.root if heading else parent
        else:
            label = f"{parent.label}.{marker}" if parent.kind != "root" else marker
        title = text.strip() if heading else (parent.title if parent.kind != "root" else "")
        node = self.open_node(
            Node(label, title, "heading" if heading else "item", 0, line.start, key), parent
        )
        if not heading:
            node.spans.append((text_start, line.start + len(line.raw.rstrip()), "item"))

    def add_paragraph(self, line: Line) -> None:
        stripped = line.stripped
        start = line.start + line.indent
        end = line.start + len(line.raw.rstrip())
        bullet = BULLET.match(stripped)
        if bullet:
            text = bullet.group("text")
            start = line.suffix_start(text)
            run_in = RUN_IN.match(text)
            owner = self.current_owner(line, is_bullet=True)
            if run_in and self.is_run_in_heading(run_in.group("head")):
                head = run_in.group("head").strip()
                node = self.open_node(Node(head, head, "runin", 0, line.start), owner)
                rest_start = line.suffix_start(run_in.group("rest"))
                node.spans.append((rest_start, end, "para"))
                return
            owner.spans.append((start, end, "bullet"))
            return
        owner = self.current_owner(line, is_bullet=False)
        if owner.spans and self.is_continuation(owner.spans[-1], line):
            first, _, kind = owner.spans[-1]
            owner.spans[-1] = (first, end, kind)
            return
        owner.spans.append((start, end, "para"))

    def is_continuation(self, span: tuple[int, int, str], line: Line) -> bool:
        """A hard-wrapped line: the previous line ran on without a break."""
        previous_end = span[1]
        between = self.text[previous_end : line.start]
        if between.count("\n") != 1:
            return False
        previous_char = self.text[previous_end - 1 : previous_end]
        return previous_char not in ".:;!?" and line.stripped[:1].islower()

    def is_run_in_heading(self, head: str) -> bool:
        words = head.split()
        return (
            1 <= len(words) <= 10
            and words[-1].lower() not in FUNCTION_WORDS
            # A bullet that opens like a sentence ("To process…", "We may…") has no heading.
            and not re.fullmatch(RUN_IN_STARTERS + "|To|Be", words[0])
        )

    def current_owner(self, line: Line, *, is_bullet: bool) -> Node:
        """The section a plain paragraph or bullet belongs to."""
        while len(self.stack) > 1:
            top = self.stack[-1]
            if top.kind == "runin" or (
                top.kind == "item" and not is_bullet and line.indent <= (top.key or ("", 0))[1]
            ):
                self.stack.pop()
                continue
            break
        owner = self.stack[-1]
        if owner.kind == "root":
            # Text before the first heading is a section of its own.
            return self.open_node(
                Node(self.intro_label, self.intro_label, "heading", 0, line.start), self.root
            )
        return owner

    def parse(self) -> Node:
        toc = self.find_toc()
        for index, line in enumerate(self.lines):
            stripped = line.stripped
            if index in toc or line.is_blank or DEBRIS.match(stripped):
                continue
            md = MD_HEADING.match(stripped)
            if md:
                self.add_markdown_heading(md.group("text"), len(md.group("hashes")), line.start)
                continue
            marker = self.marker_of(line)
            if marker:
                self.add_marker(line, *marker)
                continue
            if self.unnumbered_heading(index):
                self.add_heading(self.heading_label(stripped), stripped, line.start)
                continue
            self.add_paragraph(line)
        return self.root

    def heading_label(self, title: str) -> str:
        return self.toc.get(normalise_title(title), title)


def _finish_child(node: Node, text_length: int, sections: list[Section]) -> int:
    index = len(sections)
    own_start = min([s for s, _, _ in node.spans], default=node.start)
    own_end = max([e for _, e, _ in node.spans], default=own_start)
    placeholder = Section(
        label=node.label,
        title=node.title,
        level=node.level,
        parent=node.parent.label if node.parent and node.parent.kind != "root" else None,
        title_path=node.title_path,
        start=node.start,
        end=own_end,
        text_start=own_start,
        text_end=own_end,
        text="",
    )
    sections.append(placeholder)
    end = own_end
    for child in node.children:
        end = max(end, _finish_child(child, text_length, sections))
    node.end = end
    if not node.spans and len(sections) == index + 1:
        sections.pop()  # a heading with no text and no sub-sections
        return node.start
    placeholder.end = end
    return end


@dataclass
class ParsedTree:
    sections: list[Section]
    #: label → spans (start, end, kind) of the section's own clauses, in order.
    spans: dict[str, list[tuple[int, int, str]]]


#: The label of the text before a policy's first heading, in the policy's language.
INTRO_LABEL = {"en": "Introduction", "id": "Pendahuluan"}


def parse_sections(text: str, intro_label: str = "Introduction") -> ParsedTree:
    """Parse ``text`` into sections; offsets index into ``text`` itself."""
    parser = _Parser(text, intro_label)
    root = parser.parse()
    sections: list[Section] = []
    spans: dict[str, list[tuple[int, int, str]]] = {}
    for child in root.children:
        _finish_child(child, len(text), sections)

    def collect(node: Node) -> None:
        spans[node.label] = list(node.spans)
        for child in node.children:
            collect(child)

    for child in root.children:
        collect(child)
    for section in sections:
        # The section's own clauses (not its sub-sections'), blank-line separated.
        section.text = "\n\n".join(text[s:e] for s, e, _ in spans[section.label])
    return ParsedTree(sections=sections, spans={s.label: spans[s.label] for s in sections})
