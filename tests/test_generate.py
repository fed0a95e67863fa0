"""Generative answers: verified quotes, labels and yes/no, with a fallback to the extractive
answer. Scripted chat models (LangChain's fakes) drive the plumbing through the real model and
index; one test runs the bundled local model end to end."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage

from klausa.assistant import Assistant
from klausa.chat_models import ChatModelError, load_chat_model
from klausa.evaluation import load_generations, replay_verifier
from klausa.generate import (
    MIN_SUPPORTED_SHARE,
    Draft,
    Source,
    find_quote,
    negated,
    parse,
    verify,
)
from klausa.models.qwen import ensure_local_gguf
from klausa.settings import Settings
from tests.conftest import MODELS, REPO, free_port, wait_for_http

SELLS = "Does Jubelio sell my personal data?"
SELLS_ID = "Apakah Jubelio menjual data pribadi saya?"
NOT_SELL = "We will not sell or rent your Personal Data."


def scripted(*replies: str) -> GenericFakeChatModel:
    """A chat model that streams the given replies, one per question, word by word."""
    return GenericFakeChatModel(messages=iter([AIMessage(content=r) for r in replies]))


def generated(seed_settings: Settings, embedder, reply: str, question: str = SELLS,
              **ask: object):
    assistant = Assistant(seed_settings, embedder=embedder, chat_model=scripted(reply))
    streamed: list[str] = []
    answer = assistant.ask(question, on_text=streamed.append, **ask)  # type: ignore[arg-type]
    return answer, "".join(streamed)


def test_a_verified_generation_is_the_answer(seed_settings, embedder):
    reply = f'QUOTE [1]: "{NOT_SELL}"\nANSWER: No. Jubelio will not sell or rent your data [1].'
    answer, streamed = generated(seed_settings, embedder, reply)
    generation = answer.trace.generation
    assert generation is not None
    assert generation.passed, generation.problems
    assert generation.supported_share == 1.0  # every word of the answer is in the quote
    assert answer.answer.startswith("No. Jubelio will not sell or rent your data (§DISCLOSURE")
    assert NOT_SELL in answer.answer  # the quote follows the sentence, as a blockquote
    # The citation card highlights exactly the words the model quoted.
    (citation,) = answer.citations
    assert citation.policy == "jubelio"
    assert citation.quote == NOT_SELL
    assert citation.text[citation.quote_start : citation.quote_end] == NOT_SELL
    # The asker saw the answer part stream in, not the quote-first scaffolding.
    assert "No. Jubelio will not sell" in streamed
    assert "QUOTE" not in streamed
    assert answer.timings_ms["generate"] > 0


def test_indonesian_question_gets_indonesian_generation(seed_settings, embedder):
    reply = f'KUTIPAN [1]: "{NOT_SELL}"\nJAWABAN: Tidak. Jubelio tidak akan menjual atau ' \
            "menyewakan data pribadi Anda [1]."
    answer, _ = generated(seed_settings, embedder, reply, SELLS_ID)
    generation = answer.trace.generation
    assert generation is not None and generation.passed, generation
    assert answer.language == "id"
    assert answer.answer.startswith("Tidak. Jubelio tidak akan menjual")
    assert "Kutipan dari teks bahasa Inggris" in answer.answer


@pytest.mark.parametrize(
    ("reply", "problem"),
    [
        # A quote the policy never says.
        ('QUOTE [1]: "We sell your personal data to advertisers."\n'
         "ANSWER: Yes, Jubelio sells it [1].", "quote not in the clauses"),
        # A label that was not retrieved.
        (f'QUOTE [1]: "{NOT_SELL}"\nANSWER: No, see [§Z.9].', "foreign label"),
        (f'QUOTE [7]: "{NOT_SELL}"\nANSWER: No, it does not [7].', "foreign label"),
        # "will not sell" → "Yes, it sells": the failure seen with the bundled model.
        (f'QUOTE [1]: "{NOT_SELL}"\nANSWER: Yes, Jubelio sells your personal data [1].',
         "negation"),
        # A "No" that the quoted words do not deny.
        ('QUOTE [2]: "You may provide us with Personal Data related to other individuals"\n'
         "ANSWER: No, you may not provide Personal Data related to other individuals [2].",
         "negation"),
        # Not in the asker's language.
        (f'QUOTE [1]: "{NOT_SELL}"\nANSWER: Tidak, Jubelio tidak menjual data pribadi Anda [1].',
         "language"),
        # Claims the quoted words do not carry.
        (f'QUOTE [1]: "{NOT_SELL}"\nANSWER: No. Jubelio deletes your account after thirty days '
         "and emails you a receipt [1].", "unsupported"),
        # No quote at all.
        ("ANSWER: No, they promise not to.", "format: no quote"),
    ],
)
def test_a_bad_generation_falls_back_to_the_extractive_answer(
    seed_settings, embedder, assistant, reply, problem
):
    answer, _ = generated(seed_settings, embedder, reply)
    extractive = assistant.ask(SELLS)
    generation = answer.trace.generation
    assert generation is not None
    assert not generation.passed
    assert any(p.startswith(problem) for p in generation.problems), generation.problems
    assert generation.raw == reply
    if problem == "unsupported":
        assert generation.supported_share < MIN_SUPPORTED_SHARE
    # The asker gets exactly what the extractive mode says, with its citation.
    assert answer.answer == extractive.answer
    assert [c.label for c in answer.citations] == [c.label for c in extractive.citations]


def test_a_refusal_is_never_generated(seed_settings, embedder):
    model = scripted("ANSWER: Yes, refunds take 3 days.")
    assistant = Assistant(seed_settings, embedder=embedder, chat_model=model)
    answer = assistant.ask("What is the refund policy for a broken laptop at Lacimart?")
    assert answer.refused
    assert answer.trace.generation is None
    assert "3 days" not in answer.answer


def test_a_failing_chat_model_keeps_the_extractive_answer(seed_settings, embedder, assistant):
    class Down(GenericFakeChatModel):
        def _stream(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            raise ConnectionError("connection refused")

    answer = Assistant(seed_settings, embedder=embedder,
                       chat_model=Down(messages=iter([]))).ask(SELLS)
    assert answer.answer == assistant.ask(SELLS).answer
    assert answer.trace.generation.problems == [
        "error: ConnectionError: connection refused"
    ]


def test_a_model_that_cannot_load_says_why_and_answers_anyway(seed_settings, embedder):
    settings = seed_settings.model_copy(update={"llm": "local",
                                                "llm_model": "/nonexistent/model.gguf"})
    with pytest.raises(ChatModelError, match="no such GGUF file"):
        load_chat_model(settings)
    answer = Assistant(settings, embedder=embedder).ask(SELLS)
    assert not answer.refused and answer.citations[0].policy == "jubelio"
    assert answer.trace.generation.problems[0].startswith("unavailable:")


def test_the_verifier_on_hand_judged_replies_of_the_bundled_model(assistant):
    """87 replies of the bundled model to dev questions, each judged by hand (faithful to the
    quoted clause or not), verified again against today's retrieval: wrong answers let
    through and right ones thrown away stay few. A change to the checks, the lexicon or the
    retrieval that lets more bad answers through fails here, without running a model."""
    items = load_generations(REPO / "tests/qa/generations.dev.jsonl")
    figures = replay_verifier(assistant, items)
    assert figures.replies == 87 and figures.faithful == 34
    assert figures.precision is not None and figures.precision >= 0.90, figures
    # The replies were written over e5-small's retrieval; two faithful ones (a-029, a-097)
    # quote a clause that EmbeddingGemma's retrieval no longer gives the model among its
    # three sources, and the verifier rightly rejects a quote of a clause it was not given
    # (27 of 34 accepted, was 28 with e5).
    assert figures.recall is not None and figures.recall >= 0.79, figures
    # The worked example copied as the answer is never accepted.
    copied = [i.id for i in items if "email address is not shared with advertisers" in i.raw
              or "alamat email Anda tidak dibagikan kepada pengiklan" in i.raw]
    assert len(copied) >= 9
    assert not set(copied) & set(figures.accepted_unfaithful)


def test_quotes_match_across_whitespace_and_typography_but_not_other_words(assistant):
    hit = assistant.ask(SELLS).hits[0]
    source = Source(1, hit.chunk, "Jubelio Privacy Notice")
    assert find_quote("we   will not\nsell or rent", [source], None)
    assert find_quote("We will … rent your Personal Data", [source], None)
    assert not find_quote("We will sell or rent", [source], None)
    assert not find_quote("rent your Personal Data … We will not sell", [source], None)


def test_parse_reads_either_languages_tags():
    draft = parse('KUTIPAN [2]: “Kami tidak menjual data”\nANSWER: No [2].')
    assert draft.quotes == [("2", "Kami tidak menjual data")]
    assert draft.answer == "No [2]."
    assert draft.references == ["2", "2"]
    assert not verify(Draft(), [], "x", "en").passed


def test_negation_is_read_in_both_languages_but_not_in_idioms():
    assert negated("We will not sell or rent your Personal Data.")
    assert negated("Cookie data is treated as non-personal information.")
    assert negated("We won't sell it") and negated("Kami tidak akan menjual data Anda")
    # "including but not limited to" lists what *is* shared: a "Yes" may rest on it.
    assert not negated("shared with partners, including but not limited to couriers")
    assert not negated("termasuk namun tidak terbatas pada mitra pengiriman")


def test_the_bundled_local_model_answers_with_a_verified_quote(seed_settings, embedder):
    settings = seed_settings.model_copy(update={"llm": "local", "models_path": MODELS})
    assistant = Assistant(settings, embedder=embedder)
    streamed: list[str] = []
    answer = assistant.ask(SELLS, on_text=streamed.append)
    generation = answer.trace.generation
    assert generation is not None
    assert generation.provider == "local"
    assert generation.passed, (generation.problems, generation.raw)
    assert answer.citations[0].policy == "jubelio"
    assert answer.citations[0].quote in answer.citations[0].text
    assert answer.answer.lower().startswith("no")
    assert streamed


@pytest.fixture(scope="module")
def llama_server() -> Iterator[str]:
    """llama.cpp's OpenAI-compatible server with the bundled model, on a free port."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(ensure_local_gguf(MODELS)),
         "--model_alias", "qwen-local", "--host", "127.0.0.1", "--port", str(port),
         "--n_ctx", "4096", "--n_threads", "2"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        wait_for_http(f"{url}/models", process, 180, "llama.cpp server")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_openai_compatible_endpoint_answers_through_the_same_checks(seed_settings, embedder,
                                                                     llama_server):
    settings = seed_settings.model_copy(update={
        "llm": "openai", "llm_base_url": llama_server, "llm_model": "qwen-local"})
    answer = Assistant(settings, embedder=embedder).ask(SELLS)
    generation = answer.trace.generation
    assert generation is not None
    assert generation.provider == "openai"
    assert generation.passed, (generation.problems, generation.raw)
    assert answer.answer.lower().startswith("no")
    assert answer.citations[0].policy == "jubelio"


