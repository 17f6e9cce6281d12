"""LeRobot dataset v2.1: one parquet file and one mp4 per camera for each episode.

::

    meta/info.json               codebase_version "v2.1", fps, features, chunks_size, path templates
    meta/episodes.jsonl          {"episode_index", "tasks": [...], "length"} per line
    meta/tasks.jsonl             {"task_index", "task"} per line
    meta/episodes_stats.jsonl    {"episode_index", "stats": {feature: {min, max, mean, std, count}}}
    data/chunk-XXX/episode_NNNNNN.parquet
    videos/chunk-XXX/<video_key>/episode_NNNNNN.mp4
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from librobot.core.checkpoint import atomic_write_text, write_json
from librobot.core.logging import track
from librobot.data.errors import DataFormatError
from librobot.data.formats import lerobot_common as lc
from librobot.data.formats.base import META_KEY, DatasetFormat, meta_document
from librobot.data.formats.lerobot_io import LeRobotSourceBase, episode_stats
from librobot.data.formats.lerobot_v3 import _append_columns, _new_columns, _write_data
from librobot.data.formats.video import VideoSettings, encode_video

DATA_PATH = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
VIDEO_PATH = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise DataFormatError(f"{path} is missing")
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise DataFormatError(f"{path}: line {number} is not valid JSON ({exc})") from exc
    return rows


class LeRobotV21Source(LeRobotSourceBase):
    format_name = "lerobot-v2.1"

    def __init__(self, root: str | Path, *, tolerance_s: float = 1e-4) -> None:
        super().__init__(root, tolerance_s=tolerance_s, version_prefix="v2")
        meta = self.root / "meta"
        self.tasks = {}
        for row in _read_jsonl(meta / "tasks.jsonl"):
            if "task_index" not in row or "task" not in row:
                raise DataFormatError(
                    f"{meta / 'tasks.jsonl'}: each line needs 'task_index' and 'task', got {sorted(row)}"
                )
            self.tasks[int(row["task_index"])] = row["task"]
        self._rows = sorted(_read_jsonl(meta / "episodes.jsonl"), key=lambda r: r.get("episode_index", -1))
        for row in self._rows:
            if "episode_index" not in row or "length" not in row:
                raise DataFormatError(
                    f"{meta / 'episodes.jsonl'}: each line needs 'episode_index' and 'length', got {sorted(row)}"
                )
        self._chunks_size = int(self.info.get("chunks_size", lc.DEFAULT_CHUNKS_SIZE))

    @property
    def num_episodes(self) -> int:
        return len(self._rows)

    def _episode_location(self, index: int) -> tuple[dict[str, Any], Path]:
        row = self._rows[index]
        ep = int(row["episode_index"])
        path = self.root / self.info["data_path"].format(episode_chunk=ep // self._chunks_size, episode_index=ep)
        return row, path

    def _video_location(self, row: dict[str, Any], video_key: str) -> tuple[Path, float]:
        ep = int(row["episode_index"])
        if not self.info.get("video_path"):
            raise DataFormatError(f"{self.root}/meta/info.json: has video features but no 'video_path'")
        path = self.root / self.info["video_path"].format(
            episode_chunk=ep // self._chunks_size, video_key=video_key, episode_index=ep
        )
        return path, 0.0


class LeRobotV21Format(DatasetFormat):
    name = "lerobot-v2.1"
    description = "LeRobot dataset v2.1 (one parquet + one mp4 per camera per episode)"

    @classmethod
    def detect(cls, path: Path) -> bool:
        info = path / "meta" / "info.json"
        if not info.is_file():
            return False
        try:
            return str(json.loads(info.read_text()).get("codebase_version", "")).startswith("v2")
        except (json.JSONDecodeError, OSError):
            return False

    def open(self, path: str | Path, *, tolerance_s: float = 1e-4) -> LeRobotV21Source:
        return LeRobotV21Source(path, tolerance_s=tolerance_s)

    def write(
        self, store: Any, path: str | Path, *, video: str = "lerobot", chunks_size: int = lc.DEFAULT_CHUNKS_SIZE
    ) -> None:
        """``video``: a VideoSettings preset ("lerobot", "h264", "lossless") or "none" (PNG in parquet)."""
        root = Path(path)
        root.mkdir(parents=True)
        settings = None if video == "none" else VideoSettings.preset(video)
        features = store.features
        cameras = [k for k, s in features.items() if s.kind == "image"]
        numeric = [k for k in features if k not in cameras]
        task_lookup = {t: i for i, t in enumerate(store.tasks)}
        episodes, episode_stat_rows = [], []
        for e in track(range(store.num_episodes), total=store.num_episodes, description="writing LeRobot v2.1"):
            start, stop = store.episode_range(e)
            ep = store.episode(e)
            chunk = e // chunks_size
            columns = _new_columns(numeric, cameras, settings)
            task_ids = [task_lookup[t] for t in ep.frame_tasks()]
            _append_columns(columns, ep.frames, numeric, cameras, settings, e, start, stop - start, store.fps, task_ids)
            _write_data(
                root / DATA_PATH.format(episode_chunk=chunk, episode_index=e),
                columns,
                features,
                numeric,
                cameras,
                settings,
            )
            for key in cameras if settings else []:
                file = root / VIDEO_PATH.format(episode_chunk=chunk, video_key=key, episode_index=e)
                encode_video(file, ep.frames[key], fps=store.fps, settings=settings)
            episodes.append(
                {"episode_index": e, "tasks": list(dict.fromkeys(ep.frame_tasks())), "length": stop - start}
            )
            flat = episode_stats(ep.frames, features, prefix="")
            nested: dict[str, dict[str, Any]] = {}
            for name, value in flat.items():
                key, _, stat = name.rpartition("/")
                nested.setdefault(key, {})[stat] = value
            episode_stat_rows.append({"episode_index": e, "stats": nested})
        video = {"codec": settings.codec, "pix_fmt": settings.pix_fmt} if settings else None
        info_features = {k: lc.info_feature(k, s, store.fps, video) for k, s in features.items()}
        info_features.update(lc.INDEX_FEATURES)
        info = {
            "codebase_version": "v2.1",
            "robot_type": store.robot_type,
            "total_episodes": store.num_episodes,
            "total_frames": store.num_frames,
            "total_tasks": len(store.tasks),
            "total_videos": store.num_episodes * len(cameras) if settings else 0,
            "total_chunks": (store.num_episodes + chunks_size - 1) // chunks_size,
            "chunks_size": chunks_size,
            "fps": store.fps,
            "splits": {"train": f"0:{store.num_episodes}"},
            "data_path": DATA_PATH,
            "video_path": VIDEO_PATH if settings else None,
            "features": info_features,
            META_KEY: meta_document(store),
        }
        meta = root / "meta"

        def jsonl(rows: list[dict[str, Any]]) -> str:
            return "".join(json.dumps(r) + "\n" for r in rows)

        atomic_write_text(meta / "episodes.jsonl", jsonl(episodes))
        atomic_write_text(
            meta / "tasks.jsonl", jsonl([{"task_index": i, "task": t} for i, t in enumerate(store.tasks)])
        )
        atomic_write_text(meta / "episodes_stats.jsonl", jsonl(episode_stat_rows))
        write_json(meta / "stats.json", lc.lerobot_stats(store.stats or {}, features, {}))
        write_json(meta / "info.json", info)
