"""HDF5 in the robomimic layout: one file, one group per demonstration::

    /data                         attrs: total (frames), env_args (JSON)
    /data/demo_<i>                attrs: num_samples
    /data/demo_<i>/actions        [T, A]          → action
    /data/demo_<i>/obs/<name>     [T, ...]        → observation.<name>; "state" → observation.state;
                                                    uint8 [T, H, W, C] (usually "<cam>_image") →
                                                    observation.images.<cam>
    /data/demo_<i>/next_obs/...   obs shifted by one frame (written for robomimic; not read back)
    /data/demo_<i>/rewards, dones [T]             → next.reward, next.done

Tasks: a demo's ``task`` / ``tasks`` attribute (ours), else LIBERO's ``problem_info`` language
instruction, else the ``task`` option. ``state_keys`` concatenates low-dimensional observations
(e.g. robot0_eef_pos, robot0_eef_quat, robot0_gripper_qpos) into ``observation.state``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from librobot.core.logging import track
from librobot.core.specs import FeatureSpec
from librobot.data.episode import IMAGE_PREFIX, Episode, is_image_key
from librobot.data.errors import DataFormatError
from librobot.data.formats.base import META_KEY, DatasetFormat, EpisodeSource, features_from_meta, meta_document
from librobot.data.formats.hdf5_act import h5py, open_h5, read_dataset, task_attrs, task_from_attrs

_STEP = {"actions": "action", "rewards": "next.reward", "dones": "next.done"}


def _demo_number(name: str) -> int:
    match = re.search(r"(\d+)$", name)
    return int(match.group(1)) if match else -1


class RobomimicSource(EpisodeSource):
    format_name = "hdf5-robomimic"

    def __init__(
        self,
        path: str | Path,
        *,
        fps: float | None = None,
        task: str = "",
        state_keys: list[str] | None = None,
        filter_key: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.default_task = task
        self.state_keys = list(state_keys or [])
        with open_h5(self.path) as f:
            if "data" not in f:
                raise DataFormatError(f"{self.path}: not a robomimic file (no /data group; has {sorted(f.keys())})")
            data = f["data"]
            meta = json.loads(data.attrs[META_KEY]) if META_KEY in data.attrs else {}
            names = sorted(data.keys(), key=lambda n: (_demo_number(n), n))
            if filter_key is not None:
                if f"mask/{filter_key}" not in f:
                    raise DataFormatError(f"{self.path}: filter key '/mask/{filter_key}' is missing")
                keep = {n.decode() if isinstance(n, bytes) else n for n in f[f"mask/{filter_key}"][()]}
                names = [n for n in names if n in keep]
            if not names:
                raise DataFormatError(f"{self.path}: /data has no demonstrations")
            self.demos = names
            self.fps = float(fps or meta.get("fps") or data.attrs.get("fps", 20.0))
            self.robot_type = meta.get("robot_type")
            self.problem_task = self._problem_task(data.attrs)
            self._paths: dict[str, list[str]] = meta.get("hdf5_keys") or self._default_paths(data[names[0]])
            self.features = features_from_meta(meta) or self._infer(data[names[0]])

    @staticmethod
    def _problem_task(attrs: Any) -> str | None:
        if "problem_info" in attrs:
            try:
                return json.loads(attrs["problem_info"]).get("language_instruction")
            except (json.JSONDecodeError, AttributeError):
                return None
        return None

    def _default_paths(self, demo: Any) -> dict[str, list[str]]:
        paths: dict[str, list[str]] = {}
        for name, key in _STEP.items():
            if name in demo:
                paths[key] = [name]
        if "action" not in paths:
            raise DataFormatError(f"{self.path}: {demo.name} has no 'actions' dataset")
        for name, ds in demo.get("obs", {}).items():
            if ds.dtype == np.uint8 and ds.ndim == 4:
                paths[IMAGE_PREFIX + name.removesuffix("_image")] = [f"obs/{name}"]
            elif name in self.state_keys:
                continue
            else:
                paths["observation.state" if name == "state" else f"observation.{name}"] = [f"obs/{name}"]
        if self.state_keys:
            missing = [k for k in self.state_keys if f"obs/{k}" not in demo]
            if missing:
                raise DataFormatError(f"{self.path}: state_keys {missing} are not in {demo.name}/obs")
            paths["observation.state"] = [f"obs/{k}" for k in self.state_keys]
        return paths

    def _infer(self, demo: Any) -> dict[str, FeatureSpec]:
        features = {}
        for key, paths in self._paths.items():
            sets = [demo[p] for p in paths]
            if is_image_key(key):
                h, w, c = sets[0].shape[1:]
                features[key] = FeatureSpec(name=key, shape=(c, h, w), dtype="uint8", kind="image")
            elif len(sets) > 1:
                size = sum(int(np.prod(s.shape[1:])) for s in sets)
                features[key] = FeatureSpec(name=key, shape=(size,), dtype="float32")
            else:
                dtype = "bool" if key == "next.done" else str(sets[0].dtype)
                features[key] = FeatureSpec(name=key, shape=tuple(sets[0].shape[1:]), dtype=dtype)
        return features

    @property
    def num_episodes(self) -> int:
        return len(self.demos)

    def episode(self, index: int) -> Episode:
        name = self.demos[index]
        with open_h5(self.path) as f:
            demo = f["data"][name]
            frames = {}
            for key, paths in self._paths.items():
                parts = []
                for p in paths:
                    parent, _, leaf = p.rpartition("/")
                    parts.append(read_dataset(demo[parent] if parent else demo, leaf, self.path))
                value = parts[0] if len(parts) == 1 else np.concatenate([x.reshape(len(x), -1) for x in parts], axis=1)
                frames[key] = value.astype(self.features[key].dtype)
            task = task_from_attrs(demo.attrs)
        lengths = {k: len(v) for k, v in frames.items()}
        if len(set(lengths.values())) != 1:
            raise DataFormatError(f"{self.path}: {name} has datasets of different lengths {lengths}")
        for key, spec in self.features.items():
            expected = (spec.shape[1], spec.shape[2], spec.shape[0]) if is_image_key(key) else spec.shape
            if frames[key].shape[1:] != expected:
                raise DataFormatError(
                    f"{self.path}: {name} '{key}' has frames {list(frames[key].shape[1:])}, expected {list(expected)}"
                )
        task = task if task is not None else (self.problem_task or self.default_task)
        return Episode(frames=frames, task=task, fps=self.fps, metadata={"demo": name})


class RobomimicFormat(DatasetFormat):
    name = "hdf5-robomimic"
    description = "HDF5, robomimic layout (one file, data/demo_<i>/obs|actions)"
    output = "file"

    @classmethod
    def detect(cls, path: Path) -> bool:
        if not path.is_file() or not path.suffix.startswith(".h"):
            return False
        try:
            with h5py().File(path, "r") as f:
                return "data" in f and isinstance(f["data"], h5py().Group)
        except OSError:
            return False

    def stamp(self, path: Path, document: dict[str, Any]) -> None:
        with open_h5(path, "a") as f:
            f.attrs["librobot_conversion"] = json.dumps(document, sort_keys=True)

    def read_stamp(self, path: Path) -> dict[str, Any] | None:
        try:
            with h5py().File(path, "r") as f:
                return json.loads(f.attrs["librobot_conversion"]) if "librobot_conversion" in f.attrs else None
        except (OSError, json.JSONDecodeError):
            return None

    def open(
        self,
        path: str | Path,
        *,
        fps: float | None = None,
        task: str = "",
        state_keys: list[str] | None = None,
        filter_key: str | None = None,
    ) -> RobomimicSource:
        return RobomimicSource(path, fps=fps, task=task, state_keys=state_keys, filter_key=filter_key)

    def write(self, store: Any, path: str | Path, *, next_obs: bool = True, compression: str | None = "gzip") -> None:
        """One .hdf5 file; ``next_obs`` writes the shifted observations robomimic's loaders expect."""
        path = Path(path)
        paths: dict[str, list[str]] = {}
        for key in store.features:
            if is_image_key(key):
                paths[key] = [f"obs/{key[len(IMAGE_PREFIX) :]}_image"]
            elif key == "observation.state":
                paths[key] = ["obs/state"]
            elif key.startswith("observation."):
                paths[key] = ["obs/" + key.removeprefix("observation.")]
            else:
                paths[key] = [next((n for n, k in _STEP.items() if k == key), key.replace(".", "_"))]
        with open_h5(path, "w") as f:
            data = f.create_group("data")
            for e in track(range(store.num_episodes), total=store.num_episodes, description="writing HDF5 (robomimic)"):
                ep = store.episode(e)
                demo = data.create_group(f"demo_{e}")
                demo.attrs["num_samples"] = ep.length
                for name, value in task_attrs(ep).items():
                    demo.attrs[name] = value
                for key, (dpath,) in paths.items():
                    value = ep.frames[key]
                    chunks = (1, *value.shape[1:]) if is_image_key(key) else None
                    demo.create_dataset(dpath, data=value, chunks=chunks, compression=compression)
                    if next_obs and dpath.startswith("obs/"):
                        shifted = np.concatenate([value[1:], value[-1:]])
                        demo.create_dataset("next_" + dpath, data=shifted, chunks=chunks, compression=compression)
            data.attrs["total"] = store.num_frames
            data.attrs["fps"] = store.fps
            data.attrs["env_args"] = json.dumps(
                {"env_name": store.robot_type or "unknown", "type": 1, "env_kwargs": {}}
            )
            data.attrs[META_KEY] = json.dumps({**meta_document(store), "hdf5_keys": paths})
