"""Property tests: the parser and the chunker hold their promises on any text.

A policy is typed by people: numbering restarts, bullets in odd characters, Windows line
ends, tabs, stray control characters, other scripts. Whatever the text, ingest must not crash,
and every chunk must be a verbatim slice of the source under a label the section tree has (a
quote that does not slice back, or a citation to a label that does not exist, is a wrong
citation shown to a user)."""

from __future__ import annotations

import itertools
import time

from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from ingest.chunk import build_chunks
from ingest.parse import MAX_DEPTH, is_heading_text, parse_sections
from klausa.types import PolicyInfo

INFO = PolicyInfo(id="prop", title="Prop Policy", company="Prop", language="en", source="p.txt")

WORD = st.sampled_from(
    ["We", "data", "Your", "personal", "information", "share", "Kami", "menyimpan", "Anda",
     "cookies", "Marketing", "Most", "the", "of", "and", "sell", "not", "A", "I", "II", "iv",
     "ÆØÅ", "数据", "привет", "İstanbul", "ß", "ﬁle", "Ⅻ", "١٢", "😀", "x" * 40]
)
TITLE = st.lists(WORD, min_size=1, max_size=6).map(" ".join)
SENTENCE = st.builds(
    lambda words, end: " ".join(words) + end,
    st.lists(WORD, min_size=1, max_size=14),
    st.sampled_from(["", ".", ":", ";", "?", "!", ","]),
)
MARKER = st.one_of(
    st.sampled_from(list("ABCDEFabcde")),
    st.sampled_from(["I", "II", "III", "IV", "V", "i", "ii", "iii", "iv", "x", "M", "MMMM"]),
    st.integers(0, 999).map(str),
    st.lists(st.integers(0, 999), min_size=2, max_size=4).map(
        lambda ns: ".".join(map(str, ns))
    ),
)
INDENT = st.sampled_from(["", " ", "  ", "    ", "\t", "\t\t", " \t"])
POLICY_LINE = st.one_of(
    st.builds(lambda m, s, t: f"{m}{s} {t}", MARKER, st.sampled_from([".", ")"]), TITLE),
    st.builds(lambda i, m, t: f"{i}{m}. {t}", INDENT, MARKER, SENTENCE),
    st.builds(lambda i, m, t: f"{i}({m}) {t}", INDENT, MARKER, SENTENCE),
    st.builds(lambda i, b, t: f"{i}{b} {t}", INDENT, st.sampled_from(list("-•*–·▪◦")), SENTENCE),
    st.builds(lambda b, h, r: f"{b} {h} {r}", st.sampled_from(["•", "-"]), TITLE,
              st.sampled_from(["We collect it.", "Most information is kept.",
                               "Kami menyimpan data.", "If you ask, we delete it."])),
    st.builds(lambda h, t: f"{h} {t}", st.sampled_from(["#", "##", "###", "######", "#######"]),
              TITLE),
    TITLE.map(str.upper),
    TITLE,
    SENTENCE,
    st.builds(lambda i, s: i + s, INDENT, SENTENCE),
    st.sampled_from(["", " ", "\t", "back to top", "Kembali", "\x0c", "\x00", "\u200b",
                     "\ufeff", "\u2028", "\x85", "\x1b[31m", "\r", "#", "1.", "- ", "•", "()"]),
    st.text(max_size=30),
)
LINE_END = st.sampled_from(["\n", "\n", "\n", "\r\n", "\r", "\n\n", "\n \n", "\x0b", "\x1c"])
POLICY_TEXT = st.one_of(
    st.lists(st.tuples(POLICY_LINE, LINE_END), max_size=40).map(
        lambda pairs: "".join(line + end for line, end in pairs)
    ),
    st.text(max_size=400),
)


def check_invariants(text: str) -> None:
    tree = parse_sections(text)
    labels = [s.label for s in tree.sections]
    assert len(labels) == len(set(labels)), f"duplicate labels: {labels}"
    assert set(tree.spans) == set(labels)
    for section in tree.sections:
        assert 0 <= section.start <= section.end <= len(text)
        assert section.parent is None or section.parent in labels
        for start, end, _ in tree.spans[section.label]:
            assert 0 <= start <= end <= len(text)

    chunks = build_chunks(INFO, text, tree)
    ids = [c.id for c in chunks]
    assert len(ids) == len(set(ids)), "duplicate chunk ids"
    for chunk in chunks:
        assert text[chunk.start : chunk.end] == chunk.text
        assert chunk.text.strip(), "an empty chunk would be an empty citation"
        assert chunk.label in labels
        assert chunk.policy == INFO.id
    # No words are cited twice under two labels: clauses never overlap.
    spans = sorted((c.start, c.end) for c in chunks)
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert end <= start, f"overlapping chunks {spans}"
    # Nothing a policy says is silently dropped: a line ending a sentence is in some clause.
    offset = 0
    for line in text.split("\n"):
        stripped = line.strip()
        if stripped.endswith(".") and not stripped.startswith("#"):
            last = offset + len(line.rstrip()) - 1
            assert any(s <= last < e for s, e in spans), f"line dropped: {line!r}"
        offset += len(line) + 1


