"""A policy's version in another language, aligned with the original section by section.

The twin of §C.1.8 is the version's §C.1.8: the same sections in the same order and nesting,
the same numbered labels (unnumbered headings are translated, so they align by position),
and in each section the same clauses of the same kind (paragraph, bullet, list item). A
version that does not line up is refused with the sections named; ``differences`` compares
what a faithful translation keeps unchanged (numbers, e-mail addresses, URLs, names)."""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from pathlib import Path

from ingest.loaders import DocumentError
from ingest.parse import INTRO_LABEL, ParsedTree, parse_sections
from klausa.types import Chunk, ParsedPolicy, Version, VersionInfo

#: A label written in the document's own numbering ("C.1.8", "IV", "2"), not a heading's text.
NUMBERED_LABEL = re.compile(r"^(?:[A-Z]|\d+|[IVXLC]+)(?:\.(?:[A-Z]|\d+|[IVXLC]+))*$")
NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+|\[email\s+protected\]")
URL = re.compile(r"(?:https?://|www\.)[^\s)\]>,;]+", re.I)
#: How many misalignments one refusal names before "and N more".
NAMED_PROBLEMS = 6


def structure_problems(original: ParsedTree, version: ParsedTree) -> list[str]:
    """Where ``version`` does not line up with ``original``: one line per section."""
    problems: list[str] = []
    if len(original.sections) != len(version.sections):
        problems.append(f"{len(original.sections)} sections in the original, "
                        f"{len(version.sections)} in this version")
    # Not strict: a count that differs is reported above, and the pairs show where.
    for ours, theirs in zip(original.sections, version.sections, strict=False):
        where = (f"§{ours.label}" if ours.label == theirs.label
                 else f"§{ours.label} (here §{theirs.label})")
        if ours.level != theirs.level or (
                NUMBERED_LABEL.match(ours.label) and ours.label != theirs.label):
            problems.append(f"{where}: the sections differ from here on (missing, extra or "
                            "renumbered)")
            break
        kinds = [kind for *_, kind in original.spans[ours.label]]
        their_kinds = [kind for *_, kind in version.spans[theirs.label]]
        if kinds != their_kinds:
            problems.append(f"{where}: {describe(kinds)} in the original, "
                            f"{describe(their_kinds)} here")
    return problems


def describe(kinds: list[str]) -> str:
    counts = Counter(kinds)
    named = {"para": "paragraph", "bullet": "bullet", "item": "list item"}
    return ", ".join(f"{n} {named.get(k, k)}{'s' if n != 1 else ''}"
                     for k, n in counts.items()) or "no text"


def align(path: Path, info: VersionInfo, text: str, original: ParsedTree,
          chunks: list[Chunk]) -> Version:
    """The version in ``text`` with every original section and chunk mapped to its twin; a
    version that does not line up raises ``DocumentError`` naming the sections."""
    tree = parse_sections(text, INTRO_LABEL[info.language])
    problems = structure_problems(original, tree)
    if problems:
        shown = problems[:NAMED_PROBLEMS]
        if len(problems) > len(shown):
            shown.append(f"and {len(problems) - len(shown)} more")
        raise DocumentError(path, "does not line up with the original, section by section: "
                            + "; ".join(shown))
    twins = dict(zip((s.label for s in original.sections), tree.sections, strict=True))
    clauses: dict[str, tuple[int, int]] = {}
    for chunk in chunks:
        spans = original.spans[chunk.label]
        index = next(i for i, (start, end, _) in enumerate(spans) if start <= chunk.start < end)
        start, end, _ = tree.spans[twins[chunk.label].label][index]
        clauses[chunk.id] = (start, end)
    return Version(
        info=info,
        source_text=text,
        digest=file_digest(path),
        sections={label: (twin.label, twin.title, twin.start, twin.end)
                  for label, twin in twins.items()},
        clauses=clauses,
    )


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def facts(text: str, names: list[str]) -> Counter[str]:
    """What a faithful translation of ``text`` keeps as it is: URLs, e-mail addresses,
    numbers and the company's names, counted."""
    found: Counter[str] = Counter()
    for url in URL.findall(text):
        found["URL " + url.rstrip(".")] += 1
    text = URL.sub(" ", text)
    for email in EMAIL.findall(text):
        found["e-mail " + email.rstrip(".")] += 1
    text = EMAIL.sub(" ", text)
    for number in NUMBER.findall(text):
        found["number " + re.sub(r"[.,]", "", number)] += 1
    for name in names:
        count = len(re.findall(rf"(?<!\w){re.escape(name)}(?!\w)", text))
        if count:
            found["name " + name] += count
    return found


def differences(policy: ParsedPolicy) -> list[str]:
    """Clause by clause, in each version of ``policy``, the facts found in one text and not
    in its twin."""
    names = [policy.info.company, *policy.info.aliases]
    original = parse_sections(policy.source_text, INTRO_LABEL[policy.info.language])
    found: list[str] = []
    for version in policy.versions:
        tree = parse_sections(version.source_text, INTRO_LABEL[version.info.language])
        for ours, theirs in zip(original.sections, tree.sections, strict=True):
            for number, ((s1, e1, _), (s2, e2, _)) in enumerate(
                    zip(original.spans[ours.label], tree.spans[theirs.label], strict=True),
                    start=1):
                a = facts(policy.source_text[s1:e1], names)
                b = facts(version.source_text[s2:e2], names)
                if a != b:
                    found.append(
                        f"{policy.info.id} §{ours.label} clause {number}: only in the "
                        f"original {sorted((a - b).elements())}, only in the "
                        f"{version.info.language} version {sorted((b - a).elements())}")
    return found
