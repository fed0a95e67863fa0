"""The token states of every clause of an index generation: what the reader reads of a clause,
computed by the embedding model at ingest (the same forward pass that gives its vector) and
stored beside the vectors, so that a question costs no clause forward pass.

``<generation>/reader/states.npy``: float16 rows, one per token, every clause's rows together;
``index.json``: chunk id → the digest of the text the model read, digest → (first row, rows).
A clause is found by its text's digest, so an unchanged clause keeps its rows across ingests,
as its vector does. Read through a memory map: a question touches only its candidates' rows."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

FOLDER = "reader"
STATES = "states.npy"
INDEX = "index.json"


class TokenStates:
    def __init__(self, folder: Path, chunks: dict[str, str],
                 rows: dict[str, tuple[int, int]], states: np.ndarray) -> None:
        self.folder = folder
        #: chunk id → digest of its text; digest → (first row, row count).
        self.chunks = chunks
        self.rows = rows
        self._states = states

    @classmethod
    def load(cls, generation_dir: Path) -> TokenStates | None:
        """The generation's clause states, or None when it has none (an index built by an
        embedder without token states, or before the reader existed)."""
        folder = generation_dir / FOLDER
        try:
            index = json.loads((folder / INDEX).read_text("utf-8"))
            states = np.load(folder / STATES, mmap_mode="r")
        except (OSError, ValueError) as error:
            log.info("no clause token states in %s (%s)", folder, error)
            return None
        return cls(folder, index["chunks"],
                   {d: (int(s), int(n)) for d, (s, n) in index["rows"].items()}, states)

    def of_chunk(self, chunk_id: str) -> np.ndarray | None:
        digest = self.chunks.get(chunk_id)
        return None if digest is None else self.of_digest(digest)

    def of_digest(self, digest: str) -> np.ndarray | None:
        found = self.rows.get(digest)
        if found is None:
            return None
        start, count = found
        return self._states[start:start + count]

    def covers(self, chunk_ids: set[str]) -> bool:
        return all(self.chunks.get(i) in self.rows for i in chunk_ids)


def write_token_states(generation_dir: Path, chunks: Mapping[str, str],
                       fresh: Mapping[str, np.ndarray], previous: TokenStates | None) -> None:
    """Write the states of ``chunks`` (chunk id → digest) into the generation: each from
    ``fresh`` (digest → states) or, unchanged, from ``previous``. Whole or not at all (written
    beside, then renamed); the index last, so a reader never finds it pointing past the
    rows."""
    folder = generation_dir / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    wanted = list(dict.fromkeys(chunks.values()))
    sources: dict[str, np.ndarray] = {}
    for digest in wanted:
        rows = fresh.get(digest)
        if rows is None and previous is not None:
            rows = previous.of_digest(digest)
        if rows is None:
            raise ValueError(f"no token states for clause text {digest}")
        sources[digest] = rows
    total = sum(len(r) for r in sources.values())
    width = next(iter(sources.values())).shape[1] if sources else 0
    partial = folder / f".{os.getpid()}.{STATES}"
    table = np.lib.format.open_memmap(partial, mode="w+", dtype=np.float16,
                                      shape=(total, width))
    placed: dict[str, tuple[int, int]] = {}
    start = 0
    for digest, rows in sources.items():
        table[start:start + len(rows)] = rows
        placed[digest] = (start, len(rows))
        start += len(rows)
    table.flush()
    del table
    os.replace(partial, folder / STATES)
    index = folder / f".{os.getpid()}.{INDEX}"
    index.write_text(json.dumps({"chunks": dict(chunks), "rows": placed}), "utf-8")
    os.replace(index, folder / INDEX)
    log.info("clause token states: %d clauses, %d rows (%.1f MB)", len(wanted), total,
             total * width * 2 / 1e6)
