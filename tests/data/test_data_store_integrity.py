"""A lost or damaged chunk file of the store is a named error, never the fill value; `librobot data
verify` lists every damaged chunk; stores of version 1 (no chunk log) stay readable."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from librobot.core.batch import ACTION, OBS_STATE
from librobot.core.cli import main
from librobot.data.convert import convert
from librobot.data.episode import Episode
from librobot.data.errors import ConversionError, StoreChunkError
from librobot.data.store import EpisodeStore, EpisodeWriter, verify_store, write_episodes
from librobot.data.store.layout import CHUNK_SUMS_FILE, RECORD_FILE

TOP = "observation.images.top"


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["data", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def last_error(err: str) -> str:
    return err.strip().splitlines()[-1]


@pytest.fixture
def copy(tmp_path: Path, store_path: Path) -> Path:
    """A private copy of the shared 3-episode, 27-frame store, free to damage."""
    dst = tmp_path / "copy.store"
    shutil.copytree(store_path, dst)
    return dst


def make_v1(path: Path) -> None:
    """Turn a store into what the version-1 writer left: version 1 in the record, no chunk log."""
    record = json.loads((path / RECORD_FILE).read_text())
    record["version"] = 1
    (path / RECORD_FILE).write_text(json.dumps(record))
    (path / CHUNK_SUMS_FILE).unlink()


def test_deleted_action_chunk_is_a_named_error_not_zeros(copy, episodes):
    chunk = copy / "data" / ACTION / "c" / "0" / "0"  # 27 frames of 3 floats: one chunk holds them all
    chunk.unlink()
    expected = (
        rf"{re.escape(str(copy))}: chunk c/0/0 of array 'data/action' is missing \({re.escape(str(chunk))}\); "
        rf"re-convert the dataset or restore the file; `librobot data verify {re.escape(str(copy))}` "
        r"lists every damaged chunk$"
    )
    for fast in (True, False):  # the chunk reader and the zarr reference path
        store = EpisodeStore(copy, fast=fast)
        with pytest.raises(StoreChunkError, match=expected) as info:
            store.episode(1)
        assert (info.value.array, info.value.key, info.value.file, info.value.problem) == (
            "data/action",
            "c/0/0",
            str(chunk),
            "missing",
        )
        with pytest.raises(StoreChunkError, match="'data/action' is missing"):
            store.take(ACTION, np.array([3, 20, 4]))
        # the other arrays are intact and still read
        np.testing.assert_array_equal(
            store.episode(2, keys=[OBS_STATE]).frames[OBS_STATE], episodes[2].frames[OBS_STATE]
        )


def test_truncated_or_foreign_chunk_is_a_named_corrupt_error(copy):
    top = copy / "data" / TOP / "c" / "1" / "0" / "0" / "0"
    top.write_bytes(top.read_bytes()[:40])
    store = EpisodeStore(copy)
    with pytest.raises(
        StoreChunkError,
        match=r"chunk c/1/0/0/0 of array 'data/observation.images.top' cannot be "
        r"decoded \(blosc header does not describe this 64512-byte chunk of 40 bytes\): the file "
        r".*c/1/0/0/0 is corrupt or truncated; re-convert",
    ) as info:
        store.read(TOP, 20, 27)
    assert info.value.problem == "corrupt"
    # an intact chunk of another array put in its place: blosc would fill only the 64512 bytes
    # its header claims and leave the rest of the 1 MiB state chunk as whatever was in memory
    state = copy / "data" / OBS_STATE / "c" / "0" / "0"
    shutil.copy(copy / "data" / TOP / "c" / "0" / "0" / "0" / "0", state)
    with pytest.raises(
        StoreChunkError,
        match=r"'data/observation.state' cannot be decoded \(blosc header does not "
        r"describe this 1048576-byte chunk",
    ):
        EpisodeStore(copy).read(OBS_STATE, 0, 5)


def test_cli_info_stats_convert_fail_on_a_missing_chunk(copy, tmp_path, capsys):
    (copy / "data" / ACTION / "c" / "0" / "0").unlink()
    message = f"librobot data: error: {copy}: chunk c/0/0 of array 'data/action' is missing"
    code, out, err = run_cli(capsys, "info", str(copy))
    assert code == 2 and last_error(err).startswith(message) and "Traceback" not in err and out == ""
    code, _, err = run_cli(capsys, "stats", str(copy), "--recompute", "--json")
    assert code == 2 and last_error(err).startswith(message) and "Traceback" not in err
    dst = tmp_path / "lr"
    code, _, err = run_cli(capsys, "convert", str(copy), str(dst), "--to", "lerobot-v2.1", "-o", "video=lossless")
    assert code == 2 and last_error(err).startswith(message) and "Traceback" not in err
    assert not dst.exists() and not list(tmp_path.glob(".lr.convert-*"))  # nothing half-written is left
    (copy / "data" / TOP / "c" / "1" / "0" / "0" / "0").unlink()
    code, _, err = run_cli(capsys, "info", str(copy))  # info names the first and counts them all
    assert (
        code == 2
        and last_error(err).startswith(message)
        and last_error(err).endswith("lists every damaged chunk (2 chunk files are missing in all)")
    )


def test_verify_lists_missing_truncated_and_changed_chunks(copy, capsys):
    code, out, _ = run_cli(capsys, "verify", str(copy))
    assert code == 0 and out == (
        f"{copy}: all 8 chunks of 6 arrays intact, checked against their recorded checksums\n"
    )  # ends, task index, action, state, and 27 frames of 21 per chunk for each of two cameras
    action = copy / "data" / ACTION / "c" / "0" / "0"
    action.unlink()
    top = copy / "data" / TOP / "c" / "1" / "0" / "0" / "0"
    size = top.stat().st_size
    top.write_bytes(top.read_bytes()[:10])
    wrist = copy / "data" / "observation.images.wrist" / "c" / "0" / "0" / "0" / "0"
    garbled = bytearray(wrist.read_bytes())
    garbled[-1] ^= 0xFF  # same size, one byte flipped: only the checksum can tell
    wrist.write_bytes(bytes(garbled))
    code, out, _ = run_cli(capsys, "verify", str(copy))
    lines = out.splitlines()
    assert code == 1 and len(lines) == 4, out
    assert lines[0] == f"MISSING data/action c/0/0: {action} does not exist"
    assert re.fullmatch(
        rf"CORRUPT data/observation.images.top c/1/0/0/0: {re.escape(str(top))} is truncated: 10 bytes with crc32 "
        rf"[0-9a-f]{{8}}, written as {size} bytes with crc32 [0-9a-f]{{8}}",
        lines[1],
    ), lines[1]
    assert lines[2].startswith(f"CORRUPT data/observation.images.wrist c/0/0/0/0: {wrist} is changed: ")
    assert lines[3] == (
        f"{copy}: 3 damaged (1 missing, 2 corrupt) of 8 chunks in 6 arrays, checked against their recorded "
        "checksums; re-convert the dataset or restore these files"
    )
    code, out, _ = run_cli(capsys, "verify", str(copy), "--json")
    report = json.loads(out)
    assert (
        code == 1
        and report["ok"] is False
        and [(p["array"], p["key"], p["problem"]) for p in report["problems"]]
        == [
            ("data/action", "c/0/0", "missing"),
            ("data/observation.images.top", "c/1/0/0/0", "corrupt"),
            ("data/observation.images.wrist", "c/0/0/0/0", "corrupt"),
        ]
    )
    code, _, err = run_cli(capsys, "verify", str(copy.parent / "nothing"))
    assert code == 2 and "is not a librobot episode store" in last_error(err)


def test_writer_writes_and_logs_every_chunk_and_relogs_after_a_crash(tmp_path, episodes):
    path = tmp_path / "zeros.store"
    zero = {k: np.zeros_like(v) for k, v in episodes[0].frames.items()}
    write_episodes(path, [Episode(frames=zero, task="rest", fps=10.0)])
    # all zeros and a single task: zarr alone would have written no chunk of any per-frame array
    assert (path / "data" / ACTION / "c" / "0" / "0").is_file() and (path / "meta" / "task_index" / "c" / "0").is_file()
    assert verify_store(path).ok and verify_store(path).chunks == 6
    log_before = (path / CHUNK_SUMS_FILE).read_bytes()
    writer = EpisodeWriter(path, mode="a", flush_frames=2)
    writer.start_episode("half written")
    for t in range(3):
        writer.add_frame({k: v[t] for k, v in episodes[1].frames.items()})
    del writer  # dies after zarr rewrote the last committed chunks, before it logged them:
    (path / CHUNK_SUMS_FILE).write_bytes(log_before)
    assert not verify_store(path).ok  # the committed frames are intact, but the log is behind
    with EpisodeWriter(path, mode="a"):  # reopening trims the arrays and logs those chunks again
        pass
    report = verify_store(path)
    assert report.ok and report.chunks == 6, report.problems
    np.testing.assert_array_equal(EpisodeStore(path).episode(0).frames[ACTION], 0)


def test_version_1_store_stays_readable_and_is_upgraded_by_convert(tmp_path, episodes, capsys):
    path = tmp_path / "v1.store"
    frames = dict(episodes[0].frames, **{ACTION: np.zeros_like(episodes[0].frames[ACTION])})
    write_episodes(path, [Episode(frames=frames, task="rest", fps=10.0)])
    make_v1(path)
    # what the version-1 writer did: it never wrote a chunk equal to the fill value
    (path / "data" / ACTION / "c" / "0" / "0").unlink()
    (path / "meta" / "task_index" / "c" / "0").unlink()
    store = EpisodeStore(path)
    assert store.episode_task(0) == "rest"  # one task: an absent task-index chunk can only be zeros
    with pytest.raises(
        StoreChunkError,
        match=r"This store is version 1.*`librobot data convert .*v1\.store NEW "
        r"--read-option missing_chunks=zeros`",
    ):
        store.read(ACTION, 0, 8)
    np.testing.assert_array_equal(EpisodeStore(path, missing_chunks="zeros").read(ACTION, 0, 8), 0)
    code, out, _ = run_cli(capsys, "verify", str(path))
    assert code == 1 and out.splitlines()[0] == (
        f"MISSING data/action c/0/0: {path / 'data' / ACTION / 'c' / '0' / '0'} does not exist "
        "(a version-1 store did not write chunks holding only zeros; this one may have)"
    )
    assert "checked for presence and decoding (no checksums recorded)" in out.splitlines()[-1]
    new = tmp_path / "v2.store"
    code, _, _ = run_cli(capsys, "convert", str(path), str(new), "--read-option", "missing_chunks=zeros")
    assert code == 0 and verify_store(new).ok and EpisodeStore(new).version == 2
    np.testing.assert_array_equal(EpisodeStore(new).read(ACTION, 0, 8), 0)
    # a store made by the old writer is out of date even when the source has not changed
    make_v1(new)
    with pytest.raises(ConversionError, match=r"v2\.store is a version-1 store; .*--overwrite"):
        convert(path, new, read_options={"missing_chunks": "zeros"})
    code, _, _ = run_cli(capsys, "convert", str(path), str(new), "--read-option", "missing_chunks=zeros", "--overwrite")
    assert code == 0 and EpisodeStore(new).version == 2 and verify_store(new).ok
