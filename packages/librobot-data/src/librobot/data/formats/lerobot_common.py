"""Pieces shared by the LeRobot v2.1 and v3.0 layouts: info.json features, parquet columns, stats.

Parquet columns follow what LeRobot (through Hugging Face ``datasets``) writes: a feature of shape
[1] is a plain column, a vector is a fixed-size list, a matrix a list of lists, an "image" feature a
struct {bytes: PNG, path}. Video features live in mp4 files and have no column.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from librobot.core.extras import require
from librobot.core.specs import FeatureSpec
from librobot.data.episode import IMAGE_PREFIX, is_image_key
from librobot.data.errors import DataFormatError

EXTRA = "librobot-data[lerobot]"
INDEX_COLUMNS = ("timestamp", "frame_index", "episode_index", "index", "task_index")
DEFAULT_CHUNKS_SIZE = 1000


def pa() -> Any:
    return require("pyarrow", extra=EXTRA, purpose="reading and writing LeRobot parquet files")


def pq() -> Any:
    pa()
    import pyarrow.parquet as parquet

    return parquet


def read_info(root: Path) -> dict[str, Any]:
    path = root / "meta" / "info.json"
    if not path.is_file():
        raise DataFormatError(f"{root} is not a LeRobot dataset: {path} is missing")
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataFormatError(f"{path} is not valid JSON: {exc}") from exc
    for key in ("codebase_version", "fps", "features", "data_path"):
        if key not in info:
            raise DataFormatError(f"{path}: missing key '{key}'")
    return info


def read_table(path: Path, columns: list[str] | None = None) -> Any:
    if not path.is_file():
        raise DataFormatError(f"parquet file {path} is missing")
    try:
        return pq().read_table(path, columns=columns)
    except Exception as exc:
        raise DataFormatError(f"{path}: cannot read parquet ({exc}); the file is truncated or corrupt") from exc


def our_key(key: str, spec: Mapping[str, Any]) -> str:
    """LeRobot key → ours: image features must live under observation.images.<camera>."""
    if spec.get("dtype") in ("video", "image") and not is_image_key(key):
        return IMAGE_PREFIX + key.removeprefix("observation.").replace(".", "_")
    return key


def image_layout(key: str, spec: Mapping[str, Any]) -> tuple[int, int, int]:
    """(C, H, W) of an image/video feature, whichever order info.json lists it in."""
    shape = list(spec["shape"])
    names = [str(n).lower() for n in (spec.get("names") or [])]
    if len(shape) != 3:
        raise DataFormatError(f"info.json: image feature '{key}' has shape {shape}, expected 3 dimensions")
    if names and names[0].startswith("channel"):
        return shape[0], shape[1], shape[2]
    return shape[2], shape[0], shape[1]


def features_from_info(info: Mapping[str, Any]) -> tuple[dict[str, FeatureSpec], dict[str, str]]:
    """Our feature specs and the map our key → LeRobot key."""
    features: dict[str, FeatureSpec] = {}
    source: dict[str, str] = {}
    for key, spec in info["features"].items():
        if key in INDEX_COLUMNS or spec.get("dtype") == "string":
            continue
        ours = our_key(key, spec)
        names = spec.get("names")
        if spec["dtype"] in ("video", "image"):
            features[ours] = FeatureSpec(name=ours, shape=image_layout(key, spec), dtype="uint8", kind="image")
        else:
            shape = tuple(spec["shape"])
            flat_names = (
                tuple(names)
                if isinstance(names, list)
                and len(names) == (shape[-1] if shape else 1)
                and all(isinstance(n, str) for n in names)
                else None
            )
            features[ours] = FeatureSpec(name=ours, shape=shape, dtype=spec["dtype"], names=flat_names)
        source[ours] = key
    return features, source


def column_to_numpy(table: Any, column: str, spec: FeatureSpec, where: Path) -> np.ndarray:
    """A numeric column as [rows, *spec.shape] of the spec's dtype, with clear errors."""
    if column not in table.column_names:
        raise DataFormatError(f"{where}: column '{column}' is missing (columns: {table.column_names})")
    array = table.column(column).combine_chunks()
    if array.null_count:
        raise DataFormatError(f"{where}: column '{column}' has {array.null_count} null values")
    rows = len(array)
    types = pa().types
    values = array
    while types.is_list(values.type) or types.is_fixed_size_list(values.type) or types.is_large_list(values.type):
        values = values.flatten()
    if not (types.is_integer(values.type) or types.is_floating(values.type) or types.is_boolean(values.type)):
        raise DataFormatError(f"{where}: column '{column}' holds {array.type}, expected numbers of dtype {spec.dtype}")
    flat = values.to_numpy(zero_copy_only=False)
    size = int(np.prod(spec.shape)) if spec.shape else 1
    if flat.size != rows * size:
        raise DataFormatError(
            f"{where}: column '{column}' has {flat.size} values for {rows} rows; feature shape {list(spec.shape)} "
            f"needs {rows * size}"
        )
    out = flat.reshape(rows, *spec.shape)
    if out.dtype != np.dtype(spec.dtype):
        if not np.can_cast(out.dtype, spec.dtype, casting="same_kind") and not (
            out.dtype.kind in "iu" and np.dtype(spec.dtype).kind in "iuf"
        ):
            raise DataFormatError(f"{where}: column '{column}' has dtype {out.dtype}, info.json says {spec.dtype}")
        out = out.astype(spec.dtype)
    return out


