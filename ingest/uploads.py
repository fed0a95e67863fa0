"""Policies added from the app: a file and a manifest entry under ``<data_dir>/uploads``."""

from __future__ import annotations

import logging
import re
import tomllib
from pathlib import Path

from pydantic import ValidationError

from ingest.loaders import SUPPORTED_SUFFIXES, DocumentError, check_size, display_name, load_text
from ingest.pipeline import Document, parse_document
from klausa.catalog import MANIFEST, load_manifest
from klausa.files import write_atomically
from klausa.settings import Settings
from klausa.types import Language, PolicyInfo, ProvidedBy, VersionInfo

log = logging.getLogger(__name__)

POLICY_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


class UploadError(ValueError):
    pass


def _toml_string(value: str) -> str:
    """A TOML basic string. A line break becomes a space; other control characters, which
    TOML forbids raw (a title pasted with a \\r or an escape code), are written as escapes."""
    value = re.sub(r"\r\n|[\r\n]", " ", value.replace("\\", "\\\\").replace('"', '\\"'))
    return '"' + re.sub(
        r"[\x00-\x08\x0a-\x1f\x7f]", lambda m: f"\\u{ord(m.group()):04x}", value
    ) + '"'


def manifest_text(infos: list[PolicyInfo]) -> str:
    lines = ["# Policies added through the app's library page.", ""]
    for info in infos:
        lines.append("[[policy]]")
        for key, value in info.model_dump(exclude_none=True).items():
            if key == "versions":
                tables = ["{ " + ", ".join(f"{k} = {_toml_string(str(v))}"
                                           for k, v in version.items()) + " }"
                          for version in value]
                lines.append(f"versions = [{', '.join(tables)}]")
            elif isinstance(value, list):
                lines.append(f"{key} = [{', '.join(_toml_string(v) for v in value)}]")
            else:
                lines.append(f"{key} = {_toml_string(str(value))}")
        lines.append("")
    text = "\n".join(lines)
    tomllib.loads(text)  # never leave a manifest we cannot read
    return text


def write_manifest(directory: Path, infos: list[PolicyInfo], text: str | None = None) -> None:
    write_atomically(directory / MANIFEST, manifest_text(infos) if text is None else text)


def known_policy_ids(settings: Settings) -> set[str]:
    return {i.id for d in (settings.corpus_dir, settings.uploads_dir) for i in load_manifest(d)}


def checked_suffix(shown: str, file_name: str, data: bytes) -> str:
    """The file's extension, when Klausa reads that type and the file is not too large."""
    suffix = Path(file_name.replace("\\", "/")).suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise UploadError(f"{shown}: unsupported file type; use "
                          f"{', '.join(SUPPORTED_SUFFIXES)}")
    try:
        check_size(shown, len(data))
    except DocumentError as error:
        raise UploadError(str(error)) from None
    return suffix


def add_upload(settings: Settings, file_name: str, data: bytes, *, policy_id: str, title: str,
               language: Language, replace: bool = False) -> Path:
    """Save an uploaded file as a policy; ingest it afterwards. The file name from the
    browser is only used for its extension: nothing is written outside the uploads folder,
    and a refused file leaves nothing behind."""
    shown = display_name(file_name.replace("\\", "/"))
    policy_id = policy_id.strip().lower()
    if not POLICY_ID.fullmatch(policy_id):
        raise UploadError(f"{shown}: policy id must be 1-64 lowercase letters, digits, . _ - "
                          f"(starting with a letter or digit), not {policy_id!r}")
    suffix = checked_suffix(shown, file_name, data)
    uploads = settings.uploads_dir
    corpus_ids = {i.id for i in load_manifest(settings.corpus_dir)}
    if policy_id in corpus_ids:
        raise UploadError(f"{shown}: {policy_id!r} is a corpus policy; choose another id")
    infos = load_manifest(uploads)
    if any(i.id == policy_id for i in infos) and not replace:
        raise UploadError(f"{shown}: a policy {policy_id!r} exists; tick 'replace' to "
                          "replace it")
    target = uploads / f"{policy_id}{suffix}"
    try:
        info = PolicyInfo(id=policy_id, title=title.strip() or policy_id,
                          company=title.strip() or policy_id, language=language,
                          source=target.name)
    except ValidationError:
        raise UploadError(f"{shown}: language must be one of en, id") from None
    kept = [i for i in infos if i.id != policy_id]
    manifest = manifest_text([*kept, info])
    uploads.mkdir(parents=True, exist_ok=True)
    # Keep the real extension last: the loader reads the file by it.
    staging = uploads / f".{policy_id}.part{suffix}"
    try:
        staging.write_bytes(data)
        try:
            load_text(staging)  # fails early with the reason
        except DocumentError as error:
            raise UploadError(f"{shown}: {error.reason}") from None
        staging.replace(target)
    finally:
        staging.unlink(missing_ok=True)
    # Only this policy's previous files go ("a.*" would also match policy "a.b"'s file); its
    # version in the other language too, which was aligned with the text replaced.
    for old in infos:
        if old.id == policy_id:
            for source in {old.source, *(v.source for v in old.versions)} - {target.name}:
                (uploads / source).unlink(missing_ok=True)
    write_manifest(uploads, [*kept, info], manifest)
    return target


