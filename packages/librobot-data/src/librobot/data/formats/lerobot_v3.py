"""LeRobot dataset v3.0: many episodes per parquet / mp4 file, located through episode metadata.

::

    meta/info.json                      codebase_version "v3.0", fps, features, path templates
    meta/stats.json                     dataset statistics
    meta/tasks.parquet                  task (pandas index) → task_index
    meta/episodes/chunk-XXX/file-YYY.parquet
                                        episode_index, tasks, length, dataset_from_index/_to_index,
                                        data/chunk_index, data/file_index,
                                        videos/<key>/{chunk_index, file_index, from_timestamp, to_timestamp},
                                        stats/<feature>/<stat>
    data/chunk-XXX/file-YYY.parquet     frames of consecutive episodes
    videos/<key>/chunk-XXX/file-YYY.mp4 frames of consecutive episodes, episode at from_timestamp
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from librobot.core.checkpoint import write_json
from librobot.core.logging import track
from librobot.data.errors import DataFormatError
from librobot.data.formats import lerobot_common as lc
from librobot.data.formats.base import META_KEY, DatasetFormat, features_from_meta, meta_document
from librobot.data.formats.lerobot_io import LeRobotSourceBase, episode_columns, episode_stats
from librobot.data.formats.video import VideoEncoder, VideoSettings

DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
MB = 1024 * 1024


def _next(chunk: int, file: int, chunks_size: int) -> tuple[int, int]:
    file += 1
    return (chunk + 1, 0) if file >= chunks_size else (chunk, file)


def _pandas_index_metadata(index: str, column: str) -> bytes:
    """pandas metadata marking ``index`` as the DataFrame index (LeRobot reads tasks with pandas)."""
    doc = {
        "index_columns": [index],
        "column_indexes": [
            {
                "name": None,
                "field_name": None,
                "pandas_type": "unicode",
                "numpy_type": "object",
                "metadata": {"encoding": "UTF-8"},
            }
        ],
        "columns": [
            {"name": column, "field_name": column, "pandas_type": "int64", "numpy_type": "int64", "metadata": None},
            {"name": index, "field_name": index, "pandas_type": "unicode", "numpy_type": "object", "metadata": None},
        ],
        "creator": {"library": "pyarrow", "version": lc.pa().__version__},
        "pandas_version": "2.2.3",
    }
    return json.dumps(doc).encode()


class LeRobotV3Source(LeRobotSourceBase):
    format_name = "lerobot-v3"

    def __init__(self, root: str | Path, *, tolerance_s: float = 1e-4) -> None:
        super().__init__(root, tolerance_s=tolerance_s, version_prefix="v3")
        self.tasks = self._read_tasks()
        files = sorted((self.root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
        if not files:
            raise DataFormatError(f"{self.root}: no episode metadata under meta/episodes/chunk-*/file-*.parquet")
        rows: list[dict[str, Any]] = []
        for file in files:
            table = lc.read_table(file)
            keep = [c for c in table.column_names if not c.startswith("stats/")]
            for needed in ("episode_index", "length", "data/chunk_index", "data/file_index"):
                if needed not in keep:
                    raise DataFormatError(f"{file}: column '{needed}' is missing (columns: {keep})")
            rows.extend(table.select(keep).to_pylist())
        self._rows = sorted(rows, key=lambda r: r["episode_index"])

    def _read_tasks(self) -> dict[int, str]:
        path = self.root / "meta" / "tasks.parquet"
        table = lc.read_table(path)
        column = "task" if "task" in table.column_names else None
        pandas_meta = (table.schema.metadata or {}).get(b"pandas")
        if column is None and pandas_meta:
            index = json.loads(pandas_meta).get("index_columns", [])
            column = index[0] if index and isinstance(index[0], str) else None
        column = column or ("__index_level_0__" if "__index_level_0__" in table.column_names else None)
        if column is None or "task_index" not in table.column_names:
            raise DataFormatError(
                f"{path}: expected a 'task_index' column and the task strings (columns: {table.column_names})"
            )
        return dict(zip(table.column("task_index").to_pylist(), table.column(column).to_pylist()))

    @property
    def num_episodes(self) -> int:
        return len(self._rows)

    def _episode_location(self, index: int) -> tuple[dict[str, Any], Path]:
        row = self._rows[index]
        data_path = self.root / self.info["data_path"].format(
            chunk_index=row["data/chunk_index"], file_index=row["data/file_index"], episode_index=row["episode_index"]
        )
        return row, data_path

    def _video_location(self, row: dict[str, Any], video_key: str) -> tuple[Path, float]:
        prefix = f"videos/{video_key}/"
        try:
            chunk, file, start = row[prefix + "chunk_index"], row[prefix + "file_index"], row[prefix + "from_timestamp"]
        except KeyError as exc:
            raise DataFormatError(f"{self.root}: episode metadata lacks column '{exc.args[0]}'") from None
        path = self.root / self.info["video_path"].format(video_key=video_key, chunk_index=chunk, file_index=file)
        return path, float(start)


class LeRobotV3Format(DatasetFormat):
    name = "lerobot-v3"
    description = "LeRobot dataset v3.0 (parquet + mp4, many episodes per file)"

    @classmethod
    def detect(cls, path: Path) -> bool:
        info = path / "meta" / "info.json"
        if not info.is_file():
            return False
        try:
            return str(json.loads(info.read_text()).get("codebase_version", "")).startswith("v3")
        except (json.JSONDecodeError, OSError):
            return False

    def open(self, path: str | Path, *, tolerance_s: float = 1e-4) -> LeRobotV3Source:
        return LeRobotV3Source(path, tolerance_s=tolerance_s)

    def write(
        self,
        store: Any,
        path: str | Path,
        *,
        video: str = "lerobot",
        data_file_mb: float = 100,
        video_file_mb: float = 500,
        chunks_size: int = lc.DEFAULT_CHUNKS_SIZE,
    ) -> None:
        """``video``: a VideoSettings preset ("lerobot", "h264", "lossless") or "none" (PNG in parquet)."""
        root = Path(path)
        root.mkdir(parents=True)
        settings = None if video == "none" else VideoSettings.preset(video)
        features = store.features
        cameras = [k for k, s in features.items() if s.kind == "image"]
        numeric = [k for k in features if k not in cameras]
        fps = store.fps
        data_loc, columns, data_bytes, global_index = (0, 0), _new_columns(numeric, cameras, settings), 0, 0
        encoders: dict[str, VideoEncoder] = {}
        video_loc = {k: (0, 0) for k in cameras}
        rows: list[dict[str, Any]] = []
        task_lookup = {t: i for i, t in enumerate(store.tasks)}

        def flush_data() -> None:
            if columns["index"]:
                _write_data(
                    root / DATA_PATH.format(chunk_index=data_loc[0], file_index=data_loc[1]),
                    columns,
                    features,
                    numeric,
                    cameras,
                    settings,
                )

        for e in track(range(store.num_episodes), total=store.num_episodes, description="writing LeRobot v3"):
            start, stop = store.episode_range(e)
            length = stop - start
            ep = store.episode(e)
            if data_bytes > data_file_mb * MB:
                flush_data()
                data_loc, columns, data_bytes = (
                    _next(*data_loc, chunks_size),
                    _new_columns(numeric, cameras, settings),
                    0,
                )
            row: dict[str, Any] = {
                "episode_index": e,
                "tasks": list(dict.fromkeys(ep.frame_tasks())),
                "length": length,
                "data/chunk_index": data_loc[0],
                "data/file_index": data_loc[1],
                "dataset_from_index": global_index,
                "dataset_to_index": global_index + length,
            }
            task_ids = [task_lookup[t] for t in ep.frame_tasks()]
            _append_columns(columns, ep.frames, numeric, cameras, settings, e, global_index, length, fps, task_ids)
            data_bytes += sum(ep.frames[k].nbytes for k in numeric) + (
                0 if settings else sum(ep.frames[k].nbytes for k in cameras)
            )
            for key in cameras if settings else []:
                enc = encoders.get(key)
                if enc is not None and enc.bytes > video_file_mb * MB:
                    enc.close()
                    video_loc[key] = _next(*video_loc[key], chunks_size)
                    enc = None
                if enc is None:
                    _, h, w = features[key].shape
                    file = root / VIDEO_PATH.format(
                        video_key=key, chunk_index=video_loc[key][0], file_index=video_loc[key][1]
                    )
                    enc = encoders[key] = VideoEncoder(file, fps=fps, width=w, height=h, settings=settings)
                row[f"videos/{key}/chunk_index"], row[f"videos/{key}/file_index"] = video_loc[key]
                row[f"videos/{key}/from_timestamp"] = enc.frames / fps
                row[f"videos/{key}/to_timestamp"] = (enc.frames + length) / fps
                enc.add(ep.frames[key])
            row["meta/episodes/chunk_index"], row["meta/episodes/file_index"] = 0, 0
            row.update(episode_stats(ep.frames, features))
            rows.append(row)
            global_index += length
        flush_data()
        for enc in encoders.values():
            enc.close()
        _write_meta(root, store, rows, settings, chunks_size, data_file_mb, video_file_mb)


def _new_columns(numeric: list[str], cameras: list[str], settings: VideoSettings | None) -> dict[str, list[Any]]:
    keys = [*numeric, *([] if settings else cameras), *lc.INDEX_COLUMNS]
    return {k: [] for k in keys}


def _append_columns(columns, frames, numeric, cameras, settings, episode, start, length, fps, task_ids) -> None:  # type: ignore[no-untyped-def]
    for key in numeric:
        columns[key].append(frames[key])
    if settings is None:
        for key in cameras:
            columns[key].extend({"bytes": lc.encode_png(f), "path": None} for f in frames[key])
    columns["timestamp"].append((np.arange(length) / fps).astype(np.float32))
    columns["frame_index"].append(np.arange(length, dtype=np.int64))
    columns["episode_index"].append(np.full(length, episode, dtype=np.int64))
    columns["index"].append(np.arange(start, start + length, dtype=np.int64))
    columns["task_index"].append(np.asarray(task_ids, dtype=np.int64))


def _write_data(path, columns, features, numeric, cameras, settings) -> None:  # type: ignore[no-untyped-def]
    arrow = lc.pa()
    out: dict[str, Any] = {}
    hf: dict[str, Any] = {}
    for key in numeric:
        out[key] = lc.arrow_column(np.concatenate(columns[key]))
        hf[key] = lc.hf_feature(features[key])
    if settings is None:
        image_type = arrow.struct([("bytes", arrow.binary()), ("path", arrow.string())])
        for key in cameras:
            out[key] = arrow.array(columns[key], type=image_type)
            hf[key] = {"_type": "Image"}
    for key in lc.INDEX_COLUMNS:
        out[key] = arrow.array(np.concatenate(columns[key]))
        hf[key] = {"dtype": lc.INDEX_FEATURES[key]["dtype"], "_type": "Value"}
    lc.write_parquet(path, out, hf)


def _write_meta(
    root: Path,
    store: Any,
    rows: list[dict[str, Any]],
    settings: VideoSettings | None,
    chunks_size: int,
    data_mb: float,
    video_mb: float,
) -> None:
    arrow, parquet = lc.pa(), lc.pq()
    video = {"codec": settings.codec, "pix_fmt": settings.pix_fmt} if settings else None
    features = {k: lc.info_feature(k, s, store.fps, video) for k, s in store.features.items()}
    features.update(lc.INDEX_FEATURES)
    info = {
        "codebase_version": "v3.0",
        "robot_type": store.robot_type,
        "total_episodes": store.num_episodes,
        "total_frames": store.num_frames,
        "total_tasks": len(store.tasks),
        "chunks_size": chunks_size,
        "data_files_size_in_mb": data_mb,
        "video_files_size_in_mb": video_mb,
        "fps": store.fps,
        "splits": {"train": f"0:{store.num_episodes}"},
        "data_path": DATA_PATH,
        "video_path": VIDEO_PATH if settings else None,
        "features": features,
        META_KEY: meta_document(store),
    }
    (root / "meta").mkdir(parents=True, exist_ok=True)
    tasks = arrow.table(
        {
            "task_index": arrow.array(range(len(store.tasks)), type=arrow.int64()),
            "task": arrow.array(store.tasks, type=arrow.string()),
        }
    )
    tasks = tasks.replace_schema_metadata({b"pandas": _pandas_index_metadata("task", "task_index")})
    parquet.write_table(tasks, root / "meta" / "tasks.parquet")
    episodes_file = root / EPISODES_PATH.format(chunk_index=0, file_index=0)
    episodes_file.parent.mkdir(parents=True, exist_ok=True)
    parquet.write_table(arrow.table(episode_columns(rows)), episodes_file)
    write_json(root / "meta" / "stats.json", lc.lerobot_stats(store.stats or {}, store.features, {}))
    write_json(root / "meta" / "info.json", info)


__all__ = ["LeRobotV3Format", "LeRobotV3Source", "features_from_meta"]
