"""The same code against a real `chroma run` server (KLAUSA_CHROMA_URL)."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingest.pipeline import ingest
from klausa.assistant import Assistant
from klausa.embeddings import Embedder
from tests.conftest import REPO, free_port, make_settings, wait_for_http

CHROMA = Path(REPO / ".venv" / "bin" / "chroma")


@pytest.fixture
def chroma_server(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    executable = str(CHROMA) if CHROMA.exists() else "chroma"
    process = subprocess.Popen(
        [executable, "run", "--path", str(tmp_path / "chroma-server"), "--host", "127.0.0.1",
         "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/api/v2/heartbeat", process, 60, "chroma run")
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def test_ingest_and_answer_through_a_chroma_server(
    chroma_server: str, tmp_path: Path, corpus_copy: Path, embedder: Embedder
) -> None:
    settings = make_settings(tmp_path / "data", corpus_copy, chroma_url=chroma_server)
    ingest(settings, embedder=embedder)
    assert not (settings.generation_dir / "chroma").exists()  # vectors live on the server
    answer = Assistant(settings, embedder=embedder).ask("Does Jubelio sell my personal data?")
    assert answer.citations[0].label == "DISCLOSURE OF PERSONAL DATA WE COLLECT"

    # Re-ingest: a new server-side generation, copied and switched; the old one is kept
    # for in-flight readers, older ones are dropped.
    first = settings.current_generation()
    report = ingest(settings, embedder=embedder)
    assert not report.changed
    import chromadb

    client = chromadb.HttpClient(host="127.0.0.1", port=int(chroma_server.rsplit(":", 1)[1]))
    names = {c.name for c in client.list_collections()}
    assert names == {f"{settings.model_copy(update={'generation': g}).collection_name}"
                     for g in (first, settings.current_generation())}
    again = Assistant(settings, embedder=embedder).ask("Does Jubelio sell my personal data?")
    assert again.citations[0].text == answer.citations[0].text
