"""Shared fixtures: the real embedding model, a real Chroma index of the seed corpus."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
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


@pytest.fixture(scope="session")
def hashing_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The seed corpus indexed with the test embedder shipped with the library
    (``klausa.testing``): the fast tier's index, built in seconds."""
    from ingest.pipeline import ingest

    settings = make_settings(tmp_path_factory.mktemp("hashing-index"),
                             embedding_model="hashing-test")
    report = ingest(settings)
    assert not report.errors, report.errors
    return settings


@pytest.fixture(scope="session")
def quick_assistant(hashing_settings: Settings) -> Assistant:
    return Assistant(hashing_settings)


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


def postgres_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        pytest.fail("PostgreSQL is not installed: `make test` installs Debian's postgresql")
    return Path(found[-1]).parent


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A throw-away PostgreSQL server on 127.0.0.1, run as the `postgres` user; yields the
    `createdb` arguments that reach it."""
    binaries = postgres_bin()
    root = Path(tempfile.mkdtemp(prefix="klausa-pg-"))
    data = root / "data"
    port = free_port()
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_postgres:
        shutil.chown(root, "postgres", "postgres")
    subprocess.run([*as_postgres, str(binaries / "initdb"), "-D", str(data), "-A", "trust",
                    "-U", "klausa", "--no-sync"], check=True, capture_output=True)
    subprocess.run([*as_postgres, str(binaries / "pg_ctl"), "-D", str(data), "-l",
                    str(root / "log"), "-w", "-o",
                    f"-p {port} -h 127.0.0.1 -k {root} -c fsync=off", "start"],
                   check=True, capture_output=True)
    try:
        deadline = time.monotonic() + 30
        while subprocess.run([str(binaries / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)],
                             capture_output=True).returncode != 0:
            assert time.monotonic() < deadline, (root / "log").read_text()
            time.sleep(0.3)
        yield f"{binaries / 'createdb'} -h 127.0.0.1 -p {port} -U klausa"
    finally:
        subprocess.run([*as_postgres, str(binaries / "pg_ctl"), "-D", str(data), "-m", "fast",
                        "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: str) -> str:
    """A new, empty database on the test server, for one test."""
    name = f"klausa_{uuid.uuid4().hex[:10]}"
    subprocess.run([*postgres_server.split(), name], check=True)
    port = postgres_server.split()[4]
    return f"postgresql+psycopg://klausa@127.0.0.1:{port}/{name}"
