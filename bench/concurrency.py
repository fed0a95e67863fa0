"""Benchmark: many askers at once through one ``Assistant`` (one Streamlit server answers its
sessions in threads of one process), and askers beside a ``klausa ingest`` in another process.

    .venv/bin/python bench/concurrency.py [--threads 1,4,8] [--questions 96]
                                          [--out bench/results/concurrency.json]

Each run asks the same gold questions (dev+test, answerable and not) split over N threads that
start together; it reports per-question latency p50/p95 and throughput (questions/s). The
"beside ingest" run asks from 1 and 4 threads while a fresh ``klausa ingest`` of the seed
corpus (every clause embedded: the heaviest CPU work Klausa does) runs in a second process.
Prints a table; writes the figures as JSON. Not a test: figures depend on the machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from benchlib import cpu_kind, status_mb, write_results

from ingest.pipeline import ingest
from klausa.assistant import Assistant
from klausa.embeddings import load_embedder
from klausa.evaluation import Case, load_cases
from klausa.settings import Settings

log = logging.getLogger("bench.concurrency")
REPO = Path(__file__).resolve().parent.parent


def ask_together(assistant: Assistant, cases: Sequence[Case], threads: int) -> dict:
    """Every case asked once, spread over ``threads`` threads released at the same moment."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(threads + 1)

    def worker(share: Sequence[Case]) -> None:
        start.wait()
        for case in share:
            began = time.perf_counter()
            try:
                assistant.ask(case.question, policy=case.policy)
            except Exception as error:  # a failed question is a finding, not a crash
                with lock:
                    errors.append(f"{case.id}: {error}")
                continue
            with lock:
                latencies.append((time.perf_counter() - began) * 1000)

    pool = [threading.Thread(target=worker, args=(cases[i::threads],)) for i in range(threads)]
    for thread in pool:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in pool:
        thread.join()
    wall = time.perf_counter() - began
    p50, p95 = np.percentile(latencies, [50, 95]) if latencies else (float("nan"),) * 2
    return {"threads": threads, "questions": len(latencies), "errors": errors,
            "p50_ms": round(float(p50), 1), "p95_ms": round(float(p95), 1),
            "throughput_qps": round(len(latencies) / wall, 2), "wall_s": round(wall, 2)}


def start_ingest(data_dir: Path) -> subprocess.Popen:
    """``klausa ingest`` of the seed corpus into an empty data dir, in its own process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KLAUSA_")}
    env.update(KLAUSA_DATA_DIR=str(data_dir), KLAUSA_MODELS_PATH=str(REPO / "data/models"),
               KLAUSA_CORPUS_DIR=str(REPO / "corpus"))
    return subprocess.Popen([sys.executable, "-m", "klausa.cli", "ingest"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def run(thread_counts: Sequence[int], questions: int) -> dict:
    cases = load_cases(REPO / "tests/qa/dev.jsonl") + load_cases(REPO / "tests/qa/test.jsonl")
    cases = [c for c in cases if not c.history][:questions]
    results: dict = {"environment": {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpus": os.cpu_count(), "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "questions": len(cases), "cpu": cpu_kind()}, "runs": [], "beside_ingest": []}
    with tempfile.TemporaryDirectory(prefix="klausa-bench-conc-") as tmp:
        settings = Settings(data_dir=Path(tmp) / "serve", corpus_dir=REPO / "corpus",
                            models_path=REPO / "data/models")
        embedder = load_embedder(settings)
        results["environment"]["compiled"] = embedder.wait_for_compiled(900)  # type: ignore[attr-defined]
        ingest(settings, embedder=embedder)
        assistant = Assistant(settings, embedder=embedder)
        for case in cases[:10]:  # warm: model, index, caches
            assistant.ask(case.question, policy=case.policy)
        for threads in thread_counts:
            log.info("%d thread(s) asking at once", threads)
            results["runs"].append(ask_together(assistant, cases, threads))
        for threads in (1, 4):
            log.info("%d thread(s) asking beside a klausa ingest", threads)
            process = start_ingest(Path(tmp) / f"ingest-{threads}")
            time.sleep(8)  # past its imports and model load: into the embedding work
            outcome = ask_together(assistant, cases, threads)
            outcome["ingest_still_running_at_end"] = process.poll() is None
            process.wait(timeout=600)
            outcome["ingest_exit"] = process.returncode
            results["beside_ingest"].append(outcome)
    results["memory"] = {"rss_mb": status_mb("VmRSS"), "peak_rss_mb": status_mb("VmHWM")}
    results["environment"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return results


def table(results: dict) -> str:
    row = "{:<28}{:>8}{:>10}{:>10}{:>12}"
    lines = [f"Concurrent askers  {results['environment']['date']}  "
             f"{results['environment']['cpus']} CPUs  {results['environment']['questions']} "
             f"questions per run",
             f"CPU {results['environment']['cpu']['model']}: "
             f"{', '.join(results['environment']['cpu']['instruction_sets'])}"
             + (f" (torch limited to {limit})"
                if (limit := results["environment"]["cpu"]["limited_to"]) else ""),
             row.format("run", "threads", "p50 ms", "p95 ms", "questions/s")]
    for name, runs in (("one process", results["runs"]),
                       ("beside klausa ingest", results["beside_ingest"])):
        for r in runs:
            lines.append(row.format(name, r["threads"], r["p50_ms"], r["p95_ms"],
                                    r["throughput_qps"]))
    single = next((r for r in results["runs"] if r["threads"] == 1), None)
    if single:
        for r in results["runs"]:
            if r["threads"] > 1:
                lines.append(f"{r['threads']} threads: p95 = {r['p95_ms'] / single['p50_ms']:.1f}"
                             f"× the single asker's p50 (target ≤ {r['threads']}×), throughput "
                             f"{r['throughput_qps'] / single['throughput_qps']:.2f}× (target ≥ 1)")
    lines.append(f"memory: RSS {results['memory']['rss_mb']} MB, "
                 f"peak {results['memory']['peak_rss_mb']} MB")
    lines.append(f"load average: start {results['environment']['loadavg_at_start']}, "
                 f"end {results['environment']['loadavg_at_end']}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,4,8")
    parser.add_argument("--questions", type=int, default=96)
    parser.add_argument("--out", type=Path, default=REPO / "bench/results/concurrency.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    results = run([int(t) for t in args.threads.split(",")], args.questions)
    write_results(args.out, results)
    print(table(results))


if __name__ == "__main__":
    main()
