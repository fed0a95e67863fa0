"""Turn a parsed section tree into clause chunks with exact source offsets."""

from __future__ import annotations

import hashlib
import re

from ingest.parse import ParsedTree
from klausa.text import sentence_spans
from klausa.types import Chunk, PolicyInfo, Section

#: Clauses longer than this are split at sentence boundaries (e5 reads ~512 tokens).
MAX_CHUNK_CHARS = 900
CONTEXT_CHARS = 300


def chunk_id(policy: str, label: str, ordinal: int) -> str:
    """Stable id: the same clause position keeps its id when its words are edited."""
    return hashlib.sha1(f"{policy}\x1f{label}\x1f{ordinal}".encode()).hexdigest()[:20]


def split_long(
    text: str, start: int, end: int, limit: int = MAX_CHUNK_CHARS
) -> list[tuple[int, int]]:
    """Group sentences into parts of at most ``limit`` characters (a longer sentence stays)."""
    if end - start <= limit:
        return [(start, end)]
    parts: list[tuple[int, int]] = []
    for s, e in sentence_spans(text, start, end):
        if parts and e - parts[-1][0] <= limit:
            parts[-1] = (parts[-1][0], e)
        else:
            parts.append((s, e))
    return parts


def last_sentence(text: str) -> str:
    spans = sentence_spans(text)
    sentence = text[spans[-1][0] : spans[-1][1]] if spans else text
    return sentence[-CONTEXT_CHARS:].strip()


#: An item that says the next is the last: "…; and", "…, or", "…; dan", "… atau".
PENULTIMATE = re.compile(r"[;,]?\s*\b(and|or|dan|atau)\s*$", re.IGNORECASE)


def ends_list(previous: str, item: str) -> bool:
    """``item`` is a list's last: it ends a sentence after an item that ended with "and"."""
    return bool(PENULTIMATE.search(previous)) and item.rstrip().endswith(".")


def build_chunks(info: PolicyInfo, source: str, tree: ParsedTree) -> list[Chunk]:
    by_label = {section.label: section for section in tree.sections}
    chunks: list[Chunk] = []
    for section in tree.sections:
        spans = tree.spans[section.label]
        parent_lead = _parent_lead_in(section, by_label, tree, source)
        # The lead-ins of the lists open here: a list's, then an item's that opens a list
        # within it ("- Assist users …, including to:").
        lead_ins: list[str] = []
        previous = ""
        ordinal = 0
        for index, (start, end, kind) in enumerate(spans):
            clause = source[start:end]
            if kind == "bullet":
                context = lead_ins[-1] if lead_ins else parent_lead
            else:
                context = parent_lead if index == 0 else ""
            if clause.rstrip().endswith(":"):
                nested = kind == "bullet" and bool(lead_ins)
                lead_ins = [*lead_ins, last_sentence(clause)] if nested else [
                    last_sentence(clause)]
            elif kind == "bullet" and len(lead_ins) > 1 and ends_list(previous, clause):
                lead_ins.pop()  # the list within the list ended with this item
            previous = clause
            for part_start, part_end in split_long(source, start, end):
                chunks.append(
                    Chunk(
                        id=chunk_id(info.id, section.label, ordinal),
                        policy=info.id,
                        language=info.language,
                        label=section.label,
                        section_title=section.title,
                        title_path=section.title_path,
                        text=source[part_start:part_end],
                        start=part_start,
                        end=part_end,
                        context=context,
                        ordinal=ordinal,
                    )
                )
                ordinal += 1
    return chunks


def _parent_lead_in(
    section: Section, by_label: dict[str, Section], tree: ParsedTree, source: str
) -> str:
    """The parent's sentence that introduces this item ("…except in the following cases:")."""
    parent = by_label.get(section.parent or "")
    if parent is None:
        return ""
    spans = tree.spans[parent.label]
    if not spans:
        return ""
    start, end, _ = spans[-1]
    text = source[start:end].rstrip()
    return last_sentence(text) if text.endswith(":") else ""
