"""Ingest through the real model and a real Chroma: idempotence, edits, deletions, bad files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from ingest.pipeline import chunk_rows, embedding_text, index_is_current, ingest
from klausa.catalog import Catalog
from klausa.cli import cli
from klausa.embeddings import Embedder
from klausa.settings import Settings
from klausa.stores import open_store
from tests.conftest import make_settings


def stored_policies(settings: Settings, embedder: Embedder) -> dict[str, int]:
    counts: dict[str, int] = {}
    for policy, _ in open_store(settings, embedder).digests().values():
        counts[policy] = counts.get(policy, 0) + 1
    return counts


def test_reingest_of_an_unchanged_corpus_changes_nothing(
    seed_settings: Settings, embedder: Embedder
) -> None:
    before = open_store(seed_settings, embedder).digests()
    report = ingest(seed_settings, embedder=embedder)
    assert not report.changed
    chunks = Catalog.load(seed_settings.catalog_dir).chunks
    assert sum(p.unchanged for p in report.policies) == len(chunks)
    # One row per clause, and one more per glossed (Indonesian) clause.
    assert len(before) == len(chunks) + sum(1 for c in chunks.values() if c.gloss) > len(chunks)
    assert open_store(seed_settings, embedder).digests() == before
    assert index_is_current(seed_settings)


def test_an_edit_replaces_the_clause_and_a_deletion_leaves_nothing_behind(
    tmp_path: Path, corpus_copy: Path, embedder: Embedder
) -> None:
    settings = make_settings(tmp_path / "data", corpus_copy)
    ingest(settings, embedder=embedder)
    source = corpus_copy / "jubelio.en.txt"
    text = source.read_text("utf-8")
    assert "We will not sell or rent your Personal Data." in text
    source.write_text(
        text.replace("We will not sell or rent your Personal Data.",
                     "We will never sell, rent or trade your Personal Data.")
        .replace("The Privacy Notice also has the same meaning as the privacy policy mentioned "
                 "in the Terms of Use and any Services on our Platform.\n", ""),
        "utf-8",
    )
    # Its Indonesian version loses the same paragraph, or it would no longer line up.
    version = corpus_copy / "jubelio.id.txt"
    version.write_text(version.read_text("utf-8").replace(
        "Pemberitahuan Privasi ini juga memiliki arti yang sama dengan kebijakan privasi yang "
        "disebutkan dalam Ketentuan Penggunaan dan setiap Layanan pada Platform kami.\n", ""),
        "utf-8")
    assert not index_is_current(settings)
    report = ingest(settings, embedder=embedder)
    assert not report.errors, report.errors
    jubelio = next(p for p in report.policies if p.policy == "jubelio")
    assert jubelio.updated >= 1 and jubelio.removed == 1
    assert all(p.added == p.updated == p.removed == 0 for p in report.policies
               if p.policy != "jubelio")
    catalog = Catalog.load(settings.catalog_dir)
    texts = [c.text for c in catalog.policies["jubelio"].chunks]
    assert "We will never sell, rent or trade your Personal Data." in texts
    assert "We will not sell or rent your Personal Data." not in texts
    assert set(open_store(settings, embedder).digests()) == {
        row_id for c in catalog.chunks.values() for row_id, *_ in chunk_rows(c, embedder)}

    # Remove a whole policy from the manifest: its chunks and catalog entry go too.
    manifest = corpus_copy / "policies.toml"
    entries = manifest.read_text("utf-8").split("[[policy]]")
    manifest.write_text("[[policy]]".join(e for e in entries if 'id = "netmarks"' not in e))
    report = ingest(settings, embedder=embedder)
    assert next(p for p in report.policies if p.policy == "netmarks").removed == 22
    assert "netmarks" not in stored_policies(settings, embedder)
    assert "netmarks" not in Catalog.load(settings.catalog_dir).policies
    assert index_is_current(settings)


def write_pdf_without_text(path: Path) -> None:
    from pypdf import PdfWriter

    writer = PdfWriter()
    writer.add_blank_page(width=595, height=842)
    with path.open("wb") as handle:
        writer.write(handle)


@pytest.fixture
def bad_files(tmp_path: Path) -> Path:
    folder = tmp_path / "incoming"
    folder.mkdir()
    (folder / "empty.txt").write_text("   \n", "utf-8")
    (folder / "binary.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" * 20)
    (folder / "latin1.txt").write_bytes("Política de privacidad: información".encode("latin-1"))
    write_pdf_without_text(folder / "scanned.pdf")
    (folder / "corrupt.pdf").write_bytes(b"%PDF-1.7\n1 0 obj << /Type /Catalog >>\ngarbage")
    (folder / "good.en.txt").write_text(
        "GOOD SHOP PRIVACY\nWe delete your order history after two years.\n", "utf-8"
    )
    return folder


def test_bad_files_get_one_clear_line_and_the_rest_still_ingests(
    tmp_path: Path, bad_files: Path, embedder: Embedder
) -> None:
    settings = make_settings(tmp_path / "data", tmp_path / "no-corpus")
    report = ingest(settings, [bad_files], embedder=embedder)
    errors = "\n".join(report.errors)
    assert "empty.txt: empty file" in errors
    assert "binary.txt: binary file" in errors
    assert "latin1.txt: not valid UTF-8" in errors
    assert "scanned.pdf: PDF has no text layer" in errors
    assert "corrupt.pdf:" in errors
    assert len(report.errors) == 5 and all("\n" not in e for e in report.errors)
    catalog = Catalog.load(settings.catalog_dir)
    assert list(catalog.policies) == ["good"]
    assert stored_policies(settings, embedder) == {"good": len(catalog.chunks)}


def test_cli_ingest_reports_errors_and_exits_non_zero(
    tmp_path: Path, bad_files: Path, seed_settings: Settings
) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["--data-dir", str(tmp_path / "d"), "ingest", str(bad_files)],
                           env={"KLAUSA_MODELS_PATH": str(seed_settings.models_dir)})
    assert result.exit_code == 1
    assert "error: scanned.pdf: PDF has no text layer" in result.output
    assert "good" in result.output


def run_cli(settings: Settings, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--data-dir", str(settings.data_dir), *args])
    return result.exit_code, result.output


def test_policies_lists_the_five_seeds(seed_settings: Settings) -> None:
    code, output = run_cli(seed_settings, "policies", "--json")
    assert code == 0
    rows = {row["id"]: row for row in json.loads(output)}
    assert set(rows) == {"webdeskers", "netmarks", "interindo", "lacimart", "jubelio"}
    assert rows["lacimart"]["language"] == "id"
    assert rows["jubelio"]["prevailing_language"] == "id"
    assert all(row["sections"] > 0 and row["chunks"] > 0 for row in rows.values())
    assert rows["lacimart"]["versions"][0]["language"] == "en"
    assert rows["lacimart"]["versions"][0]["provided_by"] == "klausa"


def test_show_prints_a_section_in_either_language(seed_settings: Settings) -> None:
    code, output = run_cli(seed_settings, "show", "interindo", "6", "--lang", "id")
    assert code == 0
    assert output.startswith("Kebijakan Privasi Interindo §6 — Penyimpanan dan Penghapusan")
    assert "Interindo akan menyimpan informasi" in output
    code, output = run_cli(seed_settings, "show", "lacimart", "D", "--lang", "en")
    assert code == 0 and "may at any time make changes" in output
    code, output = run_cli(seed_settings, "show", "interindo", "6", "--lang", "en")
    assert code == 0 and "will retain information" in output


@pytest.mark.parametrize(
    ("policy", "label", "expected"),
    [
        ("webdeskers", "C.1.8", "creditworthiness analysis"),
        ("interindo", "1.II", "Real or approximate location data"),
        ("jubelio", "GOVERNING LAW", "laws of the Republic of Indonesia"),
        ("netmarks", "Visitor information", "camera supervision"),
    ],
)
def test_show_returns_the_clause(seed_settings: Settings, policy: str, label: str,
                                 expected: str) -> None:
    code, output = run_cli(seed_settings, "show", policy, label)
    assert code == 0
    assert f"§{label}" in output and expected in output


def test_show_includes_sub_sections(seed_settings: Settings) -> None:
    code, output = run_cli(seed_settings, "show", "webdeskers", "C.1", "--json")
    labels = [s["label"] for s in json.loads(output)["sections"]]
    assert code == 0 and labels == ["C.1", *[f"C.1.{n}" for n in range(1, 10)]]


def test_show_unknown_label_exits_2_with_the_closest_labels(seed_settings: Settings) -> None:
    code, output = run_cli(seed_settings, "show", "webdeskers", "C.1.88")
    assert code == 2 and "C.1.8" in output
    code, output = run_cli(seed_settings, "show", "jubelo", "GOVERNING LAW")
    assert code == 2 and "jubelio" in output


def without_policy(manifest: Path, policy_id: str) -> str:
    """Drop one policy from a manifest; return the original text."""
    original = manifest.read_text("utf-8")
    entries = original.split("[[policy]]")
    manifest.write_text("[[policy]]".join(e for e in entries if f'id = "{policy_id}"' not in e))
    return original


def test_adding_a_policy_analyses_only_its_chunks_and_answers_match_a_full_rebuild(
    tmp_path: Path, corpus_copy: Path, embedder: Embedder
) -> None:
    import shutil

    from klausa.assistant import Assistant
    from klausa.evaluation import load_cases
    from klausa.lexical import TERMS_FILE, LexicalIndex

    settings = make_settings(tmp_path / "data", corpus_copy)
    manifest = corpus_copy / "policies.toml"
    original = without_policy(manifest, "netmarks")
    first = ingest(settings, embedder=embedder)
    assert first.analysed == sum(p.chunks for p in first.policies) > 0

    manifest.write_text(original, "utf-8")
    report = ingest(settings, embedder=embedder)
    netmarks = next(p for p in report.policies if p.policy == "netmarks")
    assert netmarks.added == netmarks.chunks == report.written > 0
    assert report.analysed == netmarks.chunks
    assert report.terms_reused == sum(p.chunks for p in report.policies) - netmarks.chunks
    assert (settings.lexical_dir / TERMS_FILE).exists()

    # The same index rebuilt from scratch: every chunk analysed again, the vectors shared.
    rebuilt = make_settings(tmp_path / "rebuilt", corpus_copy)
    shutil.copytree(settings.data_dir / "index", rebuilt.data_dir / "index")
    catalog = Catalog.load(rebuilt.catalog_dir)
    shutil.rmtree(rebuilt.lexical_dir)
    LexicalIndex.build(list(catalog.chunks.values())).save(rebuilt.lexical_dir)

    incremental = Assistant(settings, embedder=embedder)
    full = Assistant(rebuilt, embedder=embedder)
    cases = load_cases(Path(__file__).parent / "qa" / "dev.jsonl")[::4]
    assert cases
    for case in cases:
        a = incremental.ask(case.question, policy=case.policy)
        b = full.ask(case.question, policy=case.policy)
        assert (a.refused, a.answer) == (b.refused, b.answer), case.question
        assert [(h.chunk.id, round(h.score, 6)) for h in a.hits] == [
            (h.chunk.id, round(h.score, 6)) for h in b.hits
        ], case.question


def test_a_renamed_policy_reuses_its_vectors(
    tmp_path: Path, corpus_copy: Path, embedder: Embedder
) -> None:
    settings = make_settings(tmp_path / "data", corpus_copy)
    ingest(settings, embedder=embedder)
    manifest = corpus_copy / "policies.toml"
    manifest.write_text(manifest.read_text("utf-8").replace('id = "netmarks"',
                                                            'id = "netmarks-renamed"'))
    report = ingest(settings, embedder=embedder)
    renamed = next(p for p in report.policies if p.policy == "netmarks-renamed")
    assert renamed.added == report.written == renamed.chunks > 0
    assert report.embedded == 0 and report.vectors_reused == renamed.chunks
    assert next(p for p in report.policies if p.policy == "netmarks").removed == renamed.chunks
    # The copied vectors are what the model gives for those texts.
    ids = [i for i, (p, _) in open_store(settings, embedder).digests().items()
           if p == "netmarks-renamed"]
    stored = open_store(settings, embedder).vectors(ids)
    chunks = Catalog.load(settings.catalog_dir).chunks
    fresh = embedder.embed_documents([embedding_text(chunks[i], embedder) for i in ids])
    assert len(ids) == renamed.chunks
    for chunk_id, vector in zip(ids, fresh, strict=True):
        assert float(stored[chunk_id] @ vector) > 0.9999


def test_bfloat16_passages_stay_in_the_float32_vector_space(embedder: Embedder) -> None:
    """bfloat16 passages (the default where the CPU has bfloat16 units: faster ingest) must
    give the float32 vectors, near enough that a float32 query ranks them as before."""
    texts = ["We will not sell or rent your Personal Data.",
             "Kami dapat membagikan data pribadi Anda kepada mitra pengiriman."]
    configured = embedder.passages_in_bfloat16  # type: ignore[attr-defined]
    try:
        embedder.passages_in_bfloat16 = False  # type: ignore[attr-defined]
        exact = embedder.embed_documents(texts)
        embedder.passages_in_bfloat16 = True  # type: ignore[attr-defined]
        fast = embedder.embed_documents(texts)
    finally:
        embedder.passages_in_bfloat16 = configured  # type: ignore[attr-defined]
    assert np.allclose(np.linalg.norm(fast, axis=1), 1.0, atol=1e-5)
    assert (exact * fast).sum(axis=1).min() > 0.9995


def test_a_folder_without_manifest_is_current_after_ingest(tmp_path: Path,
                                                           embedder: Embedder) -> None:
    """`make run` re-ingests only when stale: a corpus of bare files must not look stale
    forever because ingest refined their titles from the text."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "tokoku.txt").write_text(
        "Tokoku Privacy\n\n1. Data\nWe collect your name.\n\n2. Sharing\nWe do not sell it.\n",
        "utf-8")
    settings = make_settings(tmp_path / "data", corpus)
    ingest(settings, embedder=embedder)
    assert index_is_current(settings)
    (corpus / "tokoku.txt").write_text("Tokoku Privacy\n\n1. Data\nWe collect nothing.\n", "utf-8")
    assert not index_is_current(settings)
