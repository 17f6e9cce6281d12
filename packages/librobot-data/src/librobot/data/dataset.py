"""Torch datasets over episodes: observation history, padded action chunks, batch-contract keys.

A sample for frame t of episode e holds (no batch axis; DataLoader's default collate batches it):
- ``observation.images.<cam>``: float [T_obs, C, H, W] in [0, 1] (frames t-T_obs+1 .. t)
- ``observation.state``: float [T_obs, S]; ``observation.state_is_pad`` bool [T_obs] (LeRobot's name),
  and ``observation_is_pad`` bool [T_obs] for the whole observation window (cameras included).
  ``state_keys`` makes it the concatenation of several observation vectors, in the order given
  (``["observation.state", "observation.environment_state"]``, or ``"all"``; see ``state_keys.py``);
  each part is read and normalised on its own, then joined (float32). The default is
  ``observation.state`` alone.
- ``action``: float [H, A] (frames t .. t+H-1); ``action_is_pad`` bool [H]
- ``task`` (str), ``index``, ``episode_index``, ``frame_index`` (numpy int64), ``timestamp`` (float32)
Windows running past an episode's edge repeat its first/last frame and are flagged in ``*_is_pad``.
Image transforms need float images (the default ``image_dtype``).

``WindowDataset`` holds that logic; ``StoreDataset`` reads the store (chunk files, numeric features
preloaded), and ``librobot.data.dataset_lerobot.LeRobotVideoDataset`` decodes a LeRobot dataset on
the fly (the benchmark's baseline and an independent check of the store path).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from librobot.core.batch import (
    ACTION,
    ACTION_IS_PAD,
    EPISODE_INDEX,
    FRAME_INDEX,
    INDEX,
    OBS_STATE,
    TASK,
    TIMESTAMP,
    image_key,
)
from librobot.core.errors import ConfigError
from librobot.core.interfaces import DatasetInterface
from librobot.core.specs import FeatureSpec
from librobot.data._torch import torch
from librobot.data.episode import is_image_key
from librobot.data.sampling import frame_offsets, split_episodes, window
from librobot.data.state_keys import joined_feature, joined_stats, resolve_state_keys
from librobot.data.store.reader import EpisodeStore

OBS_IS_PAD = "observation_is_pad"  # [T_obs]: the observation frame was before the episode start


class WindowDataset(Dataset, DatasetInterface):
    """Sampling logic over any episode source that can read frames by global index."""

    def _setup(
        self,
        *,
        fps: float,
        features: Mapping[str, FeatureSpec],
        starts: np.ndarray,
        ends: np.ndarray,
        obs_horizon: int,
        action_horizon: int,
        delta_timestamps: Mapping[str, Sequence[float]] | None,
        cameras: Sequence[str] | None,
        state_key: str | None,
        action_key: str | None,
        extra_keys: Sequence[str],
        state_keys: str | Sequence[str] | None = None,
        episodes: Sequence[int] | None,
        split: str | None,
        val_fraction: float,
        split_seed: int,
        image_transforms: Callable[[Any], Any] | None,
        normalizer: Any,
        tolerance_s: float,
        image_dtype: str = "float32",
    ) -> None:
        if image_dtype not in ("float32", "uint8"):
            raise ConfigError(f"image_dtype must be 'float32' (the batch contract) or 'uint8', got {image_dtype!r}")
        self.image_dtype = image_dtype
        self._fps = float(fps)
        self.storage_features = dict(features)
        images = [k for k in features if is_image_key(k)]
        if cameras is not None:
            wanted = [image_key(c) for c in cameras]
            unknown = [k for k in wanted if k not in features]
            if unknown:
                raise ConfigError(f"cameras {unknown} are not in the dataset (has {images})")
            images = wanted
        self.image_keys = images
        # the vectors joined into observation.state; state_key stays the one key of a single-part state
        self.state_keys = resolve_state_keys(features, state_key, state_keys)
        self.state_key = self.state_keys[0] if len(self.state_keys) == 1 else None
        self.action_key = action_key if action_key in features else None
        if action_key and action_key != ACTION and self.action_key is None:
            raise ConfigError(f"action_key '{action_key}' is not a feature (features: {sorted(features)})")
        missing = [k for k in extra_keys if k not in features]
        if missing:
            raise ConfigError(f"extra_keys {missing} are not features (features: {sorted(features)})")
        obs_keys = self.image_keys + self.state_keys
        self.offsets = frame_offsets(
            fps,
            obs_keys=obs_keys,
            action_key=self.action_key,
            extra_keys=extra_keys,
            obs_horizon=obs_horizon,
            action_horizon=action_horizon,
            delta_timestamps=delta_timestamps,
            tolerance_s=tolerance_s,
        )
        if len({tuple(self.offsets[k]) for k in self.state_keys}) > 1:
            raise ConfigError(
                f"the state parts {self.state_keys} are joined frame by frame, so they need the same frame offsets; "
                f"give delta_timestamps for each of them alike, or for none (got "
                f"{ {k: self.offsets[k].tolist() for k in self.state_keys} })"
            )
        lengths = {len(self.offsets[k]) for k in obs_keys}
        if len(lengths) > 1:
            raise ConfigError(
                f"images and state must share T_obs (the batch contract); got { ({k: len(self.offsets[k]) for k in obs_keys}) }"
            )
        self.extra_keys = list(extra_keys)
        self._starts, self._ends = np.asarray(starts, np.int64), np.asarray(ends, np.int64)
        if episodes is None:
            episodes = range(len(self._starts))
            if split is not None:
                train, val = split_episodes(len(self._starts), val_fraction=val_fraction, seed=split_seed)
                episodes = {"train": train, "val": val}.get(split)
                if episodes is None:
                    raise ConfigError(f"split must be 'train', 'val' or None, got {split!r}")
        self.episodes = sorted(int(e) for e in episodes)
        bad = [e for e in self.episodes if not 0 <= e < len(self._starts)]
        if bad:
            raise ConfigError(f"episodes {bad[:5]} out of range (dataset has {len(self._starts)})")
        self._frames = (
            np.concatenate([np.arange(self._starts[e], self._ends[e]) for e in self.episodes])
            if self.episodes
            else np.zeros(0, np.int64)
        )
        self.image_transforms = image_transforms
        self.normalizer = normalizer

    # ------------------------------------------------------------------ hooks
    def _read_images(self, key: str, indices: np.ndarray) -> np.ndarray:
        """uint8 [n, C, H, W] at global frame ``indices``."""
        raise NotImplementedError

    def _read_array(self, key: str, indices: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _task(self, index: int) -> str:
        raise NotImplementedError

    # ------------------------------------------------------------------ interface
    @property
    def features(self) -> Mapping[str, FeatureSpec]:
        """Per-frame specs of what samples hold (images as float32 C, H, W)."""
        out = {}
        for key in self.offsets:
            if key in self.state_keys and len(self.state_keys) > 1:
                continue  # samples hold the parts only joined (below)
            spec = self.storage_features[key]
            out[key] = FeatureSpec(
                name=key,
                shape=spec.shape,
                dtype="float32" if is_image_key(key) or spec.dtype.startswith("float") else spec.dtype,
                kind=spec.kind,
                names=spec.names,
            )
        if len(self.state_keys) > 1:
            out[OBS_STATE] = joined_feature(self.storage_features, self.state_keys)
        return out

    @property
    def state_feature(self) -> FeatureSpec | None:
        """What samples hold as ``observation.state`` (the joined parts' spec and names), or None."""
        if not self.state_keys:
            return None
        if len(self.state_keys) == 1:
            return self.storage_features[self.state_keys[0]]
        return joined_feature(self.storage_features, self.state_keys)

    @property
    def state_parts(self) -> list[list[Any]]:
        """``[[key, width], ...]`` of the state: what a policy trained on these samples records."""
        return [[k, int(self.storage_features[k].shape[-1])] for k in self.state_keys]

    @property
    def fps(self) -> float:
        return self._fps

    @property
    def num_episodes(self) -> int:
        return len(self.episodes)

    def __len__(self) -> int:
        return len(self._frames)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self._build(index, self._image_tensor)

    def _image_tensor(self, key: str, indices: np.ndarray) -> Any:
        images = torch.from_numpy(self._read_images(key, indices))
        return images if self.image_dtype == "uint8" else torch.div(images, 255.0)  # float32, one pass

    def _read_images_into(self, key: str, indices: np.ndarray, out: np.ndarray) -> None:
        """uint8 frames at ``indices`` written into ``out`` [n, C, H, W] (batched reads override this)."""
        out[...] = self._read_images(key, indices)

    def _build(self, index: int, read_images: Callable[[str, np.ndarray], Any]) -> dict[str, Any]:
        """One sample; ``read_images(key, indices)`` returns the image window, or None when it wrote
        the images elsewhere (a batch buffer) and the sample should not hold them."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} frames")
        frame = int(self._frames[index])
        episode = int(np.searchsorted(self._ends, frame, side="right"))
        start, end = int(self._starts[episode]), int(self._ends[episode])
        sample: dict[str, Any] = {}
        obs_pad: np.ndarray | None = None
        for key, offsets in self.offsets.items():
            indices, pad = window(frame, start, end, offsets)
            if is_image_key(key):
                images = read_images(key, indices)
                if images is not None:
                    sample[key] = images
            else:
                sample[key] = torch.from_numpy(np.ascontiguousarray(self._read_array(key, indices)))
                if sample[key].dtype == torch.float64:
                    sample[key] = sample[key].float()
            if key == self.action_key:
                sample[ACTION_IS_PAD] = torch.from_numpy(pad)
            elif key not in self.extra_keys:
                obs_pad = pad if obs_pad is None else obs_pad | pad
                if not is_image_key(key):  # "<image key>_is_pad" would read as a camera to the batch contract
                    sample[f"{key}_is_pad"] = torch.from_numpy(pad)
        if obs_pad is not None:
            sample[OBS_IS_PAD] = torch.from_numpy(obs_pad)
        if self.image_transforms is not None:
            sample = self.image_transforms(sample)
        if self.normalizer is not None:
            sample = self.normalizer.normalize(sample)
        if self.action_key and self.action_key != ACTION:
            sample[ACTION] = sample.pop(self.action_key)
        if len(self.state_keys) > 1:
            self._join_state(sample)
        elif self.state_key and self.state_key != OBS_STATE:
            sample[OBS_STATE] = sample.pop(self.state_key)
            sample[OBS_STATE + "_is_pad"] = sample.pop(self.state_key + "_is_pad")
        sample[TASK] = self._task(frame)
        # numpy scalars: the default collate turns them into int64 / float32 tensors per batch
        sample[INDEX] = np.int64(frame)
        sample[EPISODE_INDEX] = np.int64(episode)
        sample[FRAME_INDEX] = np.int64(frame - start)
        sample[TIMESTAMP] = np.float32((frame - start) / self._fps)
        return sample

    def _join_state(self, sample: dict[str, Any]) -> None:
        """The (already normalised, if a normaliser is set) parts → one float32 observation.state;
        the parts share their frame offsets, so the first part's padding flags hold for all."""
        parts = [sample.pop(k).to(torch.float32) for k in self.state_keys]
        pads = [sample.pop(f"{k}_is_pad") for k in self.state_keys]
        sample[OBS_STATE] = torch.cat(parts, dim=-1)
        sample[OBS_STATE + "_is_pad"] = pads[0]

    def image_window_shape(self, key: str) -> tuple[int, ...]:
        """[T_obs, C, H, W] of one sample's ``key`` window (as stored: before any image transform)."""
        return (len(self.offsets[key]), *self.storage_features[key].shape)

    @property
    def batched_images(self) -> bool:
        """Whether images can be read straight into a batch buffer: no per-sample image transform
        and no normaliser touching images (those need each sample's images as tensors)."""
        touched = getattr(self.normalizer, "features", {}) if self.normalizer is not None else {}
        return self.image_transforms is None and not any(k in touched for k in self.image_keys)


def float_collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """``default_collate`` that turns uint8 images into the contract's float [0, 1] while stacking.

    With ``image_dtype="uint8"`` datasets this writes each image once (into the batch) instead of
    twice (a float copy per sample, then the stack), which matters when memory bandwidth is the limit.
    """
    from torch.utils.data import default_collate

    images = [
        k for k, v in samples[0].items() if is_image_key(k) and isinstance(v, torch.Tensor) and v.dtype == torch.uint8
    ]
    batch = default_collate([{k: v for k, v in s.items() if k not in images} for s in samples])
    for key in images:
        out = torch.empty((len(samples), *samples[0][key].shape), dtype=torch.float32)
        for i, sample in enumerate(samples):
            torch.div(sample[key], 255.0, out=out[i])
        batch[key] = out
    return batch


def images_to_float(batch: dict[str, Any]) -> dict[str, Any]:
    """uint8 images (``image_dtype="uint8"``) → float in [0, 1], e.g. after moving a batch to the GPU."""
    return {
        k: v.to(torch.float32).div_(255.0)
        if is_image_key(k) and isinstance(v, torch.Tensor) and v.dtype == torch.uint8
        else v
        for k, v in batch.items()
    }


class StoreDataset(WindowDataset):
    """Samples from an episode store. Numeric features are loaded into memory once (``preload``);
    images are read per sample from the chunk files (``fast``; ``fast=False`` goes through zarr).

    ``image_dtype="uint8"`` keeps images as uint8 (4x less to move from DataLoader workers); call
    ``images_to_float`` on the batch (on the device) to get the contract's float images.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        obs_horizon: int = 1,
        action_horizon: int = 1,
        delta_timestamps: Mapping[str, Sequence[float]] | None = None,
        cameras: Sequence[str] | None = None,
        state_key: str | None = OBS_STATE,
        state_keys: str | Sequence[str] | None = None,
        action_key: str | None = ACTION,
        extra_keys: Sequence[str] = (),
        episodes: Sequence[int] | None = None,
        split: str | None = None,
        val_fraction: float = 0.1,
        split_seed: int = 0,
        image_transforms: Callable[[Any], Any] | None = None,
        normalizer: Any = None,
        tolerance_s: float = 1e-4,
        preload: bool = True,
        fast: bool = True,
        image_dtype: str = "float32",
    ) -> None:
        self.store = EpisodeStore(path, fast=fast)
        self._setup(
            fps=self.store.fps,
            features=self.store.features,
            starts=self.store.episode_starts,
            ends=self.store.episode_ends,
            obs_horizon=obs_horizon,
            action_horizon=action_horizon,
            delta_timestamps=delta_timestamps,
            cameras=cameras,
            state_key=state_key,
            state_keys=state_keys,
            action_key=action_key,
            extra_keys=extra_keys,
            episodes=episodes,
            split=split,
            val_fraction=val_fraction,
            split_seed=split_seed,
            image_transforms=image_transforms,
            normalizer=normalizer,
            tolerance_s=tolerance_s,
            image_dtype=image_dtype,
        )
        numeric = [k for k in self.offsets if not is_image_key(k)]
        self._arrays = {k: self.store.read(k, 0, self.store.num_frames) for k in numeric} if preload else {}
        self._task_index = self.store.task_index

    @property
    def stats(self) -> dict[str, Any] | None:
        """The store's per-feature statistics, ``observation.state``'s being those of what samples
        hold there: the parts' own statistics side by side (the parts keep theirs too)."""
        stats = self.store.stats
        if stats is None or self.state_keys in ([], [OBS_STATE]):
            return stats
        return {**stats, OBS_STATE: joined_stats(stats, self.state_keys)}

    def _read_images(self, key: str, indices: np.ndarray) -> np.ndarray:
        return self.store.take(key, indices)

    def _read_images_into(self, key: str, indices: np.ndarray, out: np.ndarray) -> None:
        self.store.take(key, indices, out=out)

    def _read_array(self, key: str, indices: np.ndarray) -> np.ndarray:
        if key in self._arrays:
            return self._arrays[key][indices]
        return self.store.take(key, indices)

    def _task(self, index: int) -> str:
        return self.store.tasks[int(self._task_index[index])]
