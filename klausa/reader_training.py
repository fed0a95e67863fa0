"""``klausa reader train``: train the reader (``klausa.models.reader``) on Klausa's own
candidates, calibrate its threshold on the dev splits, write the weights it ships.

Data (see ``training/reader/MODEL_CARD.md``):

- **train**: the questions in ``training/reader/questions/`` — written from the seed policies'
  texts, each labelled with the clauses that answer it (none for a near-miss: a question on a
  topic the policy covers about a point it never states). Every question is asked of Klausa as
  a user would (its follow-ups after their earlier turns); each of the candidates retrieval
  returns becomes a pair (question, clause, answers or not), with the labelled clauses that
  retrieval missed added as positives.
- **dev** (never trained on; picks the threshold and reports the figures): the gold and
  realistic dev splits of ``tests/qa``, labelled by section.

The test splits are not read here. The question's token states are the ones Klausa computes
when it embeds the question; the clause's are the index's (``klausa ingest``)."""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from klausa.assistant import Assistant
from klausa.cases import Case, chunk_matches, load_cases
from klausa.evaluation import AssistantAsker
from klausa.reader import (
    MAX_CLAUSE_TOKENS,
    READER_DIR,
    TRAINED_ON,
    WEIGHTS,
    ReaderCard,
    question_tokens,
    sha256,
)

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = ROOT / "training" / "reader" / "questions"
DEV_SPLITS = {"gold": ROOT / "tests" / "qa" / "dev.jsonl",
              "realistic": ROOT / "tests" / "qa" / "realistic.dev.jsonl"}
#: False refusals the threshold allows on each dev split (the issue's targets: gold ≤ 0.02,
#: realistic ≤ 0.05).
FALSE_REFUSALS = {"gold": 0.02, "realistic": 0.05}


@dataclass(frozen=True)
class TrainingSettings:
    epochs: float = 2.0
    #: Learning rate of the transformer layers (copied from the embedding model) and of the
    #: head (new).
    lr: float = 3e-5
    head_lr: float = 1e-3
    batch: int = 32
    seed: int = 13
    #: Candidates per question made into pairs (retrieval's best), and read when answering.
    candidates: int = 20
    depth: int = 10
    name: str = "klausa-reader"


@dataclass
class Example:
    """One question asked of Klausa: its token states and its candidates (chunk id → label;
    rank None: a labelled clause retrieval did not return)."""

    id: str
    split: str
    group: str
    answerable: bool
    policy: str | None
    states: list[np.ndarray]
    candidates: list[tuple[str, int, int | None]] = field(default_factory=list)


def training_questions(folder: Path = QUESTIONS) -> list[dict[str, Any]]:
    rows = []
    for path in sorted(folder.glob("*.jsonl")):
        for number, line in enumerate(path.read_text("utf-8").splitlines(), 1):
            if line.strip():
                rows.append(json.loads(line) | {"id": f"{path.stem}:{number}"})
    return rows


def ask_all(assistant: Assistant, records: Sequence[dict[str, Any]], split: str,
            label: Callable[[dict[str, Any], Any], int], limit: int) -> list[Example]:
    """Each record asked of Klausa (after its earlier turns), its first ``limit`` candidates
    labelled by ``label(record, chunk)``."""
    judge = assistant.snapshot().judge
    clause_states = judge.clause_states
    if clause_states is None:
        raise RuntimeError("the index has no clause token states: run `klausa ingest`")
    catalog = assistant.snapshot().catalog
    conversations = AssistantAsker(assistant, split)  # earlier turns, asked once each
    examples = []
    for number, record in enumerate(records):
        _, _, retrieval, question = assistant.find(
            record["question"], record["policy"],
            conversations.turns(record["policy"], record["history"]))
        if not question.states:
            raise RuntimeError("the embedding model gives no token states: the reader needs "
                               "a model with a state layer (EmbeddingGemma)")
        example = Example(record["id"], split, record["group"], record["answerable"],
                          record["policy"], [np.array(s) for s in question.states])
        for hit in retrieval.hits[:limit]:
            example.candidates.append((hit.chunk.id, label(record, hit.chunk), hit.rank))
        returned = {c for c, _, _ in example.candidates}
        for chunk_id in record.get("chunks", []):
            if chunk_id not in catalog.chunks:
                raise RuntimeError(f"{record['id']}: clause {chunk_id} is not in the index "
                                   "(the corpus changed: relabel training/reader/questions)")
            if chunk_id not in returned:
                example.candidates.append((chunk_id, 1, None))
        examples.append(example)
        if number % 200 == 0:
            log.info("%s: asked %d of %d", split, number, len(records))
    return examples


