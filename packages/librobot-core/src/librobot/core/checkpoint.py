"""Safe checkpoint I/O: safetensors for tensors, JSON for everything else, never pickle.

A checkpoint is a directory::

    manifest.json         format, version, metadata, and the sha256 + size of every other file
    <name>.safetensors    one per tensor group (model, optimizer, ema…)
    <name>.json           JSON documents (config, normalisation stats, trainer state…)

It is built in a hidden sibling directory and renamed into place only when complete, so a crash
at any point leaves either the previous checkpoint or the new one, never a mix. Loading verifies
every file's checksum and names the file that does not match.

Tensors may be numpy arrays or torch tensors; torch is imported only when torch tensors are
passed in or asked for.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from librobot.core.errors import CheckpointError, ChecksumMismatchError

MANIFEST = "manifest.json"
FORMAT = "librobot-checkpoint"
FORMAT_VERSION = 1
_CHUNK = 1 << 20


# ------------------------------------------------------------------------------------ atomic files
def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temp file + fsync + rename: readers see old or new, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj: Any) -> Path:
    """Atomically write ``obj`` as indented JSON (NaN is refused: it is not JSON)."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n")


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path} is not valid JSON: {exc}") from exc


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# ------------------------------------------------------------------------------------ tensors
def _is_torch(value: Any) -> bool:
    return type(value).__module__.startswith("torch")


def save_tensors(path: str | Path, tensors: Mapping[str, Any]) -> Path:
    """Write a flat name → tensor mapping as one .safetensors file (atomically)."""
    path = Path(path)
    values = list(tensors.values())
    kinds = {_is_torch(v) for v in values}
    if len(kinds) > 1:
        raise CheckpointError(f"{path.name}: mixes torch tensors and numpy arrays; convert to one kind")
    for name, value in tensors.items():
        if not isinstance(name, str):
            raise CheckpointError(f"{path.name}: tensor names must be strings, got {name!r}")
        if not (_is_torch(value) or isinstance(value, np.ndarray)):
            raise CheckpointError(f"{path.name}: '{name}' is a {type(value).__name__}, not a tensor or array")
    if values and kinds == {True}:
        from safetensors.torch import save as save_torch

        data = save_torch({k: v.detach().cpu().contiguous() for k, v in tensors.items()})
    else:
        from safetensors.numpy import save as save_numpy

        data = save_numpy({k: np.ascontiguousarray(v) for k, v in tensors.items()})
    return atomic_write_bytes(path, data)


