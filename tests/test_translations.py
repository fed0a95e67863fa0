"""Each policy in both languages: the seed translations line up with their originals and keep
their facts; a version that does not line up is refused and changes nothing."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ingest.align import differences
from ingest.pipeline import Document, index_is_current, ingest, parse_document
from klausa.catalog import Catalog, load_manifest
from tests.conftest import CORPUS, make_settings


def seed_policies() -> list:
    return [parse_document(Document(info, CORPUS / info.source))
            for info in load_manifest(CORPUS)]


def test_every_seed_policy_has_a_reviewed_version_in_the_other_language() -> None:
    for policy in seed_policies():
        [version] = policy.versions
        assert version.info.language != policy.info.language
        # Written for Klausa: answers must never present it as the company's own text.
        assert version.info.provided_by == "klausa"
        assert (CORPUS.parent / "docs" / "translations"
                / f"{version.info.source.removesuffix('.txt')}.review.md").is_file()
        # Every clause and section has its twin.
        assert set(version.clauses) == {c.id for c in policy.chunks}
        assert set(version.sections) == {s.label for s in policy.sections}


def test_each_clause_keeps_its_numbers_addresses_and_names_in_its_twin() -> None:
    """The translation check CI runs: clause by clause, the same numbers, e-mail addresses,
    URLs and company names as the original."""
    found = [line for policy in seed_policies() for line in differences(policy)]
    assert found == []


def test_the_check_finds_a_changed_number_and_a_dropped_url(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name in ("policies.toml", "jubelio.en.txt", "jubelio.id.txt"):
        (corpus / name).write_text((CORPUS / name).read_text("utf-8"), "utf-8")
    [info] = [i for i in load_manifest(corpus) if i.id == "jubelio"]
    version = corpus / "jubelio.id.txt"
    text = version.read_text("utf-8")
    number = re.search(r"\b\d{2,}\b", text)
    assert number is not None and "https://jubelio.com" in text
    text = text.replace("https://jubelio.com", "situs kami", 1)
    text = text[: number.start()] + str(int(number.group(0)) + 1) + text[number.end() :]
    version.write_text(text, "utf-8")
    found = "\n".join(differences(parse_document(Document(info, corpus / info.source))))
    assert "only in the original ['URL https://jubelio.com']" in found
    changed = int(number.group(0)) + 1
    assert f"'number {number.group(0)}'" in found and f"'number {changed}'" in found


def test_a_version_that_does_not_line_up_is_refused_naming_the_sections(
    corpus_copy: Path, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path / "data", corpus_copy, embedding_model="hashing-test")
    assert not ingest(settings).errors
    before = Catalog.load(settings.catalog_dir).policies["interindo"]
    assert before.versions[0].info.language == "id"

    # The translator left out §5 and renumbered §6 as 5.
    version = corpus_copy / "interindo.id.txt"
    text = version.read_text("utf-8")
    start = text.index("5. Pilihan Pengguna")
    end = text.index("6. Penyimpanan")
    version.write_text(text[:start] + "5." + text[end + 2:], "utf-8")
    report = ingest(settings)
    [error] = report.errors
    assert "interindo.id.txt" in error and "does not line up" in error
    assert "§5" in error
    # Nothing changed: the policy answers from both versions as before.
    after = Catalog.load(settings.catalog_dir).policies["interindo"]
    assert after == before
    assert not index_is_current(settings)

    # An extra sentence that makes a paragraph of its own is named by its section.
    version.write_text(text.replace(
        "Interindo akan menyimpan informasi",
        "Bagian ini menjelaskan berapa lama data Pengguna disimpan oleh Interindo.\n\n"
        "Interindo akan menyimpan informasi"), "utf-8")
    [error] = ingest(settings).errors
    assert "§6:" in error and "1 paragraph in the original, 2 paragraphs here" in error
    assert Catalog.load(settings.catalog_dir).policies["interindo"] == before

    # Put right, it is indexed, and the index is current.
    version.write_text(text, "utf-8")
    assert not ingest(settings).errors
    assert index_is_current(settings)


def test_a_version_in_the_policys_own_language_is_refused(corpus_copy: Path) -> None:
    manifest = corpus_copy / "policies.toml"
    manifest.write_text(manifest.read_text("utf-8").replace(
        'language = "id", source = "interindo.id.txt"',
        'language = "en", source = "interindo.id.txt"'), "utf-8")
    [info] = [i for i in load_manifest(corpus_copy) if i.id == "interindo"]
    with pytest.raises(ValueError, match="in the policy's own language"):
        parse_document(Document(info, corpus_copy / info.source))
