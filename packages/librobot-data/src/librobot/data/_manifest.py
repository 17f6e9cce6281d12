"""Torch-free manifest of this package's components, loaded through the `librobot.plugins`
entry point: each entry maps a registry name (and aliases) to "module:attr" without importing it."""

from __future__ import annotations

_FORMATS = [
    ("store", "store_format:StoreFormat", ["zarr-store", "librobot"], "librobot episode store (zarr v3)"),
    ("lerobot-v3", "lerobot_v3:LeRobotV3Format", ["lerobot3", "lerobot-v30"], "LeRobot dataset v3.0 (parquet + mp4)"),
    (
        "lerobot-v2.1",
        "lerobot_v21:LeRobotV21Format",
        ["lerobot-v21", "lerobot2"],
        "LeRobot dataset v2.1 (per-episode parquet + mp4)",
    ),
    ("rlds", "rlds:RLDSFormat", ["tfrecord", "tfds", "open-x"], "RLDS TFRecord episodes (no TensorFlow)"),
    ("hdf5-act", "hdf5_act:ACTFormat", ["act", "aloha"], "HDF5, ACT/ALOHA layout"),
    ("hdf5-robomimic", "hdf5_robomimic:RobomimicFormat", ["robomimic"], "HDF5, robomimic layout"),
    ("dp-zarr", "dp_zarr:DPZarrFormat", ["diffusion-policy", "replay-buffer"], "Diffusion Policy zarr replay buffer"),
]

_DATASETS = [
    ("store", "store_dataset", ["zarr-store", "librobot"], "torch Dataset over an episode store"),
    ("lerobot", "lerobot_dataset", [], "LeRobot v2.1 or v3.0, converted once to a cached store"),
    ("lerobot-v3", "lerobot_v3_dataset", ["lerobot3", "lerobot-v30"], "LeRobot v3.0 via a cached store"),
    ("lerobot-v2.1", "lerobot_v21_dataset", ["lerobot-v21", "lerobot2"], "LeRobot v2.1 via a cached store"),
    ("rlds", "rlds_dataset", ["tfrecord", "tfds", "open-x"], "RLDS TFRecords via a cached store"),
    ("hdf5-act", "act_dataset", ["act", "aloha"], "ACT HDF5 via a cached store"),
    ("hdf5-robomimic", "robomimic_dataset", ["robomimic"], "robomimic HDF5 via a cached store"),
    ("dp-zarr", "dp_zarr_dataset", ["diffusion-policy", "replay-buffer"], "Diffusion Policy zarr via a cached store"),
    ("synthetic", "synthetic_dataset", ["dummy"], "deterministic synthetic demonstrations (tests, demos)"),
]

_TRANSFORMS = [
    (
        "random-crop-resize",
        "librobot.data.transforms:RandomCropResize",
        ["random-crop"],
        "random crop then resize (torch)",
    ),
    (
        "color-jitter",
        "librobot.data.transforms:ColorJitter",
        ["colour-jitter"],
        "brightness/contrast/saturation/hue jitter (torch)",
    ),
    (
        "image-normalize",
        "librobot.data.transforms:ImageNormalize",
        ["imagenet-normalize"],
        "per-channel (x - mean) / std (torch)",
    ),
    ("compose", "librobot.data.transforms:Compose", [], "apply transforms in order"),
    (
        "normalizer",
        "librobot.data.normalize:NormalizationProcessor.from_stats",
        ["normalize", "normalization"],
        "action/state normalisation from dataset stats",
    ),
]

_TOKENIZERS = [
    (
        "uniform-bins",
        "librobot.data.tokenizers.uniform:UniformBinTokenizer",
        ["bins", "rt2-bins", "openvla-bins"],
        "256 uniform bins per value",
    ),
    ("fast", "librobot.data.tokenizers.fast:FASTTokenizer", ["fast-dct-bpe"], "FAST: DCT + quantisation + BPE"),
    (
        "text",
        "librobot.data.tokenizers.text:TextTokenizer.train",
        ["text-bpe"],
        "byte-level BPE text tokenizer trained on task strings",
    ),
]


def register() -> None:
    """Add this package's lazy registry entries."""
    from librobot.core.registry import get_registry

    for name, target, aliases, doc in _FORMATS:
        get_registry("dataset_format").register_lazy(name, f"librobot.data.formats.{target}", aliases=aliases, doc=doc)
    for name, target, aliases, doc in _DATASETS:
        get_registry("dataset").register_lazy(name, f"librobot.data.datasets:{target}", aliases=aliases, doc=doc)
    for name, target, aliases, doc in _TRANSFORMS:
        get_registry("transform").register_lazy(name, target, aliases=aliases, doc=doc)
    for name, target, aliases, doc in _TOKENIZERS:
        get_registry("tokenizer").register_lazy(name, target, aliases=aliases, doc=doc)
