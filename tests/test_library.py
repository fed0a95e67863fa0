"""Adding and removing a policy as the library page does: answerable at once, gone after."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.pipeline import ingest
from ingest.uploads import UploadError, add_upload, add_version, remove_upload, remove_version
from klausa.assistant import Assistant
from klausa.embeddings import Embedder
from klausa.stores import open_store
from tests.conftest import make_settings

POLICY = (
    "# Kebijakan Privasi Tokoku\n\n"
    "## 1. Penyimpanan\n\nTokoku menyimpan riwayat pesanan Anda selama dua tahun.\n\n"
    "## 2. Penjualan data\n\nTokoku tidak pernah menjual data pribadi Anda kepada siapa pun.\n"
)


def test_an_uploaded_policy_is_answerable_at_once_and_removable(
    tmp_path: Path, corpus_copy: Path, embedder: Embedder
) -> None:
    manifest = corpus_copy / "policies.toml"
    keep = [e for e in manifest.read_text("utf-8").split("[[policy]]") if 'id = "interindo"' in e]
    manifest.write_text("[[policy]]" + keep[0])  # one corpus policy keeps the test fast
    settings = make_settings(tmp_path / "data", corpus_copy)
    ingest(settings, embedder=embedder)
    assistant = Assistant(settings, embedder=embedder)
    assert set(assistant.catalog.policies) == {"interindo"}

    add_upload(settings, "kebijakan.md", POLICY.encode(), policy_id="tokoku",
               title="Kebijakan Privasi Tokoku", language="id")
    report = ingest(settings, embedder=embedder)
    assert not report.errors
    answer = assistant.ask("Does Tokoku sell my personal data?")
    assert answer.citations[0].policy == "tokoku"
    assert answer.citations[0].label == "2"
    assert "tidak pernah menjual" in answer.citations[0].quote
    assert "Quoted from the Indonesian text:" in answer.answer

    # A full re-index keeps uploaded policies.
    ingest(settings, embedder=embedder)
    assert "tokoku" in assistant.catalog.policies

    remove_upload(settings, "tokoku")
    ingest(settings, embedder=embedder)
    assert set(assistant.catalog.policies) == {"interindo"}
    stored = {policy for policy, _ in open_store(settings, embedder).digests().values()}
    assert stored == {"interindo"}
    assert not list(settings.uploads_dir.glob("tokoku.*"))


POLICY_EN = (
    "# Tokoku Privacy Policy\n\n"
    "## 1. Storage\n\nTokoku keeps your order history for two years.\n\n"
    "## 2. Selling data\n\nTokoku never sells your personal data to anyone.\n"
)


def test_an_uploaded_policys_other_language_version_is_quoted_and_removable(
    tmp_path: Path, corpus_copy: Path, embedder: Embedder
) -> None:
    """The library's version upload: a misaligned file is refused naming the section and
    leaves nothing; an aligned one makes English askers read English, saying whose text it
    is; removing it leaves the policy answering in its own words."""
    manifest = corpus_copy / "policies.toml"
    keep = [e for e in manifest.read_text("utf-8").split("[[policy]]") if 'id = "interindo"' in e]
    manifest.write_text("[[policy]]" + keep[0])
    settings = make_settings(tmp_path / "data", corpus_copy)
    add_upload(settings, "kebijakan.md", POLICY.encode(), policy_id="tokoku",
               title="Kebijakan Privasi Tokoku", language="id")
    assert not ingest(settings, embedder=embedder).errors
    assistant = Assistant(settings, embedder=embedder)

    misaligned = POLICY_EN.replace("## 2. Selling data", "## 3. Selling data")
    with pytest.raises(UploadError, match=r"does not line up.*§2"):
        add_version(settings, "tokoku-en.md", misaligned.encode(), policy_id="tokoku",
                    provided_by="company")
    assert sorted(p.name for p in settings.uploads_dir.iterdir()) == [
        "policies.toml", "tokoku.md"]
    with pytest.raises(UploadError, match="corpus policy"):
        add_version(settings, "x.md", POLICY_EN.encode(), policy_id="interindo",
                    provided_by="company")

    add_version(settings, "tokoku-en.md", POLICY_EN.encode(), policy_id="tokoku",
                provided_by="company")
    assert not ingest(settings, embedder=embedder).errors
    answer = assistant.ask("Does Tokoku sell my personal data?")
    first = answer.citations[0]
    assert (first.policy, first.label, first.language) == ("tokoku", "2", "en")
    # The company's own English text: quoted as such, not as a translation.
    assert first.provided_by == "company" and "never sells" in first.quote
    assert "translation" not in answer.answer and "Indonesian text" not in answer.answer
    assert first.original is not None and "tidak pernah menjual" in first.original.quote

    remove_version(settings, "tokoku")
    assert not ingest(settings, embedder=embedder).errors
    answer = assistant.ask("Does Tokoku sell my personal data?")
    assert "tidak pernah menjual" in answer.citations[0].quote
    assert "Quoted from the Indonesian text:" in answer.answer
    assert not (settings.uploads_dir / "tokoku.en.md").exists()
    with pytest.raises(UploadError, match="no version"):
        remove_version(settings, "tokoku")
