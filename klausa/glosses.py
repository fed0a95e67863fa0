"""English glosses of Indonesian clauses: machine translations written once by the chat model
(``klausa gloss``), kept beside the policy file, and embedded as a second vector of the same
clause so that an English question finds an Indonesian clause through words it shares.

Only Indonesian → English: the bundled Qwen writes English well and Indonesian poorly (its
Indonesian mixes in English words); Indonesian glosses of the four English seed policies took
24 minutes, doubled their vectors and did not help the realistic split (README, Evaluation).

A gloss is a search aid and is never shown to an asker: the clause cited and quoted is always
the original text. (A 1.5B model's translation can be wrong in ways no check here catches: it
rendered "diserahkan secara mandiri oleh Pengguna", handed over by the User themselves, as
"shared without the user's consent".)
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ValidationError
from tqdm import tqdm

from klausa.files import write_atomically
from klausa.prompts import phrases
from klausa.text import detect_language, words
from klausa.types import Chunk, Language

log = logging.getLogger(__name__)

#: Vector-store id of a clause's gloss vector: the clause id with this suffix.
GLOSS_SUFFIX = "~gloss"
#: Which language each policy language is glossed into (none for English policies).
GLOSS_LANGUAGE: dict[Language, Language] = {"id": "en"}
#: A translation is about as long as its source; far shorter or longer is a model failure
#: (a cut-off answer, a repeated preamble).
LENGTH_RATIO = (0.4, 2.5)
#: A gloss file is about the size of its policy; one far larger is not ours to read.
MAX_GLOSS_BYTES = 20 * 2**20
_PREAMBLE = re.compile(
    r"^\s*(here is|here's|berikut)[^\n]*(translation|terjemahan)[^\n]*:?\s*\n+", re.IGNORECASE
)


class GlossEntry(BaseModel):
    """One line of a gloss file: the translation of one source text, or why there is none."""

    key: str
    language: Language
    source: str
    text: str = ""
    rejected: str = ""
    model: str = ""
    #: ``prompt_digest`` of the instruction it was written with: a changed prompt rewrites it.
    prompt: str = ""


def gloss_key(text: str, language: Language) -> str:
    return hashlib.sha1(f"{language}\0{text}".encode()).hexdigest()


def prompt_digest(system: str) -> str:
    return hashlib.sha1(system.encode()).hexdigest()[:12]


def gloss_path(source: Path) -> Path:
    """``corpus/lacimart.id.txt`` → ``corpus/lacimart.id.glosses.jsonl``."""
    return source.with_name(f"{source.stem}.glosses.jsonl")


def body_parts(chunk: Chunk) -> list[str]:
    """A clause's list lead-in (when it has one) and its words."""
    return [part for part in (chunk.context, chunk.text) if part]


def clause_body(chunk: Chunk) -> str:
    """What is embedded of a clause: its list lead-in and its words."""
    return "\n".join(body_parts(chunk))


def translated_parts(chunk: Chunk) -> list[str]:
    """What is translated of a clause, each on its own: its section titles, its list lead-in
    and its words. A lead-in shared by seven list items is translated once, so the siblings
    read alike (measured on the dev splits against translating lead-in and item together:
    gold hit@1 0.943 vs 0.932, realistic 0.875 vs 0.875, in 189 s instead of 181 s)."""
    return [*chunk.title_path, *body_parts(chunk)]


