"""``klausa reader measure --data DIR``: the reader alone on public question–passage sets it
was never trained on (``../shared/external/reader-data``; its README gives sources and
licences): does it tell a passage that answers from one that does not?

- IDK-MRC test (Indonesian; unanswerable questions written to be on-topic, human-checked);
- SQuAD 2.0 dev, held-out articles (every fourth title), in English and in its Indonesian
  translation (unanswerable questions written adversarially to look answerable).

A passage is cut into clause-sized windows of sentences (the reader reads ≤ 192 tokens, as a
clause): an answerable question is paired with the window holding its answer, an unanswerable
one with the window sharing most of its words. The figure is the AUC of P(answers) between the
two, and the accuracy at the shipped threshold."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from klausa.embedder import Embedder
from klausa.reader import Reader
from klausa.reader_training import auc

log = logging.getLogger(__name__)

SETS = {
    "idk-mrc test (id)": ("idk-mrc.test.jsonl", None),
    "squad 2.0 held-out articles (en)": ("squad2-dev.en.jsonl", "held-out"),
    "squad 2.0 held-out articles (id, machine-translated)": ("squad2-dev.id.jsonl", "held-out"),
}
WINDOW_WORDS = 60
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"“(])")
_WORD = re.compile(r"\w+")


def windows(text: str, max_words: int = WINDOW_WORDS) -> list[str]:
    out: list[str] = []
    current: list[str] = []
    for sentence in (s for s in _SENTENCE_END.split(text.strip()) if s.strip()):
        if current and len(" ".join([*current, sentence]).split()) > max_words:
            out.append(" ".join(current))
            current = []
        current.append(sentence)
    if current:
        out.append(" ".join(current))
    return out


def _shared_words(question: str, window: str) -> int:
    asked = {w.lower() for w in _WORD.findall(question) if len(w) > 2}
    return len(asked & {w.lower() for w in _WORD.findall(window)})


def pairs(path: Path, held_out: bool, limit: int | None) -> Iterator[tuple[dict[str, Any], str]]:
    """(record, the window it is read against) for each usable record."""
    rows = [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]
    if held_out:
        titles = sorted({r["title"] for r in rows})
        kept = set(titles[::4])
        rows = [r for r in rows if r["title"] in kept]
    count = 0
    for record in rows:
        parts = windows(record["passage"])
        if record["answerable"]:
            found = [w for w in parts for a in record.get("answers") or [] if a and a in w]
            if not found:
                continue  # the answer straddles two windows
            window = found[0]
        else:
            window = max(parts, key=lambda w: _shared_words(record["question"], w))
        yield record, window
        count += 1
        if limit is not None and count >= limit:
            return


def measure(reader: Reader, embedder: Embedder, data: Path, limit: int | None = None
            ) -> dict[str, dict[str, float | int]]:
    results = {}
    for name, (file, split) in SETS.items():
        chosen = list(pairs(data / file, split == "held-out", limit))
        labels, probabilities = [], []
        for start in range(0, len(chosen), 32):
            batch = chosen[start:start + 32]
            questions = embedder.embed_queries_and_states([r["question"] for r, _ in batch])
            passages = embedder.embed_documents_and_states(
                [embedder.document_text(r.get("title") or "", w) for r, w in batch])
            assert questions.states is not None and passages.states is not None
            for (record, _), q, p in zip(batch, questions.states, passages.states, strict=True):
                probabilities.append(float(reader.read([q], [p])[0]))
                labels.append(int(record["answerable"]))
        y, s = np.array(labels), np.array(probabilities)
        results[name] = {"pairs": len(y), "answerable": int(y.sum()),
                         "auc": round(auc(y, s), 4),
                         "accuracy_at_threshold": round(float(np.mean((s >= reader.threshold)
                                                                      == (y == 1))), 4)}
        log.info("%s: %s", name, results[name])
    return results
