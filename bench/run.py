"""Benchmark: ingest, cold start, warm `ask` latency vs. the tutorial RAG baseline, memory.

    .venv/bin/python bench/run.py [--quick] [--out bench/results/latest.json]

Prints one table; writes every figure as JSON. Not a test: figures depend on the machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from benchlib import cpu_kind, status_mb, write_results

from ingest.pipeline import ingest
from klausa.assistant import Assistant
from klausa.baseline import TutorialRAG
from klausa.cases import Record
from klausa.embeddings import load_embedder
from klausa.evaluation import AssistantAsker, Case, load_cases, report
from klausa.settings import Settings

log = logging.getLogger("bench")

REPO = Path(__file__).resolve().parent.parent
WARM_UP = 10
QUICK = 30
PARTS = ("embed", "dense", "lexical", "fuse", "compose", "read", "total")


def reset_peak() -> bool:
    """Reset VmHWM (Linux ≥ 4.0), so the next peak read covers only what follows."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def maxrss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # kB on Linux


def others_running() -> list[str]:
    """Command lines of other klausa processes: they share the CPU and skew the figures."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:
            continue
        if "klausa" in cmd:
            found.append(f"{entry.name}: {cmd[:120]}")
    return found


def latency(values: Sequence[float]) -> dict[str, float]:
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return {"n": len(values), "p50": round(float(p50), 1), "p95": round(float(p95), 1),
            "p99": round(float(p99), 1), "mean": round(float(np.mean(values)), 1)}


def timed_pass(ask: Callable[[Case], Record], cases: list[Case]) -> list[Record]:
    for case in cases[:WARM_UP]:
        ask(case)
    return [ask(case) for case in cases]


def run(quick: bool) -> dict:
    results: dict = {"environment": {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpus": os.cpu_count(), "python": platform.python_version(),
        "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "other_klausa_processes": others_running(), "quick": quick, "cpu": cpu_kind()}}
    cases = load_cases(REPO / "tests/qa/dev.jsonl") + load_cases(REPO / "tests/qa/test.jsonl")
    if quick:
        cases = cases[:: max(1, len(cases) // QUICK)][:QUICK]

    with tempfile.TemporaryDirectory(prefix="klausa-bench-") as tmp:
        settings = Settings(data_dir=Path(tmp), corpus_dir=REPO / "corpus",
                            models_path=REPO / "data/models")
        log.info("loading the embedding model")
        started = time.perf_counter()
        embedder = load_embedder(settings)
        _ = embedder.model  # type: ignore[attr-defined]  # loading is lazy: force it
        model_s = time.perf_counter() - started
        started = time.perf_counter()
        embedder.embed_query("warm up")
        results["model"] = {"load_s": round(model_s, 2),
                            "first_encode_ms": round((time.perf_counter() - started) * 1000, 1)}
        # Measured as a server runs once its compiled transformer is built (built now if
        # this machine has none yet; about a minute).
        started = time.perf_counter()
        results["model"]["compiled"] = embedder.wait_for_compiled(900)  # type: ignore[attr-defined]
        results["model"]["compiled_wait_s"] = round(time.perf_counter() - started, 1)
        results["model"]["path"] = {  # what this CPU made Klausa choose
            "questions": "bfloat16" if embedder.queries_in_bfloat16 else "float32",  # type: ignore[attr-defined]
            "passages": "bfloat16" if embedder.passages_in_bfloat16 else "float32",  # type: ignore[attr-defined]
            "torch_capability": torch.backends.cpu.get_cpu_capability()}

        log.info("ingesting %s into %s", settings.corpus_dir, tmp)
        rss_before, exact_peak = status_mb("VmRSS"), reset_peak()
        maxrss_before = maxrss_mb()
        started = time.perf_counter()
        outcome = ingest(settings, embedder=embedder)
        ingest_s = time.perf_counter() - started
        chunks = sum(p.chunks for p in outcome.policies)
        peak = status_mb("VmHWM") if exact_peak else maxrss_mb()
        results["ingest"] = {
            "policies": len(outcome.policies), "chunks": chunks, "errors": outcome.errors,
            "wall_s": round(ingest_s, 2), "chunks_per_s": round(chunks / ingest_s, 1),
            "rss_before_mb": rss_before, "peak_rss_mb": peak,
            "peak_delta_mb": round((peak or 0) - (rss_before or 0), 1),
            "ru_maxrss_delta_mb": round(maxrss_mb() - maxrss_before, 1),
            "peak_method": "VmHWM after clear_refs" if exact_peak else "ru_maxrss"}

        log.info("cold start: new Assistant, first question")
        try:  # forget the Chroma client ingest opened, so the Assistant really opens the store
            from chromadb.api.shared_system_client import SharedSystemClient

            SharedSystemClient.clear_system_cache()
        except ImportError:
            pass
        started = time.perf_counter()
        assistant = Assistant(settings, embedder=embedder)
        construct_ms = (time.perf_counter() - started) * 1000
        started = time.perf_counter()
        first = assistant.ask(cases[0].question, policy=cases[0].policy)
        results["cold"] = {"construct_ms": round(construct_ms, 1),
                           "first_ask_ms": round((time.perf_counter() - started) * 1000, 1),
                           "first_ask_parts_ms": first.timings_ms}

        log.info("warm ask: %d questions after %d warm-up", len(cases), WARM_UP)
        assistant.warm()  # as `klausa serve` does before it listens
        records = timed_pass(AssistantAsker(assistant, "klausa"), cases)
        parts = {p: round(float(np.mean([r.timings_ms.get(p, 0.0) for r in records])), 2)
                 for p in PARTS}
        quality = report(records)["overall"]
        results["klausa"] = {**latency([r.latency_ms for r in records]), "parts_mean_ms": parts,
                             "hit@1": quality["hit@1"], "mrr": quality["mrr"]}

        log.info("tutorial RAG baseline: building its index")
        started = time.perf_counter()
        tutorial = TutorialRAG(assistant.catalog, embedder)
        build_s = time.perf_counter() - started
        records = timed_pass(tutorial, cases)
        quality = report(records)["overall"]
        results["tutorial"] = {**latency([r.latency_ms for r in records]),
                               "build_s": round(build_s, 2),
                               "hit@1": quality["hit@1"], "mrr": quality["mrr"]}
        results["ratio"] = {q: round(results["klausa"][q] / results["tutorial"][q], 2)
                            for q in ("p50", "p95")}

        log.info("serving memory: a fresh process answering every question from this index")
        results["serving"] = serving_memory(Path(tmp), cases)

    results["memory"] = {"rss_mb": status_mb("VmRSS"), "peak_rss_mb": maxrss_mb()}
    results["environment"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return results


def serving_memory(data_dir: Path, cases: list[Case]) -> dict:
    """What a serving process holds: a fresh process (no ingest in it) loads the model and
    the index, answers every question, and reports its resident memory."""
    done = subprocess.run(
        [sys.executable, __file__, "--serving-memory", str(data_dir)],
        capture_output=True, text=True, timeout=1800, check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def serve_and_measure(data_dir: Path) -> None:
    settings = Settings(data_dir=data_dir, models_path=REPO / "data/models")
    assistant = Assistant(settings)
    assistant.warm()
    warmed = status_mb("VmRSS")
    cases = load_cases(REPO / "tests/qa/dev.jsonl") + load_cases(REPO / "tests/qa/test.jsonl")
    for case in cases:
        assistant.ask(case.question, policy=case.policy)
    print(json.dumps({"rss_after_warm_mb": warmed, "rss_after_questions_mb": status_mb("VmRSS"),
                      "peak_rss_mb": status_mb("VmHWM"), "questions": len(cases)}))


def table(r: dict) -> str:
    env, ing, cold, k, t = r["environment"], r["ingest"], r["cold"], r["klausa"], r["tutorial"]
    mem, cpu, path = r["memory"], env["cpu"], r["model"]["path"]
    row = "{:<34}{:>10}{:>10}{:>10}{:>10}"
    lines = [
        f"Klausa benchmark  {env['date']}  {env['cpus']} CPUs  Python {env['python']}  "
        f"torch {env['torch']} ({env['torch_threads']} threads)",
        f"load average          start {env['loadavg_at_start']}, end {env['loadavg_at_end']}",
        f"CPU                   {cpu['model']}: {', '.join(cpu['instruction_sets'])}"
        + (f" (torch limited to {cpu['limited_to']})" if cpu["limited_to"] else ""),
        f"path taken            questions {path['questions']}, passages {path['passages']}, "
        f"torch kernels {path['torch_capability']}, compiled transformer "
        f"{'in use' if r['model'].get('compiled') else 'not in use'}",
        f"model load            {r['model']['load_s']:.2f} s "
        f"(first encode {r['model']['first_encode_ms']:.0f} ms)",
        f"ingest                {ing['wall_s']:.2f} s  {ing['policies']} policies  "
        f"{ing['chunks']} chunks  {ing['chunks_per_s']:.1f} chunks/s  peak RSS "
        f"{ing['peak_rss_mb']} MB (+{ing['peak_delta_mb']} MB)",
        f"cold start            Assistant() {cold['construct_ms']:.1f} ms, first ask "
        f"{cold['first_ask_ms']:.0f} ms",
        "",
        row.format("warm ask latency (ms)", "p50", "p95", "p99", "mean"),
        row.format(f"klausa ({k['n']} q)", k["p50"], k["p95"], k["p99"], k["mean"]),
        row.format(f"tutorial RAG ({t['n']} q)", t["p50"], t["p95"], t["p99"], t["mean"]),
        row.format("ratio klausa/tutorial", r["ratio"]["p50"], r["ratio"]["p95"], "", ""),
        "klausa parts, mean ms: "
        + "  ".join(f"{p} {v:.2f}" for p, v in k["parts_mean_ms"].items()),
        f"hit@1 / MRR: klausa {k['hit@1']} / {k['mrr']}, tutorial {t['hit@1']} / {t['mrr']}",
        f"tutorial index build  {t['build_s']:.2f} s",
        f"memory at end         RSS {mem['rss_mb']} MB, peak {mem['peak_rss_mb']} MB "
        "(this process: model, ingest, two indexes)",
        f"serving process       RSS {r['serving']['rss_after_warm_mb']} MB warm, "
        f"{r['serving']['rss_after_questions_mb']} MB after {r['serving']['questions']} "
        f"questions, peak {r['serving']['peak_rss_mb']} MB",
    ]
    if env["other_klausa_processes"]:
        lines.append("WARNING: other klausa processes were running; figures may be disturbed:")
        lines += [f"  {p}" for p in env["other_klausa_processes"]]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"only {QUICK} questions")
    parser.add_argument("--out", type=Path, default=REPO / "bench/results/latest.json")
    parser.add_argument("--serving-memory", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serving_memory:
        serve_and_measure(args.serving_memory)
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    results = run(args.quick)
    write_results(args.out, results)
    log.info("wrote %s", args.out)
    print(table(results))


if __name__ == "__main__":
    main()
