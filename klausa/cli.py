"""`klausa` command line: a thin shell over the library."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click

from klausa.settings import Settings

if TYPE_CHECKING:
    from klausa.staff import StaffDirectory
    from klausa.types import Language

EXIT_USAGE = 2


def fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


@click.group()
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    envvar="KLAUSA_DATA_DIR",
    help="Index and database folder (default ./data).",
)
@click.option("-v", "--verbose", count=True, help="Log more (-v info, -vv debug).")
@click.pass_context
def cli(ctx: click.Context, data_dir: Path | None, verbose: int) -> None:
    """Klausa: bilingual policy answers that cite the clause."""
    logging.basicConfig(
        level=[logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)],
        format="%(levelname)s %(name)s: %(message)s",
    )
    overrides = {"data_dir": data_dir} if data_dir else {}
    ctx.obj = Settings(**overrides)


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--prune/--no-prune",
    default=None,
    help="Remove indexed policies that are not among PATHS (default: only when "
    "ingesting the whole corpus).",
)
@click.option("--if-stale", is_flag=True, help="Do nothing when the index matches the corpus.")
@click.pass_obj
def ingest(settings: Settings, paths: tuple[Path, ...], prune: bool | None, if_stale: bool) -> None:
    """Index the corpus (default) or the given .txt/.md/.html/.pdf files and folders."""
    from ingest.pipeline import IngestBusyError, index_is_current
    from ingest.pipeline import ingest as run_ingest
    from klausa.catalog import ManifestError
    from klausa.embeddings import ModelLoadError

    if if_stale and not paths and index_is_current(settings):
        click.echo(f"index in {settings.data_dir} is up to date")
        return
    with contextlib.suppress(OSError):
        # Indexing is background work: a server answering questions on the same cores
        # keeps its latency (measured in bench/concurrency.py).
        os.nice(10)
    try:
        report = run_ingest(settings, paths, prune=prune, progress=sys.stderr.isatty())
    except (IngestBusyError, ManifestError, ModelLoadError) as error:
        fail(str(error))
    for error in report.errors:
        click.echo(f"error: {error}", err=True)
    header = (
        f"{'policy':<24}{'sections':>9}{'chunks':>8}{'added':>7}{'updated':>9}"
        f"{'removed':>9}{'unchanged':>11}"
    )
    click.echo(header)
    for p in report.policies:
        click.echo(
            f"{p.policy:<24}{p.sections:>9}{p.chunks:>8}{p.added:>7}{p.updated:>9}"
            f"{p.removed:>9}{p.unchanged:>11}"
        )
    if report.errors:
        sys.exit(1)


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--llm", type=click.Choice(["local", "openai", "ollama"]), default="local",
              show_default=True, help="The chat model that translates (KLAUSA_LLM_* settings).")
@click.pass_obj
def gloss(settings: Settings, paths: tuple[Path, ...], llm: str) -> None:
    """Write English glosses of the Indonesian policies (the corpus, or the given files) beside
    each file; `klausa ingest` then searches them too. Resumes where a run stopped."""
    from ingest.loaders import DocumentError
    from ingest.pipeline import discover, parse_document
    from klausa.catalog import ManifestError
    from klausa.chat_models import ChatModelError, load_chat_model
    from klausa.glosses import GLOSS_LANGUAGE, chat_translator, gloss_path, write_glosses

    try:
        documents, errors = discover(settings, paths)
    except ManifestError as error:
        fail(str(error))
    for error in errors:
        click.echo(f"error: {error}", err=True)
    wanted = [d for d in documents if d.info.language in GLOSS_LANGUAGE]
    if not wanted:
        fail("no Indonesian policy to gloss")
    # A clause of up to 900 characters needs more room than a short answer.
    llm_settings = settings.model_copy(update={
        "llm": llm, "llm_max_tokens": max(settings.llm_max_tokens, 600)})
    try:
        model = load_chat_model(llm_settings)
    except ChatModelError as error:
        fail(str(error))
    if settings.llm_model:
        name = Path(settings.llm_model).name if llm == "local" else settings.llm_model
    else:
        name = "bundled-qwen2.5-coder-1.5b" if llm == "local" else llm
    for document in wanted:
        try:
            policy = parse_document(document)
        except DocumentError as error:
            click.echo(f"error: {error}", err=True)
            continue
        path = gloss_path(document.path)
        try:
            run = write_glosses(policy.chunks, path, chat_translator(model), model_name=name,
                                progress=sys.stderr.isatty())
        except Exception as error:  # a model or endpoint that fails mid-run: keep what is done
            fail(f"the chat model failed on {policy.info.id} ({error}); the glosses written "
                 f"so far are kept in {path}: run `klausa gloss` again to go on")
        replaced = f" ({run.replaced} replacing glosses of an older prompt)" if run.replaced else ""
        click.echo(f"{path}: {run.written} written, {run.rejected} rejected{replaced}, "
                   f"{run.kept} kept")
    click.echo("run `klausa ingest` to index them")


@cli.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def policies(settings: Settings, as_json: bool) -> None:
    """List the indexed policies."""
    from klausa.catalog import Catalog

    catalog = Catalog.load(settings.catalog_dir)
    rows = [
        {
            "id": p.info.id,
            "title": p.info.title,
            "company": p.info.company,
            "language": p.info.language,
            "sections": len(p.sections),
            "chunks": len(p.chunks),
            "effective_date": p.info.effective_date,
            "prevailing_language": p.info.prevailing_language,
            "versions": [v.info.model_dump() for v in p.versions],
        }
        for p in catalog.policies.values()
    ]
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    if not rows:
        fail(f"no policies indexed in {settings.data_dir}; run `klausa ingest`")
    click.echo(f"{'id':<14}{'language':<10}{'sections':>9}{'chunks':>8}  title")
    for row in rows:
        # "en+id": the policy's own language, then its versions' (answers quote the asker's).
        spoken = "+".join([row["language"], *(v["language"] for v in row["versions"])])
        click.echo(
            f"{row['id']:<14}{spoken:<10}{row['sections']:>9}"
            f"{row['chunks']:>8}  {row['title']}"
        )


@cli.command()
@click.argument("policy")
@click.argument("label")
@click.option("--lang", type=click.Choice(["en", "id"]),
              help="From the policy's version in this language (default: its own text).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def show(settings: Settings, policy: str, label: str, lang: Language | None,
         as_json: bool) -> None:
    """Print one section (with its sub-sections), e.g. `klausa show webdeskers C.1.8`."""
    from klausa.catalog import Catalog
    from klausa.ui import section_source

    catalog = Catalog.load(settings.catalog_dir)
    if policy not in catalog.policies:
        close = catalog.closest_policies(policy)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        fail(f"unknown policy {policy!r}{hint}", EXIT_USAGE)
    found = catalog.find_label(policy, label)
    if found is None:
        close = catalog.closest_labels(policy, label)
        hint = f"; closest labels: {', '.join(close)}" if close else ""
        fail(f"{policy} has no section {label!r}{hint}", EXIT_USAGE)
    parsed = catalog.policies[policy]
    sections = parsed.subtree(found)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "policy": policy,
                    "policy_title": parsed.info.title,
                    "label": found,
                    "sections": [s.model_dump() for s in sections],
                },
                ensure_ascii=False,
                indent=2,
            )
        )
        return
    head = sections[0]
    if lang and lang != parsed.info.language and catalog.version(policy, lang) is None:
        fail(f"{policy} has no version in {lang} (its own text is in {parsed.info.language})",
             EXIT_USAGE)
    language = lang or parsed.info.language
    click.echo(f"{catalog.policy_title(policy, language)} §{head.label} — "
               f"{catalog.section_title(policy, head.label, language)}\n")
    # The section as written, sub-sections included.
    click.echo(section_source(parsed, head.label, language))


@cli.command()
@click.argument("question")
@click.option("--policy", help="Policy id; default: all policies.")
@click.option(
    "--lang", type=click.Choice(["en", "id"]), help="Answer language (default: the question's)."
)
@click.option("--retriever", type=click.Choice(["hybrid", "dense", "bm25"]))
@click.option("--llm", type=click.Choice(["none", "local", "openai", "ollama"]),
              help="Generative answers from this chat model (default: KLAUSA_LLM).")
@click.option("--json", "as_json", is_flag=True, help="Print the whole Answer as JSON.")
@click.pass_obj
def ask(
    settings: Settings,
    question: str,
    policy: str | None,
    lang: str | None,
    retriever: str | None,
    llm: str | None,
    as_json: bool,
) -> None:
    """Answer QUESTION, citing the section it comes from."""
    from klausa.assistant import Assistant, QuestionError, SmallTalk
    from klausa.catalog import IndexMissingError
    from klausa.compose import section_name
    from klausa.embeddings import ModelLoadError

    if llm:
        settings = settings.model_copy(update={"llm": llm})
    assistant = Assistant(settings, retriever=retriever)
    try:
        answer = assistant.ask(question, policy=policy, language=lang)  # type: ignore[arg-type]
    except SmallTalk as reply:
        click.echo(str(reply))
        return
    except QuestionError as error:
        fail(str(error), EXIT_USAGE)
    except (IndexMissingError, ModelLoadError) as error:
        fail(str(error))
    if as_json:
        click.echo(answer.model_dump_json(indent=2))
        return
    generation = answer.trace.generation
    if generation is not None and not generation.passed:
        click.echo("note: the generated answer was not used (" + "; ".join(
            generation.problems) + "); this is the extractive answer.", err=True)
    click.echo(answer.answer)
    if answer.citations:
        click.echo("")
        for citation in answer.citations:
            click.echo(f"[{citation.policy_title} {section_name(citation.label, citation.title)}]")


@cli.command(context_settings={"ignore_unknown_options": True})
@click.option("--port", type=int, default=8501, show_default=True)
@click.argument("streamlit_options", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def serve(settings: Settings, port: int, streamlit_options: tuple[str, ...]) -> None:
    """Start the web app: load the models and the index first, then serve, so the server
    reports healthy only when it can answer at once. Extra options go to `streamlit run`."""
    from streamlit.web import cli as streamlit_cli

    from klausa.catalog import IndexMissingError
    from klausa.embeddings import ModelLoadError
    from klausa.serving import warm_assistant

    os.environ["KLAUSA_DATA_DIR"] = str(settings.data_dir)  # the app reads its own Settings
    started = time.perf_counter()
    try:
        warm_assistant(settings)
        click.echo(f"models and index loaded in {time.perf_counter() - started:.1f} s", err=True)
    except (IndexMissingError, ModelLoadError) as error:
        # The page says so too; the library page can still add policies.
        click.echo(f"warning: {error}", err=True)
    app = Path(__file__).resolve().parent.parent / "app.py"
    # No file watcher: Streamlit would watch every imported module under the app's folder
    # (a venv inside the checkout: all of torch), which made the first page 1.4 s slower and
    # each question's embedding 3–6× slower while it ran. Pass `--server.fileWatcherType auto`
    # to get reloading on save back.
    sys.argv = ["streamlit", "run", str(app), "--server.port", str(port),
                "--server.fileWatcherType", "none", *streamlit_options]
    sys.exit(streamlit_cli.main())


@cli.command(name="eval")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--corpus",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Ingest this folder into a temporary index of its own and answer over it.",
)
@click.option(
    "--retriever",
    "retrievers",
    default="hybrid",
    show_default=True,
    help="Comma-separated: hybrid, dense, bm25, tutorial (compared in one run).",
)
@click.option(
    "--per-question",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write one JSON record per question (per retriever) to this file.",
)
@click.option(
    "--json",
    "json_out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the summary figures to this file.",
)
@click.option(
    "--thresholds",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Minimum figures (TOML); default: NAME.thresholds.toml (NAME: FILE's name up to its "
    "first dot) or thresholds.toml beside FILE, if any.",
)
@click.option("--llm", type=click.Choice(["none", "local", "openai", "ollama"]),
              help="Generative answers from this chat model (default: KLAUSA_LLM).")
@click.option("--limit", type=int, help="Only the first N questions.")
@click.option("--calibrate", is_flag=True,
              help="Also print the refusal weights and threshold this set supports best.")
@click.pass_obj
def evaluate(
    settings: Settings,
    file: Path,
    corpus: Path | None,
    retrievers: str,
    per_question: Path | None,
    json_out: Path | None,
    thresholds: Path | None,
    limit: int | None,
    llm: str | None,
    calibrate: bool,
) -> None:
    """Run a Q&A set through the assistant and report hit@k, citations, refusals, latency."""
    import tempfile

    from klausa.evaluation import run_evaluation

    names = [n.strip() for n in retrievers.split(",") if n.strip()]
    unknown = set(names) - {"hybrid", "dense", "bm25", "tutorial"}
    if unknown:
        fail(f"unknown retriever(s): {', '.join(sorted(unknown))}", EXIT_USAGE)
    # A split's own thresholds (realistic.test.jsonl → realistic.thresholds.toml), else the
    # folder's thresholds.toml.
    own = file.parent / f"{file.name.split('.')[0]}.thresholds.toml"
    thresholds = thresholds or (own if own.exists() else file.parent / "thresholds.toml")
    if llm:
        settings = settings.model_copy(update={"llm": llm})
    with tempfile.TemporaryDirectory(prefix="klausa-eval-") as scratch:
        if corpus is not None:
            settings = settings.model_copy(
                update={
                    "data_dir": Path(scratch),
                    "corpus_dir": corpus,
                    "models_path": settings.models_dir.resolve(),
                }
            )
        outcome = run_evaluation(
            settings,
            file,
            names,
            ingest_corpus=corpus is not None,
            limit=limit,
            progress=sys.stderr.isatty(),
            thresholds=thresholds if thresholds.exists() else None,
        )
    for text in outcome.tables.values():
        click.echo(f"\n{text}")
    if per_question:
        per_question.write_text(
            "".join(r.model_dump_json() + "\n" for r in outcome.records), "utf-8"
        )
    if json_out:
        json_out.write_text(json.dumps(outcome.figures, indent=2), "utf-8")
    if calibrate:
        from klausa.evaluation import calibrate_refusal

        first = [r for r in outcome.records if r.retriever == names[0]]
        found = calibrate_refusal(first)
        click.echo("\nrefusal calibration (≤ 2 % false refusals): " + (
            "needs answerable and unanswerable questions" if found is None else
            f"KLAUSA_COVERAGE_WEIGHT={found.coverage_weight} "
            f"KLAUSA_UNKNOWN_WEIGHT={found.unknown_weight} "
            f"KLAUSA_REFUSAL_THRESHOLD={found.refusal_threshold} → recall "
            f"{found.refusal_recall:.2f}, false refusals {found.false_refusal_rate:.3f}"))
    if outcome.failures:
        click.echo("\nbelow thresholds:", err=True)
        for line in outcome.failures:
            click.echo(f"  {line}", err=True)
        sys.exit(1)


@cli.group()
def users() -> None:
    """Staff accounts: reviewers (support desk) and admins (also the library and accounts)."""


def _staff(settings: Settings) -> StaffDirectory:
    from klausa.staff import StaffDirectory

    return StaffDirectory.from_settings(settings)


@contextlib.contextmanager
def _account_errors() -> Iterator[None]:
    """An unusable name, role or password: one line on stderr, exit 1."""
    from klausa.staff import AccountError

    try:
        yield
    except AccountError as error:
        fail(str(error))


def _new_password() -> str:
    # Prompted (never an argument: it would land in the shell history and `ps`), not echoed.
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


@users.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(["reviewer", "admin"]), required=True)
@click.pass_obj
def users_add(settings: Settings, name: str, role: str) -> None:
    """Add a staff account (the password is prompted twice)."""
    staff = _staff(settings)
    with _account_errors():
        member = staff.add(name, _new_password(), role)  # type: ignore[arg-type]
    click.echo(f"added {member.name} ({member.role})")


@users.command("list")
@click.pass_obj
def users_list(settings: Settings) -> None:
    """The staff accounts, their roles and last sign-in."""
    members = _staff(settings).members()
    for member in members:
        click.echo(f"{member.name:<24} {member.role:<9} last sign-in "
                   f"{member.last_sign_in or 'never'}")
    if not members:
        click.echo("no staff accounts (add one with `klausa users add NAME --role admin`)")


@users.command("passwd")
@click.argument("name")
@click.pass_obj
def users_passwd(settings: Settings, name: str) -> None:
    """Set a new password for an account (prompted twice)."""
    with _account_errors():
        _staff(settings).set_password(name, _new_password())
    click.echo(f"password of {name} changed")


@users.command("role")
@click.argument("name")
@click.argument("role", type=click.Choice(["reviewer", "admin"]))
@click.pass_obj
def users_role(settings: Settings, name: str, role: str) -> None:
    """Change an account's role."""
    with _account_errors():
        _staff(settings).set_role(name, role)  # type: ignore[arg-type]
    click.echo(f"{name} is now {role}")


