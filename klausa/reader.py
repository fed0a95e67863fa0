"""Klausa's reader: its own model, trained here (``klausa reader train``), that reads a
question together with a candidate clause and gives the probability that the clause answers
it (the network: ``klausa.models.reader``).

The judge (``klausa.judge``) asks it about the best candidates: whether any answers (else
"not covered"), which answers best (the first citation), and, for a question about all
policies, which policies' clauses answer. It starts from the token states the embedding model
computed anyway — the question's while embedding it for search, each clause's at ingest
(``klausa.token_states``) — so a question costs the model's top two layers over its
candidates, not a pass of the whole model per clause.

The weights ship in the package (``klausa/data/reader/``), pinned by sha256. Missing or
altered weights, another embedding model than the one it was trained on, or
``KLAUSA_READER=off``: one log line, and Klausa answers as before, on its similarity
threshold."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from klausa.embedder import Embedder
from klausa.models import embedding_model
from klausa.settings import Settings

log = logging.getLogger(__name__)

READER_DIR = Path(__file__).resolve().parent / "data" / "reader"
WEIGHTS = "reader.safetensors"
#: The shipped weights' sha256 (``klausa reader train`` prints it); a file that differs is
#: not used.
WEIGHTS_SHA256 = "4e83d72d8b39ef8bb8408bc927cb997531bba77a3bce53dfcb892ec1a63b6d60"
#: The policies the shipped reader was trained on, with the digest of the text it read
#: (``klausa reader train`` writes this file beside the weights).
TRAINED_ON = "trained_on.json"
#: The answer threshold for a policy the reader was not trained on (any other policy, or one
#: whose text changed since). On those its probabilities run lower: with the calibrated
#: threshold it refused 20 % of PolicyQA's 2,420 answerable questions (the support score:
#: 1.2 %). Calibrated as the dev threshold is (false refusals ≤ 0.05) on the 10 PolicyQA
#: policies at even positions in name order; on the other 10 it refuses 2.7 %.
UNSEEN_THRESHOLD = 0.0026
#: Question tokens the reader does not read: the query prompt's ("<bos>task: search result |
#: query:"), the same for every question.
PROMPT_TOKENS = 8
MAX_QUESTION_TOKENS = 64
MAX_CLAUSE_TOKENS = 192


@dataclass(frozen=True)
class ReaderCard:
    """What the weights say about themselves (safetensors metadata, written at training)."""

    name: str
    embedding_model: str
    #: The probability at and above which a clause answers (calibrated on the dev splits).
    threshold: float
    #: How many of the best retrieved candidates it reads.
    depth: int
    shape: dict[str, Any]

    @classmethod
    def from_metadata(cls, metadata: dict[str, str]) -> ReaderCard:
        card = json.loads(metadata["klausa_reader"])
        return cls(name=card["name"], embedding_model=card["embedding_model"],
                   threshold=float(card["threshold"]), depth=int(card["depth"]),
                   shape=dict(card["shape"]))


class Reader:
    def __init__(self, net: Any, card: ReaderCard, embedder: Embedder,
                 trained_on: dict[str, str] | None = None,
                 unseen_threshold: float = UNSEEN_THRESHOLD) -> None:
        self.net = net
        self.card = card
        self.embedder = embedder
        #: Policy id → digest of the text it was trained on (None: unknown, all count as seen).
        self.trained_on = trained_on
        self.unseen_threshold = unseen_threshold
        #: The dtype it reads in: the network's (bfloat16 where the CPU has fast bfloat16).
        self.dtype = next(net.parameters()).dtype

    @property
    def threshold(self) -> float:
        return self.card.threshold

    def read(self, question: Sequence[np.ndarray], clauses: Sequence[np.ndarray]
             ) -> np.ndarray:
        """P(clause answers) for each clause; ``question``: the token states of the earlier
        questions a follow-up reads with (oldest first) and of the question."""
        if not clauses:
            return np.zeros(0, dtype=np.float32)
        return self.embedder.run(lambda: self._read_by_length(question, clauses))

    def _read_by_length(self, question: Sequence[np.ndarray], clauses: Sequence[np.ndarray]
                        ) -> np.ndarray:
        """The shorter half and the longer half of the clauses in two batches: each padded
        to its own longest, not all to the longest clause (10 candidates: 141 → 122 ms a
        question, measured on the dev splits)."""
        order = np.argsort([len(c) for c in clauses], kind="stable")
        half = (len(order) + 1) // 2
        out = np.zeros(len(clauses), dtype=np.float32)
        for part in (order[:half], order[half:]):
            if len(part):
                out[part] = self._read(question, [clauses[i] for i in part])
        return out

    def _read(self, question: Sequence[np.ndarray], clauses: Sequence[np.ndarray]
              ) -> np.ndarray:
        import torch

        q, q_mask = question_tokens(question)
        count = len(clauses)
        width = max(min(len(c), MAX_CLAUSE_TOKENS) for c in clauses)
        c = torch.zeros(count, width, q.shape[2], dtype=self.dtype)
        c_mask = torch.zeros(count, width, dtype=torch.bool)
        for i, states in enumerate(clauses):
            rows = torch.from_numpy(np.array(states[:MAX_CLAUSE_TOKENS]))
            c[i, : len(rows)] = rows
            c_mask[i, : len(rows)] = True
        with torch.inference_mode():
            logits = self.net(torch.from_numpy(q).to(self.dtype).expand(count, -1, -1),
                              torch.from_numpy(q_mask).expand(count, -1), c, c_mask)
        return torch.sigmoid(logits.float()).numpy()


def question_tokens(parts: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The question pieces (earlier turns, then the question) as one row of token states with
    its mask (the prompt tokens of each piece left unread), the last ``MAX_QUESTION_TOKENS``."""
    arrays, masks = [], []
    for states in parts:
        rows = np.asarray(states[:MAX_QUESTION_TOKENS], dtype=np.float32)
        mask = np.ones(len(rows), dtype=bool)
        mask[:PROMPT_TOKENS] = False
        arrays.append(rows)
        masks.append(mask)
    rows = np.concatenate(arrays)[-MAX_QUESTION_TOKENS:]
    mask = np.concatenate(masks)[-MAX_QUESTION_TOKENS:]
    return rows[None], mask[None]


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_reader(settings: Settings, embedder: Embedder, folder: Path | None = None,
                pinned: str | None = None) -> Reader | None:
    """The shipped reader (or ``settings.reader_dir``'s, trusted as given), or None (with one
    log line saying why) when it is off, missing, altered or made for another embedding
    model."""
    if settings.reader == "off":
        return None
    folder = folder or settings.reader_dir or READER_DIR
    path = folder / WEIGHTS
    expected = pinned if pinned is not None else WEIGHTS_SHA256 if folder == READER_DIR else ""
    try:
        found = sha256(path)
        if expected and found != expected:
            raise ValueError(f"{path} is not the reader this version ships (sha256 {found[:12]}…, "
                             f"expected {expected[:12]}…)")
        net, card = load_weights(path)
    except (OSError, ValueError, KeyError, RuntimeError) as error:
        log.warning("reader unavailable, answering on similarity alone: %s", error)
        return None
    if card.embedding_model != settings.embedding_model:
        log.warning("reader %s reads %s token states, not %s: answering on similarity alone",
                    card.name, card.embedding_model, settings.embedding_model)
        return None
    spec = embedding_model(settings.embedding_model)
    layer = spec.state_layer if spec else None
    if card.shape.get("first_layer") != layer:
        log.warning("reader %s starts at layer %s, the index keeps layer %s: answering on "
                    "similarity alone", card.name, card.shape.get("first_layer"), layer)
        return None
    if embedder.queries_in_bfloat16:  # as the question's states were computed
        import torch

        net = net.to(torch.bfloat16)
    log.info("reader %s loaded (threshold %.2f, %d candidates)", card.name, card.threshold,
             card.depth)
    unseen = settings.reader_threshold_unseen
    return Reader(net, card, embedder, load_trained_on(folder / TRAINED_ON),
                  UNSEEN_THRESHOLD if unseen is None else unseen)


def load_trained_on(path: Path) -> dict[str, str] | None:
    """The policies the reader was trained on (id → text digest); None, with a log line, when
    the file is missing or unreadable: then every policy gets the calibrated threshold."""
    try:
        return {str(k): str(v) for k, v in json.loads(path.read_text("utf-8")).items()}
    except (OSError, ValueError, AttributeError) as error:
        log.warning("reader: no list of the policies it was trained on (%s): every policy "
                    "gets its calibrated threshold", error)
        return None


def load_weights(path: Path) -> tuple[Any, ReaderCard]:
    from safetensors import safe_open
    from safetensors.torch import load_file

    from klausa.models.reader import ReaderNet, ReaderShape

    with safe_open(str(path), "pt") as handle:
        metadata = handle.metadata() or {}
    card = ReaderCard.from_metadata(metadata)
    net = ReaderNet(ReaderShape(**card.shape))
    # Shipped in bfloat16 (half the size); read in float32 unless the CPU is fast in bfloat16.
    net.load_state_dict({k: v.float() for k, v in load_file(str(path)).items()})
    net.eval()
    return net, card
