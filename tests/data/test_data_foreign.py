"""Files as other tools write them (no librobot metadata): each reader's own conventions."""

from __future__ import annotations

import io
import json
import shutil

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from librobot.data.formats.base import detect_format, get_format
from librobot.data.formats.example_proto import encode_example
from librobot.data.formats.tfrecord import write_records

CLS = "tensorflow_datasets.core.features."


def tensor(shape, dtype="float32"):
    return {
        "pythonClassName": CLS + "tensor_feature.Tensor",
        "tensor": {"shape": {"dimensions": [str(s) for s in shape]}, "dtype": dtype, "encoding": "none"},
    }


def features_dict(features):
    return {"pythonClassName": CLS + "features_dict.FeaturesDict", "featuresDict": {"features": features}}


def png(frame):
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="PNG")
    return buffer.getvalue()


def test_rlds_open_x_style_episode(tmp_path, episodes):
    """RT-1 style: a dict of action tensors, the instruction inside the observation."""
    observation = {
        "image": {
            "pythonClassName": CLS + "image_feature.Image",
            "image": {"shape": {"dimensions": ["32", "32", "3"]}, "dtype": "uint8", "encodingFormat": "png"},
        },
        "natural_language_instruction": {"pythonClassName": CLS + "text_feature.Text", "text": {}},
        "base_pose": tensor([4]),
    }
    step = {
        "observation": features_dict(observation),
        "action": features_dict({"world_vector": tensor([2]), "gripper_closedness_action": tensor([1])}),
        "reward": tensor([]),
        "is_first": tensor([], "bool"),
        "is_last": tensor([], "bool"),
        "is_terminal": tensor([], "bool"),
    }
    steps = {
        "pythonClassName": CLS + "dataset_feature.Dataset",
        "sequence": {"feature": features_dict(step), "length": "-1"},
    }
    (tmp_path / "features.json").write_text(json.dumps(features_dict({"steps": steps})))
    records = []
    for ep in episodes:
        n, action = ep.length, ep.frames["action"]
        first = np.zeros(n, np.int64)
        first[0] = 1
        records.append(
            encode_example(
                {
                    "steps/observation/image": ("bytes", [png(f) for f in ep.frames["observation.images.top"]]),
                    "steps/observation/natural_language_instruction": ("bytes", [t.encode() for t in ep.frame_tasks()]),
                    "steps/observation/base_pose": ("float", ep.frames["observation.state"].ravel()),
                    "steps/action/world_vector": ("float", action[:, :2].ravel()),
                    "steps/action/gripper_closedness_action": ("float", action[:, 2]),
                    "steps/reward": ("float", np.arange(n, dtype=np.float32)),
                    "steps/is_first": ("int64", first),
                    "steps/is_last": ("int64", first[::-1]),
                    "steps/is_terminal": ("int64", first[::-1]),
                }
            )
        )
    write_records(tmp_path / "rt1-train.tfrecord-00000-of-00001", records)
    source = get_format(detect_format(tmp_path)).open(tmp_path, fps=3)
    assert source.fps == 3.0
    assert sorted(source.features) == [
        "action",
        "next.done",
        "next.reward",
        "observation.base_pose",
        "observation.images.image",
    ]
    assert source.features["action"].shape == (3,)
    got = source.episode(1)
    np.testing.assert_array_equal(got.frames["action"], episodes[1].frames["action"])
    np.testing.assert_array_equal(got.frames["observation.images.image"], episodes[1].frames["observation.images.top"])
    np.testing.assert_array_equal(got.frames["observation.base_pose"], episodes[1].frames["observation.state"])
    assert got.frames["next.done"].tolist() == [False] * (got.length - 1) + [True]
    assert got.task == episodes[1].task