def build_examples(assistant: Assistant, settings: TrainingSettings
                   ) -> tuple[list[Example], dict[str, list[Example]]]:
    train_records = [r | {"group": r["type"]} for r in training_questions()]
    train = ask_all(assistant, train_records, "train",
                    lambda record, chunk: int(chunk.id in record["chunks"]), settings.candidates)
    catalog = assistant.snapshot().catalog
    dev: dict[str, list[Example]] = {}
    for name, path in DEV_SPLITS.items():
        cases = {c.id: c for c in load_cases(path)}

        def label(record: dict[str, Any], chunk: Any, cases: dict[str, Case] = cases) -> int:
            case = cases[record["id"]]
            return int(case.answerable and chunk_matches(chunk, case, catalog))

        records = [{"id": c.id, "policy": c.policy, "question": c.question,
                    "history": list(c.history), "answerable": c.answerable,
                    "group": c.group or ""} for c in cases.values()]
        dev[name] = ask_all(assistant, records, f"dev:{name}", label, settings.depth)
    return train, dev


def pairs_of(examples: Sequence[Example], depth: int | None = None
             ) -> list[tuple[Example, str, int]]:
    return [(e, chunk, label) for e in examples for chunk, label, rank in e.candidates
            if depth is None or (rank is not None and rank <= depth)]


def batches(pairs: Sequence[tuple[Example, str, int]], clause_states: Any, size: int,
            shuffle: bool, rng: random.Random) -> Iterator[tuple[Any, ...]]:
    import torch

    order = list(range(len(pairs)))
    if shuffle:
        rng.shuffle(order)
    for start in range(0, len(order), size):
        chosen = [pairs[i] for i in order[start:start + size]]
        questions = [question_tokens(e.states) for e, _, _ in chosen]
        clauses = [np.array(clause_states.of_chunk(c)[:MAX_CLAUSE_TOKENS]) for _, c, _ in chosen]
        width_q = max(q.shape[1] for q, _ in questions)
        width_c = max(len(c) for c in clauses)
        q = torch.zeros(len(chosen), width_q, 768)
        q_mask = torch.zeros(len(chosen), width_q, dtype=torch.bool)
        c = torch.zeros(len(chosen), width_c, 768)
        c_mask = torch.zeros(len(chosen), width_c, dtype=torch.bool)
        for row, ((rows, mask), clause) in enumerate(zip(questions, clauses, strict=True)):
            q[row, : rows.shape[1]] = torch.from_numpy(rows[0])
            q_mask[row, : rows.shape[1]] = torch.from_numpy(mask[0])
            c[row, : len(clause)] = torch.from_numpy(clause.astype(np.float32))
            c_mask[row, : len(clause)] = True
        labels = torch.tensor([label for _, _, label in chosen], dtype=torch.float32)
        yield q, q_mask, c, c_mask, labels


def read_dev(net: Any, reader_read: Callable[[list[np.ndarray], list[np.ndarray]], np.ndarray],
             examples: Sequence[Example], clause_states: Any, depth: int
             ) -> list[tuple[Example, list[tuple[str, int, float]]]]:
    """Each dev question read as Klausa reads it: its best ``depth`` candidates together."""
    out = []
    for example in examples:
        shown = [(c, label) for c, label, rank in example.candidates
                 if rank is not None and rank <= depth]
        if not shown:
            out.append((example, []))
            continue
        probabilities = reader_read(example.states,
                                    [clause_states.of_chunk(c) for c, _ in shown])
        out.append((example, [(c, label, float(p)) for (c, label), p in
                              zip(shown, probabilities, strict=True)]))
    return out


