"""Scale benchmark: ingest and answer over a synthetic corpus of up to ~1,000 policies.

    .venv/bin/python bench/scale.py [--sizes 5,100,1000] [--chunks-per-policy 100]
                                    [--external DIR] [--out bench/results/scale.json]

The corpus grows in steps inside one temporary data directory: the five seed policies of
``corpus/`` under their real ids (so the gold set applies), then synthetic policies up to each
size. Every step is one real ``ingest.pipeline.ingest`` of the whole corpus (unchanged
policies are kept, new ones added), then the gold set (``tests/qa/dev.jsonl`` +
``tests/qa/test.jsonl``) is asked through ``klausa.evaluation`` in a fresh process, so its
memory is what an answering server of that size holds.

A synthetic policy is a random sample of sections ("units") from a pool: every section of
the seed policies and of the plain-text policies in ``--external`` (read at run time, never
copied into the repository; their unnumbered text is cut into units of five paragraphs),
written as Markdown under a made-up company name. Units of one language only per policy.
Seed sections appear in distractors too: a question that names its company is answered
from that policy alone, but a question about all policies may find the same clause in a
distractor, which the gold set counts as a miss (it names the seed policy). Hit figures are
therefore given for both kinds of question.

Prints one table; writes every figure as JSON. Not a test: figures depend on the machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from benchlib import status_mb, write_results

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

log = logging.getLogger("bench.scale")

EXTERNAL = REPO.parent / "shared/external/policyqa-dev/policies"
WARM_UP = 10
PARAGRAPHS_PER_UNIT = 5
SYLLABLES = ["ka", "ve", "lo", "mi", "ru", "to", "nu", "se", "di", "pa", "zo", "qe", "xi", "bo"]
SUFFIXES = ["tek", "nix", "vox", "qua", "zen"]


# --- the synthetic corpus -----------------------------------------------------------------


def load_pool(external: Path) -> dict[str, list[tuple[str, list[str]]]]:
    """Units by language: (title, paragraphs) from every seed and external policy."""
    from ingest.pipeline import Document, discover, info_for_file, parse_document
    from klausa.settings import Settings

    documents, _errors = discover(Settings(corpus_dir=REPO / "corpus"), [])
    if external.is_dir():
        documents += [Document(info_for_file(p), p) for p in sorted(external.glob("*.txt"))]
    else:
        log.warning("%s not found: the pool has the seed policies only", external)
    pool: dict[str, list[tuple[str, list[str]]]] = {"en": [], "id": []}
    for document in documents:
        parsed = parse_document(document)
        sections: dict[str, list] = {}
        for chunk in parsed.chunks:
            sections.setdefault(chunk.label, []).append(chunk)
        for chunks in sections.values():
            title = chunks[0].section_title.strip() or parsed.info.title
            for start in range(0, len(chunks), PARAGRAPHS_PER_UNIT):
                part = chunks[start : start + PARAGRAPHS_PER_UNIT]
                texts = [" ".join(c.text.split()) for c in part]
                name = title if start == 0 else f"{title} ({start // PARAGRAPHS_PER_UNIT + 1})"
                pool[parsed.info.language].append((name, texts))
    return pool


def company_name(rng: random.Random, taken: set[str]) -> str:
    while True:
        name = ("".join(rng.choice(SYLLABLES) for _ in range(3)) + rng.choice(SUFFIXES)).title()
        if name not in taken:
            taken.add(name)
            return name


def write_synthetic(corpus: Path, index: int, pool: dict[str, list[tuple[str, list[str]]]],
                    chunks: int, rng: random.Random, taken: set[str]) -> str:
    """One synthetic policy file; returns its manifest entry."""
    language = "id" if rng.random() < 0.1 and pool["id"] else "en"
    name = company_name(rng, taken)
    units = pool[language][:]
    rng.shuffle(units)
    lines: list[str] = []
    titles: set[str] = set()
    total = 0
    for title, paragraphs in units:
        if total >= chunks:
            break
        if title in titles:
            continue
        titles.add(title)
        lines += [f"## {title}", "", *[p + "\n" for p in paragraphs]]
        total += len(paragraphs)
    policy_id = f"syn-{index:04d}-{name.lower()}"
    source = f"{policy_id}.{language}.md"
    (corpus / source).write_text("\n".join(lines), "utf-8")
    return (f'\n[[policy]]\nid = "{policy_id}"\ntitle = "{name} Privacy Policy"\n'
            f'company = "PT {name}"\naliases = ["{name}"]\nlanguage = "{language}"\n'
            f'source = "{source}"\n')


# --- one step: ingest, then ask in a fresh process ------------------------------------------


def ingest_step(data_dir: Path, corpus: Path, models: Path, embedder) -> dict:  # type: ignore[no-untyped-def]
    from ingest.pipeline import ingest
    from klausa.settings import Settings

    settings = Settings(data_dir=data_dir, corpus_dir=corpus, models_path=models)
    started = time.perf_counter()
    report = ingest(settings, embedder=embedder)
    wall = time.perf_counter() - started
    chunks = sum(p.chunks for p in report.policies)
    written = report.written
    return {
        "policies": len(report.policies), "chunks": chunks, "errors": report.errors,
        "chunks_written": written, "texts_embedded": report.embedded,
        "vectors_reused": report.vectors_reused, "terms_analysed": report.analysed,
        "terms_reused": report.terms_reused, "wall_s": round(wall, 1),
        "written_per_s": round(written / wall, 1) if wall else None,
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }


def ask_step(data_dir: Path, corpus: Path, models: Path, limit: int | None,
             threads: int | None) -> dict:
    """Run this script's --ask mode in a new process; return its figures."""
    command = [sys.executable, __file__, "--ask", str(data_dir), "--corpus", str(corpus),
               "--models", str(models)]
    if limit:
        command += ["--limit", str(limit)]
    if threads:
        command += ["--threads", str(threads)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"ask step failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def ask(data_dir: Path, corpus: Path, models: Path, limit: int | None,
        threads: int | None) -> dict:
    import numpy as np

    from klausa.assistant import Assistant
    from klausa.embeddings import load_embedder
    from klausa.evaluation import AssistantAsker, load_cases, report, score
    from klausa.settings import Settings

    if threads:
        import torch

        torch.set_num_threads(threads)
    settings = Settings(data_dir=data_dir, corpus_dir=corpus, models_path=models)
    cases = load_cases(REPO / "tests/qa/dev.jsonl") + load_cases(REPO / "tests/qa/test.jsonl")
    if limit:
        cases = cases[:: max(1, len(cases) // limit)][:limit]
    rss_start = status_mb("VmRSS")
    started = time.perf_counter()
    embedder = load_embedder(settings)
    embedder.embed_query("warm up")
    model_s = time.perf_counter() - started
    assistant = Assistant(settings, embedder=embedder)
    started = time.perf_counter()
    AssistantAsker(assistant, "klausa")(cases[0])
    first_ms = (time.perf_counter() - started) * 1000
    asker = AssistantAsker(assistant, "klausa")
    for case in cases[:WARM_UP]:
        asker(case)
    records = [asker(case) for case in cases]
    latencies = [r.latency_ms for r in records]
    p50, p95, p99 = (round(float(x), 1) for x in np.percentile(latencies, [50, 95, 99]))
    parts = {p: round(float(np.mean([r.timings_ms.get(p, 0.0) for r in records])), 1)
             for p in ("embed", "dense", "lexical", "fuse", "compose", "total")}
    named = [r for r in records if r.case.policy]
    every = [r for r in records if not r.case.policy]
    figures = {"overall": report(records)["overall"], "named": score(named),
               "all_policies": score(every)}
    keep = ("questions", "answerable", "hit@1", "hit@5", "mrr", "citation_accuracy")
    return {
        "questions": len(records), "p50_ms": p50, "p95_ms": p95, "p99_ms": p99,
        "parts_mean_ms": parts, "first_ask_ms": round(first_ms, 1),
        "model_load_s": round(model_s, 1),
        "quality": {k: {f: v.get(f) for f in keep} for k, v in figures.items()},
        "rss_start_mb": rss_start, "rss_mb": status_mb("VmRSS"), "peak_rss_mb": status_mb("VmHWM"),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }


# --- the run ------------------------------------------------------------------------------


def run(sizes: Sequence[int], chunks_per_policy: int, external: Path, keep: Path | None,
        limit: int | None, seed: int, threads: int | None) -> dict:
    from klausa.embeddings import load_embedder
    from klausa.settings import Settings

    models = REPO / "data/models"
    results: dict = {"environment": {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpus": os.cpu_count(), "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "sizes": list(sizes), "chunks_per_policy": chunks_per_policy, "seed": seed,
        "external": str(external), "ask_torch_threads": threads}, "steps": []}
    rng = random.Random(seed)
    pool = load_pool(external)
    results["pool"] = {lang: {"units": len(units), "paragraphs": sum(len(u[1]) for u in units)}
                       for lang, units in pool.items()}
    workdir = Path(tempfile.mkdtemp(prefix="klausa-scale-", dir=keep))
    corpus, data_dir = workdir / "corpus", workdir / "data"
    shutil.copytree(REPO / "corpus", corpus)
    manifest = corpus / "policies.toml"
    embedder = load_embedder(Settings(models_path=models))
    taken: set[str] = set()
    count = 5
    try:
        for size in sizes:
            entries = []
            while count < size:
                count += 1
                entries.append(write_synthetic(corpus, count, pool, chunks_per_policy, rng, taken))
            with manifest.open("a", encoding="utf-8") as handle:
                handle.write("".join(entries))
            log.info("step %d policies: ingest", size)
            step = {"size": size, "ingest": ingest_step(data_dir, corpus, models, embedder)}
            log.info("step %d: %s", size, step["ingest"])
            log.info("step %d policies: asking the gold set in a new process", size)
            step["ask"] = ask_step(data_dir, corpus, models, limit, threads)
            log.info("step %d: %s", size, step["ask"])
            results["steps"].append(step)
            partial = REPO / "bench/results/scale.partial.json"
            partial.parent.mkdir(parents=True, exist_ok=True)
            partial.write_text(json.dumps(results, indent=2) + "\n", "utf-8")
    finally:
        if keep is None:
            shutil.rmtree(workdir, ignore_errors=True)
    results["environment"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return results


def table(results: dict) -> str:
    env = results["environment"]
    row = "{:>9}{:>9}{:>10}{:>10}{:>9}{:>8}{:>8}{:>8}{:>7}{:>7}{:>7}{:>7}{:>8}"
    lines = [
        f"Klausa scale benchmark  {env['date']}  {env['cpus']} CPUs  "
        f"load {env['loadavg_at_start']} → {env.get('loadavg_at_end')}",
        f"pool: {results['pool']}",
        row.format("policies", "chunks", "embedded", "ingest s", "chunk/s", "p50", "p95",
                   "h@1", "h@5", "h@1 n", "h@5 n", "h@5 all", "RSS MB"),
    ]
    for step in results["steps"]:
        i, a = step["ingest"], step["ask"]
        q = a["quality"]
        lines.append(row.format(
            step["size"], i["chunks"], i["texts_embedded"], i["wall_s"],
            i["written_per_s"] or "-", a["p50_ms"], a["p95_ms"],
            q["overall"]["hit@1"], q["overall"]["hit@5"], q["named"]["hit@1"],
            q["named"]["hit@5"], q["all_policies"]["hit@5"], a["rss_mb"]))
    lines.append("embedded = distinct texts the model embedded in that step (the rest reused "
                 "stored vectors); chunk/s = chunks written ÷ ingest wall time; p50/p95 = warm "
                 "Assistant.ask in ms; h@k n = questions naming a company; all = all-policies.")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="5,100,1000",
                        help="policies after each step, comma-separated (first ≥ 5)")
    parser.add_argument("--chunks-per-policy", type=int, default=100)
    parser.add_argument("--external", type=Path, default=EXTERNAL)
    parser.add_argument("--out", type=Path, default=REPO / "bench/results/scale.json")
    parser.add_argument("--keep", type=Path, help="build under this folder and keep it")
    parser.add_argument("--limit", type=int, help="ask only this many gold questions")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--threads", type=int,
                        help="torch threads when asking (default: torch's own choice)")
    parser.add_argument("--ask", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--corpus", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--models", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s",
                        stream=sys.stderr)
    if args.ask:
        print(json.dumps(ask(args.ask, args.corpus, args.models, args.limit, args.threads)))
        return
    sizes = sorted(int(s) for s in args.sizes.split(","))
    if sizes[0] < 5:
        parser.error("the first size must be at least 5 (the seed policies)")
    results = run(sizes, args.chunks_per_policy, args.external, args.keep, args.limit, args.seed,
                  args.threads)
    write_results(args.out, results)
    log.info("wrote %s", args.out)
    print(table(results))


if __name__ == "__main__":
    main()
