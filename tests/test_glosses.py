"""English glosses of Indonesian clauses: written by the chat model, checked, kept beside the
policy, embedded as a second vector of the clause, and folded back into one clause on search."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from ingest.pipeline import Document, chunk_rows, discover, index_is_current, ingest, parse_document
from klausa import glosses
from klausa.assistant import Assistant
from klausa.catalog import Catalog
from klausa.cli import cli
from klausa.glosses import (
    GLOSS_SUFFIX,
    MAX_GLOSS_BYTES,
    GlossRejected,
    clean_gloss,
    gloss_key,
    gloss_path,
    load_glosses,
    prompt_digest,
    sources_to_gloss,
    translated_parts,
    write_glosses,
)
from klausa.prompts import phrases
from klausa.stores import open_store
from klausa.text import detect_language
from klausa.types import PolicyInfo
from tests.conftest import CORPUS, MODELS, make_settings

POLICY = (
    "Kebijakan Privasi Contoh\n\n"
    "1. Pengungkapan kepada Pihak Berwenang\n"
    "Kami dapat memberikan Data Pribadi Pengguna kepada aparat penegak hukum apabila "
    "diwajibkan oleh peraturan perundang-undangan.\n\n"
    "2. Penyimpanan Data\n"
    "Data Pribadi Pengguna disimpan selama akun Pengguna masih aktif.\n"
)
# Hand-written translations for the scripted translator (the plumbing tests' chat model).
ENGLISH = {
    "Pengungkapan kepada Pihak Berwenang": "Disclosure to the Authorities",
    "Penyimpanan Data": "Data Storage",
    "Kami dapat memberikan Data Pribadi Pengguna kepada aparat penegak hukum apabila "
    "diwajibkan oleh peraturan perundang-undangan.":
        "We may hand Users' Personal Data over to the police when the law requires it.",
    "Data Pribadi Pengguna disimpan selama akun Pengguna masih aktif.":
        "Users' Personal Data is stored for as long as the User's account is active.",
}


def scripted(system: str, text: str) -> str:
    assert "English" in system
    return "Here is the English translation:\n\n" + ENGLISH[text]


def write_policy(folder: Path, text: str = POLICY) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "contoh.id.txt"
    path.write_text(text, "utf-8")
    return path


def chunks_of(path: Path):  # type: ignore[no-untyped-def]
    info = PolicyInfo(id="contoh", title="Contoh", company="Contoh", language="id",
                      source=path.name)
    return parse_document(Document(info, path)).chunks


def test_a_translation_is_kept_without_its_preamble_and_bad_ones_are_named() -> None:
    source = "Data Pribadi Pengguna disimpan selama akun Pengguna masih aktif."
    english = "Users' Personal Data is stored for as long as the User's account is active."
    assert clean_gloss(source, f"Here's the translation into English:\n\n{english}", "en") == (
        english)
    for output, reason in [
        ("", "empty"),
        ("Here is the English translation of the given Indonesian text:\n", "preamble"),
        (source, "not in en"),
        ("Data is stored.", "length"),
        (f"{english}\n{english}", "repeated"),
        (f"{english}\n- Name\n- Email address", "lines the source does not have"),
    ]:
        with pytest.raises(GlossRejected, match=reason):
            clean_gloss(source, output, "en")


def test_glosses_are_written_once_resumed_after_a_failure_and_pruned(tmp_path: Path) -> None:
    path = write_policy(tmp_path)
    chunks = chunks_of(path)
    target = gloss_path(path)
    assert target.name == "contoh.id.glosses.jsonl"
    wanted = sources_to_gloss(chunks)
    assert {text for text, _ in wanted} == set(ENGLISH)

    calls: list[str] = []

    def failing_on_the_third(system: str, text: str) -> str:
        calls.append(text)
        if len(calls) == 3:
            raise RuntimeError("model crashed")
        return scripted(system, text)

    with pytest.raises(RuntimeError):
        write_glosses(chunks, target, failing_on_the_third, model_name="scripted")
    assert len(load_glosses(target)) == 2  # the work done before the crash is on disk

    calls.clear()
    run = write_glosses(chunks, target, failing_on_the_third, model_name="scripted")
    assert (run.written, run.kept, len(calls)) == (2, 2, 2)
    entries = load_glosses(target)
    assert {e.source: e.text for e in entries.values()} == ENGLISH

    # Nothing left to do: the model is not called again.
    again = write_glosses(chunks, target, lambda s, t: pytest.fail(t), model_name="scripted")
    assert (again.written, again.kept) == (0, 4)

    # A clause that changed gets a new gloss; the old text's entry is dropped.
    edited = POLICY.replace("masih aktif", "aktif dan satu tahun sesudahnya")
    write_policy(tmp_path, edited)
    new_source = ("Data Pribadi Pengguna disimpan selama akun Pengguna aktif dan satu tahun "
                  "sesudahnya.")
    english_edited = {new_source: "Users' Personal Data is stored while the account is active "
                      "and for one year after that."}

    def edited_translator(system: str, text: str) -> str:
        return english_edited[text]

    write_glosses(chunks_of(path), target, edited_translator, model_name="scripted")
    sources = {e.source for e in load_glosses(target).values()}
    assert new_source in sources and len(sources) == 4
    assert "Data Pribadi Pengguna disimpan selama akun Pengguna masih aktif." not in sources


def test_a_changed_prompt_writes_every_gloss_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_policy(tmp_path)
    target = gloss_path(path)
    write_glosses(chunks_of(path), target, scripted, model_name="scripted")
    shipped = phrases("gloss", "en")["system"]
    assert {e.prompt for e in load_glosses(target).values()} == {prompt_digest(shipped)}

    stricter = shipped + " Keep every item, condition and exception."
    monkeypatch.setattr(glosses, "phrases", lambda role, language: {"system": stricter})
    seen: set[str] = set()

    def again(system: str, text: str) -> str:
        seen.add(system)
        return ENGLISH[text].upper()

    run = write_glosses(chunks_of(path), target, again, model_name="scripted")
    assert (run.written, run.replaced, run.kept) == (4, 4, 0)
    assert seen == {stricter}
    assert len(target.read_text("utf-8").splitlines()) == 4  # the superseded lines are gone
    assert all(e.text.isupper() and e.prompt == prompt_digest(stricter)
               for e in load_glosses(target).values())


def test_a_rejected_translation_is_recorded_and_not_asked_again(tmp_path: Path) -> None:
    path = write_policy(tmp_path)
    chunks = chunks_of(path)

    def untranslated(system: str, text: str) -> str:
        return text  # a model that echoes the Indonesian

    run = write_glosses(chunks, gloss_path(path), untranslated, model_name="echo")
    assert run.rejected >= 2
    rejected = [e for e in load_glosses(gloss_path(path)).values() if e.rejected]
    assert all(e.rejected == "not in en" and not e.text for e in rejected)
    again = write_glosses(chunks, gloss_path(path), lambda s, t: pytest.fail(t), model_name="x")
    assert again.written == again.rejected == 0
    assert all(not c.gloss for c in chunks_of(path))


def test_a_broken_gloss_file_loses_only_its_broken_lines(tmp_path: Path) -> None:
    path = write_policy(tmp_path)
    write_glosses(chunks_of(path), gloss_path(path), scripted, model_name="scripted")
    lines = gloss_path(path).read_text("utf-8").splitlines()
    gloss_path(path).write_text("\n".join(["{not json", *lines[1:], '{"key": 3}']), "utf-8")
    entries = load_glosses(gloss_path(path))
    assert len(entries) == len(lines) - 1
    # Binary junk and a file far too large are no glosses, and no crash.
    gloss_path(path).write_bytes(b"\xff\xfe\x00" * 100)
    assert load_glosses(gloss_path(path)) == {}
    with gloss_path(path).open("wb") as handle:
        handle.truncate(MAX_GLOSS_BYTES + 1)
    assert load_glosses(gloss_path(path)) == {}
    assert [c.gloss for c in chunks_of(path)] == ["", ""]


def test_an_english_question_finds_the_indonesian_clause_through_its_gloss(
    tmp_path: Path, embedder
) -> None:
    # Both similarities compared below must come from one path through the model: the
    # compiled transformer (built if need be) switched to before the first question, not
    # between the two (its vectors differ from the op-by-op ones by up to ~1e-3).
    embedder.wait_for_compiled(900)
    corpus = tmp_path / "corpus"
    path = write_policy(corpus)
    settings = make_settings(tmp_path / "data", corpus)
    ingest(settings, embedder=embedder)
    before = Assistant(settings, embedder=embedder).ask(
        "Will they give my data to the police?", language="en", generate=False)

    write_glosses(chunks_of(path), gloss_path(path), scripted, model_name="scripted")
    assert not index_is_current(settings)  # a new gloss file makes the index stale
    report = ingest(settings, embedder=embedder)
    assert index_is_current(settings)
    assert report.written == 2 and report.embedded == 2  # the two gloss rows, nothing else
    catalog = Catalog.load(settings.catalog_dir)
    rows = set(open_store(settings, embedder).digests())
    assert rows == {row for c in catalog.chunks.values() for row, *_ in chunk_rows(c, embedder)}
    assert sum(r.endswith(GLOSS_SUFFIX) for r in rows) == 2
    glossed = catalog.policies["contoh"].chunks[0]
    assert glossed.gloss_title == "Disclosure to the Authorities"

    answer = Assistant(settings, embedder=embedder).ask(
        "Will they give my data to the police?", language="en", generate=False)
    top = answer.hits[0]
    assert top.chunk.label == "1" and top.via_gloss
    assert all(GLOSS_SUFFIX not in h.chunk.id for h in answer.hits)
    assert len({h.chunk.id for h in answer.hits}) == len(answer.hits)
    old_top = next(h for h in before.hits if h.chunk.label == "1")
    # The gloss, not the clause, is what matched; the clause's own similarity is unchanged
    # (it is what refusals are judged on).
    assert top.gloss is not None and top.gloss > top.dense + 0.05
    assert top.dense == pytest.approx(old_top.dense, abs=1e-4) and old_top.gloss is None
    # What is cited is the clause itself, never the translation.
    assert answer.citations[0].text == glossed.text

    # An Indonesian question still matches the clause's own words.
    own = Assistant(settings, embedder=embedder).ask(
        "Apakah data saya diberikan ke aparat penegak hukum?", language="id", generate=False)
    assert own.hits[0].chunk.label == "1" and not own.hits[0].via_gloss

    # The clause is edited: its stale gloss is not searched any more.
    write_policy(corpus, POLICY.replace("aparat penegak hukum", "kepolisian"))
    ingest(settings, embedder=embedder)
    rows = set(open_store(settings, embedder).digests())
    assert sum(r.endswith(GLOSS_SUFFIX) for r in rows) == 1


def test_the_shipped_glosses_cover_every_indonesian_clause_of_the_corpus() -> None:
    """Editing an Indonesian policy without running `klausa gloss` fails here, not silently."""
    settings = make_settings(Path("/nonexistent"), CORPUS)
    documents, errors = discover(settings, [])
    assert not errors
    indonesian = [d for d in documents if d.info.language == "id"]
    assert indonesian
    for document in indonesian:
        entries = load_glosses(gloss_path(document.path))
        chunks = parse_document(document).chunks
        prompt = prompt_digest(phrases("gloss", "en")["system"])
        missing = [c.label for c in chunks if any(
            (entry := entries.get(gloss_key(part, "en"))) is None or entry.prompt != prompt
            for part in translated_parts(c))]
        assert not missing, f"run `klausa gloss`: no current gloss for {document.info.id} {missing}"
        glossed = [c for c in chunks if c.gloss]
        assert len(glossed) >= 0.8 * len(chunks)
        assert all(detect_language(c.gloss) == "en" for c in glossed)


def test_klausa_gloss_translates_with_the_bundled_model(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    path = write_policy(corpus)
    (corpus / "other.en.txt").write_text("Privacy\n\n1. Data\nWe keep your data safe.\n")
    result = CliRunner().invoke(cli, ["--data-dir", str(tmp_path / "data"), "gloss",
                                      str(corpus)], env={"KLAUSA_MODELS_PATH": str(MODELS)})
    assert result.exit_code == 0, result.output
    assert not gloss_path(corpus / "other.en.txt").exists()  # English is not glossed
    entries = [json.loads(line) for line in gloss_path(path).read_text("utf-8").splitlines()]
    assert {e["source"] for e in entries} == set(ENGLISH)
    written = [e for e in entries if e["text"]]
    assert len(written) >= 3
    assert all(detect_language(e["text"]) == "en" for e in written)
    police = next(e["text"] for e in entries
                  if e["source"].startswith("Kami dapat memberikan"))
    assert any(word in police.lower() for word in ("law enforcement", "police", "authorities"))


def test_a_list_item_is_glossed_with_its_lead_in_translated_once(tmp_path: Path) -> None:
    policy = ("Kebijakan Privasi Contoh\n\n1. Data yang Dikumpulkan\n"
              "Data yang kami kumpulkan adalah sebagai berikut:\n"
              "  1. nama dan alamat email;\n  2. nomor telepon.\n")
    english = {"Data yang Dikumpulkan": "Data Collected",
               "Data yang kami kumpulkan adalah sebagai berikut:": "The data we collect is:",
               "nama dan alamat email;": "name and email address;",
               "nomor telepon.": "phone number."}
    path = write_policy(tmp_path, policy)
    items = [c for c in chunks_of(path) if c.context]
    assert len(items) == 2
    asked: list[str] = []

    def translate(system: str, text: str) -> str:
        asked.append(text)
        return english.get(text, text)

    write_glosses(chunks_of(path), gloss_path(path), translate, model_name="scripted")
    assert asked.count("Data yang kami kumpulkan adalah sebagai berikut:") == 1
    glossed = {c.text: c.gloss for c in chunks_of(path)}
    assert glossed["nomor telepon."] == "The data we collect is:\nphone number."
    assert all(c.gloss_title == "Data Collected" for c in chunks_of(path) if c.gloss)

    # Without a translation of its lead-in, an item has no gloss (half a sentence would mislead).
    entries = load_glosses(gloss_path(path))
    lead_in = gloss_key("Data yang kami kumpulkan adalah sebagai berikut:", "en")
    gloss_path(path).write_text("".join(e.model_dump_json() + "\n" for k, e in entries.items()
                                        if k != lead_in), "utf-8")
    assert not any(c.gloss for c in chunks_of(path) if c.context)


def test_klausa_gloss_with_an_endpoint_that_is_down_says_so_and_keeps_the_file(
    tmp_path: Path,
) -> None:
    from tests.conftest import free_port

    corpus = tmp_path / "corpus"
    path = write_policy(corpus)
    write_glosses(chunks_of(path)[:1], gloss_path(path), scripted, model_name="scripted")
    before = gloss_path(path).read_text("utf-8")
    result = CliRunner().invoke(cli, ["--data-dir", str(tmp_path / "data"), "gloss", "--llm",
                                      "openai", str(corpus)],
                                env={"KLAUSA_LLM_BASE_URL": f"http://127.0.0.1:{free_port()}/v1"})
    assert result.exit_code == 1
    assert "the chat model failed on contoh" in result.output
    assert "run `klausa gloss` again" in result.output
    assert "Traceback" not in result.output
    assert gloss_path(path).read_text("utf-8") == before  # nothing written is lost