def auc(labels: Sequence[int], scores: Sequence[float]) -> float:
    y, s = np.asarray(labels), np.asarray(scores, dtype=np.float64)
    positive, negative = s[y == 1], s[y == 0]
    if not len(positive) or not len(negative):
        return float("nan")
    ranks = np.empty(len(s))
    order = np.argsort(np.concatenate([positive, negative]), kind="stable")
    ranks[order] = np.arange(1, len(s) + 1)
    return float((ranks[: len(positive)].sum() - len(positive) * (len(positive) + 1) / 2)
                 / (len(positive) * len(negative)))


def figures(read: Sequence[tuple[Example, list[tuple[str, int, float]]]],
            threshold: float | None = None) -> dict[str, Any]:
    """AUC of the best candidate's probability (answerable vs not), the first citation (the
    most probable candidate) right, and at ``threshold``: refusals right and false."""
    best = {e.id: max((p for _, _, p in c), default=0.0) for e, c in read}
    answerable = [e for e, _ in read if e.answerable]
    unanswerable = [e for e, _ in read if not e.answerable]
    first = [max(c, key=lambda x: x[2])[1] == 1 for e, c in read if e.answerable and c]
    retrieval_first = [c[0][1] == 1 for e, c in read if e.answerable and c]
    out: dict[str, Any] = {
        "questions": len(read), "answerable": len(answerable),
        "auc": round(auc([1] * len(answerable) + [0] * len(unanswerable),
                         [best[e.id] for e in answerable + unanswerable]), 4),
        "first_citation_right": round(float(np.mean(first)), 4) if first else None,
        "retrieval_first_right": round(float(np.mean(retrieval_first)), 4)
        if retrieval_first else None,
    }
    if threshold is not None:
        out["false_refusals"] = round(float(np.mean([best[e.id] < threshold
                                                     for e in answerable])), 4)
        out["refusals_right"] = round(float(np.mean([best[e.id] < threshold
                                                     for e in unanswerable])), 4)
    return out


def calibrate(read: dict[str, list[tuple[Example, list[tuple[str, int, float]]]]]) -> float:
    """The highest threshold that keeps each dev split's false refusals within
    ``FALSE_REFUSALS``."""
    limits = []
    for name, rows in read.items():
        best = sorted(max((p for _, _, p in c), default=0.0) for e, c in rows if e.answerable)
        allowed = math.floor(FALSE_REFUSALS[name] * len(best))
        # At most `allowed` answerable questions below the threshold.
        limits.append(best[allowed] if allowed < len(best) else 1.0)
    return float(min(limits))


