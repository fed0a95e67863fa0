"""Klausa: answers questions about policies by citing the clause that says so."""

from klausa.assistant import Assistant, QuestionError, SmallTalk, UnknownPolicyError
from klausa.settings import Settings
from klausa.types import Answer, Chunk, Citation, Hit, PolicyInfo, Section, Turn

__all__ = [
    "Answer",
    "Assistant",
    "Chunk",
    "Citation",
    "Hit",
    "PolicyInfo",
    "QuestionError",
    "Section",
    "Settings",
    "SmallTalk",
    "Turn",
    "UnknownPolicyError",
]