@settings(max_examples=200, deadline=None)
@given(POLICY_TEXT)
@example("")
@example("\n\n\n")
@example("A. Title\nB. Title\nC. Title\n\nA. Title\nSome text.\n")
@example("1. x\n1. x\n1. x\n")
@example("• Marketing Most information is kept.\n• Marketing Most information is kept.\n")
def test_parser_and_chunker_hold_their_invariants(text: str) -> None:
    check_invariants(text)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(POLICY_LINE, LINE_END), max_size=40))
def test_labels_stay_unique_when_the_same_heading_repeats(pairs: list[tuple[str, str]]) -> None:
    # Repeat the document: every heading and item now occurs twice (a common copy-paste).
    body = "".join(line + end for line, end in pairs)
    check_invariants(body + "\n" + body)


ALWAYS_MARKER = st.one_of(
    st.sampled_from([*"ABCabc", "I", "i"]),
    st.integers(1, 99).map(str),
    st.tuples(st.integers(1, 9), st.integers(1, 9)).map(lambda p: f"{p[0]}.{p[1]}"),
)


@settings(max_examples=200, deadline=None)
@given(INDENT, ALWAYS_MARKER, st.sampled_from(["{}.", "{})", "({})"]), st.integers(0, 3),
       st.one_of(st.just(""), SENTENCE))
@example("", "1", "{}.", 2, "")  # "1. 1. 1." was quoted with its own marker
@example("  ", "a", "({})", 2, "")  # "(a) (a) (a)" likewise
@example("", "3", "{}.", 0, "3 days after you ask.")
def test_an_items_clause_is_the_text_after_its_marker(
    indent: str, marker: str, form: str, repeats: int, sentence: str
) -> None:
    """The clause quoted for "3. 3 days after…" or "(a) (a) …" is what follows the marker."""
    # "(a)" and "(1)" are markers; "(A)" and "(1.2)" are not.
    assume(form != "({})" or (marker.islower() or marker.isdigit()))
    lead = form.format(marker)
    body = " ".join([lead] * repeats + ([sentence] if sentence else []))
    # A short capitalised line at the margin is a heading (a title, no clause of its own).
    assume(body and (indent or not is_heading_text(body)))
    text = f"{indent}{lead} {body}\n"
    chunks = build_chunks(INFO, text, parse_sections(text))
    assert [c.text for c in chunks] == [body]


HEAD_WORD = st.sampled_from(["Data", "Sharing", "XWe", "Cookies", "Ads", "AWe", "We", "Kami",
                             "you", "ab", "it", "Marketing", "Opt"])
REST = st.builds(
    lambda starter, words: f"{starter} {' '.join(words)}.",
    st.sampled_from(["We", "Most", "If", "Kami", "You", "When"]),
    st.lists(st.sampled_from(["ab", "we", "use", "it", "collect", "data", "We ab"]),
             min_size=1, max_size=6),
)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["-", "•", "*"]), st.lists(HEAD_WORD, min_size=1, max_size=4), REST)
@example("-", ["XWe", "ab"], "We ab")  # "- XWe ab We ab" was quoted as "We ab We ab"
def test_a_bullets_words_are_kept_once_either_as_heading_or_clause(
    bullet: str, head: list[str], rest: str
) -> None:
    """A bullet is one clause, or a run-in heading (the label) followed by the clause: its
    words are never repeated into the clause nor lost."""
    words = f"{' '.join(head)} {rest}"
    text = f"{bullet} {words}\n"
    tree = parse_sections(text)
    [chunk] = build_chunks(INFO, text, tree)
    if chunk.text == words:
        return
    assert f"{chunk.label} {chunk.text}" == words


def test_a_staircase_of_indented_items_does_not_exhaust_the_recursion() -> None:
    """1,500 items each indented one space deeper used to raise RecursionError (the whole
    ingest crashed); items now nest no deeper than the parser's limit."""
    text = "".join(" " * depth + "1. We keep it.\n" for depth in range(1500))
    tree = parse_sections(text)
    chunks = build_chunks(INFO, text, tree)
    assert len(chunks) == 1500 and all(c.text == "We keep it." for c in chunks)
    assert max(s.level for s in tree.sections) <= MAX_DEPTH
    check_invariants(text)


def test_a_long_file_of_short_numbered_lines_parses_in_seconds() -> None:
    """Contents-list detection was quadratic: 2,000 repeats of a three-line list (72 kB) took
    47 s, a 1 MB file hours, and the library page hung. It is linear now."""
    text = "A. Title\nB. Title\nC. Title\n\nWe do.\n" * 5000 + "1. x.\n" * 20000
    started = time.perf_counter()
    tree = parse_sections(text)
    chunks = build_chunks(INFO, text, tree)
    assert time.perf_counter() - started < 15
    assert len(chunks) == 25000
    assert len({c.label for c in chunks}) == len({s.label for s in tree.sections})
