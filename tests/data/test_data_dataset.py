"""The torch Dataset: windows, padding, delta_timestamps, splits, workers, and independent paths."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, default_collate

from librobot.core.batch import ACTION, ACTION_IS_PAD, OBS_STATE, TASK, validate_batch
from librobot.core.errors import ConfigError
from librobot.data import create_dataset
from librobot.data.convert import convert
from librobot.data.dataset import StoreDataset, float_collate, images_to_float
from librobot.data.dataset_lerobot import LeRobotVideoDataset
from librobot.data.sampling import split_episodes

TOP = "observation.images.top"


def reference_sample(episodes, episode, frame, obs_offsets, action_offsets):
    """What a sample must hold, computed directly from the in-memory episodes."""
    ep = episodes[episode]
    n = ep.length
    obs = np.clip(frame + np.asarray(obs_offsets), 0, n - 1)
    act = frame + np.asarray(action_offsets)
    return {
        TOP: ep.frames[TOP][obs].transpose(0, 3, 1, 2).astype(np.float32) / 255.0,
        OBS_STATE: ep.frames[OBS_STATE][obs],
        ACTION: ep.frames[ACTION][np.clip(act, 0, n - 1)],
        ACTION_IS_PAD: act >= n,
        "observation_is_pad": (frame + np.asarray(obs_offsets)) < 0,
        TASK: ep.frame_tasks()[frame],
    }


def test_every_sample_matches_the_reference(store_path, episodes):
    ds = StoreDataset(store_path, obs_horizon=3, action_horizon=5)
    assert len(ds) == 27 and ds.num_episodes == 3 and ds.fps == 10.0
    for index in range(len(ds)):
        sample = ds[index]
        episode = int(sample["episode_index"])
        frame = int(sample["frame_index"])
        ref = reference_sample(episodes, episode, frame, [-2, -1, 0], range(5))
        for key, value in ref.items():
            if key == TASK:
                assert sample[key] == value
            else:
                np.testing.assert_array_equal(sample[key].numpy(), value, err_msg=f"{index} {key}")
        assert sample[TOP].shape == (3, 3, 32, 32) and sample[ACTION].shape == (5, 3)
        assert float(sample["timestamp"]) == pytest.approx(frame / 10.0)


def test_padding_at_episode_edges(store_path):
    ds = StoreDataset(store_path, obs_horizon=2, action_horizon=4)
    last = ds[7]  # the last frame of episode 0 (8 frames)
    assert last[ACTION_IS_PAD].tolist() == [False, True, True, True]
    np.testing.assert_array_equal(last[ACTION][1:].numpy(), np.repeat(last[ACTION][:1].numpy(), 3, 0))
    first = ds[8]  # the first frame of episode 1
    assert first["observation_is_pad"].tolist() == [True, False] and first["observation.state_is_pad"].tolist() == [
        True,
        False,
    ]
    assert torch.equal(first[TOP][0], first[TOP][1])


def test_delta_timestamps_select_frames(store_path, episodes):
    ds = StoreDataset(
        store_path,
        delta_timestamps={"observation.images": [-0.2, 0.0], OBS_STATE: [-0.2, 0.0], ACTION: [0.0, 0.1, 0.3]},
    )
    sample = ds[12]  # episode 1, frame 4
    ref = reference_sample(episodes, 1, 4, [-2, 0], [0, 1, 3])
    np.testing.assert_array_equal(sample[ACTION].numpy(), ref[ACTION])
    np.testing.assert_array_equal(
        sample["observation.images.wrist"].numpy(),
        episodes[1].frames["observation.images.wrist"][[2, 4]].transpose(0, 3, 1, 2) / np.float32(255),
    )
    with pytest.raises(ConfigError, match=r"0.15 s is not a multiple of the frame period 1/10.0 s"):
        StoreDataset(store_path, delta_timestamps={ACTION: [0.0, 0.15]})
    with pytest.raises(ConfigError, match="images and state must share T_obs"):
        StoreDataset(store_path, delta_timestamps={OBS_STATE: [-0.1, 0.0]})


def test_episode_splits_are_disjoint_deterministic_and_cover(store_path):
    train, val = split_episodes(10, val_fraction=0.3, seed=7)
    assert (len(train), len(val)) == (7, 3) and sorted(train + val) == list(range(10))
    assert split_episodes(10, val_fraction=0.3, seed=7) == (train, val)
    assert split_episodes(3, val_fraction=0.1)[1] != []  # at least one validation episode
    tr = StoreDataset(store_path, split="train", val_fraction=0.34)
    va = StoreDataset(store_path, split="val", val_fraction=0.34)
    assert not set(tr.episodes) & set(va.episodes) and len(tr) + len(va) == 27
    assert {int(tr[i]["episode_index"]) for i in range(len(tr))} == set(tr.episodes)


def test_cameras_preload_and_fast_paths_agree(store_path):
    slow = StoreDataset(store_path, obs_horizon=2, action_horizon=3, preload=False, fast=False, cameras=["wrist"])
    fast = StoreDataset(store_path, obs_horizon=2, action_horizon=3, cameras=["wrist"])
    assert TOP not in fast[0] and "observation.images.wrist" in fast[0]
    for i in range(len(fast)):
        a, b = fast[i], slow[i]
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]) if isinstance(a[key], torch.Tensor) else a[key] == b[key]
    with pytest.raises(ConfigError, match=r"cameras \['observation.images.side'\] are not in the dataset"):
        StoreDataset(store_path, cameras=["side"])


@pytest.mark.parametrize("workers", [0, 2])
def test_dataloader_batches_follow_the_contract(store_path, workers):
    ds = StoreDataset(store_path, obs_horizon=2, action_horizon=4)
    loader = DataLoader(ds, batch_size=5, shuffle=True, num_workers=workers, generator=torch.Generator().manual_seed(0))
    seen = []
    for batch in loader:
        assert validate_batch(batch, require_action=True) == len(batch[TASK])
        assert batch[TOP].shape[1:] == (2, 3, 32, 32) and batch[ACTION_IS_PAD].dtype == torch.bool
        seen.extend(batch["index"].tolist())
    assert sorted(seen) == list(range(27))


def test_uint8_samples_with_float_collate_equal_float_samples(store_path):
    """The fused float collate (fast path) against per-sample float conversion (reference)."""
    floats = StoreDataset(store_path, obs_horizon=2, action_horizon=3)
    raw = StoreDataset(store_path, obs_horizon=2, action_horizon=3, image_dtype="uint8")
    assert raw[5][TOP].dtype == torch.uint8
    picks = [0, 7, 8, 20, 26]
    reference = default_collate([floats[i] for i in picks])
    fused = float_collate([raw[i] for i in picks])
    later = images_to_float(default_collate([raw[i] for i in picks]))
    assert reference.keys() == fused.keys() == later.keys()
    for key, value in reference.items():
        if isinstance(value, torch.Tensor):
            assert fused[key].dtype == value.dtype and torch.equal(fused[key], value), key
            assert torch.equal(later[key], value), key
        else:
            assert fused[key] == value == later[key]


def test_lerobot_video_dataset_equals_the_store_dataset(store_path, tmp_path):
    lerobot = convert(store_path, tmp_path / "lr", dst_format="lerobot-v3", write_options={"video": "lossless"}).dst
    store = StoreDataset(store_path, obs_horizon=2, action_horizon=4)
    video = LeRobotVideoDataset(lerobot, obs_horizon=2, action_horizon=4)
    for i in range(len(store)):
        a, b = store[i], video[i]
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]) if isinstance(a[key], torch.Tensor) else a[key] == b[key], (i, key)


FORKED_WORKERS = """
import sys, torch
from torch.utils.data import DataLoader
from librobot.data.dataset import StoreDataset
from librobot.data.dataset_lerobot import LeRobotVideoDataset
from librobot.core.batch import ACTION
TOP = "observation.images.top"
store = StoreDataset(sys.argv[1], obs_horizon=2, action_horizon=4)
video = LeRobotVideoDataset(sys.argv[2], obs_horizon=2, action_horizon=4)
video[0], video[len(video) - 1]  # the main process decodes first, then starts its workers
seen = 0
start = video.worker_start_method  # forked workers hung intermittently after the parent decoded
for batch in DataLoader(video, batch_size=9, num_workers=2, timeout=120, multiprocessing_context=start):
    for j, index in enumerate(batch["index"].tolist()):
        assert torch.equal(batch[TOP][j], store[index][TOP]), index
        assert torch.equal(batch[ACTION][j], store[index][ACTION]), index
        seen += 1
