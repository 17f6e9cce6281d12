"""The binary wire format of the policy servers: numpy arrays as {dtype, shape, data} (raw
little-endian bytes) inside msgpack (REST) or the proto's ``Tensor`` message (gRPC). Never pickle:
decoding builds arrays with ``np.frombuffer`` from a whitelisted dtype, after checking that the byte
count matches the shape, so a hostile payload can at worst be refused.

REST request body (``application/msgpack``)::

    {"observation": {"observation.state": ARRAY, "observation.images.wrist": ARRAY, …},
     "task": "pick up the cube" | nil,
     "prefix_actions": ARRAY | nil, "prefix_weights": ARRAY | nil,   # real-time chunking
     "request_id": "…" | nil}

    ARRAY = {"dtype": "float32", "shape": [1, 6], "data": <bytes>}

Response: ``{"action": ARRAY [H, A] float32, "timing": {…}, "request_id": …}``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from librobot.core.extras import require
from librobot.serve.errors import MalformedRequestError, RequestError

DTYPES = ("float16", "float32", "float64", "uint8", "int8", "int16", "int32", "int64", "bool")
MAX_RANK = 8
MAX_ELEMENTS = 1 << 40  # per array, zero-length axes aside: far above any request, far below numpy's limit
REQUEST_KEYS = {"observation", "task", "prefix_actions", "prefix_weights", "request_id"}
MSGPACK_TYPES = ("application/msgpack", "application/x-msgpack", "application/vnd.msgpack")


def _msgpack() -> Any:
    return require("msgpack", extra="librobot-serve[rest]", purpose="the policy servers' binary wire format")


def encode_array(array: np.ndarray) -> dict[str, Any]:
    array = np.asarray(array)
    name = array.dtype.name
    if name not in DTYPES:
        raise RequestError(f"dtype {name} cannot be sent; use one of {DTYPES}")
    little = array.astype(array.dtype.newbyteorder("<"), copy=False)
    return {"dtype": name, "shape": list(array.shape), "data": np.ascontiguousarray(little).tobytes()}


def array_to_tensor(pb2: Any, array: np.ndarray) -> Any:
    """The gRPC ``Tensor`` message of an array (``pb2``: the generated module)."""
    return pb2.Tensor(**encode_array(np.asarray(array)))


def tensor_to_dict(tensor: Any) -> dict[str, Any]:
    return {"dtype": tensor.dtype, "shape": list(tensor.shape), "data": tensor.data}


def decode_array(obj: Any, field: str) -> np.ndarray:
    """An array from {dtype, shape, data}; MalformedRequestError naming ``field`` otherwise."""
    if not isinstance(obj, Mapping) or set(obj) != {"dtype", "shape", "data"}:
        keys = sorted(obj) if isinstance(obj, Mapping) else type(obj).__name__
        raise MalformedRequestError(f"expected an array encoded as {{dtype, shape, data}}, got {keys}", field=field)
    dtype, shape, data = obj["dtype"], obj["shape"], obj["data"]
    if dtype not in DTYPES:
        raise MalformedRequestError(f"dtype {dtype!r} is not one of {DTYPES}", field=field)
    if (
        not isinstance(shape, (list, tuple))
        or len(shape) > MAX_RANK
        or not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s for s in shape)
    ):
        raise MalformedRequestError(
            f"shape must be a list of at most {MAX_RANK} non-negative ints, got {shape!r}", field=field
        )
    # Python ints: np.prod in int64 wraps around ([2**32, 2**32] → 0 elements, [2**63] → negative).
    if math.prod(s for s in shape if s) > MAX_ELEMENTS:
        raise MalformedRequestError(
            f"shape {list(shape)} describes more than 2**40 elements; send the array's real shape", field=field
        )
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise MalformedRequestError(f"data must be bytes, got {type(data).__name__}", field=field)
    item = np.dtype(dtype).newbyteorder("<")
    expected = math.prod(shape) * item.itemsize
    if len(data) != expected:
        raise MalformedRequestError(
            f"{len(data)} bytes do not hold shape {list(shape)} of {dtype} ({expected} bytes)", field=field
        )
    return np.frombuffer(data, dtype=item).reshape(shape).astype(np.dtype(dtype), copy=True)


@dataclass
class PredictRequest:
    observation: dict[str, np.ndarray]
    task: str | None = None
    prefix_actions: np.ndarray | None = None
    prefix_weights: np.ndarray | None = None
    request_id: str | None = None


def parse_request(message: Any) -> PredictRequest:
    """A decoded request document (msgpack map or its gRPC equivalent) → ``PredictRequest``."""
    if not isinstance(message, Mapping):
        raise MalformedRequestError(f"the body must be a map, got {type(message).__name__}")
    unknown = sorted(set(message) - REQUEST_KEYS, key=str)
    if unknown:
        raise RequestError(f"unknown request key; known: {sorted(REQUEST_KEYS)}", field=str(unknown[0]))
    observation = message.get("observation")
    if not isinstance(observation, Mapping) or not observation:
        raise RequestError("required: a non-empty map of arrays", field="observation")
    obs = {}
    for key, value in observation.items():
        if not isinstance(key, str):
            raise MalformedRequestError("observation keys must be strings", field="observation")
        obs[key] = decode_array(value, key)
    arrays = {
        k: decode_array(message[k], k) for k in ("prefix_actions", "prefix_weights") if message.get(k) is not None
    }
    request_id = message.get("request_id")
    if request_id is not None and (not isinstance(request_id, str) or len(request_id) > 128):
        raise RequestError("must be a string of at most 128 characters", field="request_id")
    return PredictRequest(
        obs, message.get("task"), arrays.get("prefix_actions"), arrays.get("prefix_weights"), request_id
    )


def decode_msgpack(body: bytes, max_bytes: int) -> Any:
    """Unpack a msgpack body with every container and string bounded by the request limit."""
    msgpack = _msgpack()
    try:
        return msgpack.unpackb(
            body,
            raw=False,
            strict_map_key=True,
            max_bin_len=max_bytes,
            max_str_len=1 << 16,
            max_array_len=1 << 12,
            max_map_len=1 << 10,
            max_ext_len=0,  # no extension types at all
        )
    except Exception as exc:  # msgpack raises several unrelated types for bad input
        raise MalformedRequestError(f"the body is not valid msgpack ({type(exc).__name__}: {exc})") from None


def encode_msgpack(obj: Any) -> bytes:
    return _msgpack().packb(obj, use_bin_type=True)


def encode_request(
    observation: Mapping[str, np.ndarray],
    task: str | None = None,
    *,
    prefix_actions: np.ndarray | None = None,
    prefix_weights: np.ndarray | None = None,
    request_id: str | None = None,
) -> bytes:
    message: dict[str, Any] = {"observation": {k: encode_array(np.asarray(v)) for k, v in observation.items()}}
    if task is not None:
        message["task"] = task
    if prefix_actions is not None:
        message["prefix_actions"] = encode_array(np.asarray(prefix_actions, np.float32))
    if prefix_weights is not None:
        message["prefix_weights"] = encode_array(np.asarray(prefix_weights, np.float32))
    if request_id is not None:
        message["request_id"] = request_id
    return encode_msgpack(message)
