"""The scripted Q&A test set: load cases, ask them through ``Assistant.ask``, score, report."""

from __future__ import annotations

import logging
import re
import statistics
import time
import tomllib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field
from tqdm import tqdm

from klausa.assistant import Assistant, Declined
from klausa.baseline import TutorialRAG
from klausa.cases import (
    Asker,
    Case,
    Record,
    chunk_matches,
    label_matches,
    load_cases,
    passage_matches,
    policy_language,
)
from klausa.catalog import Catalog
from klausa.embeddings import Embedder, load_embedder
from klausa.judge import support_value
from klausa.settings import Settings
from klausa.text import detect_language
from klausa.trace import SupportScore
from klausa.types import Answer, Language, Turn

log = logging.getLogger(__name__)

KS = (1, 3, 5, 10)
def answer_language(answer: Answer, catalog: Catalog) -> Language:
    """The language the answer is written in, judged on its own words: quotes, policy names
    and section labels and titles (which stay as the policy writes them) are left out."""
    own_words = re.sub(r"^>.*$", " ", answer.answer, flags=re.M)
    own_words = re.sub(r"§.*?(\)|$)", " ", own_words, flags=re.M)
    for policy in catalog.policies.values():
        for title in [policy.info.title, *(v.info.title for v in policy.versions if v.info.title)]:
            own_words = own_words.replace(title, " ")
    return detect_language(own_words)


# --- running --------------------------------------------------------------------------


class AssistantAsker(Asker):
    def __init__(self, assistant: Assistant, name: str) -> None:
        self.assistant = assistant
        self.name = name
        self._histories: dict[tuple[str | None, tuple[str, ...]], list[Turn]] = {}

    def turns(self, policy: str | None, history: Sequence[str]) -> list[Turn]:
        """Earlier questions of the conversation, asked for real, so follow-ups see true turns."""
        key = (policy, tuple(history))
        if key not in self._histories:
            turns: list[Turn] = []
            for question in history:
                # Earlier turns only set the context: no generation for them.
                turns.append(self.assistant.ask(question, policy=policy, history=turns,
                                                generate=False).as_turn())
            self._histories[key] = turns
        return self._histories[key]

    def __call__(self, case: Case) -> Record:
        turns = self.turns(case.policy, case.history)
        started = time.perf_counter()
        try:
            answer = self.assistant.ask(case.question, policy=case.policy, history=turns)
        except Declined as declined:
            # "hi", "What about Interindo?" with nothing before it: no clause is cited, as a
            # refusal; the reply is the answer.
            answer = Answer(question=case.question, language=declined.language,
                            answer=str(declined), refused=True, policy=case.policy)
        latency = (time.perf_counter() - started) * 1000
        catalog = self.assistant.catalog
        ranks = [h.rank for h in answer.hits if chunk_matches(h.chunk, case, catalog)]
        first = answer.citations[0] if answer.citations else None
        # Gold passages and quotes are the policy's own words: a clause quoted from a
        # translation is matched by its original.
        own = (first.original or first) if first else None
        cited_ok = own is not None and (
            passage_matches(own.text, case.gold_passages)
            if case.gold_passages
            else label_matches(own.policy, own.label, case, catalog)
        )
        quote_ok = None
        if case.quote and own:
            quote_ok = case.quote.lower() in " ".join(own.text.split()).lower()
        return Record(
            **answer.model_dump(exclude={"trace"}),
            trace=answer.trace,
            case=case,
            retriever=self.name,
            rank=min(ranks) if ranks else None,
            cited_ok=cited_ok,
            quote_ok=quote_ok,
            answer_language=answer_language(answer, catalog),
            latency_ms=round(latency, 2),
            policy_language=policy_language(case, catalog),
        )


def run(asker: Asker, cases: Sequence[Case], *, progress: bool = False) -> list[Record]:
    return [asker(case) for case in tqdm(cases, desc=asker.name, unit="q", disable=not progress)]


# --- scoring --------------------------------------------------------------------------


def _ratio(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 4) if denominator else None


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


