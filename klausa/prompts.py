"""Fixed phrases and prompt templates, read from ``prompts/<language>/<role>.toml``."""

from __future__ import annotations

import tomllib
from functools import cache
from pathlib import Path

from klausa.types import Language

PROMPTS_DIR = Path(__file__).resolve().parent.parent / "prompts"


@cache
def phrases(role: str, language: Language) -> dict[str, str]:
    path = PROMPTS_DIR / language / f"{role}.toml"
    return tomllib.loads(path.read_text("utf-8"))


def phrase(role: str, language: Language, key: str, **values: object) -> str:
    return phrases(role, language)[key].format(**values)
