"""Policies added from the app: a file and a manifest entry under ``<data_dir>/uploads``."""

from __future__ import annotations

import logging
import re
import tomllib
from pathlib import Path

from ingest.loaders import SUPPORTED_SUFFIXES, DocumentError, load_text
from klausa.catalog import MANIFEST, load_manifest
from klausa.settings import Settings
from klausa.types import Language, PolicyInfo

log = logging.getLogger(__name__)

POLICY_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


class UploadError(ValueError):
    pass


def _toml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ") + '"'


def write_manifest(directory: Path, infos: list[PolicyInfo]) -> None:
    lines = ["# Policies added through the app's library page.", ""]
    for info in infos:
        lines.append("[[policy]]")
        for key, value in info.model_dump(exclude_none=True).items():
            if isinstance(value, list):
                lines.append(f"{key} = [{', '.join(_toml_string(v) for v in value)}]")
            else:
                lines.append(f"{key} = {_toml_string(str(value))}")
        lines.append("")
    temporary = directory / (MANIFEST + ".tmp")
    temporary.write_text("\n".join(lines), "utf-8")
    tomllib.loads(temporary.read_text("utf-8"))  # never leave a manifest we cannot read
    temporary.replace(directory / MANIFEST)


def known_policy_ids(settings: Settings) -> set[str]:
    return {i.id for d in (settings.corpus_dir, settings.uploads_dir) for i in load_manifest(d)}


def add_upload(settings: Settings, file_name: str, data: bytes, *, policy_id: str, title: str,
               language: Language, replace: bool = False) -> Path:
    """Save an uploaded file as a policy; ingest it afterwards. The file name from the
    browser is only used for its extension: nothing is written outside the uploads folder."""
    policy_id = policy_id.strip().lower()
    if not POLICY_ID.match(policy_id):
        raise UploadError(f"{file_name}: policy id must be lowercase letters, digits, . _ -")
    suffix = Path(file_name.replace("\\", "/")).suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise UploadError(f"{file_name}: unsupported file type; use "
                          f"{', '.join(SUPPORTED_SUFFIXES)}")
    uploads = settings.uploads_dir
    corpus_ids = {i.id for i in load_manifest(settings.corpus_dir)}
    if policy_id in corpus_ids:
        raise UploadError(f"{file_name}: {policy_id!r} is a corpus policy; choose another id")
    infos = load_manifest(uploads)
    if any(i.id == policy_id for i in infos) and not replace:
        raise UploadError(f"{file_name}: a policy {policy_id!r} exists; tick 'replace' to "
                          "replace it")
    uploads.mkdir(parents=True, exist_ok=True)
    target = uploads / f"{policy_id}{suffix}"
    staging = uploads / f".{policy_id}{suffix}.part"
    staging.write_bytes(data)
    try:
        load_text(staging.with_name(staging.name))  # fails early with the reason
    except DocumentError as error:
        staging.unlink(missing_ok=True)
        raise UploadError(f"{file_name}: {error.reason}") from None
    for old in uploads.glob(f"{policy_id}.*"):
        old.unlink()
    staging.replace(target)
    info = PolicyInfo(id=policy_id, title=title.strip() or policy_id, company=title.strip()
                      or policy_id, language=language, source=target.name)
    write_manifest(uploads, [i for i in infos if i.id != policy_id] + [info])
    return target


def remove_upload(settings: Settings, policy_id: str) -> None:
    infos = load_manifest(settings.uploads_dir)
    if not any(i.id == policy_id for i in infos):
        raise UploadError(f"{policy_id!r} was not added from the app; remove it from "
                          f"{settings.corpus_dir / MANIFEST} instead")
    for info in infos:
        if info.id == policy_id:
            (settings.uploads_dir / info.source).unlink(missing_ok=True)
    write_manifest(settings.uploads_dir, [i for i in infos if i.id != policy_id])
