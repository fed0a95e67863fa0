"""The parsed policies on disk: what `klausa show`, the library page and answers read."""

from __future__ import annotations

import difflib
import json
import logging
import tomllib
from pathlib import Path

from klausa.files import write_atomically
from klausa.types import Chunk, Language, ParsedPolicy, PolicyInfo, Section, Version

log = logging.getLogger(__name__)

MANIFEST = "policies.toml"


class IndexMissingError(RuntimeError):
    """No index to answer from; the message says how to build one."""


class ManifestError(ValueError):
    pass


def load_manifest(corpus_dir: Path) -> list[PolicyInfo]:
    path = corpus_dir / MANIFEST
    if not path.exists():
        return []
    try:
        data = tomllib.loads(path.read_text("utf-8"))
        infos = [PolicyInfo(**entry) for entry in data.get("policy", [])]
    except (tomllib.TOMLDecodeError, TypeError, ValueError) as error:
        raise ManifestError(f"{path}: {error}") from None
    ids = [info.id for info in infos]
    duplicates = {i for i in ids if ids.count(i) > 1}
    if duplicates:
        raise ManifestError(f"{path}: duplicate policy id(s) {', '.join(sorted(duplicates))}")
    return infos


class Catalog:
    """Every ingested policy with its section tree and chunks, one JSON file per policy."""

    def __init__(self, policies: dict[str, ParsedPolicy]) -> None:
        self.policies = policies
        self.chunks: dict[str, Chunk] = {
            chunk.id: chunk for policy in policies.values() for chunk in policy.chunks
        }

    @classmethod
    def load(cls, directory: Path) -> Catalog:
        policies: dict[str, ParsedPolicy] = {}
        if directory.exists():
            for path in sorted(directory.glob("*.json")):
                policy = ParsedPolicy.model_validate_json(path.read_text("utf-8"))
                policies[policy.info.id] = policy
        return cls(policies)

    @staticmethod
    def write(directory: Path, policy: ParsedPolicy) -> None:
        """Write one policy atomically (a reader never sees half a file)."""
        directory.mkdir(parents=True, exist_ok=True)
        write_atomically(directory / f"{policy.info.id}.json", policy.model_dump_json())

    @staticmethod
    def remove(directory: Path, policy_id: str) -> None:
        (directory / f"{policy_id}.json").unlink(missing_ok=True)

    def info(self, policy_id: str) -> PolicyInfo:
        return self.policies[policy_id].info

    def list_span(self, chunk: Chunk, version: Version | None = None) -> tuple[int, int] | None:
        """Source offsets of the list a lead-in clause introduces ("…including but not limited
        to data provided at the time the User:"): from the lead-in to the end of its last item
        (the bullets that follow it in its section, or, when it ends its section, the
        sub-sections); in ``version``'s text when given. None when ``chunk`` is not a lead-in
        or no item follows it."""
        if not chunk.text.rstrip().endswith(":"):
            return None
        policy = self.policies.get(chunk.policy)
        if policy is None:
            return None
        last: Chunk | None = None
        later = sorted((c for c in policy.chunks
                        if c.label == chunk.label and c.ordinal > chunk.ordinal),
                       key=lambda c: c.ordinal)
        for item in later:
            # A paragraph after the list, or — a lead-in that is itself an item — an item of
            # the outer list again: the list has ended.
            if not item.context or (chunk.context and item.context == chunk.context):
                break
            last = item
        items: list[Section] = []
        if last is None:
            # The items are sub-sections: those that start between the lead-in and the
            # section's next own clause.
            next_own = later[0].start if later else len(policy.source_text)
            items = [s for s in policy.sections
                     if s.parent == chunk.label and chunk.end <= s.start < next_own]
            if not items:
                return None
        if version is None:
            end = last.end if last is not None else max(s.end for s in items)
            return chunk.start, end
        end = (version.clauses[last.id][1] if last is not None
               else max(version.sections[s.label][3] for s in items))
        return version.clauses[chunk.id][0], end

    def version(self, policy_id: str, language: Language) -> Version | None:
        """The policy's version in ``language`` (never its own language: ingest refuses a
        version in it)."""
        return self.policies[policy_id].version(language)

    def policy_title(self, policy_id: str, language: Language) -> str:
        """The title a reader of ``language`` sees: its version's, when it has one."""
        version = self.version(policy_id, language)
        return (version and version.info.title) or self.info(policy_id).title

    def section_title(self, policy_id: str, label: str, language: Language) -> str:
        version = self.version(policy_id, language)
        if version is not None and label in version.sections:
            return version.sections[label][1] or label
        section = self.policies[policy_id].section(label)
        return (section.title if section else "") or label

    def closest_policies(self, policy_id: str) -> list[str]:
        return difflib.get_close_matches(policy_id, list(self.policies), n=3, cutoff=0.3)

    def closest_labels(self, policy_id: str, label: str) -> list[str]:
        labels = [s.label for s in self.policies[policy_id].sections]
        lowered = {item.lower(): item for item in labels}
        close = difflib.get_close_matches(label.lower(), list(lowered), n=5, cutoff=0.3)
        return [lowered[c] for c in close]

    def find_label(self, policy_id: str, label: str) -> str | None:
        """A label as typed: exact, or differing only in case."""
        for section in self.policies[policy_id].sections:
            if section.label == label:
                return label
        for section in self.policies[policy_id].sections:
            if section.label.lower() == label.lower().strip():
                return section.label
        return None


def dump_json(data: object) -> str:
    return json.dumps(data, ensure_ascii=False, indent=2)
