"""The reader network: reads a question against one clause and gives the logit of "this clause
answers the question".

It reads what the embedding model already computed, not text: the token states of the
question (from the forward pass that embeds it for search) and of the clause (computed at
ingest and stored beside the index). A small transformer (2 layers, 256 wide) runs over the
two joined, with a learned summary token; each token also carries how well it is matched on
the other side (its best cosine to the other side's tokens), which is what tells "insurance
companies" apart from "payment providers" when everything else matches. Imports torch: load
this module only when the reader is used (``klausa.reader``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

#: Token states of EmbeddingGemma-300M.
STATE_DIM = 768


@dataclass(frozen=True)
class ReaderShape:
    width: int = 256
    layers: int = 2
    heads: int = 4
    feed_forward: int = 512
    dropout: float = 0.1

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


class ReaderNet(nn.Module):
    def __init__(self, shape: ReaderShape = ReaderShape()) -> None:
        super().__init__()
        self.shape = shape
        d = shape.width
        self.norm_in = nn.LayerNorm(STATE_DIM)
        self.project = nn.Linear(STATE_DIM, d)
        #: 0: the summary token, 1: question, 2: clause.
        self.segment = nn.Embedding(3, d)
        #: The best-match cosine of each token, into the width.
        self.match = nn.Linear(1, d)
        self.summary = nn.Parameter(torch.zeros(1, 1, d))
        layer = nn.TransformerEncoderLayer(d, shape.heads, shape.feed_forward, shape.dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, shape.layers, enable_nested_tensor=False)
        self.head = nn.Sequential(nn.LayerNorm(d + 4), nn.Linear(d + 4, d), nn.GELU(),
                                  nn.Linear(d, 1))
        #: Mean token state, subtracted before cosines (the states share a large common
        #: direction); set from training data.
        self.register_buffer("center", torch.zeros(STATE_DIM))

    def forward(self, question: torch.Tensor, question_mask: torch.Tensor,
                clause: torch.Tensor, clause_mask: torch.Tensor) -> torch.Tensor:
        """question [B, m, 768], clause [B, n, 768]; masks [B, m] / [B, n] (True: a token
        to read; the question's prompt tokens are masked). Returns logits [B]."""
        question, clause = question.float(), clause.float()
        q_best, c_best = best_matches(question - self.center, question_mask,
                                      clause - self.center, clause_mask)
        batch = question.shape[0]
        q = self.project(self.norm_in(question)) + self.segment.weight[1] + self.match(
            q_best.unsqueeze(-1))
        c = self.project(self.norm_in(clause)) + self.segment.weight[2] + self.match(
            c_best.unsqueeze(-1))
        summary = self.summary.expand(batch, 1, -1) + self.segment.weight[0]
        tokens = torch.cat([summary, q, c], dim=1)
        keep = torch.cat([torch.ones(batch, 1, dtype=torch.bool, device=question.device),
                          question_mask, clause_mask], dim=1)
        out = self.encoder(tokens, src_key_padding_mask=~keep)[:, 0]
        return self.head(torch.cat([out, match_summary(q_best, question_mask)], dim=-1)
                         ).squeeze(-1)


def best_matches(question: torch.Tensor, question_mask: torch.Tensor, clause: torch.Tensor,
                 clause_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per question token, its best cosine to a clause token; per clause token, to a question
    token (masked tokens: 0)."""
    q = nn.functional.normalize(question, dim=-1)
    c = nn.functional.normalize(clause, dim=-1)
    similarity = q @ c.transpose(1, 2)  # [B, m, n]
    low = torch.finfo(similarity.dtype).min
    q_best = similarity.masked_fill(~clause_mask[:, None, :], low).amax(dim=2)
    c_best = similarity.masked_fill(~question_mask[:, :, None], low).amax(dim=1)
    return q_best.masked_fill(~question_mask, 0.0), c_best.masked_fill(~clause_mask, 0.0)


def match_summary(q_best: torch.Tensor, question_mask: torch.Tensor) -> torch.Tensor:
    """The weakest, the two weakest on average, and the mean of the question's best matches,
    and how many question tokens there are (log): [B, 4]."""
    high = torch.finfo(q_best.dtype).max
    filled = q_best.masked_fill(~question_mask, high)
    count = question_mask.sum(dim=1).clamp(min=1)
    lowest = filled.topk(2, dim=1, largest=False).values.clamp(max=1.0)
    mean = q_best.sum(dim=1) / count
    return torch.stack([lowest[:, 0], lowest.mean(dim=1), mean, count.float().log()], dim=1)
