"""Benchmark: ways to embed a question faster on two cores, and what each costs in quality.

    .venv/bin/python bench/query_speed.py [--out bench/results/query_speed.json]

For every variant (float32; bfloat16 autocast; int8 dynamic quantisation of the linear
layers; fewer torch threads) it embeds the 197 gold questions one at a time, as a server
does, and reports p50/p95 latency, the cosine of each vector to the float32 one, and how often
the dense top-1 clause (over the seed chunks, embedded in float32) stays the same. Prints a
table; writes the figures as JSON. Not a test: figures depend on the machine.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import logging
import os
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from functools import partial
from pathlib import Path

import numpy as np
import torch
from benchlib import write_results

from ingest.pipeline import discover, embedding_text, parse_document
from klausa.embeddings import SentenceTransformerEmbedder, load_embedder
from klausa.evaluation import load_cases
from klausa.models.compiled import CompiledTransformer
from klausa.settings import Settings

log = logging.getLogger("bench.query_speed")
REPO = Path(__file__).resolve().parent.parent


def seed_texts(settings: Settings, embedder: SentenceTransformerEmbedder) -> list[str]:
    documents, _ = discover(settings, [])
    return [embedding_text(chunk, embedder) for document in documents
            for chunk in parse_document(document).chunks]


def measure(encode: Callable[[str], np.ndarray], questions: Sequence[str],
            context: Callable[[], AbstractContextManager] = nullcontext) -> tuple[list, np.ndarray]:
    for question in questions[:5]:
        with context():
            encode(question)
    times, vectors = [], []
    for question in questions:
        started = time.perf_counter()
        with context():
            vectors.append(encode(question))
        times.append((time.perf_counter() - started) * 1000)
    return times, np.stack(vectors)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "bench/results/query_speed.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = Settings(corpus_dir=REPO / "corpus", models_path=REPO / "data/models")
    embedder = load_embedder(settings)
    assert isinstance(embedder, SentenceTransformerEmbedder)
    # Float32 stays as loaded (the reference); the bfloat16 variant is a copy.
    embedder.queries_in_bfloat16 = False
    results = embedder.run(partial(measure_variants, embedder, settings))
    write_results(args.out, results)
    row = "{:<22}{:>9}{:>9}{:>14}{:>12}"
    print(row.format("variant", "p50 ms", "p95 ms", "min cos f32", "top-1 same"))
    for name, figures in results["variants"].items():
        print(row.format(name, figures["p50_ms"], figures["p95_ms"],
                         figures["min_cosine_to_float32"], figures["top1_same_as_float32"]))
    print(f"load average: start {results['environment']['loadavg_at_start']}, "
          f"end {results['environment']['loadavg_at_end']}")


def measure_variants(embedder: SentenceTransformerEmbedder, settings: Settings) -> dict:
    """Every variant, on the embedder's model thread (the one thread that runs torch)."""
    model = embedder.model
    prompt = embedder.spec.query_prompt if embedder.spec else ""
    cases = load_cases(REPO / "tests/qa/dev.jsonl") + load_cases(REPO / "tests/qa/test.jsonl")
    questions = [c.question for c in cases]
    clauses = embedder.embed_documents(seed_texts(settings, embedder))

    def encoder(m) -> Callable[[str], np.ndarray]:  # type: ignore[no-untyped-def]
        return lambda q: m.encode([q], prompt=prompt, normalize_embeddings=True,
                                  convert_to_numpy=True, show_progress_bar=False)[0]

    quantised = copy.deepcopy(model)
    quantised = torch.ao.quantization.quantize_dynamic(quantised, {torch.nn.Linear},
                                                       dtype=torch.qint8)
    variants: dict[str, tuple[Callable[[str], np.ndarray], Callable]] = {
        "float32": (encoder(model), nullcontext),
        "bfloat16 autocast": (encoder(model),
                              lambda: torch.autocast("cpu", dtype=torch.bfloat16)),
        "int8 dynamic": (encoder(quantised), nullcontext),
    }
    # A bfloat16 copy of the model (no cast on each call, unlike autocast): what embeds
    # passages, and questions under KLAUSA_QUERY_PRECISION=auto.
    bfloat16 = embedder.bfloat16_model()
    if bfloat16 is not None:
        variants["bfloat16 model"] = (encoder(bfloat16), nullcontext)
    results: dict = {"environment": {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "model": embedder.name, "questions": len(questions)}, "variants": {}}
    reference = None

    def figures(times: list[float], vectors: np.ndarray) -> dict:
        assert reference is not None
        vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        top = (vectors @ clauses.T).argmax(axis=1)
        reference_top = (reference @ clauses.T).argmax(axis=1)
        return {
            "p50_ms": round(float(np.percentile(times, 50)), 1),
            "p95_ms": round(float(np.percentile(times, 95)), 1),
            "min_cosine_to_float32": round(float((vectors * reference).sum(axis=1).min()), 5),
            "top1_same_as_float32": round(float((top == reference_top).mean()), 4)}

    for name, (encode, context) in variants.items():
        log.info("measuring %s", name)
        times, vectors = measure(encode, questions, context)
        if reference is None:
            reference = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        results["variants"][name] = figures(times, vectors)
    if bfloat16 is not None and embedder.spec is not None and embedder.spec.compiles:
        # The same bfloat16 model with its transformer compiled ahead of time (what a server
        # runs once the package is built; built here if need be).
        compiled = CompiledTransformer(Path(embedder.name), bfloat16,
                                       probe=embedder.spec.query_prompt + CompiledTransformer.PROBE)
        if compiled.wait(900):
            log.info("measuring bfloat16 model, compiled")
            results["variants"]["bfloat16 compiled"] = figures(
                *measure(encoder(bfloat16), questions))
    torch.set_num_threads(1)
    times, _ = measure(encoder(model), questions)
    results["variants"]["float32, 1 thread"] = {
        "p50_ms": round(float(np.percentile(times, 50)), 1),
        "p95_ms": round(float(np.percentile(times, 95)), 1),
        "min_cosine_to_float32": 1.0, "top1_same_as_float32": 1.0}
    results["environment"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return results


if __name__ == "__main__":
    main()
