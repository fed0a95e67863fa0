"""Adding and removing a policy as the library page does: answerable at once, gone after."""

from __future__ import annotations

from pathlib import Path

from ingest.pipeline import ingest
from ingest.uploads import add_upload, remove_upload
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
