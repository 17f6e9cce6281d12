"""History encoders: observation/feature sequences [B, T, D] (with optional validity mask) → a vector.

The mask marks real steps (True) vs padding (e.g. frames before the episode started, LeRobot's
``observation_is_pad`` negated); padded steps never influence the output.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from librobot.core.errors import SpecError
from librobot.models.components.capture import exporting
from librobot.models.components.positional import SinusoidalPositionalEmbedding
from librobot.models.components.transformer import Transformer
from librobot.models.encoders.base import EncoderBase


def _check_history_mask(mask: Tensor, shape: tuple[int, int]) -> None:
    EncoderBase.check_mask(mask, shape)
    if not exporting() and not bool(mask.any(dim=1).all()):
        raise SpecError("history mask: every sample needs at least one valid step (a row is all False)")


class LSTMHistoryEncoder(EncoderBase):
    """An LSTM over the valid steps; the output is the last layer's final hidden state, projected.

    Valid steps are compacted to the front in their original order and packed, so any padding
    pattern (left, right or holes) is handled exactly. ``return_sequence=True`` gives per-step
    outputs [B, T, output_dim] (zeros at padded steps).
    """

    def __init__(
        self,
        input_dim: int,
        output_dim: int = 256,
        hidden_dim: int = 256,
        num_layers: int = 1,
        dropout: float = 0.0,
        bidirectional: bool = False,
    ) -> None:
        super().__init__()
        self._record(locals())
        self.input_dim, self._output_dim = int(input_dim), int(output_dim)
        self.lstm = nn.LSTM(
            input_dim,
            hidden_dim,
            num_layers=num_layers,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,
            bidirectional=bidirectional,
        )
        directions = 2 if bidirectional else 1
        self.out = nn.Linear(directions * hidden_dim, output_dim)
        self.directions = directions

    def forward(self, x: Tensor, mask: Tensor | None = None, *, return_sequence: bool = False) -> Tensor:
        self.check(x, "history", {3: "[B, T, D]"}, self.input_dim)
        b, t, _ = x.shape
        if mask is None:
            seq, (h_n, _) = self.lstm(x)
        else:
            _check_history_mask(mask, (b, t))
            order = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)  # valid steps first, in order
            compact = torch.gather(x, 1, order.unsqueeze(-1).expand_as(x))
            lengths = mask.sum(dim=1).cpu()
            packed = pack_padded_sequence(compact, lengths, batch_first=True, enforce_sorted=False)
            packed_out, (h_n, _) = self.lstm(packed)
            seq_compact, _ = pad_packed_sequence(packed_out, batch_first=True, total_length=t)
            seq = torch.zeros_like(seq_compact).scatter(1, order.unsqueeze(-1).expand_as(seq_compact), seq_compact)
            seq = seq * mask.unsqueeze(-1)
        if return_sequence:
            out = self.out(seq)
            return out if mask is None else out * mask.unsqueeze(-1)
        final = torch.cat([h_n[-2], h_n[-1]], dim=-1) if self.directions == 2 else h_n[-1]
        return self.out(final)


class TransformerHistoryEncoder(EncoderBase):
    """A transformer over the steps with sinusoidal step positions and key padding.

    ``causal=True`` (default) pools the last valid step, which has seen the whole history;
    ``causal=False`` pools the mean of valid steps. ``return_sequence=True`` gives [B, T, output_dim].
    """

    def __init__(
        self,
        input_dim: int,
        output_dim: int = 256,
        hidden_dim: int = 128,
        depth: int = 2,
        num_heads: int = 4,
        max_len: int = 256,
        causal: bool = True,
        mlp: str = "gelu",
        norm: str = "layernorm",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self._record(locals())
        self.input_dim, self._output_dim, self.causal = int(input_dim), int(output_dim), bool(causal)
        self.inp = nn.Linear(input_dim, hidden_dim)
        self.pos = SinusoidalPositionalEmbedding(hidden_dim, max_len=max_len)
        self.encoder = Transformer(hidden_dim, depth, num_heads, causal=causal, mlp=mlp, norm=norm, dropout=dropout)
        self.out = nn.Linear(hidden_dim, output_dim)

    def forward(self, x: Tensor, mask: Tensor | None = None, *, return_sequence: bool = False) -> Tensor:
        self.check(x, "history", {3: "[B, T, D]"}, self.input_dim)
        b, t, _ = x.shape
        if mask is not None:
            _check_history_mask(mask, (b, t))
        h = self.inp(x) + self.pos(t).to(x.dtype)
        h = self.encoder(h, key_padding_mask=mask)
        if return_sequence:
            out = self.out(h)
            return out if mask is None else out * mask.unsqueeze(-1)
        if mask is None:
            pooled = h[:, -1] if self.causal else h.mean(dim=1)
        elif self.causal:
            last = (torch.arange(t, device=x.device) * mask).argmax(dim=1)  # index of the last valid step
            pooled = h[torch.arange(b, device=x.device), last]
        else:
            w = mask.to(h.dtype).unsqueeze(-1)
            pooled = (h * w).sum(1) / w.sum(1)
        return self.out(pooled)
