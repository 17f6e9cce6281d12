"""RLDS as TFDS writes it: TFRecord shards of tf.train.Example episodes, read without TensorFlow.

::

    <dir>/features.json                       TFDS FeaturesDict (shapes, dtypes, image encodings)
    <dir>/dataset_info.json                   name, version, splits with shard lengths
    <dir>/<name>-<split>.tfrecord-00000-of-0000N

One record per episode; each step feature is flattened over the steps: ``steps/action`` holds T*A
floats, ``steps/observation/<camera>`` T encoded PNG/JPEG images, ``steps/language_instruction`` T
strings, ``steps/is_first|is_last|is_terminal`` T ints. Mapping to our keys: observation images →
``observation.images.<name>``, ``observation/state`` → ``observation.state``, other observations →
``observation.<name>``, ``action`` → ``action`` (a dict of action tensors is concatenated in
features.json order), ``reward`` → ``next.reward``, ``is_terminal`` → ``next.done``, the first
text step feature with "instruction" or "language" in its name → the task. tf.train.Example keeps
floats as float32, so float64 features lose precision here, as they do in TFDS.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from librobot.core.checkpoint import write_json
from librobot.core.extras import require
from librobot.core.logging import track
from librobot.core.specs import FeatureSpec
from librobot.data.episode import IMAGE_PREFIX, Episode, is_image_key
from librobot.data.errors import DataFormatError
from librobot.data.formats.base import DatasetFormat, EpisodeSource, features_from_meta, meta_document
from librobot.data.formats.example_proto import BYTES, FLOAT, INT64, encode_example, parse_example
from librobot.data.formats.tfrecord import index_records, read_record, write_records

EXTRA = "librobot-data[rlds]"
META_FILE = "librobot_meta.json"
_CLS = "tensorflow_datasets.core.features."


def _pil() -> Any:
    return require("PIL.Image", extra=EXTRA, purpose="encoding/decoding RLDS images")


# ---------------------------------------------------------------------------- features.json
def _walk(node: dict[str, Any], prefix: str, out: dict[str, dict[str, Any]]) -> None:
    cls = node.get("pythonClassName", "")
    if "featuresDict" in node:
        for name, child in node["featuresDict"]["features"].items():
            _walk(child, f"{prefix}/{name}" if prefix else name, out)
    elif "sequence" in node:
        _walk(node["sequence"]["feature"], prefix, out)
    elif "image" in node:
        spec = node["image"]
        out[prefix] = {
            "kind": "image",
            "shape": [int(d) for d in spec["shape"]["dimensions"]],
            "dtype": spec.get("dtype", "uint8"),
            "encoding": spec.get("encodingFormat", "png"),
        }
    elif "tensor" in node:
        spec = node["tensor"]
        dims = [int(d) for d in spec.get("shape", {}).get("dimensions", [])]
        out[prefix] = {"kind": "tensor", "shape": dims, "dtype": spec.get("dtype", "float32")}
    elif "text" in node or cls.endswith("Text"):
        out[prefix] = {"kind": "text"}
    else:
        raise DataFormatError(f"features.json: feature '{prefix}' has an unsupported type {cls or sorted(node)}")


def _tensor_node(shape: tuple[int, ...], dtype: str) -> dict[str, Any]:
    name = "scalar.Scalar" if not shape else "tensor_feature.Tensor"
    return {
        "pythonClassName": _CLS + name,
        "tensor": {"shape": {"dimensions": [str(s) for s in shape]}, "dtype": dtype, "encoding": "none"},
    }


def _dict_node(features: dict[str, Any]) -> dict[str, Any]:
    return {"pythonClassName": _CLS + "features_dict.FeaturesDict", "featuresDict": {"features": features}}


# ---------------------------------------------------------------------------- reading
def _default_key(path: str, spec: dict[str, Any]) -> str | None:
    """Our key for an RLDS step path (None: not a feature)."""
    parts = path.split("/")[1:]
    if parts[0] == "observation" and len(parts) == 2:
        if spec["kind"] == "image":
            return IMAGE_PREFIX + parts[1]
        return "observation.state" if parts[1] == "state" else f"observation.{parts[1]}"
    return {"action": "action", "reward": "next.reward", "is_terminal": "next.done"}.get("/".join(parts))


class RLDSSource(EpisodeSource):
    format_name = "rlds"

    def __init__(
        self, path: str | Path, *, split: str | None = None, fps: float | None = None, task_key: str | None = None
    ) -> None:
        self.path = Path(path)
        files = [self.path] if self.path.is_file() else sorted(p for p in self.path.glob("*.tfrecord*") if p.is_file())
        if split is not None:
            files = [f for f in files if f"-{split}.tfrecord" in f.name]
        if not files:
            raise DataFormatError(f"{self.path}: no *.tfrecord* files{f' for split {split!r}' if split else ''}")
        base = self.path if self.path.is_dir() else self.path.parent
        meta = json.loads((base / META_FILE).read_text()) if (base / META_FILE).is_file() else {}
        features_json = base / "features.json"
        if not features_json.is_file():
            raise DataFormatError(f"{base}: features.json is missing (it describes shapes and image encodings)")
        steps: dict[str, dict[str, Any]] = {}
        try:
            _walk(json.loads(features_json.read_text()), "", steps)
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise DataFormatError(f"{features_json}: cannot parse ({exc})") from exc
        self.step_specs = {k: v for k, v in steps.items() if k.startswith("steps/")}
        self.fps = float(fps or meta.get("fps") or 10.0)
        self.robot_type = meta.get("robot_type")
        self._keys: dict[str, list[str]] = meta.get("rlds_keys") or self._map_keys()
        texts = [k for k, v in self.step_specs.items() if v["kind"] == "text"]
        self.task_key = (
            task_key or meta.get("task_key") or next((k for k in texts if "instruction" in k or "language" in k), None)
        )
        self.features = features_from_meta(meta) or self._infer_features()
        self._index = [(f, off, n) for f in files for off, n in index_records(f)]

    def _map_keys(self) -> dict[str, list[str]]:
        keys: dict[str, list[str]] = {}
        for path, spec in self.step_specs.items():
            ours = _default_key(path, spec)
            if ours is None and path.startswith("steps/action/") and spec["kind"] == "tensor":
                ours = "action"  # a dict of action tensors: concatenated
            if ours is not None and spec["kind"] != "text":
                keys.setdefault(ours, []).append(path)
        return keys

    def _infer_features(self) -> dict[str, FeatureSpec]:
        features = {}
        for ours, paths in self._keys.items():
            specs = [self.step_specs[p] for p in paths]
            if specs[0]["kind"] == "image":
                h, w, c = specs[0]["shape"]
                features[ours] = FeatureSpec(name=ours, shape=(c, h, w), dtype="uint8", kind="image")
            elif len(specs) == 1:
                features[ours] = FeatureSpec(name=ours, shape=tuple(specs[0]["shape"]), dtype=specs[0]["dtype"])
            else:
                size = sum(int(np.prod(s["shape"])) for s in specs)
                features[ours] = FeatureSpec(name=ours, shape=(size,), dtype="float32")
        return features

    @property
    def num_episodes(self) -> int:
        return len(self._index)

    def episode(self, index: int) -> Episode:
        file, offset, length = self._index[index]
        where = f"{file} (episode record {index})"
        example = parse_example(read_record(file, offset, length, number=index), where=where)
        if "steps/is_first" not in example:
            raise DataFormatError(f"{where}: 'steps/is_first' is missing; not an RLDS episode")
        steps = len(example["steps/is_first"][1])
        frames = {}
        for ours, spec in self.features.items():
            parts = []
            for path in self._keys.get(ours, []):
                if path not in example:
                    raise DataFormatError(f"{where}: feature '{path}' is missing (has {sorted(example)[:8]}...)")
                parts.append(self._decode(example[path], self.step_specs[path], steps, path, where))
            if not parts:
                raise DataFormatError(f"{where}: no RLDS feature maps to '{ours}'")
            value = (
                parts[0]
                if len(parts) == 1
                else np.concatenate([p.reshape(steps, -1).astype(np.float32) for p in parts], axis=1)
            )
            if is_image_key(ours):
                frames[ours] = value
            else:
                frames[ours] = value.reshape(steps, *spec.shape).astype(spec.dtype)
        task: str | list[str] = ""
        if self.task_key:
            if self.task_key not in example:
                raise DataFormatError(f"{where}: task feature '{self.task_key}' is missing")
            tasks = [t.decode("utf-8") for t in example[self.task_key][1]]
            task = tasks[0] if len(set(tasks)) == 1 else tasks
        return Episode(frames=frames, task=task, fps=self.fps, metadata={"record": index})

    def _decode(self, item: tuple[str, Any], spec: dict[str, Any], steps: int, path: str, where: str) -> np.ndarray:
        kind, values = item
        if spec["kind"] == "image":
            if kind != BYTES or len(values) != steps:
                raise DataFormatError(
                    f"{where}: '{path}' should hold {steps} encoded images, has {len(values)} {kind} values"
                )
            pil = _pil()
            images = [np.asarray(pil.open(io.BytesIO(v))) for v in values]
            images = [im[..., None] if im.ndim == 2 else im for im in images]
            shape = tuple(spec["shape"])
            if any(im.shape != shape for im in images):
                raise DataFormatError(f"{where}: '{path}' images are {images[0].shape}, features.json says {shape}")
            return np.stack(images).astype(np.uint8)
        size = int(np.prod(spec["shape"])) if spec["shape"] else 1
        if kind == BYTES or len(values) != steps * size:
            raise DataFormatError(
                f"{where}: '{path}' has {len(values)} {kind} values; {steps} steps of shape {spec['shape']} need {steps * size}"
            )
        return (
            np.asarray(values)
            .reshape(steps, *spec["shape"])
            .astype(spec["dtype"] if spec["dtype"] != "string" else object)
        )


class RLDSFormat(DatasetFormat):
    name = "rlds"
    description = "RLDS / TFDS TFRecord episodes (Open X-Embodiment), read without TensorFlow"

    @classmethod
    def detect(cls, path: Path) -> bool:
        if path.is_file():
            return ".tfrecord" in path.name
        return path.is_dir() and (path / "features.json").is_file() and any(path.glob("*.tfrecord*"))

    def open(
        self, path: str | Path, *, split: str | None = None, fps: float | None = None, task_key: str | None = None
    ) -> RLDSSource:
        return RLDSSource(path, split=split, fps=fps, task_key=task_key)

    def write(
        self,
        store: Any,
        path: str | Path,
        *,
        name: str = "librobot_dataset",
        image_format: str = "png",
        shard_mb: float = 200,
    ) -> None:
        """TFRecord shards of about ``shard_mb`` MB; images as PNG (lossless) or JPEG."""
        root = Path(path)
        root.mkdir(parents=True)
        keys: dict[str, list[str]] = {}
        observation, step = {}, {}
        for key, spec in store.features.items():
            if is_image_key(key):
                c, h, w = spec.shape
                sub = key[len(IMAGE_PREFIX) :]
                observation[sub] = {
                    "pythonClassName": _CLS + "image_feature.Image",
                    "image": {
                        "shape": {"dimensions": [str(h), str(w), str(c)]},
                        "dtype": "uint8",
                        "encodingFormat": image_format,
                    },
                }
                keys[key] = [f"steps/observation/{sub}"]
            elif key.startswith("observation."):
                sub = key.removeprefix("observation.")
                observation[sub] = _tensor_node(spec.shape, spec.dtype)
                keys[key] = [f"steps/observation/{sub}"]
            else:
                sub = {"next.reward": "reward", "next.done": "is_terminal"}.get(key, key.replace(".", "_"))
                step[sub] = _tensor_node(spec.shape, spec.dtype)
                keys[key] = [f"steps/{sub}"]
        for flag in ("is_first", "is_last", "is_terminal"):
            step.setdefault(flag, _tensor_node((), "bool"))
        step["language_instruction"] = {"pythonClassName": _CLS + "text_feature.Text", "text": {}}
        step["observation"] = _dict_node(observation)
        steps_node = {
            "pythonClassName": _CLS + "dataset_feature.Dataset",
            "sequence": {"feature": _dict_node(step), "length": "-1"},
        }
        episode_meta = {"episode_index": _tensor_node((), "int64")}
        write_json(
            root / "features.json", _dict_node({"steps": steps_node, "episode_metadata": _dict_node(episode_meta)})
        )
        meta = {**meta_document(store), "rlds_keys": keys, "task_key": "steps/language_instruction"}
        write_json(root / META_FILE, meta)
        shards: list[list[bytes]] = [[]]
        size = 0
        for e in track(range(store.num_episodes), total=store.num_episodes, description="writing RLDS"):
            record = encode_example(self._episode_features(store.episode(e), e, keys, store.features, image_format))
            if shards[-1] and size + len(record) > shard_mb * 1024 * 1024:
                shards.append([])
                size = 0
            shards[-1].append(record)
            size += len(record)
        total = 0
        for i, records in enumerate(shards):
            total += write_records(root / f"{name}-train.tfrecord-{i:05d}-of-{len(shards):05d}", records)
        info = {
            "name": name,
            "version": "1.0.0",
            "fileFormat": "tfrecord",
            "moduleName": "librobot.data",
            "splits": [
                {
                    "name": "train",
                    "numBytes": str(total),
                    "shardLengths": [str(len(s)) for s in shards],
                    "filepathTemplate": "{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}",
                }
            ],
        }
        write_json(root / "dataset_info.json", info)

    @staticmethod
    def _episode_features(
        ep: Episode, index: int, keys: dict[str, list[str]], features: dict[str, FeatureSpec], image_format: str
    ) -> dict[str, tuple[str, Any]]:
        steps = ep.length
        out: dict[str, tuple[str, Any]] = {}
        for key, (path,) in keys.items():
            value = ep.frames[key]
            if is_image_key(key):
                pil, encoded = _pil(), []
                for frame in value:
                    buffer = io.BytesIO()
                    pil.fromarray(frame[..., 0] if frame.shape[-1] == 1 else frame).save(
                        buffer, format=image_format.upper()
                    )
                    encoded.append(buffer.getvalue())
                out[path] = (BYTES, encoded)
            elif value.dtype.kind == "f":
                out[path] = (FLOAT, value.astype(np.float32).ravel())
            else:
                out[path] = (INT64, value.astype(np.int64).ravel())
        first = np.zeros(steps, dtype=np.int64)
        first[0] = 1
        last = first[::-1].copy()
        out["steps/is_first"] = (INT64, first)
        out["steps/is_last"] = (INT64, last)
        out.setdefault("steps/is_terminal", (INT64, last))
        out["steps/language_instruction"] = (BYTES, [t.encode("utf-8") for t in ep.frame_tasks()])
        out["episode_metadata/episode_index"] = (INT64, np.asarray([index]))
        return out
