"""Video-encoded image chunks in the episode store: round trips (bit-exact when lossless, within a
stated error when lossy), the fast reader against zarr's reference path, appends, damaged clips,
the decoded-clip caches, what the record and `librobot data info` report, and conversion."""

from __future__ import annotations

import json
import multiprocessing
import sys
from pathlib import Path

import numpy as np
import pytest

from librobot.core.batch import ACTION, OBS_STATE, image_key
from librobot.core.cli import main
from librobot.core.errors import MissingExtraError
from librobot.data.convert import convert
from librobot.data.episode import Episode
from librobot.data.errors import ConversionError, EpisodeError, StoreChunkError
from librobot.data.store import EpisodeStore, EpisodeWriter, verify_store, write_episodes
from librobot.data.store.chunk_cache import ChunkCache
from librobot.data.store.chunks import ChunkReader
from librobot.data.store.layout import disk_usage, read_record

pytest.importorskip("av")

TOP, GRAY = image_key("top"), image_key("gray")
ARRAY = f"data/{TOP}"
# mean absolute error (of 255) of each lossy preset on moving_frames: measured 6.3 (h264 crf 23,
# yuv420p: most of it is chroma subsampling on the red square's edges and the colour waves) and
# 5.5 (AV1 crf 30)
LOSSY_BOUNDS = {"video": 7.5, "av1": 6.5}


def moving_frames(n: int, size: int = 40, seed: int = 0) -> np.ndarray:
    """Colour waves drifting across the frame and a red square circling over them: [n, H, W, 3]."""
    p = np.random.default_rng(seed).uniform(0, 6, 4)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    out = np.empty((n, size, size, 3), np.uint8)
    for t in range(n):
        img = np.stack(
            [
                128 + 100 * np.sin((xx + 2 * t) / 7 + p[0]),
                128 + 100 * np.cos((yy - t) / 9 + p[1]),
                96 + 60 * np.sin((xx + yy + 3 * t) / 11),
            ],
            -1,
        )
        cy = int(size / 2 + size / 3 * np.sin(t / 6 + p[2])) - 5
        cx = int(size / 2 + size / 3 * np.cos(t / 5 + p[3])) - 5
        img[max(cy, 0) : cy + 10, max(cx, 0) : cx + 10] = (240, 40, 30)
        out[t] = img.round().clip(0, 255).astype(np.uint8)
    return out


def make_episodes(lengths: tuple[int, ...] = (40, 37), *, gray: bool = False, seed: int = 0) -> list[Episode]:
    frames = moving_frames(sum(lengths), seed=seed)
    episodes, start = [], 0
    for e, length in enumerate(lengths):
        t = np.arange(start, start + length, dtype=np.float32)
        data = {OBS_STATE: np.stack([t, -t], 1), ACTION: t[:, None] + 1, TOP: frames[start : start + length]}
        if gray:
            data[GRAY] = frames[start : start + length, :, :, 1:2].copy()
        episodes.append(Episode(frames=data, task=f"task {e % 2}", fps=10.0))
        start += length
    return episodes


def originals(episodes: list[Episode], key: str = TOP) -> np.ndarray:
    return np.concatenate([e.frames[key] for e in episodes])