def load_tensors(path: str | Path, *, framework: str = "numpy", device: str = "cpu") -> dict[str, Any]:
    """Read a .safetensors file as numpy arrays (``framework="numpy"``) or torch tensors ("pt")."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist")
    try:
        if framework == "pt":
            from safetensors.torch import load_file

            return load_file(str(path), device=device)
        if framework == "numpy":
            from safetensors.numpy import load_file as load_numpy

            return load_numpy(str(path))
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise CheckpointError(f"{path} is not a readable safetensors file: {exc}") from exc
    raise ValueError(f"framework must be 'numpy' or 'pt', got {framework!r}")


# ------------------------------------------------------------------------------------ nested state
def split_tensors(tree: Any, prefix: str = "") -> tuple[Any, dict[str, Any]]:
    """Separate the tensors in a nested structure (e.g. an optimizer state dict) from the rest.

    Returns a JSON-able skeleton, where each tensor is replaced by ``{"__tensor__": key}``, and a
    flat key → tensor dict for ``save_tensors``. ``join_tensors`` puts them back together.
    """
    tensors: dict[str, Any] = {}

    def walk(node: Any, path: str) -> Any:
        if _is_torch(node) or isinstance(node, np.ndarray):
            tensors[path] = node
            return {"__tensor__": path}
        if isinstance(node, np.generic):
            return node.item()
        if isinstance(node, Mapping):
            if all(isinstance(k, str) for k in node) and "__tensor__" not in node:
                return {k: walk(v, f"{path}.{k}" if path else k) for k, v in node.items()}
            return {"__items__": [[k, walk(v, f"{path}.{k}" if path else str(k))] for k, v in node.items()]}
        if isinstance(node, tuple):
            return {"__tuple__": [walk(v, f"{path}.{i}") for i, v in enumerate(node)]}
        if isinstance(node, list):
            return [walk(v, f"{path}.{i}") for i, v in enumerate(node)]
        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        raise CheckpointError(f"cannot store {type(node).__name__} at '{path}' without pickling")

    return walk(tree, prefix), tensors


def join_tensors(skeleton: Any, tensors: Mapping[str, Any]) -> Any:
    """Inverse of ``split_tensors``."""

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            if "__tensor__" in node:
                try:
                    return tensors[node["__tensor__"]]
                except KeyError:
                    raise CheckpointError(f"tensor '{node['__tensor__']}' is missing from the checkpoint") from None
            if "__tuple__" in node:
                return tuple(walk(v) for v in node["__tuple__"])
            if "__items__" in node:
                return {k: walk(v) for k, v in node["__items__"]}
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(skeleton)


# ------------------------------------------------------------------------------------ directories
def _backups(target: Path) -> list[Path]:
    return sorted(target.parent.glob(f".{target.name}.old-*"))


def _recover(target: Path) -> None:
    """If a crash hit between the two renames of a swap, put the previous checkpoint back."""
    if target.exists():
        return
    for backup in _backups(target):
        if (backup / MANIFEST).is_file():
            os.replace(backup, target)
            return


@contextmanager
def atomic_directory(target: str | Path) -> Iterator[Path]:
    """Yield a fresh hidden directory to fill; on success it replaces ``target`` in one rename.

    On an exception the partial directory is removed and ``target`` is untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    _recover(target)
    tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
        for file in tmp.rglob("*"):
            if file.is_file():
                with open(file, "rb+") as handle:
                    os.fsync(handle.fileno())
        _fsync_dir(tmp)
        if target.exists():
            backup = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(target, backup)
            os.replace(tmp, target)
            shutil.rmtree(backup, ignore_errors=True)
        else:
            os.replace(tmp, target)
        _fsync_dir(target.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for stale in target.parent.glob(f".{target.name}.tmp-*"):  # left by earlier crashes
        shutil.rmtree(stale, ignore_errors=True)


def write_manifest(directory: str | Path, metadata: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Record the sha256 and size of every file under ``directory`` in its manifest.json."""
    directory = Path(directory)
    files = {}
    for file in sorted(p for p in directory.rglob("*") if p.is_file() and p.name != MANIFEST):
        files[file.relative_to(directory).as_posix()] = {"sha256": sha256_file(file), "bytes": file.stat().st_size}
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created_unix": time.time(),
        "metadata": dict(metadata or {}),
        "files": files,
    }
    write_json(directory / MANIFEST, manifest)
    return manifest


def verify_checkpoint(directory: str | Path) -> dict[str, Any]:
    """Check every file listed in the manifest; return the manifest or raise naming the bad file."""
    directory = Path(directory)
    _recover(directory)
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint {directory} does not exist")
    manifest_path = directory / MANIFEST
    if not manifest_path.is_file():
        raise CheckpointError(f"{directory} has no {MANIFEST}: not a LibroBot checkpoint, or an incomplete one")
    manifest = read_json(manifest_path)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CheckpointError(f"{manifest_path}: not a {FORMAT} manifest")
    if manifest.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(
            f"{directory} was written by a newer LibroBot (format {manifest['format_version']}, "
            f"this one reads up to {FORMAT_VERSION}); upgrade librobot-core"
        )
    for name, info in manifest.get("files", {}).items():
        path = directory / name
        if not path.is_file():
            raise CheckpointError(f"{directory}: file '{name}' listed in the manifest is missing")
        if path.stat().st_size != info["bytes"]:
            raise ChecksumMismatchError(
                f"{path}: size {path.stat().st_size} bytes, expected {info['bytes']}: the file is truncated or corrupt"
            )
        if sha256_file(path) != info["sha256"]:
            raise ChecksumMismatchError(f"{path}: sha256 does not match the manifest: the file is corrupt")
    return manifest


@dataclass
class Checkpoint:
    """What ``load_checkpoint`` returns."""

    path: Path
    metadata: dict[str, Any]
    tensors: dict[str, dict[str, Any]] = field(default_factory=dict)  # file stem → name → tensor
    documents: dict[str, Any] = field(default_factory=dict)  # file stem → JSON document


def save_checkpoint(
    directory: str | Path,
    *,
    tensors: Mapping[str, Mapping[str, Any]] | None = None,
    documents: Mapping[str, Any] | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Atomically write a checkpoint directory.

    ``tensors={"model": state_dict}`` → model.safetensors; ``documents={"config": {...}}`` →
    config.json; ``metadata`` goes into the manifest.
    """
    names = list(tensors or {}) + list(documents or {})
    if len(set(names)) != len(names):
        raise CheckpointError(f"tensor groups and documents share a name: {sorted(names)}")
    for name in names:
        if not name or "/" in name or name.startswith(".") or name == "manifest":
            raise CheckpointError(f"invalid checkpoint file name {name!r}")
    with atomic_directory(directory) as tmp:
        for name, group in (tensors or {}).items():
            save_tensors(tmp / f"{name}.safetensors", group)
        for name, document in (documents or {}).items():
            write_json(tmp / f"{name}.json", document)
        write_manifest(tmp, metadata)
    return Path(directory)


def load_checkpoint(
    directory: str | Path, *, framework: str = "numpy", device: str = "cpu", verify: bool = True
) -> Checkpoint:
    """Read a directory written by ``save_checkpoint``, verifying checksums first (by default)."""
    directory = Path(directory)
    manifest = verify_checkpoint(directory) if verify else read_json(directory / MANIFEST)
    result = Checkpoint(path=directory, metadata=manifest.get("metadata", {}))
    for name in manifest.get("files", {}):
        path = directory / name
        if path.suffix == ".safetensors" and "/" not in name:
            result.tensors[path.stem] = load_tensors(path, framework=framework, device=device)
        elif path.suffix == ".json" and "/" not in name:
            result.documents[path.stem] = read_json(path)
    return result
