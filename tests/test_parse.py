"""The section tree and clause chunks, on the seed policies and on new documents."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ingest.chunk import MAX_CHUNK_CHARS, build_chunks
from ingest.loaders import load_text
from ingest.parse import parse_sections
from ingest.pipeline import Document, discover, info_for_file, parse_document
from klausa.types import ParsedPolicy, PolicyInfo
from tests.conftest import CORPUS, make_settings

GOLDEN = Path(__file__).parent / "golden" / "section_labels.json"


def seed_policies(tmp_path: Path) -> dict[str, ParsedPolicy]:
    documents, errors = discover(make_settings(tmp_path), [])
    assert not errors
    return {d.info.id: parse_document(d) for d in documents}


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ParsedPolicy]:
    return seed_policies(tmp_path_factory.mktemp("parse"))


def test_section_labels_match_the_golden_file(seeds: dict[str, ParsedPolicy]) -> None:
    golden = json.loads(GOLDEN.read_text("utf-8"))
    assert {pid: [s.label for s in p.sections] for pid, p in seeds.items()} == golden


def test_labels_use_the_documents_own_numbering(seeds: dict[str, ParsedPolicy]) -> None:
    labels = {pid: {s.label for s in p.sections} for pid, p in seeds.items()}
    assert {"C.1.8", "A.2.4", "B.3.4", "D.1", "I", "J"} <= labels["webdeskers"]
    assert {"A.2.4", "B.3.4", "C.1", "D"} <= labels["lacimart"]
    assert {"1", "1.I", "1.II", "3", "6", "Policy Update"} <= labels["interindo"]
    assert {"INTRODUCTION", "INTERNATIONAL DATA TRANSFER", "GOVERNING LAW"} <= labels["jubelio"]
    assert {"Cookies and Other Website Technologies", "Visitor information", "Marketing"} <= (
        labels["netmarks"]
    )


def test_table_of_contents_makes_no_duplicate_or_empty_sections(seeds) -> None:
    webdeskers = seeds["webdeskers"]
    labels = [s.label for s in webdeskers.sections]
    assert len(labels) == len(set(labels))
    for section in webdeskers.sections:
        children = [s for s in webdeskers.sections if s.parent == section.label]
        assert section.text.strip() or children, f"empty section {section.label}"
    # The unlettered "Privacy Policy Update" is J, as the contents list names it.
    update = webdeskers.section("J")
    assert update is not None and update.title == "Privacy Policy Update"
    assert "amend or update this Privacy Policy" in update.text


def test_sub_sections_and_text_before_the_first_heading(seeds) -> None:
    netmarks = seeds["netmarks"]
    visitor = netmarks.section("Visitor information")
    assert visitor and visitor.parent == "Why and how we collect and use your personal information"
    assert visitor.text.startswith("We register individuals")
    opening = netmarks.sections[0]
    assert "effective as of 21 July 2021" in opening.text
    assert seeds["jubelio"].sections[0].label == "INTRODUCTION"
    assert seeds["interindo"].section("1.II").parent == "1"


def test_web_page_debris_is_not_content(seeds) -> None:
    texts = [c.text.strip().lower() for p in seeds.values() for c in p.chunks]
    for debris in ("top of page", "bottom of page", "scroll to top", "back"):
        assert debris not in texts


def test_offsets_slice_back_to_every_clause(seeds) -> None:
    for policy in seeds.values():
        for chunk in policy.chunks:
            assert policy.source_text[chunk.start : chunk.end] == chunk.text
        source = (CORPUS / policy.info.source).read_text("utf-8")
        assert policy.source_text == source


def test_list_items_keep_the_lead_in_of_their_parent(seeds) -> None:
    chunk = next(c for c in seeds["webdeskers"].chunks if c.label == "C.1.8")
    assert chunk.text.startswith("Webdeskers may disclose")
    assert chunk.context.endswith("except in the following cases:") or "except" in chunk.context
    bullet = next(c for c in seeds["jubelio"].chunks if c.text.startswith("To identify and"))
    assert bullet.context == "If you are a User, we may use your Personal Data:"


def test_a_list_within_a_list_ends_where_its_last_item_says_so(seeds) -> None:
    """Interindo §2 writes a list inside its list with the same dashes ("- Assist users …,
    including to:" then three items, the second ending "; and"): the items after it belong
    to the outer list again, and are searched with the outer lead-in."""
    chunks = [c for c in seeds["interindo"].chunks if c.label == "2"]
    outer, inner = chunks[0].text, "Assist users when communicating with Interindo customer"
    context = {c.text.split(" ")[0]: c.context for c in chunks}
    assert context["Supervise"].startswith(inner)
    assert context["Contacting"] == context["Monitor"] == outer


def test_a_new_policy_in_these_styles_parses_without_code_changes(tmp_path: Path) -> None:
    text = (
        "Acme Privacy Notice\n\n"
        "1. What We Collect\n"
        "We collect your name and email address.\n"
        "I. Data you give us, including:\n"
        "- your delivery address;\n"
        "- your phone number.\n"
        "II. Data we record when you browse.\n"
        "2. Cookies\n"
        "We use cookies to remember your basket.\n"
        "RETENTION\n"
        "We keep orders for five years.\n"
    )
    tree = parse_sections(text)
    # The title line has no text of its own before "1.", so it is no section.
    assert [s.label for s in tree.sections] == ["1", "1.I", "1.II", "2", "RETENTION"]
    info = PolicyInfo(id="acme", title="Acme", company="Acme", language="en", source="x.txt")
    chunks = build_chunks(info, text, tree)
    phone = next(c for c in chunks if "phone number" in c.text)
    assert phone.label == "1.I" and phone.context == "Data you give us, including:"
    assert all(text[c.start : c.end] == c.text for c in chunks)


def test_markdown_headings_nest_and_keep_their_numbers() -> None:
    text = (
        "# Privacy at Example\n\nIntro words here.\n\n"
        "## 3.2 Sharing\n\nWe share data with couriers.\n\n"
        "### Couriers\n\nThey see your address.\n\n"
        "## Your rights\n\nYou may ask us to delete your data.\n"
    )
    found = [(s.label, s.parent, s.title) for s in parse_sections(text).sections]
    assert found == [
        ("Privacy at Example", None, "Privacy at Example"),
        ("3.2", "Privacy at Example", "Sharing"),
        ("Couriers", "3.2", "Couriers"),
        ("Your rights", "Privacy at Example", "Your rights"),
    ]


def test_long_clauses_split_at_sentences_and_keep_their_label() -> None:
    sentence = "The company keeps records of every order for audit purposes. "
    text = "A. Records\n\n  1. " + sentence * 40 + "\n"
    tree = parse_sections(text)
    info = PolicyInfo(id="long", title="Long", company="Long", language="en", source="x.txt")
    chunks = build_chunks(info, text, tree)
    parts = [c for c in chunks if c.label == "A.1"]
    assert len(parts) > 1
    assert all(len(c.text) <= MAX_CHUNK_CHARS for c in parts)
    assert all(text[c.start : c.end] == c.text and c.text.endswith(".") for c in parts)
    assert len({c.id for c in chunks}) == len(chunks)


def test_files_without_a_manifest_get_id_and_language_from_their_name(tmp_path: Path) -> None:
    path = tmp_path / "tokoku.id.txt"
    path.write_text("Kebijakan Privasi\n\nKami tidak menjual data pribadi Anda.\n", "utf-8")
    info = info_for_file(path)
    assert (info.id, info.language) == ("tokoku", "id")
    parsed = parse_document(Document(info, path))
    assert parsed.info.language == "id"
    assert load_text(path).startswith("Kebijakan")