@users.command("remove")
@click.argument("name")
@click.pass_obj
def users_remove(settings: Settings, name: str) -> None:
    """Remove an account (its reviews stay, with its name)."""
    with _account_errors():
        _staff(settings).remove(name)
    click.echo(f"removed {name}")


@cli.group()
def reader() -> None:
    """Klausa's reader model (training/reader/MODEL_CARD.md)."""


@reader.command("train")
@click.option("--epochs", type=float, default=2.0, show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where to write reader.safetensors and training.json (default: the "
                   "package's klausa/data/reader, replacing the shipped reader).")
@click.option("--seed", type=int, default=13, show_default=True)
@click.pass_obj
def reader_train(settings: Settings, epochs: float, out_dir: Path | None, seed: int) -> None:
    """Train the reader on training/reader/questions, calibrate it on the dev splits (the
    index must be current: `klausa ingest`). About 75 minutes on 2 cores with bfloat16."""
    from klausa.assistant import Assistant
    from klausa.reader import READER_DIR
    from klausa.reader_training import TrainingSettings, train

    settings = settings.model_copy(update={"reader": "off", "hits": 20})
    result = train(Assistant(settings), TrainingSettings(epochs=epochs, seed=seed),
                   out_dir or READER_DIR, progress=lambda line: click.echo(line, err=True))
    click.echo(json.dumps(result, indent=2))
    click.echo(f"pin it: WEIGHTS_SHA256 = \"{result['sha256']}\" (klausa/reader.py)", err=True)


@reader.command("measure")
@click.option("--data", "data_dir", type=click.Path(file_okay=False, exists=True, path_type=Path),
              required=True, help="The reader-data folder (IDK-MRC, SQuAD 2.0 dev EN/ID).")
@click.option("--limit", type=int, help="Only the first N pairs of each set.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the figures here.")
@click.pass_obj
def reader_measure(settings: Settings, data_dir: Path, limit: int | None,
                   json_path: Path | None) -> None:
    """The reader alone on public sets it was not trained on: AUC (answers vs not)."""
    from klausa.assistant import Assistant
    from klausa.reader_measure import measure

    assistant = Assistant(settings)
    reader = assistant.reader
    if reader is None:
        fail("no reader to measure (KLAUSA_READER=off, or its weights are missing: see the log "
             "with -v)")
    results = measure(reader, assistant.embedder, data_dir, limit)
    for name, figures in results.items():
        click.echo(f"{name:<55} pairs {figures['pairs']:>5}  AUC {figures['auc']:.3f}  "
                   f"accuracy at {reader.threshold:.3f}: {figures['accuracy_at_threshold']:.3f}")
    if json_path:
        json_path.write_text(json.dumps(results, indent=2) + "\n", "utf-8")


@cli.group()
def review() -> None:
    """The support desk's reviews."""


@review.command("export")
@click.option("--since", type=click.DateTime(["%Y-%m-%d"]),
              help="Only reviews given on or after this day (YYYY-MM-DD, UTC).")
@click.option("--verdict", "verdicts", multiple=True,
              type=click.Choice(["right", "wrong_clause", "should_refuse", "should_answer"]),
              help="Only these verdicts (repeatable).")
@click.option("--update", "update", type=click.Path(dir_okay=False, path_type=Path),
              help="Merge into this Q&A set in place: a question already in it is replaced, "
                   "not added twice.")
@click.pass_obj
def review_export(settings: Settings, since: object, verdicts: tuple[str, ...],
                  update: Path | None) -> None:
    """Reviewed answers as Q&A-set lines (what `klausa eval FILE` reads), on stdout."""
    from klausa.review import ReviewDesk, ReviewError, jsonl, update_case_file

    day = since.date() if since else None  # type: ignore[attr-defined]
    cases = ReviewDesk.from_settings(settings).cases(since=day, verdicts=verdicts)
    if update is None:
        click.echo(jsonl(cases), nl=False)
        return
    try:
        replaced, added = update_case_file(update, cases)
    except (ReviewError, OSError) as error:
        fail(str(error))
    click.echo(f"{update}: {replaced} replaced, {added} added", err=True)


def main() -> None:
    cli(prog_name="klausa")


if __name__ == "__main__":
    main()
