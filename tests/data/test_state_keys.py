"""``state_keys``: a state joined from several observation vectors (LeRobot's observation.state +
observation.environment_state), per-part statistics and names; LeRobot's single-camera key."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from librobot.core.errors import ConfigError
from librobot.data.dataset import StoreDataset
from librobot.data.normalize import NormalizationProcessor
from librobot.data.stats import compute_stats
from librobot.data.store import EpisodeWriter

STATE, ENV = "observation.state", "observation.environment_state"
NAMES = {STATE: ("x", "y"), ENV: ("x", "y", "theta"), "action": ("dx", "dy")}
LENGTHS = (5, 8, 6)


@pytest.fixture(scope="module")
def parts_store(tmp_path_factory):
    """Three episodes: a 2-D agent state, a 3-D environment state (other scales), 2-D actions."""
    rng = np.random.default_rng(5)
    path = tmp_path_factory.mktemp("parts") / "store"
    episodes = []
    with EpisodeWriter(path, fps=10.0, names=NAMES) as writer:
        for length in LENGTHS:
            frames = {
                STATE: rng.normal(0.0, 1.0, (length, 2)).astype(np.float32),
                ENV: (rng.normal(5.0, 10.0, (length, 3))).astype(np.float32),
                "action": rng.normal(0.0, 1.0, (length, 2)).astype(np.float32),
            }
            writer.add_episode(frames, task="push the T")
            episodes.append(frames)
    return path, episodes


def _expected_window(episodes, episode, t, keys, obs_horizon):
    """Frames t-T_obs+1 .. t of ``keys`` joined in order, the episode's first frame repeated before it."""
    rows = [max(t - k, 0) for k in reversed(range(obs_horizon))]
    return np.concatenate([episodes[episode][key][rows] for key in keys], axis=-1)


@pytest.mark.parametrize("keys", [[STATE, ENV], [ENV, STATE]])
def test_windows_hold_the_parts_joined_in_the_configured_order(parts_store, keys):
    path, episodes = parts_store
    dataset = StoreDataset(path, state_keys=keys, obs_horizon=2, action_horizon=3)
    assert len(dataset) == sum(LENGTHS)
    for index in range(len(dataset)):
        sample = dataset[index]
        episode, t = int(sample["episode_index"]), int(sample["frame_index"])
        state = sample[STATE]
        assert state.shape == (2, 5) and str(state.dtype) == "torch.float32"
        np.testing.assert_array_equal(state.numpy(), _expected_window(episodes, episode, t, keys, 2))
        assert sample["observation.state_is_pad"].tolist() == [t == 0, False]
        assert ENV not in sample and f"{ENV}_is_pad" not in sample  # only the joined state reaches the batch
    assert dataset.state_parts == [[k, {STATE: 2, ENV: 3}[k]] for k in keys]
    assert dataset.features[STATE].shape == (5,) and ENV not in dataset.features


def test_the_default_is_observation_state_alone_and_all_puts_it_first(parts_store):
    path, episodes = parts_store
    plain = StoreDataset(path)
    assert plain.state_keys == [STATE] and plain.state_key == STATE
    np.testing.assert_array_equal(plain[3][STATE].numpy(), episodes[0][STATE][[3]])
    assert plain.stats[STATE] == plain.store.stats[STATE]  # a single state: statistics as stored
    assert plain.features[STATE].names == ("x", "y") and plain.state_feature.names == ("x", "y")
    every = StoreDataset(path, state_keys="all")
    assert every.state_keys == [STATE, ENV]


def test_statistics_stay_per_part(parts_store):
    path, episodes = parts_store
    dataset = StoreDataset(path, state_keys=[ENV, STATE])
    joined = dataset.stats[STATE]
    features = dataset.store.features
    alone = {k: compute_stats(episodes, {k: features[k]})[k] for k in (ENV, STATE)}
    for name in ("mean", "std", "min", "max", "q01", "q99"):
        np.testing.assert_allclose(joined[name][:3], alone[ENV][name], rtol=1e-9, atol=1e-12, err_msg=name)
        np.testing.assert_allclose(joined[name][3:], alone[STATE][name], rtol=1e-9, atol=1e-12, err_msg=name)
    assert joined["count"] == sum(LENGTHS)
    assert dataset.stats[ENV] == dataset.store.stats[ENV]  # each part keeps its own entry
    # what the policy's normaliser does per element equals normalising each part with its own stats
    x = np.concatenate([episodes[0][ENV], episodes[0][STATE]], axis=-1)
    joint = NormalizationProcessor.from_stats(dataset.stats, {STATE: "mean_std"})
    parts = NormalizationProcessor.from_stats(dataset.store.stats, {ENV: "mean_std", STATE: "mean_std"})
    np.testing.assert_allclose(
        joint.normalize_value(STATE, x),
        np.concatenate([parts.normalize_value(ENV, x[:, :3]), parts.normalize_value(STATE, x[:, 3:])], axis=-1),
        rtol=1e-6,
    )


