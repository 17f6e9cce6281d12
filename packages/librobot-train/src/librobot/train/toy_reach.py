"""A small real policy and task for the built-in ``toy-reach`` config, tests and throughput figures.

``ToyReachDataset``: a top camera sees up to three coloured targets; the instruction ("reach the
green target") says which one; the state is the agent's 2-D position; the action chunk is what a
proportional controller does to get there (normalised to [-1, 1]), padded past the episode's end.
The goal is in neither the image nor the text alone, so the policy has to use both.

``ToyReachPolicy``: conv encoder per camera + hashed bag-of-words text embedding + state MLP → MLP head
→ an action chunk, trained with the masked action loss. It follows the trainer's model contract
(``forward(batch) -> {"loss", ...}``) and has ``predict_action`` and ``gradient_checkpointing_enable``.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint
from torch.utils.data import Dataset, IterableDataset

from librobot.core.batch import ACTION, ACTION_IS_PAD, OBS_IMAGES, OBS_STATE, TASK, image_key
from librobot.core.errors import ConfigError
from librobot.core.registry import get_registry

COLORS = ("red", "green", "blue")


class ToyReachDataset(Dataset[dict[str, Any]]):
    """Deterministic reach demonstrations: sample ``i`` depends only on ``(seed, i)``.

    ``state_noise`` adds Gaussian noise to the state from torch's global RNG (an augmentation; the
    trainer seeds it per sample, so it is reproducible). ``padding=False`` keeps every chunk inside
    its episode (no padded steps).
    """

    def __init__(
        self,
        num_samples: int = 4096,
        *,
        horizon: int = 8,
        image_size: int = 24,
        num_targets: int = 3,
        max_speed: float = 0.15,
        gain: float = 0.5,
        state_noise: float = 0.0,
        padding: bool = True,
        seed: int = 0,
    ) -> None:
        if not 1 <= num_targets <= len(COLORS):
            raise ConfigError(f"num_targets must be 1..{len(COLORS)}, got {num_targets}")
        if num_samples <= 0 or horizon <= 0 or image_size < 0:
            raise ConfigError("num_samples and horizon must be > 0 and image_size >= 0 (0: no camera)")
        self.num_samples, self.horizon, self.image_size = int(num_samples), int(horizon), int(image_size)
        self.num_targets, self.max_speed, self.gain = int(num_targets), float(max_speed), float(gain)
        self.state_noise, self.padding, self.seed = float(state_noise), bool(padding), int(seed)
        size = max(self.image_size, 1)
        self._grid = np.stack(np.meshgrid(np.arange(size), np.arange(size), indexing="xy"), axis=-1).astype(np.float32)

    def __len__(self) -> int:
        return self.num_samples

    def _render(self, targets: np.ndarray) -> np.ndarray:
        s = self.image_size
        image = np.zeros((3, s, s), dtype=np.float32)
        for k, target in enumerate(targets):
            centre = (target + 1.0) / 2.0 * (s - 1)
            d2 = ((self._grid - centre) ** 2).sum(-1)
            image[k] = np.exp(-d2 / (2 * 1.2**2))
        return image

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < self.num_samples:
            raise IndexError(f"index {index} out of range for {self.num_samples} samples")
        rng = np.random.default_rng([self.seed, int(index)])
        targets = rng.uniform(-0.8, 0.8, size=(self.num_targets, 2))
        goal_id = int(rng.integers(self.num_targets))
        position = rng.uniform(-1.0, 1.0, size=2)
        remaining = int(rng.integers(1, 2 * self.horizon))  # steps left before the episode ends
        if not self.padding:
            remaining = self.horizon
        actions = np.zeros((self.horizon, 2), dtype=np.float32)
        is_pad = np.zeros(self.horizon, dtype=bool)
        p = position.copy()
        for t in range(self.horizon):
            if t >= remaining:
                actions[t], is_pad[t] = actions[t - 1], True
                continue
            step = np.clip(self.gain * (targets[goal_id] - p), -self.max_speed, self.max_speed)
            p = p + step
            actions[t] = step / self.max_speed
        state = torch.from_numpy(position.astype(np.float32)).reshape(1, 2)
        if self.state_noise:
            state = state + self.state_noise * torch.randn_like(state)
        sample: dict[str, Any] = {
            OBS_STATE: state,
            ACTION: torch.from_numpy(actions),
            ACTION_IS_PAD: torch.from_numpy(is_pad),
            TASK: f"reach the {COLORS[goal_id]} target",
        }
        if self.image_size:
            sample[image_key("top")] = torch.from_numpy(self._render(targets)).unsqueeze(0)
        return sample


def toy_reach_dataset(
    num_samples: int = 4096,
    *,
    horizon: int = 8,
    image_size: int = 24,
    num_targets: int = 3,
    max_speed: float = 0.15,
    gain: float = 0.5,
    state_noise: float = 0.0,
    padding: bool = True,
    seed: int = 0,
) -> ToyReachDataset:
    """Synthetic reach demonstrations (camera + instruction + state → action chunk)."""
    return ToyReachDataset(
        num_samples,
        horizon=horizon,
        image_size=image_size,
        num_targets=num_targets,
        max_speed=max_speed,
        gain=gain,
        state_noise=state_noise,
        padding=padding,
        seed=seed,
    )


# ------------------------------------------------------------------------------------ policy
class _ConvEncoder(nn.Module):
    def __init__(self, in_channels: int, size: int, dim: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3, stride=2, padding=1),
            nn.GELU(),
            nn.Conv2d(32, 32, 3, stride=2, padding=1),
            nn.GELU(),
        )
        side = (size + 3) // 4
        self.proj = nn.Linear(32 * side * side, dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # [B, T, C, H, W]
        b = images.shape[0]
        x = images.reshape(b, -1, *images.shape[-2:])  # the observation history stacks as channels
        return self.proj(self.conv(x).flatten(1))


class _Block(nn.Module):
    def __init__(self, dim: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, dim * 2), nn.GELU(), nn.Dropout(dropout), nn.Linear(dim * 2, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mlp(self.norm(x))


@torch.compiler.disable  # python string hashing: keep it out of compiled graphs
def _word_ids(tasks: Sequence[str], buckets: int) -> tuple[torch.Tensor, torch.Tensor]:
    ids: list[int] = []
    offsets: list[int] = []
    for task in tasks:
        offsets.append(len(ids))
        words = re.findall(r"[a-z0-9]+", task.lower()) or [""]
        ids.extend(zlib.crc32(w.encode()) % buckets for w in words)
    return torch.tensor(ids, dtype=torch.long), torch.tensor(offsets, dtype=torch.long)


class ToyReachPolicy(nn.Module):
    """Images + instruction + state → action chunk [B, H, A]."""

    def __init__(
        self,
        *,
        state_dim: int,
        action_dim: int,
        horizon: int,
        obs_horizon: int = 1,
        cameras: Sequence[str] = (),
        image_size: int = 24,
        image_channels: int = 3,
        hidden_dim: int = 128,
        depth: int = 2,
        dropout: float = 0.0,
        text_buckets: int = 512,
        loss: str = "mse",
    ) -> None:
        super().__init__()
        self.state_dim, self.action_dim, self.horizon = state_dim, action_dim, horizon
        self.cameras, self.text_buckets = tuple(cameras), text_buckets
        d = hidden_dim
        self.vision = nn.ModuleDict(
            {c: _ConvEncoder(image_channels * obs_horizon, image_size, d) for c in self.cameras}
        )
        self.text = nn.EmbeddingBag(text_buckets, d, mode="mean")
        self.state_encoder = nn.Sequential(nn.Linear(state_dim * obs_horizon, d), nn.GELU())
        # FiLM: the instruction scales and shifts the camera features (which target to look at is
        # a multiplicative choice that concatenation alone learns slowly)
        self.film = nn.Linear(d, 2 * d)
        self.fuse = nn.Linear(d * (2 + len(self.cameras)), d)
        self.head = nn.ModuleList(_Block(d, dropout) for _ in range(depth))
        self.out = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, horizon * action_dim))
        self.loss_fn = get_registry("loss").create(loss)
        self._checkpointing = False

    def gradient_checkpointing_enable(self) -> None:
        """Recompute the head blocks in the backward pass instead of keeping their activations."""
        self._checkpointing = True

    def _features(self, batch: Mapping[str, Any]) -> torch.Tensor:
        state = batch[OBS_STATE]
        parts = [self.state_encoder(state.flatten(1))]
        ids, offsets = _word_ids(batch[TASK], self.text_buckets)
        text = self.text(ids.to(state.device), offsets.to(state.device))
        parts.append(text)
        scale, shift = self.film(text).chunk(2, dim=-1)
        for camera in self.cameras:
            key = f"{OBS_IMAGES}.{camera}"
            if key not in batch:
                raise ConfigError(f"ToyReachPolicy was built for camera '{camera}' but the batch has no '{key}'")
            parts.append(self.vision[camera](batch[key]) * (1 + scale) + shift)
        x = self.fuse(torch.cat(parts, dim=-1))
        for block in self.head:
            x = checkpoint(block, x, use_reentrant=False) if self._checkpointing and self.training else block(x)
        return x

    def predict_action(self, batch: Mapping[str, Any]) -> torch.Tensor:
        x = self._features(batch)
        return self.out(x).reshape(-1, self.horizon, self.action_dim)

    def forward(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        pred = self.predict_action(batch)
        target = batch[ACTION]
        is_pad = batch.get(ACTION_IS_PAD)
        loss = self.loss_fn(pred, target, is_pad)
        with torch.no_grad():
            keep = (~is_pad).unsqueeze(-1).float() if is_pad is not None else torch.ones_like(pred[..., :1])
            l1 = ((pred.float() - target.float()).abs() * keep).sum() / (keep.sum() * self.action_dim).clamp_min(1.0)
        return {"loss": loss, "l1": l1}


def infer_shapes(dataset: Any) -> dict[str, Any]:
    """state_dim, action_dim, horizon, obs_horizon, cameras, image size/channels from one sample."""
    from librobot.train.sampler import isolated_rng

    with isolated_rng(0):  # reading a sample must not move the caller's RNGs
        sample = next(iter(dataset)) if isinstance(dataset, IterableDataset) else dataset[0]
    shapes: dict[str, Any] = {}
    if OBS_STATE in sample:
        shapes["obs_horizon"], shapes["state_dim"] = (int(s) for s in sample[OBS_STATE].shape)
    if ACTION in sample:
        shapes["horizon"], shapes["action_dim"] = (int(s) for s in sample[ACTION].shape)
    cams = sorted(k[len(OBS_IMAGES) + 1 :] for k in sample if k.startswith(OBS_IMAGES + "."))
    shapes["cameras"] = cams
    if cams:
        image = sample[image_key(cams[0])]
        shapes["image_channels"], shapes["image_size"] = int(image.shape[-3]), int(image.shape[-1])
    return shapes


def toy_reach_policy(
    *,
    dataset: Any = None,
    hidden_dim: int = 128,
    depth: int = 2,
    dropout: float = 0.0,
    text_buckets: int = 512,
    loss: str = "mse",
    **shapes: Any,
) -> ToyReachPolicy:
    """The toy-reach policy, sized from ``dataset`` (or explicit state_dim/action_dim/horizon/cameras…)."""
    allowed = {"state_dim", "action_dim", "horizon", "obs_horizon", "cameras", "image_size", "image_channels"}
    unknown = sorted(set(shapes) - allowed)
    if unknown:
        raise ConfigError(
            f"toy-reach-policy: unknown argument(s) {unknown}; it accepts hidden_dim, depth, dropout, text_buckets, loss, {', '.join(sorted(allowed))}"
        )
    found = infer_shapes(dataset) if dataset is not None else {}
    found.update(shapes)
    missing = [k for k in ("state_dim", "action_dim", "horizon") if k not in found]
    if missing:
        raise ConfigError(
            f"toy-reach-policy needs {missing}: pass a dataset with observation.state and action, or set them in the model config"
        )
    return ToyReachPolicy(
        hidden_dim=hidden_dim, depth=depth, dropout=dropout, text_buckets=text_buckets, loss=loss, **found
    )