def test_robomimic_low_dim_keys_and_libero_task(tmp_path, episodes):
    path = tmp_path / "demo.hdf5"
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        data.attrs["problem_info"] = json.dumps({"language_instruction": "put the bowl on the plate"})
        for i, ep in enumerate(episodes):
            demo = data.create_group(f"demo_{i}")
            state = ep.frames["observation.state"]
            demo["obs/robot0_eef_pos"] = state[:, :3].astype(np.float64)
            demo["obs/robot0_gripper_qpos"] = state[:, 3:].astype(np.float64)
            demo["obs/agentview_image"] = ep.frames["observation.images.top"]
            demo["actions"] = ep.frames["action"].astype(np.float64)
            demo["dones"] = np.zeros(ep.length, np.int64)
        f["mask/valid"] = np.array([b"demo_2"])
    source = get_format(detect_format(path)).open(path, state_keys=["robot0_eef_pos", "robot0_gripper_qpos"])
    assert sorted(source.features) == ["action", "next.done", "observation.images.agentview", "observation.state"]
    got = source.episode(2)
    np.testing.assert_allclose(got.frames["observation.state"], episodes[2].frames["observation.state"], rtol=1e-7)
    np.testing.assert_array_equal(
        got.frames["observation.images.agentview"], episodes[2].frames["observation.images.top"]
    )
    assert got.task == "put the bowl on the plate" and source.fps == 20.0
    assert get_format("hdf5-robomimic").open(path, filter_key="valid").demos == ["demo_2"]


def test_compressed_aloha_images(tmp_path, episodes):
    root = tmp_path / "aloha"
    root.mkdir()
    ep = episodes[0]
    encoded = []
    for frame in ep.frames["observation.images.top"]:
        buffer = io.BytesIO()
        Image.fromarray(frame).save(buffer, format="JPEG", quality=95)
        encoded.append(np.frombuffer(buffer.getvalue(), np.uint8))
    padded = np.zeros((ep.length, max(map(len, encoded))), np.uint8)
    for i, e in enumerate(encoded):
        padded[i, : len(e)] = e
    with h5py.File(root / "episode_0.hdf5", "w") as f:
        f.attrs["compress"] = True
        f["observations/qpos"] = ep.frames["observation.state"]
        f["observations/images/top"] = padded
        f["compress_len"] = np.array([[len(e) for e in encoded]])
        f["action"] = ep.frames["action"]
    got = get_format("hdf5-act").open(root).episode(0)
    images = got.frames["observation.images.top"]
    assert images.shape == ep.frames["observation.images.top"].shape
    assert np.abs(images.astype(float) - ep.frames["observation.images.top"]).mean() < 4.0  # JPEG q95


def test_lerobot_dataset_with_its_own_key_names(tmp_path, store_path):
    """A LeRobot v3 dataset written elsewhere: image key outside observation.images, CHW-listed video
    shape, no librobot metadata."""
    from librobot.data.convert import convert

    root = convert(store_path, tmp_path / "lr", dst_format="lerobot-v3", write_options={"video": "lossless"}).dst
    info = json.loads((root / "meta/info.json").read_text())
    del info["librobot_meta"]
    info["features"]["observation.image"] = info["features"].pop("observation.images.top")
    info["features"]["observation.images.wrist"].update(shape=[3, 32, 32], names=["channels", "height", "width"])
    (root / "meta/info.json").write_text(json.dumps(info))
    shutil.move(root / "videos/observation.images.top", root / "videos/observation.image")
    file = root / "meta/episodes/chunk-000/file-000.parquet"
    table = pq.read_table(file)
    table = table.rename_columns([c.replace("observation.images.top", "observation.image") for c in table.column_names])
    pq.write_table(table, file)
    source = get_format(detect_format(root)).open(root)
    assert sorted(source.features) == [
        "action",
        "observation.images.image",
        "observation.images.wrist",
        "observation.state",
    ]
    assert source.features["observation.images.wrist"].shape == (3, 32, 32)
    reference = get_format("store").open(store_path).episode(1)
    got = source.episode(1)
    np.testing.assert_array_equal(got.frames["observation.images.image"], reference.frames["observation.images.top"])
    assert pa.types.is_fixed_size_list(
        pq.read_table(root / "data/chunk-000/file-000.parquet").schema.field("action").type
    )