def train(assistant: Assistant, settings: TrainingSettings, out_dir: Path = READER_DIR,
          progress: Callable[[str], None] = log.info) -> dict[str, Any]:
    """Train, calibrate, write ``out_dir/reader.safetensors`` and ``training.json``; returns
    the figures."""
    import torch

    from klausa.models.reader import ReaderNet

    started = time.monotonic()
    random.seed(settings.seed)
    np.random.seed(settings.seed)
    torch.manual_seed(settings.seed)
    rng = random.Random(settings.seed)
    embedder = assistant.embedder
    layer = embedder.spec.state_layer if getattr(embedder, "spec", None) else None  # type: ignore[attr-defined]
    if layer is None:
        raise RuntimeError(f"{embedder.name} keeps no token states; the reader is trained on "
                           "EmbeddingGemma's")
    train_examples, dev = build_examples(assistant, settings)
    clause_states = assistant.snapshot().judge.clause_states
    pairs = pairs_of(train_examples)
    progress(f"{len(train_examples)} training questions, {len(pairs)} pairs "
             f"({sum(label for *_, label in pairs)} answering); "
             f"{sum(len(v) for v in dev.values())} dev questions "
             f"({time.monotonic() - started:.0f} s)")

    net = ReaderNet.from_model_folder(Path(embedder.name), layer)
    optimiser = torch.optim.AdamW(
        [{"params": net.layers.parameters(), "lr": settings.lr},
         {"params": net.norm.parameters(), "lr": settings.lr},
         {"params": net.head.parameters(), "lr": settings.head_lr}], weight_decay=0.01)
    steps = int(math.ceil(len(pairs) / settings.batch) * settings.epochs)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=[settings.lr, settings.lr, settings.head_lr], total_steps=steps,
        pct_start=0.1)
    loss_of = torch.nn.BCEWithLogitsLoss()
    # bfloat16 where the CPU does it fast (1.65× on this machine's AVX-512 BF16), else float32.
    fast = embedder.queries_in_bfloat16
    step = 0

    def run() -> None:
        nonlocal step
        torch.set_num_threads(max(1, torch.get_num_threads()))
        net.train()
        while step < steps:
            for q, q_mask, c, c_mask, labels in batches(pairs, clause_states, settings.batch,
                                                         True, rng):
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=fast):
                    logits = net(q, q_mask, c, c_mask)
                loss = loss_of(logits.float(), labels)
                optimiser.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
                optimiser.step()
                schedule.step()
                step += 1
                if step % 100 == 0:
                    progress(f"step {step}/{steps} loss {loss.item():.4f} "
                             f"({time.monotonic() - started:.0f} s)")
                if step >= steps:
                    break
        net.eval()

    embedder.run(run)  # the model thread: one OpenMP pool in the process

    def read(question: list[np.ndarray], clauses: list[np.ndarray]) -> np.ndarray:
        from klausa.reader import Reader

        return Reader(net, card(0.5), embedder).read(question, clauses)

    def card(threshold: float) -> ReaderCard:
        return ReaderCard(name=settings.name, embedding_model=assistant.settings.embedding_model,
                          threshold=threshold, depth=settings.depth,
                          shape={"config": net.shape.config, "first_layer": layer,
                                 "head_width": net.shape.head_width})

    if fast:
        net.to(torch.bfloat16)
    read_out = {name: read_dev(net, read, examples, clause_states, settings.depth)
                for name, examples in dev.items()}
    threshold = calibrate(read_out)
    result = {
        "settings": settings.__dict__,
        "training": {"questions": len(train_examples), "pairs": len(pairs),
                     "answering_pairs": int(sum(label for *_, label in pairs)), "steps": steps},
        "threshold": round(threshold, 4),
        "dev": {name: figures(rows, threshold) for name, rows in read_out.items()},
        "minutes": round((time.monotonic() - started) / 60, 1),
    }
    path = write_reader(net, card(threshold), out_dir)
    result["sha256"] = sha256(path)
    # The policies it read in training, by the digest of their text: any other policy (or
    # this one edited) gets the threshold for policies it was not trained on.
    catalog = assistant.snapshot().catalog
    trained_on = {policy: catalog.policies[policy].digest
                  for policy in sorted({e.policy for e in train_examples if e.policy})}
    (out_dir / TRAINED_ON).write_text(json.dumps(trained_on, indent=2) + "\n", "utf-8")
    (out_dir / "training.json").write_text(json.dumps(result, indent=2) + "\n", "utf-8")
    return result


def write_reader(net: Any, card: ReaderCard, out_dir: Path) -> Path:
    """The weights in bfloat16 (half the size; the reader reads float32 states fine from
    them), the card in the file's metadata; written beside, then renamed."""
    import torch
    from safetensors.torch import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to(torch.bfloat16).contiguous()
               for k, v in net.state_dict().items()}
    metadata = {"klausa_reader": json.dumps({
        "name": card.name, "embedding_model": card.embedding_model,
        "threshold": card.threshold, "depth": card.depth, "shape": card.shape})}
    partial = out_dir / f".{WEIGHTS}.partial"
    save_file(tensors, str(partial), metadata=metadata)
    target = out_dir / WEIGHTS
    partial.replace(target)
    target.chmod(0o644)  # shipped in the package: readable by whoever serves it
    return target
