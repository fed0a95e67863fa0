"""Shared fixtures: the real embedding model, a real Chroma index of the seed corpus."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

# Tests describe their own configuration; a developer's KLAUSA_* variables must not leak in.
for _name in [n for n in os.environ if n.startswith("KLAUSA_")]:
    del os.environ[_name]

from klausa.assistant import Assistant  # noqa: E402
from klausa.embeddings import Embedder, load_embedder  # noqa: E402
from klausa.settings import Settings  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO / "corpus"
# The built model is cached beside the app's own data so it is made once per machine.
MODELS = REPO / "data" / "models"
ARTIFACTS = REPO / "test-artifacts"


def make_settings(data_dir: Path, corpus_dir: Path = CORPUS, **overrides: object) -> Settings:
    return Settings(data_dir=data_dir, corpus_dir=corpus_dir, models_path=MODELS, **overrides)


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    return load_embedder(Settings(models_path=MODELS))


@pytest.fixture(scope="session")
def seed_settings(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Settings:
    """A data dir with the five seed policies ingested (shared, read-only for tests)."""
    from ingest.pipeline import ingest

    settings = make_settings(tmp_path_factory.mktemp("seed-index"))
    report = ingest(settings, embedder=embedder)
    assert not report.errors, report.errors
    return settings


@pytest.fixture(scope="session")
def assistant(seed_settings: Settings, embedder: Embedder) -> Assistant:
    return Assistant(seed_settings, embedder=embedder)


@pytest.fixture
def corpus_copy(tmp_path: Path) -> Path:
    """A private copy of the seed corpus that a test may edit."""
    target = tmp_path / "corpus"
    shutil.copytree(CORPUS, target)
    return target


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, process: subprocess.Popen, seconds: float, what: str,
                  log: Path | None = None) -> None:
    """Until ``url`` answers 200; fails the test (with the server's ``log``, if given) when
    ``process`` exits or time runs out."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"{what} did not start" + (f":\n{log.read_text()}" if log else ""))
        time.sleep(0.3)
