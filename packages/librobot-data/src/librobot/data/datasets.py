"""Dataset factories behind ``create_dataset`` and the "dataset" registry.

Every format is trained from through the store: ``create_dataset("rlds", path=...)`` converts the
source once into a cached store (idempotent, crash-safe; re-converted when the source changes)
and returns a ``StoreDataset`` over it. Keyword arguments other than ``cache_dir`` and
``read_options`` go to ``StoreDataset`` (obs_horizon, action_horizon, split, cameras...).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from librobot.core.errors import ConfigError


def cache_root() -> Path:
    return Path(os.environ.get("LIBROBOT_CACHE", Path.home() / ".cache" / "librobot")) / "stores"


def cached_store(
    path: str | Path, fmt: str, *, cache_dir: str | Path | None = None, read_options: Mapping[str, Any] | None = None
) -> Path:
    """Convert ``path`` (in format ``fmt``) into a store under the cache, or reuse an up-to-date one."""
    from librobot.data.convert import convert

    src = Path(path).resolve()
    key = hashlib.sha256(f"{fmt}\0{src}".encode()).hexdigest()[:12]
    dst = Path(cache_dir) if cache_dir is not None else cache_root() / f"{src.name}-{key}"
    convert(src, dst, src_format=fmt, dst_format="store", read_options=read_options, overwrite=True)
    return dst


def store_dataset(path: str | Path, **kwargs: Any) -> Any:
    """A ``StoreDataset`` over the store at ``path``."""
    from librobot.data.dataset import StoreDataset

    return StoreDataset(path, **kwargs)


def _via_store(fmt: str) -> Any:
    def factory(
        path: str | Path,
        *,
        cache_dir: str | Path | None = None,
        read_options: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        return store_dataset(cached_store(path, fmt, cache_dir=cache_dir, read_options=read_options), **kwargs)

    factory.__name__ = f"{fmt.replace('-', '_').replace('.', '')}_dataset"
    factory.__doc__ = f"A StoreDataset over a {fmt} dataset, converted once into a cached store."
    return factory


lerobot_v3_dataset = _via_store("lerobot-v3")
lerobot_v21_dataset = _via_store("lerobot-v2.1")
rlds_dataset = _via_store("rlds")
act_dataset = _via_store("hdf5-act")
robomimic_dataset = _via_store("hdf5-robomimic")
dp_zarr_dataset = _via_store("dp-zarr")


def lerobot_dataset(path: str | Path, **kwargs: Any) -> Any:
    """A LeRobot dataset of either layout (v2.1 or v3.0), detected from meta/info.json."""
    from librobot.data.formats.lerobot_v3 import LeRobotV3Format

    factory = lerobot_v3_dataset if LeRobotV3Format.detect(Path(path)) else lerobot_v21_dataset
    return factory(path, **kwargs)


def synthetic_dataset(
    path: str | Path | None = None,
    *,
    num_episodes: int = 8,
    cameras: tuple[str, ...] = ("top", "wrist"),
    image_size: tuple[int, int] = (32, 32),
    state_dim: int = 4,
    action_dim: int = 3,
    seed: int = 0,
    **kwargs: Any,
) -> Any:
    """Deterministic synthetic demonstrations (``librobot.data.synthetic``) written to a store once."""
    from librobot.data.store import is_store, write_episodes
    from librobot.data.synthetic import synthetic_episodes

    if path is None:
        key = hashlib.sha256(
            repr((num_episodes, cameras, image_size, state_dim, action_dim, seed)).encode()
        ).hexdigest()[:12]
        path = cache_root() / f"synthetic-{key}"
    if not is_store(path):
        episodes = synthetic_episodes(
            num_episodes, cameras=cameras, image_size=image_size, state_dim=state_dim, action_dim=action_dim, seed=seed
        )
        tmp = Path(f"{path}.tmp-{os.getpid()}")
        write_episodes(tmp, episodes, overwrite=True)
        os.replace(tmp, path) if not Path(path).exists() else None
    return store_dataset(path, **kwargs)


def create_dataset(name_or_path: str | Path, **kwargs: Any) -> Any:
    """A torch dataset by registered name (``create_dataset("rlds", path=...)``) or by path (format detected)."""
    from librobot.core.registry import get_registry
    from librobot.data.formats.base import detect_format

    registry = get_registry("dataset")
    if isinstance(name_or_path, str) and name_or_path in registry:
        return registry.create(name_or_path, **kwargs)
    path = Path(name_or_path)
    if not path.exists():
        registry.entry(str(name_or_path))  # raises UnknownComponentError listing close names
        raise ConfigError(f"{path} does not exist")
    return registry.create(detect_format(path), path, **kwargs)
