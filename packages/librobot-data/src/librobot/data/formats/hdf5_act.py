"""HDF5 in the ACT / ALOHA layout: a folder of ``episode_<i>.hdf5`` files, one per episode::

    /observations/qpos            [T, D]        → observation.state
    /observations/qvel, /effort   [T, D]        → observation.velocity, observation.effort
    /observations/images/<cam>    [T, H, W, 3]  → observation.images.<cam>
    /action                       [T, A]        → action
    attrs: sim (bool); compress (bool: images JPEG-encoded, padded, lengths in /compress_len)

ACT files carry no task or frame rate; we add ``task`` / ``tasks`` (per-frame JSON), ``fps`` and
``librobot_meta`` attributes when writing and read them back when present (fps otherwise from the
``fps`` option, default 50 Hz as in ALOHA).
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from librobot.core.extras import require
from librobot.core.logging import get_logger, track
from librobot.core.specs import FeatureSpec
from librobot.data.episode import IMAGE_PREFIX, Episode, is_image_key
from librobot.data.errors import DataFormatError
from librobot.data.formats.base import META_KEY, DatasetFormat, EpisodeSource, features_from_meta, meta_document

EXTRA = "librobot-data[hdf5]"
log = get_logger("data.formats")
_NAMES = {"qpos": "observation.state", "qvel": "observation.velocity", "effort": "observation.effort"}


def h5py() -> Any:
    return require("h5py", extra=EXTRA, purpose="reading and writing HDF5 datasets")


def open_h5(path: Path, mode: str = "r") -> Any:
    try:
        return h5py().File(path, mode)
    except OSError as exc:
        raise DataFormatError(f"{path}: cannot open HDF5 file ({exc}); it is missing, truncated or corrupt") from exc


def read_dataset(group: Any, name: str, where: Path) -> np.ndarray:
    if name not in group:
        raise DataFormatError(
            f"{where}: dataset '{group.name.rstrip('/')}/{name}' is missing (has {sorted(group.keys())})"
        )
    try:
        return np.asarray(group[name][()])
    except OSError as exc:
        raise DataFormatError(
            f"{where}: dataset '{name}' cannot be read ({exc}); the file is truncated or corrupt"
        ) from exc


def task_attrs(episode: Episode) -> dict[str, str]:
    if isinstance(episode.task, str):
        return {"task": episode.task}
    return {"tasks": json.dumps(list(episode.task))}


def task_from_attrs(attrs: Any) -> str | list[str] | None:
    if "tasks" in attrs:
        return list(json.loads(attrs["tasks"]))
    if "task" in attrs:
        value = attrs["task"]
        return value.decode() if isinstance(value, bytes) else str(value)
    return None


def _episode_number(path: Path) -> int:
    match = re.search(r"(\d+)(?=\.h(df)?5$)", path.name)
    return int(match.group(1)) if match else -1


class ACTSource(EpisodeSource):
    format_name = "hdf5-act"

    def __init__(self, path: str | Path, *, fps: float | None = None, task: str = "") -> None:
        self.path = Path(path)
        files = [self.path] if self.path.is_file() else [*self.path.glob("*.hdf5"), *self.path.glob("*.h5")]
        self.files = sorted(files, key=lambda p: (_episode_number(p), p.name))
        if not self.files:
            raise DataFormatError(f"{self.path}: no *.hdf5 episode files")
        self.default_task = task
        with open_h5(self.files[0]) as f:
            meta = json.loads(f.attrs[META_KEY]) if META_KEY in f.attrs else {}
            self.fps = float(fps or meta.get("fps") or f.attrs.get("fps", 50.0))
            self.robot_type = meta.get("robot_type")
            self._paths = meta.get("hdf5_keys") or self._default_paths(f)
            self.features = features_from_meta(meta) or self._infer(f)

    def _default_paths(self, f: Any) -> dict[str, str]:
        if "action" not in f or "observations" not in f:
            raise DataFormatError(
                f"{self.files[0]}: not an ACT episode (needs /action and /observations, has {sorted(f.keys())})"
            )
        paths = {"action": "action"}
        for name, item in f["observations"].items():
            if name == "images":
                for cam in item:
                    paths[IMAGE_PREFIX + cam] = f"observations/images/{cam}"
            elif isinstance(item, h5py().Dataset):
                paths[_NAMES.get(name, f"observation.{name}")] = f"observations/{name}"
        return paths

    def _infer(self, f: Any) -> dict[str, FeatureSpec]:
        features = {}
        compressed = bool(f.attrs.get("compress", False))
        for key, path in self._paths.items():
            if path not in f:
                raise DataFormatError(f"{self.files[0]}: dataset '/{path}' is missing")
            ds = f[path]
            if is_image_key(key):
                if compressed:
                    h, w, c = self._decode_jpeg(bytes(ds[0]), self.files[0], path).shape
                else:
                    h, w, c = ds.shape[1:]
                features[key] = FeatureSpec(name=key, shape=(c, h, w), dtype="uint8", kind="image")
            else:
                features[key] = FeatureSpec(name=key, shape=tuple(ds.shape[1:]), dtype=str(ds.dtype))
        return features

    @staticmethod
    def _decode_jpeg(data: bytes, where: Path, path: str) -> np.ndarray:
        pil = require("PIL.Image", extra=EXTRA, purpose="decoding compressed ACT images")
        try:
            image = np.asarray(pil.open(io.BytesIO(data)))
        except Exception as exc:
            raise DataFormatError(f"{where}: '/{path}' holds an undecodable image ({exc})") from exc
        return image[..., None] if image.ndim == 2 else image

    @property
    def num_episodes(self) -> int:
        return len(self.files)

    def episode(self, index: int) -> Episode:
        file = self.files[index]
        frames: dict[str, np.ndarray] = {}
        with open_h5(file) as f:
            compressed = bool(f.attrs.get("compress", False))
            for key, path in self._paths.items():
                parent, _, name = path.rpartition("/")
                data = read_dataset(f[parent] if parent else f, name, file)
                if is_image_key(key) and compressed:
                    lengths = read_dataset(f, "compress_len", file)
                    cam = [k for k in self._paths if is_image_key(k)].index(key)  # compress_len rows follow the cameras
                    data = np.stack(
                        [self._decode_jpeg(bytes(row[: int(n)]), file, path) for row, n in zip(data, lengths[cam])]
                    )
                frames[key] = data
            task = task_from_attrs(f.attrs)
        lengths = {k: len(v) for k, v in frames.items()}
        if len(set(lengths.values())) != 1:
            raise DataFormatError(f"{file}: datasets have different lengths {lengths}")
        for key, spec in self.features.items():
            expected = (spec.shape[1], spec.shape[2], spec.shape[0]) if is_image_key(key) else spec.shape
            if frames[key].shape[1:] != expected:
                raise DataFormatError(
                    f"{file}: '/{self._paths[key]}' has frames of shape {list(frames[key].shape[1:])}, expected {list(expected)}"
                )
            if not is_image_key(key) and str(frames[key].dtype) != spec.dtype:
                frames[key] = frames[key].astype(spec.dtype)
        return Episode(
            frames=frames,
            task=task if task is not None else self.default_task,
            fps=self.fps,
            metadata={"file": str(file)},
        )


class ACTFormat(DatasetFormat):
    name = "hdf5-act"
    description = "HDF5, ACT/ALOHA layout (one episode_<i>.hdf5 per episode)"

    @classmethod
    def detect(cls, path: Path) -> bool:
        files = (
            [path]
            if path.is_file()
            else sorted(path.glob("*.hdf5")) + sorted(path.glob("*.h5"))
            if path.is_dir()
            else []
        )
        if not files or not files[0].suffix.startswith(".h"):
            return False
        try:
            with h5py().File(files[0], "r") as f:
                return "action" in f and "observations" in f
        except OSError:
            return False

    def open(self, path: str | Path, *, fps: float | None = None, task: str = "") -> ACTSource:
        return ACTSource(path, fps=fps, task=task)

    def write(self, store: Any, path: str | Path, *, compression: str | None = None) -> None:
        """One file per episode; ``compression``: None (as ACT), "gzip" or "lzf"."""
        root = Path(path)
        root.mkdir(parents=True)
        paths = {}
        for key in store.features:
            if is_image_key(key):
                paths[key] = f"observations/images/{key[len(IMAGE_PREFIX) :]}"
            elif key in _NAMES.values():
                paths[key] = "observations/" + next(n for n, k in _NAMES.items() if k == key)
            elif key.startswith("observation."):
                paths[key] = "observations/" + key.removeprefix("observation.")
            else:
                paths[key] = key
        meta = json.dumps({**meta_document(store), "hdf5_keys": paths})
        for e in track(range(store.num_episodes), total=store.num_episodes, description="writing HDF5 (ACT)"):
            ep = store.episode(e)
            with open_h5(root / f"episode_{e}.hdf5", "w") as f:
                f.attrs["sim"] = False
                f.attrs["fps"] = store.fps
                f.attrs[META_KEY] = meta
                for name, value in task_attrs(ep).items():
                    f.attrs[name] = value
                for key, dpath in paths.items():
                    value = ep.frames[key]
                    chunks = (1, *value.shape[1:]) if is_image_key(key) else None
                    f.create_dataset(dpath, data=value, chunks=chunks, compression=compression)