def load_glosses(path: Path) -> dict[str, GlossEntry]:
    """The entries of a gloss file by key; a broken line is skipped with a warning (the clause
    is then searched by its own words only)."""
    entries: dict[str, GlossEntry] = {}
    try:
        if path.stat().st_size > MAX_GLOSS_BYTES:
            log.warning("%s is over %d MB; no glosses used", path, MAX_GLOSS_BYTES // 2**20)
            return entries
        lines = path.read_text("utf-8").splitlines()
    except FileNotFoundError:
        return entries
    except (OSError, UnicodeDecodeError) as error:
        log.warning("%s unreadable (%s); no glosses used", path, error)
        return entries
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            entry = GlossEntry.model_validate_json(line)
        except ValidationError:
            log.warning("%s line %d is not a gloss entry; skipped", path, number)
            continue
        entries[entry.key] = entry
    return entries


def attach_glosses(chunks: Sequence[Chunk], glosses: dict[str, GlossEntry]) -> list[Chunk]:
    """The chunks with their gloss, where the file has one for the current text (an edited
    clause keeps no stale translation), titled by the glossed section titles (a title
    without a gloss stays as it is)."""
    def translation(text: str, language: Language) -> str:
        entry = glosses.get(gloss_key(text, language))
        return entry.text if entry else ""

    attached: list[Chunk] = []
    for chunk in chunks:
        target = GLOSS_LANGUAGE.get(chunk.language)
        body = [translation(part, target) for part in body_parts(chunk)] if target else []
        if target is None or not all(body):
            attached.append(chunk)
            continue
        titles = [translation(title, target) or title for title in chunk.title_path]
        attached.append(chunk.model_copy(update={
            "gloss": "\n".join(body), "gloss_title": " › ".join(titles)}))
    return attached


class GlossRejected(ValueError):
    """The model's output is not a usable translation; the message says why."""


def clean_gloss(source: str, output: str, language: Language) -> str:
    """The model's translation without its preamble, or ``GlossRejected``."""
    text = _PREAMBLE.sub("", output.strip()).strip().strip('"').strip()
    if not text:
        raise GlossRejected("empty output")
    if _PREAMBLE.match(text + "\n"):
        raise GlossRejected("only a preamble, no translation")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) != len(set(lines)):
        raise GlossRejected("a line repeated")
    # A translation keeps the source's lines; a list the source does not have is made up
    # (seen: a lead-in "…as follows:" "translated" into a list of data types).
    if len(lines) > len([line for line in source.splitlines() if line.strip()]) + 1:
        raise GlossRejected("lines the source does not have")
    ratio = len(words(text)) / max(1, len(words(source)))
    if not LENGTH_RATIO[0] <= ratio <= LENGTH_RATIO[1]:
        raise GlossRejected(f"{ratio:.1f}× the source's length")
    if len(words(text)) >= 4 and detect_language(text) != language:
        raise GlossRejected(f"not in {language}")
    return text


#: Translates one text into a language with the given system prompt; returns the raw output.
Translate = Callable[[str, str], str]


@dataclass
class GlossRun:
    written: int = 0
    rejected: int = 0
    kept: int = 0
    #: Of those written or rejected: texts whose earlier gloss came from another prompt.
    replaced: int = 0


def sources_to_gloss(chunks: Iterable[Chunk]) -> list[tuple[str, Language]]:
    """Every distinct text of these chunks that gets a gloss (``translated_parts`` of the
    clauses in a language of ``GLOSS_LANGUAGE``), in document order."""
    wanted: dict[tuple[str, Language], None] = {}
    for chunk in chunks:
        target = GLOSS_LANGUAGE.get(chunk.language)
        if target is None:
            continue
        for text in translated_parts(chunk):
            wanted[(text, target)] = None
    return list(wanted)


def write_glosses(
    chunks: Sequence[Chunk],
    path: Path,
    translate: Translate,
    *,
    model_name: str,
    progress: bool = False,
) -> GlossRun:
    """Translate what ``path`` lacks, appending a line per text as soon as it is written, so
    an interrupted run keeps its work and the next one goes on from there. Entries of texts
    no longer in the policy are dropped when the run ends."""
    existing = load_glosses(path)
    wanted = sources_to_gloss(chunks)
    systems = {language: phrases("gloss", language)["system"] for _, language in wanted}
    digests = {language: prompt_digest(system) for language, system in systems.items()}
    keys = {gloss_key(text, language) for text, language in wanted}

    def current(text: str, language: Language) -> bool:
        entry = existing.get(gloss_key(text, language))
        return entry is not None and entry.prompt == digests[language]

    todo = [(t, lang) for t, lang in wanted if not current(t, lang)]
    run = GlossRun(kept=len(wanted) - len(todo),
                   replaced=sum(1 for t, lang in todo if gloss_key(t, lang) in existing))
    path.parent.mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=len(todo), desc=path.name, unit="text", disable=not progress)
    with path.open("a", encoding="utf-8") as handle:
        for text, language in todo:
            entry = GlossEntry(key=gloss_key(text, language), language=language, source=text,
                               model=model_name, prompt=digests[language])
            try:
                entry.text = clean_gloss(text, translate(systems[language], text), language)
                run.written += 1
            except GlossRejected as error:
                entry.rejected = str(error)
                run.rejected += 1
                log.warning("no gloss for %r: %s", text[:60], error)
            handle.write(entry.model_dump_json() + "\n")
            handle.flush()
            existing[entry.key] = entry
            bar.update()
    bar.close()
    # Later lines win when the file is read; rewrite it without the superseded and stale ones.
    remaining = [existing[key] for key in existing if key in keys]
    if len(remaining) != len(existing) or run.replaced:
        write_atomically(path, "".join(e.model_dump_json() + "\n" for e in remaining))
    return run


def chat_translator(model) -> Translate:  # type: ignore[no-untyped-def]
    """A ``Translate`` over a LangChain chat model (the one ``KLAUSA_LLM`` names)."""
    from langchain_core.messages import HumanMessage, SystemMessage

    def translate(system: str, text: str) -> str:
        reply = model.invoke([SystemMessage(system), HumanMessage(text)])
        return reply.content if isinstance(reply.content, str) else json.dumps(reply.content)

    return translate