def score(records: Iterable[Record]) -> dict:
    records = list(records)
    answerable = [r for r in records if r.case.answerable]
    unanswerable = [r for r in records if not r.case.answerable]
    refused = [r for r in records if r.refused]
    true_refusals = [r for r in refused if not r.case.answerable]
    figures: dict[str, float | int | None] = {
        "questions": len(records),
        "answerable": len(answerable),
    }
    for k in KS:
        figures[f"hit@{k}"] = _ratio(
            sum(1 for r in answerable if r.rank is not None and r.rank <= k), len(answerable)
        )
    figures["mrr"] = (
        round(statistics.fmean(1 / r.rank if r.rank else 0.0 for r in answerable), 4)
        if answerable
        else None
    )
    figures["citation_accuracy"] = _ratio(sum(1 for r in answerable if r.cited_ok),
                                          len(answerable))
    with_quote = [r for r in answerable if r.quote_ok is not None]
    figures["quote_accuracy"] = _ratio(sum(1 for r in with_quote if r.quote_ok), len(with_quote))
    figures["language_accuracy"] = _ratio(
        sum(1 for r in records if r.language == r.case.lang and r.answer_language == r.case.lang),
        len(records),
    )
    # Answers whose first quote is in the asker's language (a policy with a version in it).
    answered = [r for r in records if r.citations]
    figures["quote_language"] = _ratio(
        sum(1 for r in answered if r.citations[0].language == r.case.lang), len(answered))
    figures["refusal_precision"] = _ratio(len(true_refusals), len(refused))
    figures["refusal_recall"] = _ratio(len(true_refusals), len(unanswerable))
    figures["false_refusal_rate"] = _ratio(sum(1 for r in answerable if r.refused),
                                           len(answerable))
    # All-policies questions: are the cited policies the ones whose clauses answer?
    across = [r for r in answerable if r.case.policy is None
              and all(":" in s for s in r.case.sections) and r.case.sections]
    gold = [{s.partition(":")[0] for s in r.case.sections} for r in across]
    cited = [set() if r.refused else {c.policy for c in r.citations} for r in across]
    found = sum(len(g & c) for g, c in zip(gold, cited, strict=True))
    figures["policies_recall"] = _ratio(found, sum(len(g) for g in gold))
    figures["policies_precision"] = _ratio(found, sum(len(c) for c in cited))
    latencies = [r.latency_ms for r in records]
    figures["latency_p50_ms"] = _percentile(latencies, 0.50)
    figures["latency_p95_ms"] = _percentile(latencies, 0.95)
    generations = [r.trace.generation for r in records if r.trace.generation is not None]
    if generations:
        # Generative mode: how many generated answers passed verification, and how long the
        # model took (the latency above includes it).
        figures["generated"] = len(generations)
        figures["generation_passed"] = _ratio(sum(1 for g in generations if g.passed),
                                              len(generations))
        generate_ms = [g.ms for g in generations if g.ms is not None]
        figures["generate_p50_ms"] = _percentile(generate_ms, 0.50)
        figures["generate_p95_ms"] = _percentile(generate_ms, 0.95)
    return figures


def pair_of(record: Record) -> str:
    return f"{record.case.lang.upper()}→{record.policy_language.upper()}"


def report(records: list[Record]) -> dict:
    """Figures overall, per language pair (question → policy) and per policy."""
    groups: dict[str, dict[str, list[Record]]] = {
        "pair": defaultdict(list),
        "policy": defaultdict(list),
        "group": defaultdict(list),
    }
    for record in records:
        groups["pair"][pair_of(record)].append(record)
        groups["policy"][record.case.policy or "(all)"].append(record)
        if record.case.group:
            groups["group"][record.case.group].append(record)
    return {
        "overall": score(records),
        "by_pair": {k: score(v) for k, v in sorted(groups["pair"].items())},
        "by_policy": {k: score(v) for k, v in sorted(groups["policy"].items())},
        "by_group": {k: score(v) for k, v in sorted(groups["group"].items())},
    }