def test_an_endpoint_that_is_down_keeps_the_extractive_answer(seed_settings, embedder,
                                                             assistant):
    settings = seed_settings.model_copy(update={
        "llm": "openai", "llm_base_url": f"http://127.0.0.1:{free_port()}/v1"})
    answer = Assistant(settings, embedder=embedder).ask(SELLS)
    assert answer.answer == assistant.ask(SELLS).answer
    (problem,) = answer.trace.generation.problems
    assert problem.startswith("error: ") and "Connection" in problem


def test_ollama_mode_speaks_ollamas_chat_api(seed_settings, embedder):
    """No Ollama server installs here (not on PyPI or Debian): a stub speaking its /api/chat
    wire format checks the wiring — model name, the clauses in the prompt, streaming."""
    reply = f'QUOTE [1]: "{NOT_SELL}"\nANSWER: No. Jubelio will not sell or rent it [1].'
    requests: list[dict] = []

    class OllamaStub(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            requests.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-ndjson")
            self.end_headers()
            head = {"model": "qwen2.5:3b", "created_at": "2026-11-22T00:00:00Z"}
            lines = [{**head, "done": False, "message": {"role": "assistant", "content": w + " "}}
                     for w in reply.split(" ")]
            lines.append({**head, "done": True, "done_reason": "stop", "eval_count": 1,
                          "prompt_eval_count": 1, "message": {"role": "assistant", "content": ""}})
            self.wfile.write(b"".join(json.dumps(line).encode() + b"\n" for line in lines))

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), OllamaStub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        settings = seed_settings.model_copy(update={
            "llm": "ollama", "llm_model": "qwen2.5:3b",
            "llm_base_url": f"http://127.0.0.1:{server.server_address[1]}"})
        answer = Assistant(settings, embedder=embedder).ask(SELLS)
    finally:
        server.shutdown()
    generation = answer.trace.generation
    assert generation is not None and generation.passed, generation
    assert answer.answer.startswith("No. Jubelio will not sell or rent it")
    (request,) = requests
    assert request["model"] == "qwen2.5:3b"
    assert NOT_SELL in request["messages"][-1]["content"]
