"""The reader network: reads a question and a clause together and gives the logit of "this
clause answers the question".

It is EmbeddingGemma's own top, re-trained (MacAvaney et al., "Efficient Document Re-Ranking
for Transformers by Precomputing Term Representations", SIGIR 2020): the embedding model's
lower layers run on the question and on the clause apart — the question's while it is embedded
for search, each clause's at ingest — and the input of its layer ``first_layer`` is kept for
each token (``klausa.token_states``). The reader joins the two token sequences and runs copies
of the layers from there on (fine-tuned, so the question's tokens now attend to the clause's),
then a small head over the mean of all tokens and of the question's. Imports torch and
transformers: load this module only when the reader is used (``klausa.reader``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class ReaderShape:
    #: The embedding model's transformer configuration (its ``config.json``).
    config: dict[str, Any]
    #: The layer whose input the token states are; the reader runs it and those above.
    first_layer: int
    head_width: int = 256


class ReaderNet(nn.Module):
    def __init__(self, shape: ReaderShape) -> None:
        super().__init__()
        from transformers import Gemma3TextConfig
        from transformers.models.gemma3.modeling_gemma3 import (
            Gemma3DecoderLayer,
            Gemma3RMSNorm,
            Gemma3RotaryEmbedding,
        )

        config = Gemma3TextConfig(**shape.config)
        config._attn_implementation = "sdpa"
        self.shape = shape
        first = shape.first_layer
        self.layers = nn.ModuleList(Gemma3DecoderLayer(config, index)
                                    for index in range(first, config.num_hidden_layers))
        self.layer_types = list(config.layer_types[first:])
        self.norm = Gemma3RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.rotary = Gemma3RotaryEmbedding(config)
        width = config.hidden_size
        self.head = nn.Sequential(nn.Linear(2 * width, shape.head_width), nn.GELU(),
                                  nn.Linear(shape.head_width, 1))

    @classmethod
    def from_model_folder(cls, folder: Path, first_layer: int) -> ReaderNet:
        """A reader starting from the embedding model's own top layers, float32 as published
        (to train)."""
        from safetensors.torch import load_file

        config = json.loads((folder / "config.json").read_text("utf-8"))
        net = cls(ReaderShape(config=config, first_layer=first_layer))
        weights = load_file(str(folder / "model.safetensors"))
        top = {f"layers.{int(k.split('.')[1]) - first_layer}.{k.split('.', 2)[2]}": v
               for k, v in weights.items()
               if k.startswith("layers.") and int(k.split(".")[1]) >= first_layer}
        top["norm.weight"] = weights["norm.weight"]
        missing, unexpected = net.load_state_dict(top, strict=False)
        if unexpected or any(not k.startswith("head.") for k in missing):
            raise ValueError(f"{folder} does not hold the layers the reader copies "
                             f"(missing {missing}, unexpected {unexpected})")
        return net

    def encode(self, hidden: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """hidden [B, T, d]: token states at ``first_layer``; keep [B, T]: the tokens attended
        to. Returns the final states [B, T, d]."""
        batch, length, _ = hidden.shape
        positions = torch.arange(length, device=hidden.device).unsqueeze(0).expand(batch, -1)
        mask = torch.zeros(batch, 1, length, length, dtype=hidden.dtype, device=hidden.device)
        mask = mask.masked_fill(~keep[:, None, None, :], torch.finfo(hidden.dtype).min)
        rotations = {kind: self.rotary(hidden, positions, kind) for kind in set(self.layer_types)}
        for layer, kind in zip(self.layers, self.layer_types, strict=True):
            out = layer(hidden, attention_mask=mask, position_embeddings=rotations[kind],
                        position_ids=positions)
            hidden = out[0] if isinstance(out, tuple) else out
        return self.norm(hidden)

    def forward(self, question: torch.Tensor, question_mask: torch.Tensor,
                clause: torch.Tensor, clause_mask: torch.Tensor) -> torch.Tensor:
        """question [B, m, d], clause [B, n, d]; masks [B, m] / [B, n] (True: a token read;
        the question's prompt tokens are attended to but not pooled). Returns logits [B]."""
        hidden = torch.cat([question, clause], dim=1).to(self.norm.weight.dtype)
        keep = torch.cat([torch.ones_like(question_mask), clause_mask], dim=1)
        pooled = torch.cat([question_mask, clause_mask], dim=1).float().unsqueeze(-1)
        out = self.encode(hidden, keep).float()
        mean = (out * pooled).sum(1) / pooled.sum(1).clamp(min=1)
        asked = question_mask.float().unsqueeze(-1)
        asked_mean = (out[:, : question.shape[1]] * asked).sum(1) / asked.sum(1).clamp(min=1)
        pooled_both = torch.cat([mean, asked_mean], dim=-1).to(self.norm.weight.dtype)
        return self.head(pooled_both).squeeze(-1).float()
