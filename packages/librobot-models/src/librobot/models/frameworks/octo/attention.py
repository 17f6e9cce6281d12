"""Octo's attention pattern, written out, and the two passes that compute it with block-wise kernels.

Tokens, in order: the task (instruction) tokens, then for each frame t = 0..T-1 of the window its
observation tokens and its readout tokens. Query (row) may attend to key (column) iff:

    query \\ key      task    obs of frame s    readouts of frame s
    task             yes     no                no
    obs of t         yes     s <= t            no
    readouts of t    yes     s <= t            s == t  ("group"; never with "none")

so no frame sees a later frame, and nothing but a readout group itself attends to readouts:
readouts are passive (Octo's block transformer), they summarise the observations for a head
without changing them. Padded keys (masked instruction tokens, padded frames) are hidden from all.

The kernels take block ids (key j visible to query i iff kv_block[j] <= q_block[i]), which cannot
say "s == t", so ``block_transformer`` runs two passes with the same weights: the task and
observation tokens alone (their outputs never depend on readouts), keeping every layer's keys
and values; then each frame's readouts as a batch row of their own, attending at every layer to
those keys/values (frames <= t) and to their own group. ``attention_mask`` is the table above as
a dense matrix: the specification the tests hold the two passes to.
"""

from __future__ import annotations

import torch
from torch import Tensor

from librobot.models.components.transformer import Transformer

TASK, OBS, READOUT = 0, 1, 2


def token_layout(num_task: int, steps: int, num_obs: int, num_readouts: int) -> tuple[Tensor, Tensor]:
    """Per token of the dense layout (task, then each frame's observations and readouts): its
    kind (TASK / OBS / READOUT) and its frame (-1 for task tokens)."""
    per_frame = torch.tensor([OBS] * num_obs + [READOUT] * num_readouts)
    kind = torch.cat([torch.full((num_task,), TASK), per_frame.repeat(steps)])
    frame = torch.cat([torch.full((num_task,), -1), torch.arange(steps).repeat_interleave(num_obs + num_readouts)])
    return kind, frame


def attention_mask(
    num_task: int, steps: int, num_obs: int, num_readouts: int, *, readout_attention: str = "group"
) -> Tensor:
    """The dense [L, L] visibility (True = query row may attend to key column) of the table above."""
    kind, frame = token_layout(num_task, steps, num_obs, num_readouts)
    qk, qf = kind[:, None], frame[:, None]
    kk, kf = kind[None, :], frame[None, :]
    sees_task = kk == TASK
    sees_obs = (kk == OBS) & (qk != TASK) & (kf <= qf)
    sees_group = (kk == READOUT) & (qk == READOUT) & (kf == qf) & (readout_attention == "group")
    return sees_task | sees_obs | sees_group


def block_transformer(
    transformer: Transformer,
    task: Tensor,
    task_mask: Tensor,
    obs: Tensor,
    obs_mask: Tensor,
    readouts: Tensor,
    *,
    readout_attention: str = "group",
) -> tuple[Tensor, Tensor, Tensor]:
    """task [B, Lt, W] (mask [B, Lt]), obs [B, T, No, W] (mask [B, T, No]), readouts [B, T, R, W]
    → their outputs under ``attention_mask`` (same shapes)."""
    b, steps, n_obs, w = obs.shape
    r, lt, dev = readouts.shape[2], task.shape[1], obs.device
    # pass 1: task + observations, block-causal over frames (task block 0, frame t block t + 1)
    blocks = torch.cat(
        [torch.zeros(lt, dtype=torch.long, device=dev), torch.arange(1, steps + 1, device=dev).repeat_interleave(n_obs)]
    )
    padding = torch.cat([task_mask, obs_mask.flatten(1)], dim=1)
    x = torch.cat([task, obs.flatten(1, 2)], dim=1)
    h, caches = transformer(x, q_blocks=blocks, kv_blocks=blocks, key_padding_mask=padding, return_kv=True)
    # pass 2: row (b, t) holds frame t's readouts; they see pass 1's blocks <= t + 1 and, with
    # "group", each other (same block); with "none" their block T + 1 is above every query's
    rows = b * steps
    frame_block = torch.arange(1, steps + 1, device=dev).repeat(b)[:, None]  # [B*T, 1], row-major (b, t)
    q_blocks = frame_block.expand(rows, r)
    own = q_blocks if readout_attention == "group" else torch.full_like(q_blocks, steps + 1)
    kv_blocks = torch.cat([blocks.expand(rows, -1), own], dim=1)
    past = [(k.repeat_interleave(steps, 0), v.repeat_interleave(steps, 0)) for k, v in caches]
    out = transformer(
        readouts.reshape(rows, r, w),
        past_kv=past,
        past_padding_mask=padding.repeat_interleave(steps, 0),
        q_blocks=q_blocks,
        kv_blocks=kv_blocks,
    )
    return h[:, :lt], h[:, lt:].view(b, steps, n_obs, w), out.view(b, steps, r, w)
