"""Golden artifacts: files written by an earlier LibroBot, committed under ``tests/artifacts/``, read
with today's readers. Round-trip tests write and read with the same code, so a format break passes
them all; these catch it. Each artifact has a ``<name>.expected.json`` of the numbers recorded when
it was written (``scripts/write_golden_artifacts.py``), and ``golden.json`` records the format
versions written. Nothing here writes into ``tests/artifacts/``: what needs writing (a resume)
works on a copy in a temporary folder.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ART = Path(__file__).resolve().parent / "artifacts"
# the digests are the writer script's own functions: what a test recomputes is what was written
_spec = importlib.util.spec_from_file_location(
    "write_golden_artifacts", ART.parent.parent / "scripts" / "write_golden_artifacts.py"
)
WRITER = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(WRITER)
digest, group_digest, fingerprint = WRITER.array_digest, WRITER.group_digest, WRITER.fingerprint
GOLDEN = json.loads((ART / "golden.json").read_text(encoding="utf-8"))
REGENERATE = "regenerate with scripts/write_golden_artifacts.py"
FORMAT_CHANGED = f"the on-disk format changed: bump its version, keep a reader for the old one, and {REGENERATE}"


def expected(name: str) -> dict[str, Any]:
    return json.loads((ART / f"{name}.expected.json").read_text(encoding="utf-8"))


def unreadable(name: str, what: str) -> str:
    """The message of a value that no longer reads back as written."""
    return (
        f"golden artifact '{name}': {what} does not read back as it was written. If the format changed "
        f"deliberately, bump its version, keep a reader for the old one, and {REGENERATE}; "
        "otherwise a reader broke"
    )


def assert_digest(got: dict[str, Any], want: dict[str, Any], name: str, what: str) -> None:
    for key in ("dtype", "shape", "first", "sha256"):
        assert got[key] == want[key], f"{unreadable(name, what)} ({key}: {got[key]} != {want[key]})"


# ------------------------------------------------------------------------------ format versions
def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _versions_store(tmp_path: Path) -> tuple[dict, dict]:
    from librobot.data import EpisodeWriter

    fresh = tmp_path / "fresh.store"
    with EpisodeWriter(fresh, fps=10.0) as writer:
        writer.add_episode({"observation.state": np.zeros((1, 2), np.float32), "action": np.zeros((1, 1), np.float32)})
    written = _read_json(ART / "store" / "librobot_store.json")
    attrs = _read_json(ART / "store" / "zarr.json")["attributes"]["librobot"]
    now = _read_json(fresh / "librobot_store.json")
    now_attrs = _read_json(fresh / "zarr.json")["attributes"]["librobot"]
    recorded = {"format": written["format"], "format_version": written["version"], "zarr_attrs": attrs}
    current = {"format": now["format"], "format_version": now["version"], "zarr_attrs": now_attrs}
    return recorded, current


def _versions_normalizer(tmp_path: Path) -> tuple[dict, dict]:
    from librobot.data.normalize import NormalizationProcessor

    written = _read_json(ART / "normalizer.json")
    now = NormalizationProcessor({"action": {"mode": "mean_std", "center": [0.0], "scale": [1.0]}}).to_dict()
    return (
        {"format": written["format"], "format_version": written["version"]},
        {"format": now["format"], "format_version": now["version"]},
    )


def _versions_policy(tmp_path: Path) -> tuple[dict, dict]:
    from librobot.core.checkpoint import FORMAT_VERSION, write_manifest
    from librobot.models.frameworks.normalizer import Normalizer
    from librobot.models.frameworks.persistence import FORMAT, VERSION

    config = _read_json(ART / "policy" / "config.json")
    manifest = _read_json(ART / "policy" / "manifest.json")
    norm = _read_json(ART / "policy" / "normalization.json")
    (tmp_path / "m").mkdir()
    fresh_manifest = write_manifest(tmp_path / "m")
    recorded = {
        "format": config["format"],
        "format_version": config["version"],
        "manifest_format_version": manifest["format_version"],
        "normalization_version": norm["version"],
    }
    current = {
        "format": FORMAT,
        "format_version": VERSION,
        "manifest_format_version": fresh_manifest["format_version"],
        "normalization_version": Normalizer({"action": 1}).state()["version"],
    }
    assert fresh_manifest["format_version"] == FORMAT_VERSION
    return recorded, current


def _versions_onnx(tmp_path: Path) -> tuple[dict, dict]:
    from librobot.serve.sidecar import load_sidecar

    written = _read_json(ART / "onnx" / "policy.json")
    spec, _ = load_sidecar(ART / "onnx")
    now = spec.to_dict()  # the current writer's serialisation of the same spec
    return (
        {"format": written["format"], "format_version": written["version"]},
        {"format": now["format"], "format_version": now["version"]},
    )


def _versions_checkpoint(tmp_path: Path) -> tuple[dict, dict]:
    from librobot.core.checkpoint import write_manifest
    from librobot.train.checkpointing import FORMAT

    manifest = _read_json(ART / "checkpoint" / "step_000000002" / "manifest.json")
    (tmp_path / "m").mkdir()
    fresh = write_manifest(tmp_path / "m")
    return (
        {"format": manifest["metadata"]["format"], "manifest_format_version": manifest["format_version"]},
        {"format": FORMAT, "manifest_format_version": fresh["format_version"]},
    )


VERSION_CHECKS = {
    "store": _versions_store,
    "normalizer": _versions_normalizer,
    "policy": _versions_policy,
    "onnx": _versions_onnx,
    "checkpoint": _versions_checkpoint,
}


def test_golden_json_lists_every_artifact():
    assert set(GOLDEN["formats"]) == set(VERSION_CHECKS) == set(GOLDEN["artifacts"])
    for name, path in GOLDEN["artifacts"].items():
        assert (ART / path).exists(), f"golden artifact '{name}' ({ART / path}) is missing: {REGENERATE}"
        assert (ART / f"{name}.expected.json").is_file(), f"{name}.expected.json is missing: {REGENERATE}"


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=[pytest.mark.torch] if n in ("policy", "checkpoint") else []) for n in VERSION_CHECKS],
)
def test_recorded_format_versions_are_what_the_writers_write_today(name, tmp_path):
    recorded, current = VERSION_CHECKS[name](tmp_path)
    # golden.json and the artifact's own files agree on what was written ...
    for key, value in GOLDEN["formats"][name].items():
        if key in recorded:
            assert recorded[key] == value, f"golden artifact '{name}': golden.json says {key}={value}, files {recorded}"
    # ... and today's writer writes the same format versions
    assert recorded == current, (
        f"golden artifact '{name}': written {recorded}, today's writer {current}: {FORMAT_CHANGED}"
    )


# ------------------------------------------------------------------------------ episode store
def test_store_reads_back_with_its_recorded_values():
    from librobot.data import EpisodeStore
    from librobot.data.store.layout import read_record

    want = expected("store")
    path = ART / "store"
    record = read_record(path)
    for key in ("fps", "robot_type", "info", "num_episodes", "num_frames", "tasks", "features"):
        assert record[key] == want[key], unreadable("store", f"librobot_store.json '{key}'")
    for fast in (True, False):  # the chunk reader and the zarr-python reference path
        store = EpisodeStore(path, fast=fast)
        assert sorted(store.features) == sorted(want["features"]), unreadable("store", "the feature keys")
        for key, spec in want["features"].items():  # every field written reads back (new optional ones may add)
            got = store.features[key].to_dict()
            assert {f: got.get(f) for f in spec} == spec, unreadable("store", f"feature spec of {key}")
        assert store.features["observation.state"].names == tuple(want["features"]["observation.state"]["names"])
        assert store.episode_ends.tolist() == want["episode_ends"], unreadable("store", "episode ends")
        assert store.task_index.tolist() == want["task_index"], unreadable("store", "task index")
        assert [store.episode_task(i) for i in range(store.num_episodes)] == want["episode_tasks"]
        for key, value in want["arrays"].items():
            assert_digest(digest(store.read(key, 0, store.num_frames)), value, "store", f"array {key} (fast={fast})")
        episode = store.episode(1)
        assert episode.frames["observation.state"].tolist() == store.read("observation.state", 5, 9).tolist()


def test_store_is_intact_by_the_verify_command():
    from librobot.data.store import verify_store

    report = verify_store(ART / "store")
    assert report.ok, unreadable("store", f"its chunk files ({[p.line() for p in report.problems]})")
    assert report.checksums and report.version == expected("store")["format_version"]
    assert report.arrays == 2 + len(expected("store")["features"]) and report.chunks >= report.arrays


@pytest.mark.torch
def test_store_dataset_samples_equal_the_recorded_ones():
    from librobot.data import StoreDataset

    want = expected("store")["dataset"]
    dataset = StoreDataset(ART / "store", action_horizon=want["action_horizon"])
    assert len(dataset) == want["length"], unreadable("store", "the dataset length")
    for index, sample in want["samples"].items():
        item = dataset[int(index)]
        image = item.pop("observation.images.front").numpy()
        assert_digest(digest(image), sample["image"], "store", f"sample {index} image")
        for key, value in sample.items():
            if key == "image":
                continue
            got = item[key].numpy().tolist() if hasattr(item[key], "numpy") else np.asarray(item[key]).tolist()
            assert got == value, unreadable("store", f"sample {index} '{key}'")


def test_store_statistics_equal_the_recorded_ones():
    from librobot.data import EpisodeStore

    want = expected("store")
    stats = EpisodeStore(ART / "store").stats
    assert stats is not None, unreadable("store", "stats.json")
    assert set(stats) == set(want["stats"])
    for key, item in want["stats"].items():
        assert set(stats[key]) == set(item), unreadable("store", f"stats.json '{key}' fields")
        for field, value in item.items():
            np.testing.assert_allclose(stats[key][field], value, rtol=0, atol=0, err_msg=unreadable("store", key))
        for field, value in want["stats_expected"][key].items():  # numpy's own, at write time
            np.testing.assert_allclose(stats[key][field], value, rtol=1e-6, atol=1e-7, err_msg=f"{key} {field}")


# ------------------------------------------------------------------------------ normaliser stats
def test_normalizer_loads_with_equal_numbers():
    from librobot.data.normalize import NormalizationProcessor

    want = expected("normalizer")
    processor = NormalizationProcessor.load(ART / "normalizer.json")
    assert sorted(processor.features) == sorted(want["modes"])
    for key, mode in want["modes"].items():
        entry = processor.features[key]
        assert entry["mode"] == mode and entry["clamp"] == want["clamp"][key], unreadable("normalizer", key)
        np.testing.assert_array_equal(entry["center"], want["center"][key], err_msg=unreadable("normalizer", key))
        np.testing.assert_array_equal(entry["scale"], want["scale"][key], err_msg=unreadable("normalizer", key))
        probe = np.asarray(want["probe"][key])
        np.testing.assert_allclose(processor.normalize_value(key, probe), want["normalized"][key], rtol=1e-12)
        np.testing.assert_allclose(processor.unnormalize_value(key, probe), want["unnormalized"][key], rtol=1e-12)
    # the normaliser is what the data stats code gives for the store it was computed from
    rebuilt = NormalizationProcessor.from_stats(expected("store")["stats"], want["modes"]).to_dict()
    assert rebuilt["features"] == processor.to_dict()["features"]


# ------------------------------------------------------------------------------ policy folder
@pytest.mark.torch
def test_policy_folder_predicts_the_recorded_actions():
    import torch

    from librobot.models.frameworks.base import AbstractVLA
    from librobot.serve.torch_policy import TorchPolicy

    want = expected("policy")
    policy = TorchPolicy.from_pretrained(ART / "policy")
    model = policy.model
    assert model.registry_name == want["framework"] and model.get_num_parameters() == want["num_parameters"]
    state = model.normalizer.state()
    assert state["features"] == want["normalization"]["features"], unreadable("policy", "normalization.json")
    obs = {k: np.asarray(v, np.float32) for k, v in want["observation"].items()}
    chunk = policy.predict_chunk(obs, want["task"], noise=np.asarray(want["noise"], np.float32))
    np.testing.assert_allclose(chunk, want["actions"], rtol=0, atol=1e-5, err_msg=unreadable("policy", "the actions"))

    seeded = AbstractVLA.from_pretrained(ART / "policy")  # no noise: the saved config's seed draws it
    with torch.no_grad():
        got = seeded.predict_action(
            {"front": torch.from_numpy(obs["observation.images.front"])[None]},
            [want["seeded_task"]],
            torch.from_numpy(obs["observation.state"])[None],
        )[0].numpy()
    np.testing.assert_allclose(got, want["seeded_actions"], rtol=0, atol=1e-5, err_msg=unreadable("policy", "seed"))


# ------------------------------------------------------------------------------ ONNX export
def test_onnx_export_predicts_the_recorded_actions():
    from librobot.serve.onnx_policy import OnnxPolicy

    want = expected("onnx")
    policy = OnnxPolicy(ART / "onnx")  # verifies the graph's sha256 against the sidecar
    assert policy.spec.model_sha256 == want["model_sha256"]
    assert {b.name: [b.onnx_name, list(b.shape)] for b in policy.spec.inputs} == want["inputs"]
    assert list(policy.known_tasks or ()) == want["known_tasks"]
    assert (policy.chunk_size, policy.action_dim) == (want["chunk_size"], want["action_dim"])
    obs = {k: np.asarray(v, np.float32) for k, v in want["observation"].items()}
    eps = np.asarray(want["noise"], np.float32)
    chunk = policy.predict_chunk(obs, want["task"], noise=eps)
    np.testing.assert_allclose(chunk, want["actions"], rtol=0, atol=1e-4, err_msg=unreadable("onnx", "the actions"))
    batch = {k: np.stack([v * s for s in want["batch_scale"]]).astype(np.float32) for k, v in obs.items()}
    noise = np.stack([eps * s for s in want["batch_noise_sign"]])
    chunks = policy.predict_chunks(batch, want["batch_tasks"], noise=noise)
    np.testing.assert_allclose(chunks, want["batch_actions"], rtol=0, atol=1e-4, err_msg=unreadable("onnx", "batch"))


def test_onnx_export_agrees_with_the_policy_folder_it_came_from():
    want_onnx, want_policy = expected("onnx"), expected("policy")
    assert want_onnx["observation"] == want_policy["observation"] and want_onnx["noise"] == want_policy["noise"]
    np.testing.assert_allclose(want_onnx["actions"], want_policy["actions"], rtol=0, atol=1e-3)


# ------------------------------------------------------------------------------ training checkpoint
@pytest.mark.torch
def test_checkpoint_passes_the_resume_checks(monkeypatch):
    from librobot.core.checkpoint import load_checkpoint
    from librobot.train.checkpoint_checks import check_model_state, check_trainer_state
    from librobot.train.checkpointing import CheckpointManager, load_inference_weights, resolve_resume
    from librobot.train.factories import build_datasets, build_model

    want = expected("checkpoint")
    step_dir = ART / "checkpoint" / want["directory"]
    found, damaged = CheckpointManager(ART / "checkpoint").resumable()
    assert found == step_dir and not damaged, unreadable("checkpoint", f"the checkpoint ({damaged})")
    assert resolve_resume(str(step_dir), ART) == step_dir
    assert sorted(p.name for p in step_dir.iterdir()) == want["files"]

    ckpt = load_checkpoint(step_dir, framework="numpy")  # verifies every file's sha256
    assert ckpt.metadata == want["metadata"], unreadable("checkpoint", "manifest metadata")
    for group, value in want["tensors"].items():
        got = group_digest(ckpt.tensors[group])
        assert got["count"] == value["count"] and got["sha256"] == value["sha256"], unreadable("checkpoint", group)
    state = check_trainer_state(step_dir, ckpt.documents["trainer_state"])
    assert state["step"] == want["step"] and state["data"] == want["data_position"]

    monkeypatch.chdir(ART)  # the run config names the store relative to the run's starting folder
    config = ckpt.documents["config"]
    model = build_model(config["model"], dataset=build_datasets(config["data"])[0])
    pt = load_checkpoint(step_dir, framework="pt")
    check_model_state(step_dir, pt.tensors["model"], model)
    assert load_inference_weights(step_dir, model) == "ema"


@pytest.mark.torch
def test_checkpoint_resumes_for_one_more_step(tmp_path, monkeypatch):
    from librobot.core.checkpoint import load_checkpoint
    from librobot.train.metrics import read_jsonl
    from librobot.train.run import train_from_config

    want = expected("checkpoint")
    shutil.copytree(ART / "store", tmp_path / "store")
    shutil.copytree(ART / "checkpoint", tmp_path / "run" / "checkpoints")
    monkeypatch.chdir(tmp_path)
    config = json.loads((tmp_path / "run" / "checkpoints" / want["directory"] / "config.json").read_text())
    config["train"]["max_steps"] = want["step"] + 1
    result = train_from_config(config, resume="auto", configure_logs=False)
    assert (result.start_step, result.step) == (want["step"], want["step"] + 1), unreadable("checkpoint", "resume")
    # exact resume: the weights, the optimizer's moments, the data position and the RNGs all came back,
    # so step 3 trains on the batch and noise it would have without the interruption
    losses = [
        r["train/loss"] for r in read_jsonl(tmp_path / "run" / "metrics.jsonl") if r.get("step") == want["step"] + 1
    ]
    np.testing.assert_allclose(
        losses[-1], want["resumed_step3_loss"], rtol=1e-5, err_msg=unreadable("checkpoint", "loss")
    )
    after = load_checkpoint(result.last_checkpoint, framework="numpy").tensors
    assert sorted(after) == sorted(want["resumed_step3_tensors"])
    for group, value in want["resumed_step3_tensors"].items():
        got = fingerprint(after[group])
        for key in value:
            np.testing.assert_allclose(
                got[key], value[key], rtol=1e-5, atol=1e-6, err_msg=unreadable("checkpoint", f"{group} after resuming")
            )
