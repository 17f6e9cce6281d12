"""LibroBot VLA data: zarr episode store, LeRobot/RLDS/HDF5/zarr readers and writers, sampling,
transforms, statistics, tokenizers.

Importing this package is cheap and torch-free; names are resolved on first use:

- ``create_dataset(name_or_path, **kw)``: a torch Dataset (any format, through a cached store)
- ``WindowLoader(dataset, batch_size, ...)``: a DataLoader handing image batches over in reused memory
- ``EpisodeWriter`` / ``EpisodeStore``: write / read the episode store (numpy + zarr, no torch)
- ``convert(src, dst, src_format=..., dst_format=...)``: crash-safe conversion between formats
- ``NormalizationProcessor``: dataset stats → saved, invertible normalisation
- ``compute_stats``, ``synthetic_episodes``, ``split_episodes``
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "create_dataset": "librobot.data.datasets",
    "Episode": "librobot.data.episode",
    "EpisodeWriter": "librobot.data.store",
    "EpisodeStore": "librobot.data.store",
    "open_store": "librobot.data.store",
    "write_episodes": "librobot.data.store",
    "convert": "librobot.data.convert",
    "detect_format": "librobot.data.formats.base",
    "get_format": "librobot.data.formats.base",
    "NormalizationProcessor": "librobot.data.normalize",
    "compute_stats": "librobot.data.stats",
    "StatsAccumulator": "librobot.data.stats",
    "synthetic_episodes": "librobot.data.synthetic",
    "split_episodes": "librobot.data.sampling",
    "StoreDataset": "librobot.data.dataset",
    "WindowLoader": "librobot.data.loader",
    "DataFormatError": "librobot.data.errors",
    "EpisodeError": "librobot.data.errors",
    "ConversionError": "librobot.data.errors",
}

__all__ = ["list_datasets", *_LAZY]


def list_datasets() -> list[str]:
    """Registered dataset names (imports nothing heavy)."""
    from librobot.core.registry import get_registry

    return get_registry("dataset").list()


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'librobot.data' has no attribute '{name}'")
