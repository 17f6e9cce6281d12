"""The episode store: writer/reader round trips, appends, crash recovery, validation, fast reads."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import zarr

from librobot.core.batch import ACTION, OBS_STATE
from librobot.data.errors import DataFormatError, EpisodeError
from librobot.data.store import EpisodeStore, EpisodeWriter, write_episodes
from librobot.data.store.chunks import ChunkReader
from librobot.data.synthetic import synthetic_episodes

from .conftest import assert_same_episodes


def test_round_trip_every_value(store_path, episodes):
    store = EpisodeStore(store_path)
    assert (store.num_episodes, store.num_frames, store.fps, store.robot_type) == (
        3,
        sum(e.length for e in episodes),
        10.0,
        "synthetic-arm",
    )
    assert store.episode_ends.tolist() == np.cumsum([e.length for e in episodes]).tolist()
    assert store.tasks == ["pick up the red cube", "open the drawer", "close the drawer", "push the button"]
    assert store.features["observation.images.top"].shape == (3, 32, 32)  # CHW in the store
    assert store.features["observation.images.top"].kind == "image"
    assert_same_episodes([store.episode(i) for i in range(3)], episodes)
    assert store.episode_task(1) == episodes[1].task  # per-frame tasks survive
    # images are stored CHW and come back HWC through episode(); read() gives CHW
    start, stop = store.episode_range(2)
    chw = store.read("observation.images.wrist", start, stop)
    np.testing.assert_array_equal(chw, episodes[2].frames["observation.images.wrist"].transpose(0, 3, 1, 2))


def test_frame_by_frame_recording_and_append(tmp_path, episodes):
    path = tmp_path / "rec.store"
    write_episodes(path, episodes[:1])
    with EpisodeWriter(path, mode="a", flush_frames=3) as writer:  # flushes mid-episode
        writer.start_episode(task="stack the blocks")
        for t in range(episodes[2].length):
            writer.add_frame({k: v[t] for k, v in episodes[2].frames.items()})
        assert writer.end_episode() == 1
        writer.start_episode(task="dropped")
        writer.add_frame({k: v[0] for k, v in episodes[0].frames.items()})
        writer.discard_episode()
        assert writer.add_episode(episodes[1].frames, task=episodes[1].task) == 2
    store = EpisodeStore(path)
    assert store.num_episodes == 3 and store.tasks[:2] == ["pick up the red cube", "stack the blocks"]
    expected = [episodes[0], episodes[2], episodes[1]]
    got = [store.episode(i) for i in range(3)]
    got[1].task = "push the button"  # recorded under a different task; everything else must match
    assert_same_episodes(got, expected)
    # statistics cover exactly the committed frames, continued across the append
    all_actions = np.concatenate([e.frames[ACTION] for e in expected]).astype(np.float64)
    stats = store.stats[ACTION]
    assert stats["count"] == len(all_actions)
    np.testing.assert_allclose(stats["mean"], all_actions.mean(0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(stats["std"], all_actions.std(0), rtol=1e-9)


def test_crash_mid_episode_is_invisible_and_trimmed_on_append(tmp_path, episodes):
    path = tmp_path / "crash.store"
    write_episodes(path, episodes[:2])
    writer = EpisodeWriter(path, mode="a", flush_frames=2)
    writer.start_episode("half written")
    for t in range(5):
        writer.add_frame({k: v[t] for k, v in episodes[2].frames.items()})
    # the process dies here: frames reached the arrays, the commit record was never rewritten
    del writer
    committed = sum(e.length for e in episodes[:2])
    assert zarr.open_array(str(path / "data" / ACTION)).shape[0] > committed
    store = EpisodeStore(path)
    assert (store.num_episodes, store.num_frames) == (2, committed)
    with EpisodeWriter(path, mode="a") as writer:
        assert zarr.open_array(str(path / "data" / ACTION)).shape[0] == committed  # trimmed
        writer.add_episode(episodes[2].frames, episodes[2].task)
    assert_same_episodes(list(EpisodeStore(path)), episodes)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.pop(ACTION), r"missing \['action'\]"),
        (lambda f: f.update(extra=np.zeros(len(f[ACTION]))), r"unexpected \['extra'\]"),
        (lambda f: f.update({ACTION: f[ACTION][:-1]}), r"'action' has \d+ frames but other keys have \d+"),
        (lambda f: f.update({ACTION: f[ACTION][:, :2]}), r"'action' has shape \[\d+, 2\], expected \[T, 3\]"),
        (lambda f: f.update({ACTION: f[ACTION].astype(np.int32)}), r"'action' has dtype int32, expected float32"),
        (
            lambda f: f.update({"observation.images.top": f["observation.images.top"].astype(np.float32)}),
            r"'observation.images.top' has dtype float32, expected uint8",
        ),
        (
            lambda f: f[OBS_STATE].__setitem__((2, 1), np.nan),
            r"'observation.state' contains NaN or inf \(first at frame 2\)",
        ),
    ],
)
def test_writer_rejects_bad_episodes_naming_the_key(tmp_path, episodes, change, message):
    with EpisodeWriter(tmp_path / "bad.store", fps=10) as writer:
        writer.add_episode(episodes[0].frames, "ok")
        frames = {k: v.copy() for k, v in episodes[1].frames.items()}
        change(frames)
        with pytest.raises(EpisodeError, match=message):
            writer.add_episode(frames, "bad")
    assert EpisodeStore(tmp_path / "bad.store").num_episodes == 1


def test_writer_casts_within_kind_and_refuses_existing_paths(tmp_path, episodes):
    frames = {k: v.astype(np.float64) if v.dtype == np.float32 else v for k, v in episodes[0].frames.items()}
    with EpisodeWriter(tmp_path / "s", fps=5) as writer:
        writer.add_episode(episodes[0].frames, "t")
        writer.add_episode(frames, "t")  # float64 → float32
    store = EpisodeStore(tmp_path / "s")
    np.testing.assert_array_equal(store.episode(1).frames[ACTION], episodes[0].frames[ACTION])
    with pytest.raises(FileExistsError, match="already exists"):
        EpisodeWriter(tmp_path / "s", fps=5)
    with pytest.raises(EpisodeError, match=r"fps is 5\.0, cannot append at fps 10"):
        EpisodeWriter(tmp_path / "s", mode="a", fps=10)
    with pytest.raises(EpisodeError, match="images must be uint8"):
        with EpisodeWriter(tmp_path / "t", fps=5) as writer:
            writer.add_episode({"observation.images.cam": np.zeros((2, 4, 4, 3), np.float32)}, "t")


def test_chunk_reader_fast_path_matches_zarr(tmp_path):
    rng = np.random.default_rng(3)
    for compressor in ("lz4", "lz4-bitshuffle", "zstd", "none"):
        path = tmp_path / f"c_{compressor}"
        eps = synthetic_episodes(4, lengths=[5, 13, 1, 9], image_size=(16, 24), seed=4)
        for e in eps:
            e.frames["observation.images.top"][:] = 0  # all-zero chunks: zarr would skip them, the writer must not
        write_episodes(path, eps, image_chunk_frames=3, compressor=compressor)
        fast, slow = EpisodeStore(path), EpisodeStore(path, fast=False)
        for key in fast.features:
            reader = ChunkReader(path / "data" / key)
            assert reader.fast, key
            for _ in range(30):
                a, b = sorted(rng.integers(0, fast.num_frames + 1, 2))
                np.testing.assert_array_equal(fast.read(key, a, b), slow.read(key, a, b))
            idx = rng.integers(0, fast.num_frames, 7)
            np.testing.assert_array_equal(fast.take(key, idx), slow.take(key, idx))
        files = [p for p in (path / "data" / "observation.images.top" / "c").rglob("*") if p.is_file()]
        assert len(files) == 10  # ceil(28 frames / 3 per chunk): every zero chunk is on disk
        np.testing.assert_array_equal(fast.read("observation.images.top", 0, 28), 0)


def test_reader_errors_name_the_file(tmp_path, store_path):
    copy = tmp_path / "copy.store"
    shutil.copytree(store_path, copy)
    chunk = next(p for p in (copy / "data" / "observation.images.top" / "c").rglob("*") if p.is_file())
    chunk.write_bytes(chunk.read_bytes()[:10])
    store = EpisodeStore(copy)
    with pytest.raises(DataFormatError, match=r"observation.images.top.*cannot be decoded.*corrupt or truncated"):
        store.read("observation.images.top", 0, store.num_frames)
    (copy / "librobot_store.json").unlink()
    with pytest.raises(
        DataFormatError, match=r"copy.store is not a librobot episode store: librobot_store.json is missing"
    ):
        EpisodeStore(copy)
    record = json.loads((store_path / "librobot_store.json").read_text())
    record.pop("fps")
    (copy / "librobot_store.json").write_text(json.dumps(record))
    with pytest.raises(DataFormatError, match="missing key 'fps'"):
        EpisodeStore(copy)
    with pytest.raises(KeyError, match=r"no feature 'observation\.images\.side'"):
        EpisodeStore(store_path).read("observation.images.side", 0, 1)


def test_the_reported_size_is_what_du_counts_not_only_the_bytes_the_files_hold(store_path):
    import shutil
    import subprocess

    from librobot.data.store import EpisodeStore
    from librobot.data.store.layout import dir_size, disk_usage

    du = shutil.which("du")
    assert du, "coreutils' du is needed to check the size against it"
    expected = int(subprocess.run([du, "-s", "-B1", str(store_path)], capture_output=True, text=True).stdout.split()[0])
    summary = EpisodeStore(store_path).summary()
    assert summary["bytes_on_disk"] == disk_usage(store_path) == expected
    # many small chunk files in a tree of directories: the disk holds far more than their bytes
    assert summary["bytes_of_files"] == dir_size(store_path) < expected
    assert summary["files"] == sum(1 for p in store_path.rglob("*") if p.is_file())