COLUMNS = [
    ("questions", "n"),
    ("hit@1", "hit@1"),
    ("hit@3", "hit@3"),
    ("hit@5", "hit@5"),
    ("hit@10", "hit@10"),
    ("mrr", "MRR"),
    ("citation_accuracy", "cite"),
    ("language_accuracy", "lang"),
    ("quote_language", "qlang"),
    ("refusal_precision", "refP"),
    ("refusal_recall", "refR"),
    ("false_refusal_rate", "falseR"),
    ("policies_recall", "polR"),
    ("policies_precision", "polP"),
    ("latency_p50_ms", "p50ms"),
    ("latency_p95_ms", "p95ms"),
]

GENERATION_COLUMNS = [
    ("generated", "gen"),
    ("generation_passed", "verif"),
    ("generate_p50_ms", "genp50"),
    ("generate_p95_ms", "genp95"),
]


def format_report(name: str, figures: dict) -> str:
    def cell(value: object) -> str:
        if value is None:
            return "–"
        if isinstance(value, float) and value <= 1.0:
            return f"{value:.3f}"
        return f"{value:g}" if isinstance(value, float) else str(value)

    columns = COLUMNS + (GENERATION_COLUMNS if "generated" in figures["overall"] else [])
    header = f"{name:<22}" + "".join(f"{title:>8}" for _, title in columns)
    lines = [header, "-" * len(header)]
    rows = [("overall", figures["overall"])]
    rows += [(k, v) for k, v in figures["by_pair"].items()]
    rows += [(k, v) for k, v in figures["by_policy"].items()]
    rows += [(f"group {k}", v) for k, v in figures.get("by_group", {}).items()]
    for title, values in rows:
        lines.append(f"{title:<22}" + "".join(f"{cell(values.get(key)):>8}" for key, _ in columns))
    return "\n".join(lines)


# --- thresholds -----------------------------------------------------------------------


def load_thresholds(path: Path) -> dict:
    return tomllib.loads(path.read_text("utf-8"))


def check_thresholds(figures: dict, thresholds: dict) -> list[str]:
    """Every figure below its minimum (or above its maximum), as readable lines."""
    failures: list[str] = []

    def check(scope: str, values: dict, limits: dict) -> None:
        for key, limit in limits.get("min", {}).items():
            value = values.get(key)
            if value is not None and value < limit:
                failures.append(f"{scope}: {key} {value:.3f} < {limit}")
        for key, limit in limits.get("max", {}).items():
            value = values.get(key)
            if value is not None and value > limit:
                failures.append(f"{scope}: {key} {value:.3f} > {limit}")

    check("overall", figures["overall"], thresholds.get("overall", {}))
    for pair, values in figures["by_pair"].items():
        check(pair, values, thresholds.get("each_pair", {}))
    for group, values in figures.get("by_group", {}).items():
        check(f"group {group}", values, thresholds.get("group", {}).get(group, {}))
    return failures


class EvaluationOutcome(BaseModel):
    figures: dict[str, dict]
    tables: dict[str, str]
    records: list[Record]
    failures: list[str]


def run_evaluation(
    settings: Settings,
    file: Path,
    retrievers: Sequence[str] = ("hybrid",),
    *,
    ingest_corpus: bool = False,
    limit: int | None = None,
    progress: bool = False,
    thresholds: Path | None = None,
    embedder: Embedder | None = None,
) -> EvaluationOutcome:
    """Evaluate ``file`` with each retriever; thresholds apply to the first one."""
    from ingest.pipeline import ingest

    cases = load_cases(file)[:limit]
    embedder = embedder or load_embedder(settings)
    if ingest_corpus:
        ingested = ingest(settings, embedder=embedder, progress=progress)
        for error in ingested.errors:
            log.warning("not ingested: %s", error)
    figures: dict[str, dict] = {}
    tables: dict[str, str] = {}
    records: list[Record] = []
    for name in retrievers:
        assistant = Assistant(
            settings, embedder=embedder, retriever=name if name != "tutorial" else None
        )
        if name == "tutorial":
            asker: Asker = TutorialRAG(assistant.catalog, embedder)
        else:
            asker = AssistantAsker(assistant, name)
        found = run(asker, cases, progress=progress)
        records += found
        figures[name] = report(found)
        tables[name] = format_report(name, figures[name])
    failures: list[str] = []
    if thresholds is not None and retrievers:
        failures = check_thresholds(figures[retrievers[0]], load_thresholds(thresholds))
    return EvaluationOutcome(figures=figures, tables=tables, records=records, failures=failures)


