"""Conversions between every pair of formats through the store; crash safety; idempotence."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from librobot.data.convert import convert
from librobot.data.errors import ConversionError, DataFormatError
from librobot.data.formats.base import get_format
from librobot.data.formats.lerobot_v21 import LeRobotV21Source

from .conftest import assert_same_episodes

FORMATS = ["lerobot-v3", "lerobot-v2.1", "rlds", "hdf5-act", "hdf5-robomimic", "dp-zarr"]
OPTIONS = {"lerobot-v3": {"video": "lossless"}, "lerobot-v2.1": {"video": "lossless"}}


def target(root: Path, name: str, fmt: str) -> Path:
    return root / (f"{name}.hdf5" if fmt == "hdf5-robomimic" else name)


@pytest.fixture(scope="module")
def sources(store_path, tmp_path_factory):
    root = tmp_path_factory.mktemp("sources")
    out = {"store": store_path}
    for fmt in FORMATS:
        out[fmt] = convert(store_path, target(root, fmt, fmt), dst_format=fmt, write_options=OPTIONS.get(fmt)).dst
    return out


@pytest.mark.parametrize(("src", "dst"), [(a, b) for a, b in itertools.permutations(["store", *FORMATS], 2)])
def test_every_pair_preserves_every_value(src, dst, sources, episodes, tmp_path):
    out = target(tmp_path, "out", dst)
    result = convert(sources[src], out, dst_format=dst, write_options=OPTIONS.get(dst))
    assert (result.src_format, result.dst_format, result.num_episodes, result.num_frames, result.skipped) == (
        src,
        dst,
        3,
        27,
        False,
    )
    assert_same_episodes(list(get_format(dst).open(out)), episodes)
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no staging left behind


def test_failure_midway_leaves_no_partial_output(sources, tmp_path, monkeypatch):
    original = LeRobotV21Source.episode

    def failing(self, index, keys=None):
        if index == 2:
            raise DataFormatError("simulated failure in episode 2")
        return original(self, index, keys)

    monkeypatch.setattr(LeRobotV21Source, "episode", failing)
    for fmt in ("store", "rlds", "hdf5-robomimic"):
        out = target(tmp_path, "out", fmt)
        with pytest.raises(DataFormatError, match="simulated failure"):
            convert(sources["lerobot-v2.1"], out, dst_format=fmt)
        assert list(tmp_path.iterdir()) == []  # neither the output nor its staging folder


def test_rerun_is_idempotent_and_overwrite_is_explicit(sources, tmp_path):
    out = tmp_path / "out.store"
    first = convert(sources["rlds"], out)
    stamp = (out / ".librobot_conversion.json").stat().st_mtime_ns
    again = convert(sources["rlds"], out)
    assert again.skipped and (again.num_episodes, again.num_frames) == (3, 27)
    assert (out / ".librobot_conversion.json").stat().st_mtime_ns == stamp  # untouched
    with pytest.raises(ConversionError, match="already exists and was not made from this source"):
        convert(sources["dp-zarr"], out)
    replaced = convert(sources["dp-zarr"], out, overwrite=True)
    assert not replaced.skipped and replaced.bytes_on_disk > 0 and first.num_frames == 27
    assert get_format("store").open(out).info["source_format"] == "dp-zarr"
    robomimic = tmp_path / "x.hdf5"
    convert(sources["store"], robomimic, dst_format="hdf5-robomimic")
    assert convert(sources["store"], robomimic, dst_format="hdf5-robomimic").skipped


def test_stale_staging_from_a_killed_run_is_removed(sources, tmp_path):
    stale = tmp_path / ".out.store.convert-deadbeef"
    (stale / "store").mkdir(parents=True)
    convert(sources["store"], tmp_path / "out.store", dst_format="store")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.store"]


def test_unknown_or_ambiguous_sources_are_named(tmp_path):
    with pytest.raises(ConversionError, match="does not exist"):
        convert(tmp_path / "missing", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(
        ConversionError, match=r"cannot tell the format of .*empty: no known format matches it; name it with --from"
    ):
        convert(tmp_path / "empty", tmp_path / "out")