def decode_image_column(table: Any, column: str, spec: FeatureSpec, where: Path) -> np.ndarray:
    """An "image" column (PNG/JPEG bytes in a struct) as uint8 [rows, H, W, C]."""
    pil = require("PIL.Image", extra=EXTRA, purpose="decoding images stored in parquet")
    if column not in table.column_names:
        raise DataFormatError(f"{where}: column '{column}' is missing (columns: {table.column_names})")
    c, h, w = spec.shape
    frames = np.empty((table.num_rows, h, w, c), dtype=np.uint8)
    for i, item in enumerate(table.column(column).to_pylist()):
        data = item.get("bytes") if isinstance(item, dict) else item
        if not data:
            raise DataFormatError(f"{where}: row {i} of image column '{column}' has no bytes")
        image = np.asarray(pil.open(io.BytesIO(data)))
        image = image[..., None] if image.ndim == 2 else image
        if image.shape != (h, w, c):
            raise DataFormatError(f"{where}: row {i} of '{column}' is {list(image.shape)}, expected {[h, w, c]}")
        frames[i] = image
    return frames


def encode_png(frame: np.ndarray) -> bytes:
    pil = require("PIL.Image", extra=EXTRA, purpose="encoding images as PNG")
    buffer = io.BytesIO()
    pil.fromarray(frame[..., 0] if frame.shape[-1] == 1 else frame).save(buffer, format="PNG")
    return buffer.getvalue()


def arrow_column(values: np.ndarray) -> Any:
    """[rows, *shape] → a plain column ([rows] or [rows, 1]) or nested fixed-size lists."""
    arrow = pa()
    if values.ndim == 1 or (values.ndim == 2 and values.shape[1] == 1):
        return arrow.array(values.reshape(len(values)))
    flat = arrow.array(values.reshape(-1))
    for size in reversed(values.shape[1:]):
        flat = arrow.FixedSizeListArray.from_arrays(flat, size)
    return flat


def hf_feature(spec: FeatureSpec) -> dict[str, Any]:
    """The Hugging Face ``datasets`` feature JSON for a column (stored in the parquet metadata)."""
    if spec.shape in ((), (1,)):
        return {"dtype": spec.dtype, "_type": "Value"}
    feature: dict[str, Any] = {"dtype": spec.dtype, "_type": "Value"}
    for size in reversed(spec.shape):
        feature = {"feature": feature, "length": int(size), "_type": "Sequence"}
    return feature


def info_feature(key: str, spec: FeatureSpec, fps: float, video: dict[str, Any] | None) -> dict[str, Any]:
    """info.json entry of one of our features (images HWC with names, as LeRobot writes them)."""
    if spec.kind == "image" or is_image_key(key):
        c, h, w = spec.shape
        entry: dict[str, Any] = {
            "dtype": "video" if video else "image",
            "shape": [h, w, c],
            "names": ["height", "width", "channels"],
        }
        if video:
            entry["info"] = {
                "video.height": h,
                "video.width": w,
                "video.codec": video["codec"],
                "video.pix_fmt": video["pix_fmt"],
                "video.is_depth_map": False,
                "video.fps": fps,
                "video.channels": c,
                "has_audio": False,
            }
        return entry
    shape = list(spec.shape) or [1]
    return {"dtype": spec.dtype, "shape": shape, "names": list(spec.names) if spec.names else None}


INDEX_FEATURES = {
    "timestamp": {"dtype": "float32", "shape": [1], "names": None},
    "frame_index": {"dtype": "int64", "shape": [1], "names": None},
    "episode_index": {"dtype": "int64", "shape": [1], "names": None},
    "index": {"dtype": "int64", "shape": [1], "names": None},
    "task_index": {"dtype": "int64", "shape": [1], "names": None},
}


def lerobot_stats(
    stats: Mapping[str, Any], features: Mapping[str, FeatureSpec], source: Mapping[str, str]
) -> dict[str, Any]:
    """Our stats → LeRobot's stats.json layout (image stats as [C, 1, 1], count as [n])."""
    out: dict[str, Any] = {}
    for key, item in stats.items():
        if key not in features:
            continue
        entry: dict[str, Any] = {}
        for name in ("min", "max", "mean", "std", "q01", "q99"):
            if name in item:
                value = item[name]
                entry[name] = [[[v]] for v in value] if is_image_key(key) else value
        entry["count"] = [int(item["count"])]
        out[source.get(key, key)] = entry
    return out


def write_parquet(path: Path, columns: dict[str, Any], hf_features: dict[str, Any]) -> None:
    arrow = pa()
    table = arrow.table(columns)
    table = table.replace_schema_metadata({b"huggingface": json.dumps({"info": {"features": hf_features}}).encode()})
    path.parent.mkdir(parents=True, exist_ok=True)
    pq().write_table(table, path)