print(seen)
"""


def test_lerobot_video_dataset_decodes_in_started_workers(store_path, tmp_path):
    # A fresh interpreter: what is checked is that workers started the way the dataset asks (and the
    # trainer's loaders do) decode the same frames after the parent has decoded, with no open decoder
    # carried along.
    lerobot = convert(store_path, tmp_path / "lr", dst_format="lerobot-v3", write_options={"video": "lossless"}).dst
    run = subprocess.run(
        [sys.executable, "-c", FORKED_WORKERS, str(store_path), str(lerobot)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert int(run.stdout.split()[-1]) == len(StoreDataset(store_path, obs_horizon=2, action_horizon=4))


def test_create_dataset_by_name_and_path(store_path, tmp_path):
    ds = create_dataset(store_path, action_horizon=2)
    assert isinstance(ds, StoreDataset) and ds[0][ACTION].shape == (2, 3)
    rlds = convert(store_path, tmp_path / "rlds", dst_format="rlds").dst
    cached = create_dataset("rlds", path=rlds, cache_dir=tmp_path / "cache", split="train")
    assert (tmp_path / "cache" / "librobot_store.json").is_file() and cached.num_episodes == 2
    by_path = create_dataset(rlds, cache_dir=tmp_path / "cache")
    assert len(by_path) == 27
    synthetic = create_dataset("synthetic", path=tmp_path / "syn", num_episodes=4, obs_horizon=2)
    assert synthetic.num_episodes == 4 and synthetic[0][OBS_STATE].shape == (2, 4)
    with pytest.raises(KeyError, match=r"unknown dataset 'rldss'. Did you mean: rlds"):
        create_dataset("rldss")


def test_video_datasets_pickle_without_decoders_and_name_their_worker_start(store_path, tmp_path):
    import pickle

    from librobot.train.sampler import _worker_context

    lerobot = convert(store_path, tmp_path / "lr", dst_format="lerobot-v3", write_options={"video": "lossless"}).dst
    video = LeRobotVideoDataset(lerobot, obs_horizon=2, action_horizon=4)
    first = video[3]
    assert video._readers  # decoded: a reader is open
    copy = pickle.loads(pickle.dumps(video))
    assert copy._readers == {} and torch.equal(copy[3][TOP], first[TOP])
    assert _worker_context(video, 2) == {"multiprocessing_context": "forkserver"}
    assert _worker_context(video, 0) == {} and _worker_context(StoreDataset(store_path), 2) == {}
