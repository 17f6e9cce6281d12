"""Sampling straight from a LeRobot dataset (parquet + mp4), decoding video frames on the fly.

This is what training on a LeRobot dataset without conversion costs: every sample seeks each
camera's mp4 to the keyframe before its first frame and decodes forward. Numeric columns are
loaded into memory once, as LeRobot does. It serves as the benchmark baseline for the store and as
an independent reading path that tests compare the store's samples against.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from librobot.core.batch import ACTION, OBS_STATE
from librobot.core.errors import ConfigError
from librobot.data.dataset import WindowDataset
from librobot.data.episode import is_image_key
from librobot.data.formats.lerobot_io import LeRobotSourceBase
from librobot.data.formats.lerobot_v3 import LeRobotV3Format
from librobot.data.formats.lerobot_v21 import LeRobotV21Format
from librobot.data.formats.video import VideoReader


def open_lerobot(path: str | Path, tolerance_s: float = 1e-4) -> LeRobotSourceBase:
    fmt = LeRobotV3Format() if LeRobotV3Format.detect(Path(path)) else LeRobotV21Format()
    return fmt.open(path, tolerance_s=tolerance_s)


class LeRobotVideoDataset(WindowDataset):
    """Windows sampled straight from a LeRobot dataset, video decoded per sample.

    DataLoader workers should start with ``multiprocessing_context="forkserver"`` (or "spawn"),
    as ``worker_start_method`` says and librobot's loaders do: workers forked from a process that
    has decoded video hung intermittently in CI (two runs of three), after this process had
    closed nothing of FFmpeg's state. A started worker gets the dataset pickled, without open files.
    """

    worker_start_method = "forkserver"

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
        image_dtype: str = "float32",
    ) -> None:
        self.path = Path(path)
        self._tolerance_s = tolerance_s
        source = open_lerobot(self.path, tolerance_s)
        not_video = [k for k in source.features if is_image_key(k) and k not in source.video_keys]
        if not_video:
            raise ConfigError(f"{self.path}: cameras {not_video} are stored as images in parquet, not video")
        numeric = [k for k in source.features if not is_image_key(k)]
        lengths, arrays, tasks, self._video_loc = [], {k: [] for k in numeric}, [], {}
        for e in range(source.num_episodes):
            ep = source.episode(e, keys=numeric)
            lengths.append(ep.length)
            for k in numeric:
                arrays[k].append(ep.frames[k])
            tasks.extend(ep.frame_tasks())
            for key in source.video_keys:
                self._video_loc[(e, key)] = source.video_location(e, key)
        source.close()
        ends = np.cumsum(lengths)
        self._arrays = {k: np.concatenate(v) for k, v in arrays.items()}
        self._tasks = tasks
        self._channels = {k: source.features[k].shape[0] for k in source.video_keys}
        self._readers: dict[Path, VideoReader] = {}
        self._pid = os.getpid()
        self._setup(
            fps=source.fps,
            features=source.features,
            starts=ends - np.asarray(lengths),
            ends=ends,
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

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_readers"] = {}  # open decoders do not travel; each process opens its own
        return state

    def _reader(self, path: Path, channels: int) -> VideoReader:
        if os.getpid() != self._pid:  # a DataLoader worker: open its own files
            self._readers, self._pid = {}, os.getpid()
        if path not in self._readers:
            self._readers[path] = VideoReader(path, channels=channels)
        return self._readers[path]

    def _read_images(self, key: str, indices: np.ndarray) -> np.ndarray:
        episode = int(np.searchsorted(self._ends, indices[0], side="right"))
        path, start_s = self._video_loc[(episode, key)]
        times = start_s + (indices - self._starts[episode]) / self._fps
        frames = self._reader(path, self._channels[key]).read_times(times, tolerance_s=self._tolerance_s)
        return np.ascontiguousarray(frames.transpose(0, 3, 1, 2))

    def _read_array(self, key: str, indices: np.ndarray) -> np.ndarray:
        return self._arrays[key][indices]

    def _task(self, index: int) -> str:
        return self._tasks[index]