# --- calibrating the refusal threshold ------------------------------------------------


class RefusalCalibration(BaseModel):
    coverage_weight: float
    unknown_weight: float
    refusal_threshold: float
    refusal_recall: float
    false_refusal_rate: float


def calibrate_refusal(
    records: Sequence[Record], max_false_refusal: float = 0.02
) -> RefusalCalibration | None:
    """The support-score weights and threshold that refuse the most unanswerable questions
    while refusing at most ``max_false_refusal`` of the answerable ones (grid search over
    the three signals each record's trace carries, combined by the judge's own formula). How
    the defaults were chosen, on dev."""
    signals = [(r.case.answerable, r.trace.support) for r in records
               if r.trace.support is not None]
    answerable = [s for ok, s in signals if ok]
    unanswerable = [s for ok, s in signals if not ok]
    if not answerable or not unanswerable:
        return None
    best: RefusalCalibration | None = None
    for coverage_weight in (0.0, 0.02, 0.05, 0.1, 0.15, 0.2):
        for unknown_weight in (0.0, 0.05, 0.1, 0.15, 0.2, 0.3):
            def value(s: SupportScore, cw: float = coverage_weight,
                      uw: float = unknown_weight) -> float:
                return support_value(s.dense, s.coverage, s.unknown, cw, uw)

            for threshold in sorted({round(value(s), 4) + 1e-4 for _, s in signals}):
                false_rate = sum(value(s) < threshold for s in answerable) / len(answerable)
                if false_rate > max_false_refusal:
                    continue
                recall = sum(value(s) < threshold for s in unanswerable) / len(unanswerable)
                candidate = RefusalCalibration(
                    coverage_weight=coverage_weight, unknown_weight=unknown_weight,
                    refusal_threshold=round(threshold, 4), refusal_recall=round(recall, 4),
                    false_refusal_rate=round(false_rate, 4))
                if best is None or (recall, -false_rate) > (best.refusal_recall,
                                                            -best.false_refusal_rate):
                    best = candidate
    return best


# --- the verifier, replayed on labelled generations -------------------------------------


class LabelledGeneration(BaseModel):
    """A chat model's reply to a gold question, judged by hand: would an asker shown it be
    told only what the quoted clause says (``faithful``)?"""

    model_config = ConfigDict(extra="ignore")

    id: str
    policy: str | None = None
    question: str
    history: list[str] = Field(default_factory=list)
    raw: str
    faithful: bool
    note: str = ""


class VerifierFigures(BaseModel):
    replies: int
    faithful: int
    accepted: int
    #: Share of accepted replies that are faithful (what an asker is shown).
    precision: float | None
    #: Share of faithful replies accepted (the rest fall back to the extractive answer).
    recall: float | None
    accepted_unfaithful: list[str]


def load_generations(path: Path) -> list[LabelledGeneration]:
    return [LabelledGeneration.model_validate_json(line)
            for line in path.read_text("utf-8").splitlines() if line.strip()]


def replay_verifier(assistant: Assistant, items: Sequence[LabelledGeneration]
                    ) -> VerifierFigures:
    """Each recorded reply verified again, against the clauses the assistant would give the
    model for its question today: how often the verifier lets a wrong answer through, and how
    many right ones it throws away. No chat model runs."""
    from klausa.generate import choose_sources, parse, verify

    asker = AssistantAsker(assistant, "replay")
    accepted: list[LabelledGeneration] = []
    for item in items:
        answer = assistant.ask(item.question, policy=item.policy,
                               history=asker.turns(item.policy, item.history), generate=False)
        sources = choose_sources(answer, answer.hits, assistant.catalog,
                                 assistant.settings.llm_sources)
        if verify(parse(item.raw), sources, item.question, answer.language).passed:
            accepted.append(item)
    faithful = sum(i.faithful for i in items)
    right = sum(i.faithful for i in accepted)
    return VerifierFigures(
        replies=len(items), faithful=faithful, accepted=len(accepted),
        precision=_ratio(right, len(accepted)), recall=_ratio(right, faithful),
        accepted_unfaithful=[i.id for i in accepted if not i.faithful],
    )
