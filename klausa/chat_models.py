"""Chat-model providers for generative answers, by name: LangChain's integrations, loaded
lazily. This is the only module that knows which LangChain class serves which provider."""

from __future__ import annotations

import logging
import os
import time
import warnings
from pathlib import Path

from langchain_core.language_models import BaseChatModel

from klausa.models import ModelBuildError
from klausa.models.qwen import INSTALL_HINT, ensure_local_gguf
from klausa.settings import Settings

log = logging.getLogger(__name__)

LOCAL_CONTEXT_TOKENS = 4096


class ChatModelError(RuntimeError):
    """A chat model could not be set up; the message says what to do."""


def load_chat_model(settings: Settings) -> BaseChatModel:
    """The chat model ``settings.llm`` names. Deterministic (temperature 0): the same question
    gets the same answer, and verification failures can be reproduced."""
    provider = settings.llm
    try:
        if provider == "local":
            return _local(settings)
        if provider == "openai":
            from langchain_openai import ChatOpenAI

            key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else None
            return ChatOpenAI(
                model=settings.llm_model or "default",
                base_url=settings.llm_base_url,
                # Local OpenAI-compatible servers (vLLM, llama.cpp) accept any key.
                api_key=key or os.environ.get("OPENAI_API_KEY") or "none",
                temperature=0,
                max_completion_tokens=settings.llm_max_tokens,
                timeout=settings.llm_timeout_s,
                max_retries=1,
            )
        if provider == "ollama":
            from langchain_ollama import ChatOllama

            if not settings.llm_model:
                raise ChatModelError("KLAUSA_LLM=ollama needs KLAUSA_LLM_MODEL (e.g. qwen2.5:3b)")
            return ChatOllama(
                model=settings.llm_model,
                base_url=settings.llm_base_url,
                temperature=0,
                num_predict=settings.llm_max_tokens,
                client_kwargs={"timeout": settings.llm_timeout_s},
            )
    except ModuleNotFoundError as error:
        raise ChatModelError(
            f"KLAUSA_LLM={provider} needs {error.name}; {INSTALL_HINT}"
        ) from None
    raise ChatModelError(f"no chat model for KLAUSA_LLM={provider!r}")


def _local(settings: Settings) -> BaseChatModel:
    try:
        path = Path(settings.llm_model) if settings.llm_model else ensure_local_gguf(
            settings.models_dir
        )
    except ModelBuildError as error:
        raise ChatModelError(str(error)) from None
    if not path.is_file():
        raise ChatModelError(f"KLAUSA_LLM_MODEL={path}: no such GGUF file")
    try:
        import llama_cpp  # noqa: F401  (fail here with a clear message, not inside LangChain)
    except ModuleNotFoundError:
        raise ChatModelError(f"KLAUSA_LLM=local needs llama-cpp-python; {INSTALL_HINT}") from None
    with warnings.catch_warnings():
        # langchain-community warns on import that it is being split into packages; its
        # llama.cpp chat model has no standalone package yet.
        warnings.simplefilter("ignore", DeprecationWarning)
        from langchain_community.chat_models import ChatLlamaCpp
    started = time.perf_counter()
    try:
        model = ChatLlamaCpp(
            model_path=str(path),
            n_ctx=LOCAL_CONTEXT_TOKENS,
            n_threads=os.cpu_count() or 2,
            n_batch=256,
            temperature=0.0,
            max_tokens=settings.llm_max_tokens,
            seed=0,
            verbose=False,
        )
    except Exception as error:  # a broken file or an old llama.cpp: say which, fall back
        raise ChatModelError(f"could not load {path.name}: {error}") from error
    log.info("loaded %s in %.1f s", path.name, time.perf_counter() - started)
    return model
