import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from librobot.core.checkpoint import (
    MANIFEST,
    atomic_directory,
    join_tensors,
    load_checkpoint,
    save_checkpoint,
    split_tensors,
    verify_checkpoint,
    write_json,
)
from librobot.core.errors import CheckpointError, ChecksumMismatchError


def random_state(rng, scale=1.0):
    return {
        "encoder.weight": rng.standard_normal((64, 32)).astype(np.float32) * scale,
        "encoder.bias": rng.standard_normal(64).astype(np.float32),
        "head.steps": np.arange(7, dtype=np.int64),
    }


def test_round_trip_numpy(tmp_path):
    rng = np.random.default_rng(0)
    state = random_state(rng)
    save_checkpoint(
        tmp_path / "ckpt", tensors={"model": state}, documents={"config": {"lr": 0.1}}, metadata={"step": 3}
    )
    loaded = load_checkpoint(tmp_path / "ckpt")
    assert loaded.metadata == {"step": 3}
    assert loaded.documents["config"] == {"lr": 0.1}
    for name, value in state.items():
        np.testing.assert_array_equal(loaded.tensors["model"][name], value)
        assert loaded.tensors["model"][name].dtype == value.dtype


@pytest.mark.torch
def test_round_trip_torch_including_bfloat16(tmp_path):
    import torch

    state = {"w": torch.randn(5, 3), "h": torch.randn(4, dtype=torch.bfloat16)}
    save_checkpoint(tmp_path / "ckpt", tensors={"model": state})
    loaded = load_checkpoint(tmp_path / "ckpt", framework="pt").tensors["model"]
    assert torch.equal(loaded["w"], state["w"]) and loaded["h"].dtype == torch.bfloat16
    assert torch.equal(loaded["h"], state["h"])


def test_flipped_byte_is_detected_by_checksum(tmp_path):
    save_checkpoint(tmp_path / "ckpt", tensors={"model": random_state(np.random.default_rng(1))})
    path = tmp_path / "ckpt" / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ChecksumMismatchError, match=r"model\.safetensors: sha256 does not match"):
        load_checkpoint(tmp_path / "ckpt")


def test_truncated_and_missing_files_are_named(tmp_path):
    save_checkpoint(tmp_path / "ckpt", tensors={"model": random_state(np.random.default_rng(2))}, documents={"cfg": {}})
    path = tmp_path / "ckpt" / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ChecksumMismatchError, match="truncated or corrupt"):
        verify_checkpoint(tmp_path / "ckpt")
    (tmp_path / "ckpt" / "cfg.json").unlink()
    path.unlink()
    with pytest.raises(CheckpointError, match="listed in the manifest is missing"):
        verify_checkpoint(tmp_path / "ckpt")
    with pytest.raises(CheckpointError, match=r"has no manifest\.json"):
        verify_checkpoint(tmp_path)


def test_exception_during_write_leaves_previous_checkpoint(tmp_path):
    old = random_state(np.random.default_rng(3))
    save_checkpoint(tmp_path / "ckpt", tensors={"model": old}, metadata={"step": 1})
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_directory(tmp_path / "ckpt") as tmp:
            write_json(tmp / "half.json", {"a": 1})
            raise RuntimeError("disk full")
    loaded = load_checkpoint(tmp_path / "ckpt")
    assert loaded.metadata == {"step": 1}
    np.testing.assert_array_equal(loaded.tensors["model"]["encoder.weight"], old["encoder.weight"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # no partial directory left


def test_sigkill_mid_write_never_leaves_a_mix(tmp_path):
    """A writer process overwrites the checkpoint in a loop and is killed at an arbitrary moment;
    what is on disk afterwards must verify and be one whole version."""
    target = tmp_path / "ckpt"
    writer = textwrap.dedent(
        f"""
        import sys, numpy as np
        from librobot.core.checkpoint import save_checkpoint
        big = np.empty((1024, 1024), dtype=np.float32)
        i = 0
        while True:
            big.fill(i)
            save_checkpoint({str(target)!r}, tensors={{"model": {{"w": big}}}}, metadata={{"version": i}})
            if i == 0:
                print("first", flush=True)
            i += 1
        """
    )
    for delay_chunks in (1, 3, 7):
        proc = subprocess.Popen([sys.executable, "-c", writer], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "first"
        # Let it get into later writes: read a few MB of /dev/urandom as a delay not based on sleep.
        with open("/dev/urandom", "rb") as noise:
            noise.read(delay_chunks * (1 << 20))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        loaded = load_checkpoint(target)
        version = loaded.metadata["version"]
        assert np.all(loaded.tensors["model"]["w"] == version)


def test_crash_between_renames_is_recovered(tmp_path):
    save_checkpoint(tmp_path / "ckpt", tensors={"model": {"w": np.ones(3, np.float32)}}, metadata={"v": 1})
    os.replace(tmp_path / "ckpt", tmp_path / ".ckpt.old-deadbeef")  # as if killed right after the first rename
    assert load_checkpoint(tmp_path / "ckpt").metadata == {"v": 1}


def test_split_and_join_nested_state():
    rng = np.random.default_rng(4)
    state = {
        "state": {0: {"step": np.array(3.0), "exp_avg": rng.standard_normal(4)}, 1: {"step": np.array(1.0)}},
        "param_groups": [{"lr": 0.1, "betas": (0.9, 0.99), "params": [0, 1], "name": None}],
    }
    skeleton, tensors = split_tensors(state)
    import json

    json.dumps(skeleton)  # the skeleton is plain JSON
    assert set(tensors) == {"state.0.step", "state.0.exp_avg", "state.1.step"}
    back = join_tensors(json.loads(json.dumps(skeleton)), tensors)
    assert back["param_groups"][0]["betas"] == (0.9, 0.99)
    assert list(back["state"]) == [0, 1]
    np.testing.assert_array_equal(back["state"][0]["exp_avg"], state["state"][0]["exp_avg"])
    with pytest.raises(CheckpointError, match="without pickling"):
        split_tensors({"f": object()})


def test_newer_format_and_non_manifest_are_refused(tmp_path):
    save_checkpoint(tmp_path / "ckpt", documents={"a": {}})
    manifest = tmp_path / "ckpt" / MANIFEST
    manifest.write_text(manifest.read_text().replace('"format_version": 1', '"format_version": 99'))
    with pytest.raises(CheckpointError, match="newer LibroBot"):
        verify_checkpoint(tmp_path / "ckpt")