def test_a_dataset_normaliser_normalises_each_part_with_its_own_statistics(parts_store):
    path, episodes = parts_store
    stats = StoreDataset(path).store.stats
    normalizer = NormalizationProcessor.from_stats(stats, {STATE: "mean_std", ENV: "min_max"})
    dataset = StoreDataset(path, state_keys=[STATE, ENV], normalizer=normalizer)
    sample = dataset[9]  # episode 1, frame 4
    raw = {k: episodes[1][k][[4]] for k in (STATE, ENV)}
    want = np.concatenate(
        [normalizer.normalize_value(STATE, raw[STATE]), normalizer.normalize_value(ENV, raw[ENV])], -1
    )
    np.testing.assert_allclose(sample[STATE].numpy(), want, rtol=1e-6)


def test_joined_names_keep_each_parts_names_prefixed_where_they_collide(parts_store):
    path, _ = parts_store
    names = StoreDataset(path, state_keys=[STATE, ENV]).state_feature.names
    assert names == ("state.x", "state.y", "environment_state.x", "environment_state.y", "theta")


def test_unknown_or_unsuitable_state_keys_are_config_errors_naming_the_available_keys(parts_store):
    path, _ = parts_store
    with pytest.raises(
        ConfigError,
        match=r"'observation\.velocity'.*available: \['observation\.state', 'observation\.environment_state'\]",
    ):
        StoreDataset(path, state_keys=[STATE, "observation.velocity"])
    with pytest.raises(ConfigError, match="'action' is not a non-image observation vector"):
        StoreDataset(path, state_keys=["action"])
    with pytest.raises(ConfigError, match="not both"):
        StoreDataset(path, state_key=ENV, state_keys=[STATE])
    with pytest.raises(ConfigError, match="same frame offsets"):
        StoreDataset(path, state_keys=[STATE, ENV], delta_timestamps={STATE: [-0.1, 0.0]})


def test_state_keys_come_from_the_run_configs_data_section(parts_store):
    from librobot.train.factories import build_datasets

    path, _ = parts_store
    train, val = build_datasets(
        {"factory": "store", "path": str(path), "state_keys": [STATE, ENV], "split": "train", "val": {"split": "val"}}
    )
    assert train.state_keys == val.state_keys == [STATE, ENV] and train[0][STATE].shape == (1, 5)


def test_lerobots_single_camera_key_observation_image_is_camera_image(tmp_path):
    """A LeRobot dataset whose one camera is ``observation.image`` (PushT's) trains as camera
    ``image``; ``state_keys: all`` leaves it out of the state."""
    from librobot.data.convert import convert
    from librobot.data.datasets import create_dataset
    from librobot.data.synthetic import synthetic_episodes

    pq = pytest.importorskip("pyarrow.parquet")
    store = tmp_path / "store"
    episodes = synthetic_episodes(2, cameras=("top",), image_size=(16, 16), state_dim=2, action_dim=2, seed=3)
    from librobot.data.store import write_episodes

    write_episodes(store, episodes)
    root = convert(store, tmp_path / "lr", dst_format="lerobot-v3", write_options={"video": "lossless"}).dst
    info = json.loads((root / "meta/info.json").read_text())
    del info["librobot_meta"]
    info["features"]["observation.image"] = info["features"].pop("observation.images.top")
    (root / "meta/info.json").write_text(json.dumps(info))
    shutil.move(root / "videos/observation.images.top", root / "videos/observation.image")
    file = root / "meta/episodes/chunk-000/file-000.parquet"
    table = pq.read_table(file)
    table = table.rename_columns([c.replace("observation.images.top", "observation.image") for c in table.column_names])
    pq.write_table(table, file)

    dataset = create_dataset(root, cache_dir=tmp_path / "cache", state_keys="all")
    assert dataset.image_keys == ["observation.images.image"] and dataset.state_keys == [STATE]
    sample = dataset[1]
    assert sample["observation.images.image"].shape == (1, 3, 16, 16)
    reference = episodes[0].frames["observation.images.top"][1].transpose(2, 0, 1) / 255.0
    assert np.abs(sample["observation.images.image"][0].numpy() - reference).max() < 0.02  # lossless video
