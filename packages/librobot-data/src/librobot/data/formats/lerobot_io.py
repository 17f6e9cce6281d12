"""Reading an episode from either LeRobot layout (the layouts differ only in where things are)."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from librobot.core.specs import FeatureSpec
from librobot.data.episode import Episode, is_image_key
from librobot.data.errors import DataFormatError
from librobot.data.formats import lerobot_common as lc
from librobot.data.formats.base import META_KEY, EpisodeSource, features_from_meta
from librobot.data.formats.video import VideoReader
from librobot.data.stats import StatsAccumulator


class LeRobotSourceBase(EpisodeSource):
    """Shared episode reading; subclasses say where an episode's rows and video frames are."""

    tasks: dict[int, str]

    def __init__(self, root: str | Path, *, tolerance_s: float, version_prefix: str) -> None:
        self.root = self.path = Path(root)
        self.info = lc.read_info(self.root)
        version = str(self.info["codebase_version"])
        if not version.startswith(version_prefix):
            raise DataFormatError(
                f"{self.root}: codebase_version is {version}, but this reader handles {version_prefix}.x "
                f"(use the lerobot-{'v2.1' if version.startswith('v2') else 'v3'} format)"
            )
        self.fps = float(self.info["fps"])
        self.robot_type = self.info.get("robot_type")
        self.tolerance_s = tolerance_s
        features, self._source = lc.features_from_info(self.info)
        exact = features_from_meta(self.info.get(META_KEY))
        if exact and set(exact) == set(features):  # written by us: restore exact shapes and names
            features = exact
        self.features: dict[str, FeatureSpec] = features
        self.video_keys = {k for k, lk in self._source.items() if self.info["features"][lk]["dtype"] == "video"}
        self._cached: tuple[Path | None, Any] = (None, None)
        self._videos: dict[Path, VideoReader] = {}

    @abstractmethod
    def _episode_location(self, index: int) -> tuple[dict[str, Any], Path]:
        """(episode metadata row with episode_index and length, its data parquet file)."""

    @abstractmethod
    def _video_location(self, row: dict[str, Any], video_key: str) -> tuple[Path, float]:
        """(mp4 file, time of the episode's first frame in it)."""

    def _table(self, path: Path) -> Any:
        if self._cached[0] != path:
            self._cached = (path, lc.read_table(path))
        return self._cached[1]

    def _video(self, path: Path, channels: int) -> VideoReader:
        if path not in self._videos:
            for old in list(self._videos.values()):  # files are read in order: keep one per camera
                if len(self._videos) < 8:
                    break
                old.close()
                self._videos.pop(old.path)
            self._videos[path] = VideoReader(path, channels=channels)
        return self._videos[path]

    def episode(self, index: int, keys: list[str] | None = None) -> Episode:
        """Episode ``index`` (only ``keys`` when given: e.g. skip decoding videos)."""
        if not 0 <= index < self.num_episodes:
            raise IndexError(f"{self.root}: episode {index} out of range (0..{self.num_episodes - 1})")
        row, data_path = self._episode_location(index)
        table = self._table(data_path)
        ep_index, length = int(row["episode_index"]), int(row["length"])
        where = f"{data_path} (episode {ep_index})"
        for column in ("episode_index", "frame_index", "timestamp", "task_index"):
            if column not in table.column_names:
                raise DataFormatError(f"{data_path}: column '{column}' is missing (columns: {table.column_names})")
        rows = np.flatnonzero(table.column("episode_index").to_numpy() == ep_index)
        if len(rows) != length:
            raise DataFormatError(f"{where}: {len(rows)} rows, but the episode metadata says length {length}")
        sub = table.take(rows)
        order = np.argsort(sub.column("frame_index").to_numpy(), kind="stable")
        sub = sub.take(order)
        frame_index = sub.column("frame_index").to_numpy()
        if not np.array_equal(frame_index, np.arange(length)):
            raise DataFormatError(f"{where}: frame_index is not 0..{length - 1}")
        times = sub.column("timestamp").to_numpy().astype(np.float64)
        bad = np.flatnonzero(np.abs(times - frame_index / self.fps) > self.tolerance_s + 1e-6)
        if bad.size:
            raise DataFormatError(
                f"{where}: timestamp {times[bad[0]]:.5f}s at frame {bad[0]} does not match fps {self.fps}"
            )
        frames: dict[str, np.ndarray] = {}
        for key, spec in self.features.items():
            if keys is not None and key not in keys:
                continue
            column = self._source[key]
            if key in self.video_keys:
                path, start = self._video_location(row, column)
                c, h, w = spec.shape
                video = self._video(path, c).read_range(
                    start + times[0],
                    length,
                    self.fps,
                    tolerance_s=self.tolerance_s,
                    what=f" (episode {ep_index}, {column})",
                )
                if video.shape[1:] != (h, w, c):
                    raise DataFormatError(
                        f"{path}: frames are {list(video.shape[1:])} (HWC), info.json says {[h, w, c]}"
                    )
                frames[key] = video
            elif self.info["features"][column]["dtype"] == "image":
                frames[key] = lc.decode_image_column(sub, column, spec, data_path)
            else:
                frames[key] = lc.column_to_numpy(sub, column, spec, data_path)
        task_ids = sub.column("task_index").to_numpy()
        unknown = sorted(set(task_ids.tolist()) - set(self.tasks))
        if unknown:
            raise DataFormatError(f"{where}: task_index {unknown[:3]} not in the dataset's task list")
        tasks = [self.tasks[int(t)] for t in task_ids]
        task: str | list[str] = tasks[0] if len(set(tasks)) == 1 else tasks
        return Episode(frames=frames, task=task, fps=self.fps, metadata={"episode_index": ep_index})

    def summary(self) -> dict[str, Any]:
        out = super().summary()
        out["num_frames"] = sum(int(self._episode_location(i)[0]["length"]) for i in range(self.num_episodes))
        out["tasks"] = [self.tasks[k] for k in sorted(self.tasks)]
        return out

    def video_location(self, index: int, key: str) -> tuple[Path, float]:
        """(mp4 file, time of the first frame) of episode ``index``'s camera ``key``."""
        row, _ = self._episode_location(index)
        return self._video_location(row, self._source[key])

    def close(self) -> None:
        for video in self._videos.values():
            video.close()
        self._videos.clear()
        self._cached = (None, None)


def episode_stats(
    frames: Mapping[str, np.ndarray], features: Mapping[str, FeatureSpec], *, prefix: str = "stats/"
) -> dict[str, Any]:
    """Per-episode min/max/mean/std/count as LeRobot stores them (flat "stats/<key>/<stat>" columns)."""
    acc = StatsAccumulator(features, bins=2)
    acc.update(frames)
    out: dict[str, Any] = {}
    for key, item in acc.result().items():
        for name in ("min", "max", "mean", "std"):
            value = item[name]
            out[f"{prefix}{key}/{name}"] = [[[v]] for v in value] if is_image_key(key) else value
        out[f"{prefix}{key}/count"] = [int(item["count"])]
    return out


def episode_columns(rows: list[dict[str, Any]]) -> dict[str, Any]:
    arrow = lc.pa()
    return {key: arrow.array([row[key] for row in rows]) for key in rows[0]} if rows else {}