def read_all(path: Path, key: str = TOP, **kwargs) -> np.ndarray:
    store = EpisodeStore(path, **kwargs)
    return store.read(key, 0, store.num_frames, layout="hwc")


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["data", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_lossless_clips_round_trip_bit_exactly(tmp_path):
    episodes = make_episodes(gray=True)
    write_episodes(tmp_path / "s", episodes, image_encoding="lossless")
    for fast in (True, False):
        store = EpisodeStore(tmp_path / "s", fast=fast)
        for i, episode in enumerate(episodes):
            for key, value in episode.frames.items():
                np.testing.assert_array_equal(store.episode(i).frames[key], value, err_msg=f"{key} fast={fast}")
    record = read_record(tmp_path / "s")
    assert record["version"] == 3 and record["image_encoding"][GRAY]["lossless"] is True


@pytest.mark.parametrize("encoding", sorted(LOSSY_BOUNDS))
def test_lossy_clips_stay_within_the_codec_error(tmp_path, encoding):
    episodes = make_episodes()
    truth = originals(episodes).astype(np.int16)
    assert truth.std() > 30  # colour, motion and edges: nothing a codec gets right for free
    write_episodes(tmp_path / "s", episodes, image_encoding=encoding)
    error = np.abs(read_all(tmp_path / "s").astype(np.int16) - truth).mean()
    assert 0.5 < error <= LOSSY_BOUNDS[encoding], error
    numbers = EpisodeStore(tmp_path / "s").read(OBS_STATE, 0, len(truth))  # numeric features stay exact
    np.testing.assert_array_equal(numbers, np.concatenate([e.frames[OBS_STATE] for e in episodes]))


def test_image_quality_sets_the_crf(tmp_path):
    episodes = make_episodes((32,))
    truth = originals(episodes).astype(np.int16)
    errors = {}
    for crf in (12, 35):
        write_episodes(tmp_path / f"q{crf}", episodes, image_encoding="h264", image_quality=crf)
        assert read_record(tmp_path / f"q{crf}")["image_encoding"][TOP]["crf"] == crf
        errors[crf] = np.abs(read_all(tmp_path / f"q{crf}").astype(np.int16) - truth).mean()
    assert errors[12] < errors[35]
    with pytest.raises(ValueError, match="lossless and takes no quality"):
        EpisodeWriter(tmp_path / "x", fps=10, image_encoding="lossless", image_quality=20)


def test_fast_reader_matches_the_zarr_reference_path(tmp_path):
    from librobot.data.store.video_clip import decode_clip, decode_clip_reference

    write_episodes(tmp_path / "s", make_episodes(), image_encoding="video")
    fast, reference = EpisodeStore(tmp_path / "s"), EpisodeStore(tmp_path / "s", fast=False)
    n = fast.num_frames
    np.testing.assert_array_equal(fast.read(TOP, 0, n), reference.read(TOP, 0, n))
    picks = np.random.default_rng(0).integers(0, n, 20)
    np.testing.assert_array_equal(fast.take(TOP, picks), reference.take(TOP, picks))
    np.testing.assert_array_equal(fast.read(TOP, 30, 35), reference.read(TOP, 30, 35))  # across a clip boundary
    reader = ChunkReader(tmp_path / "s" / ARRAY)
    for index in range(reader.num_chunks(n)):
        raw = Path(reader.chunk_path(index)).read_bytes()
        np.testing.assert_array_equal(
            decode_clip(raw, reader.chunk_shape, "h264"), decode_clip_reference(raw, reader.chunk_shape, "h264")
        )


def test_appends_encode_each_clip_from_the_frames_given(tmp_path, monkeypatch):
    """Episodes end mid-clip, so a clip is rewritten as more frames come; within a writer it is
    always encoded from the frames as given (never from its own decoded output). A writer opened
    to append reads the last partial clip back once."""
    from librobot.data.store import video_codec

    episodes = make_episodes((40, 37, 29, 23))
    given = {f.tobytes() for f in originals(episodes).transpose(0, 3, 1, 2)}
    encoded: list[np.ndarray] = []
    real = video_codec.encode_clip
    monkeypatch.setattr(
        video_codec, "encode_clip", lambda frames, enc: encoded.append(frames.copy()) or real(frames, enc)
    )
    path = tmp_path / "s"
    with EpisodeWriter(path, fps=10, image_encoding="video", flush_frames=7) as writer:
        writer.add_episode(episodes[0].frames, episodes[0].task)
        writer.add_episode(episodes[1].frames, episodes[1].task)
        writer.start_episode("by frame")
        for i in range(episodes[2].length):
            writer.add_frame({k: v[i] for k, v in episodes[2].frames.items()})
        writer.end_episode()
    zero = np.zeros_like(encoded[0][0])
    assert len(encoded) > 4 and all(f.tobytes() in given or np.array_equal(f, zero) for c in encoded for f in c)
    with EpisodeWriter(path, mode="a") as writer:
        writer.add_episode(episodes[3].frames, episodes[3].task)
    store = EpisodeStore(path)
    assert store.num_episodes == 4 and store.episode_lengths().tolist() == [40, 37, 29, 23]
    error = np.abs(read_all(path).astype(np.int16) - originals(episodes)).mean()
    assert error <= LOSSY_BOUNDS["video"]
    np.testing.assert_array_equal(read_all(path), read_all(path, fast=False))
    assert verify_store(path).ok
    with pytest.raises(EpisodeError, match=r"stored as \['h264'\]; cannot append with image_encoding='raw'"):
        EpisodeWriter(path, mode="a", image_encoding="raw")


def test_a_damaged_or_missing_clip_is_a_named_error(tmp_path):
    path = tmp_path / "s"
    write_episodes(path, make_episodes(), image_encoding="video")
    clips = path / "data" / TOP
    truncated, changed, gone = clips / "c.1.0.0.0", clips / "c.0.0.0.0", clips / "c.2.0.0.0"
    truncated.write_bytes(truncated.read_bytes()[:-40])
    data = bytearray(changed.read_bytes())
    data[-5] ^= 0xFF
    changed.write_bytes(bytes(data))
    gone.unlink()
    store = EpisodeStore(path)
    with pytest.raises(StoreChunkError) as caught:
        store.read(TOP, 33, 34)
    assert str(caught.value) == (
        f"{path}: chunk c.1.0.0.0 of array '{ARRAY}' cannot be decoded (video clip: "
        f"{truncated.stat().st_size} bytes where the clip's header describes {truncated.stat().st_size + 40}: "
        f"truncated or padded): the file {truncated} is corrupt or truncated; re-convert the dataset or restore "
        f"the file; `librobot data verify {path}` lists every damaged chunk"
    )
    assert (caught.value.array, caught.value.key, caught.value.problem) == (ARRAY, "c.1.0.0.0", "corrupt")
    with pytest.raises(StoreChunkError, match=r"chunk c\.0\.0\.0\.0 .*video clip: payload crc32 [0-9a-f]{8} is not"):
        store.read(TOP, 0, 1)
    with pytest.raises(StoreChunkError, match=r"chunk c\.2\.0\.0\.0 of array .* is missing"):
        store.read(TOP, 70, 71)
    problems = {(p.key, p.problem) for p in verify_store(path).problems}
    assert problems == {("c.0.0.0.0", "corrupt"), ("c.1.0.0.0", "corrupt"), ("c.2.0.0.0", "missing")}


def test_the_decoded_clip_caches_stay_within_their_bound(tmp_path):
    path = tmp_path / "s"
    write_episodes(path, make_episodes((40, 37, 50)), image_encoding="video")
    clip_bytes = 32 * 3 * 40 * 40
    cache = ChunkCache(int(2.5 * clip_bytes))
    reader = ChunkReader(path / ARRAY, cache=cache)
    for start in range(0, 127, 5):
        reader.read(start, min(start + 5, 127))
        assert cache.nbytes <= cache.max_bytes and len(cache) <= 2
    hits = cache.hits
    reader.read(100, 101)  # the last clip read is still there
    assert cache.hits == hits + 1
    cache.put("too big", (0, 0, 0), np.zeros(cache.max_bytes + 1, np.uint8))
    assert "too big" not in cache._entries
    # a store whose decoded frames exceed the bound caches per process, in a cache of that bound
    small = EpisodeStore(path, video_cache_bytes=clip_bytes)
    small.read(TOP, 0, 127)
    top = small._reader(ARRAY)
    assert top.shared is None and top._cache is not None and top._cache.nbytes <= clip_bytes
    # one that fits shares its complete clips with forked workers (the partial last one stays per process)
    big = EpisodeStore(path, video_cache_bytes=10 * clip_bytes)
    assert big._reader(ARRAY).shared.clips == 3


def _child_read(store: EpisodeStore, conn) -> None:
    conn.send(int(store.read(TOP, 0, 64).sum()))


def test_forked_workers_decode_safely_and_share_their_clips(tmp_path):
    from librobot.data.formats.video import _av

    av = _av()
    path = tmp_path / "s"
    write_episodes(path, make_episodes((40, 37)), image_encoding="video")
    store = EpisodeStore(path)
    # PyAV's shared swscale context now runs slice threads, which a forked child does not have
    frame = av.VideoFrame.from_ndarray(np.zeros((240, 320, 3), np.uint8), format="rgb24")
    frame.reformat(format="yuv420p").to_ndarray(format="rgb24")
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe()
    worker = ctx.Process(target=_child_read, args=(store, child))
    worker.start()
    worker.join(30)
    if worker.is_alive():
        worker.kill()
        pytest.fail("a forked worker hung decoding a clip")
    assert parent.recv() == int(store.read(TOP, 0, 64).sum())
    shared = store._reader(ARRAY).shared
    assert shared.get(0) is not None and shared.get(1) is not None  # decoded by the child, for everyone


def test_record_and_info_report_the_encoding_and_true_size(tmp_path, capsys):
    path = tmp_path / "s"
    write_episodes(path, make_episodes(), image_encoding="video")
    assert read_record(path)["image_encoding"][TOP] == {
        "encoding": "video",
        "preset": "h264",
        "codec": "libx264",
        "bitstream": "h264",
        "pix_fmt": "yuv420p",
        "crf": 23,
        "lossless": False,
        "frames_per_clip": 32,
    }
    code, out, _ = run_cli(capsys, "info", str(path))
    assert code == 0
    assert f"{TOP}: uint8 [3, 40, 40]  [video h264 (libx264) crf 23 yuv420p (lossy), 32 frames a clip]" in out
    code, out, _ = run_cli(capsys, "info", str(path), "--json")
    summary = json.loads(out)
    assert summary["image_encoding"][TOP]["lossless"] is False and summary["bytes_on_disk"] == disk_usage(path)
    write_episodes(tmp_path / "raw", make_episodes())
    _, out, _ = run_cli(capsys, "info", str(tmp_path / "raw"))
    assert "[raw uint8 chunks (lz4), lossless]" in out and read_record(tmp_path / "raw")["version"] == 2


def test_convert_takes_an_image_encoding_and_keeps_lossy_video_as_video(tmp_path, capsys, store_path):
    out = tmp_path / "video.store"
    code, text, _ = run_cli(
        capsys, "convert", str(store_path), str(out), "--image-encoding", "video", "--image-quality", "28"
    )
    assert code == 0 and "images: video h264 (libx264) crf 28 yuv420p (lossy)" in text
    assert EpisodeStore(out).image_encodings[TOP]["crf"] == 28 and verify_store(out).ok
    code, _, err = run_cli(
        capsys, "convert", str(store_path), str(tmp_path / "x"), "--to", "rlds", "--image-encoding", "raw"
    )
    assert code != 0 and "--image-encoding applies to a store target, not --to rlds" in err
    # by default a store keeps the kind of encoding its source had
    for preset, expected in (("lerobot", "video"), ("lossless", "raw")):
        lerobot = convert(
            store_path, tmp_path / f"lr-{preset}", dst_format="lerobot-v3", write_options={"video": preset}
        )
        result = convert(lerobot.dst, tmp_path / f"back-{preset}.store")
        assert result.image_encoding == expected
        assert EpisodeStore(result.dst).image_encodings[TOP]["encoding"] == expected
    again = convert(tmp_path / "back-lerobot.store", tmp_path / "again.store")  # a video store stays video
    assert again.image_encoding == "video"


def test_a_missing_pyav_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'librobot-data\[video\]'"):
        write_episodes(tmp_path / "s", make_episodes((5,)), image_encoding="video")
    with pytest.raises(ValueError, match="image_encoding must be one of"):
        EpisodeWriter(tmp_path / "t", fps=10, image_encoding="mp4")
    with pytest.raises(ConversionError):
        convert(tmp_path / "missing", tmp_path / "out", write_options={"image_encoding": "video"})