def add_version(settings: Settings, file_name: str, data: bytes, *, policy_id: str,
                provided_by: ProvidedBy, replace: bool = False) -> Path:
    """Save an uploaded policy's text in its other language; ingest it afterwards. A file
    that does not line up with the policy section by section is refused, naming the
    sections, and leaves nothing behind."""
    shown = display_name(file_name.replace("\\", "/"))
    uploads = settings.uploads_dir
    infos = load_manifest(uploads)
    info = next((i for i in infos if i.id == policy_id), None)
    if info is None:
        where = ("is a corpus policy: list its versions in "
                 f"{settings.corpus_dir / MANIFEST}" if policy_id in known_policy_ids(settings)
                 else "is not an uploaded policy")
        raise UploadError(f"{shown}: {policy_id!r} {where}")
    language: Language = "id" if info.language == "en" else "en"
    if info.version_info(language) is not None and not replace:
        raise UploadError(f"{shown}: {policy_id!r} has a {language} version; tick 'replace' "
                          "to replace it")
    suffix = checked_suffix(shown, file_name, data)
    target = uploads / f"{policy_id}.{language}{suffix}"
    staging = uploads / f".{policy_id}.{language}.part{suffix}"
    version = VersionInfo(language=language, source=target.name, provided_by=provided_by)
    try:
        staging.write_bytes(data)
        try:  # parsed and aligned as ingest will, the staged file as the version
            staged = info.model_copy(update={"versions": [
                version.model_copy(update={"source": staging.name})]})
            parse_document(Document(staged, uploads / info.source))
        except DocumentError as error:
            raise UploadError(f"{shown}: {error.reason}") from None
        staging.replace(target)
    finally:
        staging.unlink(missing_ok=True)
    old = info.version_info(language)
    if old is not None and old.source != target.name:
        (uploads / old.source).unlink(missing_ok=True)
    updated = info.model_copy(update={"versions": [version]})
    write_manifest(uploads, [updated if i.id == policy_id else i for i in infos])
    return target


def remove_version(settings: Settings, policy_id: str) -> None:
    """Drop an uploaded policy's version in its other language; the policy answers from its
    own text."""
    infos = load_manifest(settings.uploads_dir)
    info = next((i for i in infos if i.id == policy_id), None)
    if info is None or not info.versions:
        raise UploadError(f"{policy_id!r} has no version added from the app (removed already, "
                          "perhaps from another session)")
    for version in info.versions:
        (settings.uploads_dir / version.source).unlink(missing_ok=True)
    write_manifest(settings.uploads_dir, [i.model_copy(update={"versions": []})
                                          if i.id == policy_id else i for i in infos])


def remove_upload(settings: Settings, policy_id: str) -> None:
    infos = load_manifest(settings.uploads_dir)
    if not any(i.id == policy_id for i in infos):
        if any(i.id == policy_id for i in load_manifest(settings.corpus_dir)):
            raise UploadError(f"{policy_id!r} was not added from the app; remove it from "
                              f"{settings.corpus_dir / MANIFEST} instead")
        raise UploadError(f"There is no uploaded policy {policy_id!r}: it has been removed "
                          "already, perhaps from another session.")
    for info in infos:
        if info.id == policy_id:
            for source in [info.source, *(v.source for v in info.versions)]:
                (settings.uploads_dir / source).unlink(missing_ok=True)
    write_manifest(settings.uploads_dir, [i for i in infos if i.id != policy_id])
