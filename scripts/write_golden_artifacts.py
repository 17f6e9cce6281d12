#!/usr/bin/env python
"""Write the golden artifacts under ``tests/artifacts/``: small, deterministic files in each on-disk
format LibroBot writes, with the numbers they must read back as (``tests/test_golden_artifacts.py``).

    OMP_NUM_THREADS=1 .venv/bin/python scripts/write_golden_artifacts.py [--out tests/artifacts]

What it writes (each beside a ``<name>.expected.json`` of values computed at write time):

- ``store/``            an episode store (``EpisodeWriter``): 2 episodes, one 8x8 camera, state, action,
                        element names, two tasks; with its ``stats.json`` (the data stats code)
- ``normalizer.json``   the normaliser state (``NormalizationProcessor.from_stats(store stats).save``)
- ``policy/``           a policy folder (``AbstractVLA.save_pretrained``): a tiny GR00T-style policy on
                        ``librobot-tiny-vlm``, normalised with ``normalizer.json``
- ``onnx/``             its ONNX export with the sidecar (``librobot.serve.export.export_policy``)
- ``checkpoint/``       the ``checkpoints/`` folder of a 2-step ``train_from_config`` run on ``store/``
- ``golden.json``       the librobot versions and the format versions written

Regenerate only when a format change is deliberate, and then bump that format's version and keep a
reader for the old one (docs/DEVELOPING.md, "Golden artifacts"). ``--from-commit REV`` writes them
with the librobot code of commit REV (a ``git archive`` of its ``packages/`` put first on the path),
not with the working tree's: golden files should come from committed writers.

Re-running gives the same numbers. Files differ byte-wise only where a format embeds a time, a
version string or a path: ``created_unix`` / ``updated_unix`` in manifests and in the store's record,
``train_seconds`` in the checkpoint's ``trainer_state.json``, package versions in the policy's
``config.json`` and in ``export.json`` (which also holds timings), and the ONNX graph, whose nodes
carry the exporter's stack traces (absolute paths and line numbers of the librobot sources that ran):
its bytes, and the sha256 in its sidecar, change whenever those lines move. The manifests' and
sidecar's checksums are recomputed with the files, so each artifact stays self-consistent.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("LIBROBOT_PROGRESS", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "tests" / "artifacts"

# ------------------------------------------------------------------ the fixed inputs
FPS = 10.0
IMAGE = 8  # pixels per side
CAMERA = "front"
STATE_NAMES = ["x", "y", "z", "gripper"]
ACTION_NAMES = ["dx", "dy", "dgripper"]
S, A, H = len(STATE_NAMES), len(ACTION_NAMES), 4  # state dim, action dim, action chunk
TASKS = ["pick up the red cube", "open the drawer"]
LENGTHS = [5, 4]  # frames per episode
TINY_VLM = dict(
    image_size=IMAGE, patch_size=4, vision_dim=16, vision_depth=1, vision_heads=2, tokens_per_view=4,
    dim=16, depth=1, heads=2, kv_heads=1, mlp_ratio=2.0, max_text_tokens=24,
)  # fmt: skip
GROOT = dict(hidden_dim=16, head={"num_inference_steps": 2, "hidden_dim": 16, "depth": 1, "num_heads": 2})
NORMALIZER_MODES = {"action": "q01_q99", "observation.state": "mean_std"}


def episodes() -> list[dict[str, np.ndarray]]:
    """Two episodes of uint8 images [T, H, W, C], float32 states [T, S] and actions [T, A]."""
    rng = np.random.default_rng(20240521)
    out = []
    for length in LENGTHS:
        out.append(
            {
                f"observation.images.{CAMERA}": rng.integers(0, 256, (length, IMAGE, IMAGE, 3), dtype=np.uint8),
                "observation.state": rng.normal(size=(length, S)).astype(np.float32),
                "action": rng.normal(size=(length, A)).astype(np.float32),
            }
        )
    return out


def observation() -> dict[str, np.ndarray]:
    """The observation the policy and its export are asked about: one frame, as a robot sends it."""
    rng = np.random.default_rng(7)
    return {
        "observation.state": (rng.normal(size=S) * 2.0).astype(np.float32),
        f"observation.images.{CAMERA}": rng.random((3, IMAGE, IMAGE), dtype=np.float32),
    }


def noise() -> np.ndarray:
    return np.random.default_rng(11).standard_normal((H, A)).astype(np.float32)


# ------------------------------------------------------------------ helpers
def package_versions() -> dict[str, str]:
    names = ["librobot-core", "librobot-data", "librobot-models", "librobot-train", "librobot-serve", "torch"]
    names += ["onnx", "onnxruntime", "zarr", "safetensors", "numpy"]
    found = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    return found


def source() -> dict[str, Any]:
    """The commit of this repository and whether the librobot code that ran is that commit's."""
    import subprocess

    import librobot.core

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
        return done.stdout.strip() if done.returncode == 0 else ""

    core = Path(librobot.core.__file__).resolve()
    in_tree = core.is_relative_to(ROOT)
    changed = git("status", "--porcelain", "--", "packages", "kernels") if in_tree else ""
    archived = os.environ.get("LIBROBOT_GOLDEN_COMMIT")
    return {
        "commit": archived or git("rev-parse", "HEAD"),
        "code": "this repository's working tree"
        if in_tree
        else "git archive of the commit (--from-commit)"
        if archived
        else "a copy outside this repository",
        "working_tree_changes": bool(changed),
    }


def array_digest(array: np.ndarray) -> dict[str, Any]:
    """What pins an array: dtype, shape, sha256 of its C-order bytes, first values, sum."""
    array = np.ascontiguousarray(array)
    return {
        "dtype": str(array.dtype),
        "shape": list(array.shape),
        "sha256": hashlib.sha256(array.tobytes()).hexdigest(),
        "first": array.reshape(-1)[:6].tolist(),
        "sum": float(array.astype(np.float64).sum()),
    }


def group_digest(tensors: dict[str, np.ndarray]) -> dict[str, Any]:
    """What pins a group of named tensors: their count, one sha256 over every name, dtype, shape and
    the bytes (in name order), and the sum of all values (to tell a numeric change from a renaming)."""
    digest = hashlib.sha256()
    total = 0.0
    for name in sorted(tensors):
        array = np.ascontiguousarray(tensors[name])
        digest.update(f"{name}|{array.dtype}|{list(array.shape)}|".encode())
        digest.update(array.tobytes())
        total += float(array.astype(np.float64).sum())
    return {"count": len(tensors), "sha256": digest.hexdigest(), "sum": total}


def fingerprint(tensors: dict[str, np.ndarray]) -> dict[str, float]:
    """Float summaries of a group of tensors that survive tiny float differences (compare with a
    tolerance): the sum, the sum of magnitudes, and a projection on fixed pseudo-random weights."""
    flat = np.concatenate([np.asarray(tensors[k], np.float64).reshape(-1) for k in sorted(tensors)])
    weights = np.random.default_rng(0).standard_normal(flat.size)
    return {"sum": float(flat.sum()), "abs_sum": float(np.abs(flat).sum()), "projection": float(flat @ weights)}


def tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


def dump(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=1, sort_keys=True, allow_nan=False) + "\n", encoding="utf-8")


@contextmanager
def cwd(path: Path):
    before = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


# ------------------------------------------------------------------ artifacts
def write_store(out: Path) -> dict[str, Any]:
    from librobot.data import EpisodeStore, EpisodeWriter, StoreDataset
    from librobot.data.store.layout import STORE_FORMAT, STORE_VERSION

    path = out / "store"
    eps = episodes()
    with EpisodeWriter(
        path,
        fps=FPS,
        names={"observation.state": STATE_NAMES, "action": ACTION_NAMES},
        robot_type="golden-arm",
        info={"source": "scripts/write_golden_artifacts.py"},
    ) as writer:
        writer.add_episode(eps[0], task=TASKS[0])
        # frame by frame, the task changing midway (per-frame tasks)
        writer.start_episode(task=TASKS[1])
        for t in range(LENGTHS[1]):
            writer.add_frame({k: v[t] for k, v in eps[1].items()}, task=TASKS[0] if t >= 2 else None)
        writer.end_episode()

    store = EpisodeStore(path)
    arrays = {}
    for key in eps[0]:
        arrays[key] = array_digest(store.read(key, 0, store.num_frames))  # images stored [N, C, H, W]
    raw = {
        k: np.concatenate(
            [e[k] if not k.startswith("observation.images.") else e[k].transpose(0, 3, 1, 2) for e in eps]
        )
        for k in eps[0]
    }
    for key, value in raw.items():
        assert arrays[key]["sha256"] == array_digest(value)["sha256"], key
    dataset = StoreDataset(path, action_horizon=H)
    samples = {}
    for index in (0, LENGTHS[0] - 1, len(dataset) - 1):  # first; last of episode 0 (padded chunk); last
        item = dataset[index]
        samples[str(index)] = {
            key: (value.numpy() if hasattr(value, "numpy") else np.asarray(value)).tolist()
            for key, value in item.items()
            if key != f"observation.images.{CAMERA}"
        } | {"image": array_digest(item[f"observation.images.{CAMERA}"].numpy())}
    record = store.record
    return {
        "format": STORE_FORMAT,
        "format_version": STORE_VERSION,
        "fps": FPS,
        "robot_type": "golden-arm",
        "info": {"source": "scripts/write_golden_artifacts.py"},
        "num_episodes": store.num_episodes,
        "num_frames": store.num_frames,
        "tasks": store.tasks,
        "features": record["features"],
        "episode_ends": store.episode_ends.tolist(),
        "episode_tasks": [store.episode_task(i) for i in range(store.num_episodes)],
        "task_index": store.task_index.tolist(),
        "arrays": arrays,
        "dataset": {"action_horizon": H, "length": len(dataset), "samples": samples},
        "stats_expected": numpy_stats(raw),
        "stats": store.stats,
    }


def numpy_stats(raw: dict[str, np.ndarray]) -> dict[str, Any]:
    """mean/std/min/max computed here with numpy (the stats code must agree; quantiles are its own)."""
    out = {}
    for key, value in raw.items():
        if key.startswith("observation.images."):
            x = value.astype(np.float64) / 255.0  # [N, C, H, W] → per channel
            axes = (0, 2, 3)
        else:
            x, axes = value.astype(np.float64), (0,)
        out[key] = {
            "mean": x.mean(axis=axes).tolist(),
            "std": x.std(axis=axes).tolist(),
            "min": x.min(axis=axes).tolist(),
            "max": x.max(axis=axes).tolist(),
        }
    return out


def write_normalizer(out: Path, stats: dict[str, Any]) -> dict[str, Any]:
    from librobot.data.normalize import FORMAT, VERSION, NormalizationProcessor

    processor = NormalizationProcessor.from_stats(stats, NORMALIZER_MODES)
    processor.save(out / "normalizer.json")
    rng = np.random.default_rng(3)
    probes = {"observation.state": rng.normal(size=(2, S)) * 2, "action": rng.normal(size=(2, A)) * 2}
    return {
        "format": FORMAT,
        "format_version": VERSION,
        "modes": NORMALIZER_MODES,
        "center": {k: v["center"].tolist() for k, v in processor.features.items()},
        "scale": {k: v["scale"].tolist() for k, v in processor.features.items()},
        "clamp": {k: v["clamp"] for k, v in processor.features.items()},
        "probe": {k: v.tolist() for k, v in probes.items()},
        "normalized": {k: processor.normalize_value(k, v).tolist() for k, v in probes.items()},
        "unnormalized": {k: processor.unnormalize_value(k, v).tolist() for k, v in probes.items()},
    }


def write_policy(out: Path) -> dict[str, Any]:
    import torch

    from librobot.core.checkpoint import FORMAT_VERSION as MANIFEST_VERSION
    from librobot.models import create_vla, create_vlm
    from librobot.models.frameworks.base import AbstractVLA
    from librobot.models.frameworks.persistence import FORMAT, VERSION
    from librobot.serve.torch_policy import TorchPolicy

    torch.manual_seed(0)
    model = create_vla(
        "groot", vlm=create_vlm("librobot-tiny-vlm", **TINY_VLM), action_dim=A, state_dim=S, horizon=H,
        cameras=[CAMERA], **GROOT,
    )  # fmt: skip
    with torch.no_grad():  # perturbed so the output depends on every input (zero-initialised layers)
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    model.set_normalization(json.loads((out / "normalizer.json").read_text()))
    model.eval().save_pretrained(out / "policy")

    obs, eps = observation(), noise()
    chunk_memory = TorchPolicy(model).predict_chunk(obs, TASKS[0], noise=eps)
    loaded = TorchPolicy.from_pretrained(out / "policy")
    chunk = loaded.predict_chunk(obs, TASKS[0], noise=eps)
    np.testing.assert_array_equal(chunk, chunk_memory)
    seeded = AbstractVLA.from_pretrained(out / "policy")  # no noise given: the config's seed draws it
    with torch.no_grad():
        chunk_seeded = seeded.predict_action(
            {CAMERA: torch.from_numpy(obs[f"observation.images.{CAMERA}"])[None]},
            [TASKS[1]],
            torch.from_numpy(obs["observation.state"])[None],
        )[0].numpy()
    return {
        "format": FORMAT,
        "format_version": VERSION,
        "manifest_format_version": MANIFEST_VERSION,
        "framework": "groot",
        "vlm": "librobot-tiny-vlm",
        "num_parameters": model.get_num_parameters(),
        "observation": {k: v.tolist() for k, v in obs.items()},
        "task": TASKS[0],
        "noise": eps.tolist(),
        "actions": chunk.tolist(),
        "seeded_task": TASKS[1],
        "seeded_actions": chunk_seeded.tolist(),
        "normalization": model.normalizer.state(),
    }


def write_onnx(out: Path) -> dict[str, Any]:
    from librobot.serve.export import export_policy
    from librobot.serve.onnx_policy import OnnxPolicy
    from librobot.serve.sidecar import FORMAT, VERSION

    with cwd(out):  # the export records its source folder: keep it relative
        result = export_policy("policy", "onnx", tasks=TASKS, seed=0)
    obs, eps = observation(), noise()
    policy = OnnxPolicy(out / "onnx")
    chunk = policy.predict_chunk(obs, TASKS[0], noise=eps)
    batch = {k: np.stack([v, v * 0.5]) for k, v in obs.items()}
    chunks = policy.predict_chunks(batch, [TASKS[0], TASKS[1]], noise=np.stack([eps, -eps]))
    return {
        "format": FORMAT,
        "format_version": VERSION,
        "report_format": result.report["format"],
        "report_version": result.report["version"],
        "model_sha256": policy.spec.model_sha256,
        "inputs": {b.name: [b.onnx_name, list(b.shape)] for b in policy.spec.inputs},
        "known_tasks": list(policy.known_tasks or ()),
        "chunk_size": policy.chunk_size,
        "action_dim": policy.action_dim,
        "observation": {k: v.tolist() for k, v in obs.items()},
        "task": TASKS[0],
        "noise": eps.tolist(),
        "actions": chunk.tolist(),
        "batch_tasks": [TASKS[0], TASKS[1]],
        "batch_scale": [1.0, 0.5],
        "batch_noise_sign": [1.0, -1.0],
        "batch_actions": chunks.tolist(),
    }


def train_config(max_steps: int) -> dict[str, Any]:
    """The run config, with paths relative to the folder the run starts in (store/ beside run/)."""
    return {
        "name": "golden",
        "run_dir": "run",
        "model": {"factory": "vla", "framework": "groot", "vlm": {"name": "librobot-tiny-vlm", **TINY_VLM}, **GROOT},
        "data": {"factory": "store", "path": "store", "action_horizon": H},
        "train": {"max_steps": max_steps, "batch_size": 4, "seed": 0, "device": "cpu", "handle_signals": False},
        "optimizer": {"name": "adamw", "lr": 1e-3, "weight_decay": 0.01},
        "scheduler": {"name": "constant"},
        "ema": {"enabled": True, "max_decay": 0.9},
        "checkpoint": {"every_n_steps": 0, "keep_last": 1, "monitor": None},
        "eval": {"at_end": False},
        "logging": {"log_every_n_steps": 1, "tensorboard": False, "plot": False, "progress": False},
    }


def write_checkpoint(out: Path) -> dict[str, Any]:
    from librobot.core.checkpoint import FORMAT_VERSION as MANIFEST_VERSION
    from librobot.core.checkpoint import load_checkpoint
    from librobot.train.checkpointing import FORMAT
    from librobot.train.metrics import read_jsonl
    from librobot.train.run import train_from_config

    with tempfile.TemporaryDirectory(prefix="librobot-golden-") as scratch:
        scratch = Path(scratch)
        shutil.copytree(out / "store", scratch / "store")
        with cwd(scratch):
            result = train_from_config(train_config(2), configure_logs=False)
            assert result.step == 2, result.step
            losses = [(r["step"], r["train/loss"]) for r in read_jsonl(Path("run/metrics.jsonl")) if "train/loss" in r]
            # what a resume of one more step must give (exact resume: the same as an uninterrupted run)
            shutil.copytree("run/checkpoints", "checkpoint-copy")
            resumed = train_from_config(train_config(3), resume="auto", configure_logs=False)
            assert resumed.step == 3 and resumed.start_step == 2, (resumed.step, resumed.start_step)
            step3 = [r["train/loss"] for r in read_jsonl(Path("run/metrics.jsonl")) if r.get("step") == 3]
            after = load_checkpoint(Path("run/checkpoints/step_000000003"), framework="numpy").tensors
            resumed_weights = {group: fingerprint(after[group]) for group in sorted(after)}
        shutil.copytree(scratch / "checkpoint-copy", out / "checkpoint")
    step_dir = out / "checkpoint" / "step_000000002"
    ckpt = load_checkpoint(step_dir, framework="numpy")
    tensors = {group: group_digest(ckpt.tensors[group]) for group in sorted(ckpt.tensors)}
    state = ckpt.documents["trainer_state"]
    return {
        "format": FORMAT,
        "manifest_format_version": MANIFEST_VERSION,
        "step": 2,
        "directory": step_dir.name,
        "files": sorted(p.name for p in step_dir.iterdir()),
        "metadata": ckpt.metadata,
        "data_position": state["data"],
        "losses": losses,
        "resumed_step3_loss": step3[-1],
        "resumed_step3_tensors": resumed_weights,
        "tensors": tensors,
        "config": train_config(2),
    }


# ------------------------------------------------------------------ main
def from_commit(rev: str, out: Path) -> int:
    """Run this script again with the ``packages/`` of commit ``rev`` first on the path."""
    import io
    import subprocess
    import tarfile

    archive = subprocess.run(["git", "archive", rev, "packages"], cwd=ROOT, capture_output=True, check=True).stdout
    with tempfile.TemporaryDirectory(prefix="librobot-golden-src-") as src:
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(src, filter="data")
        paths = sorted(str(p) for p in Path(src, "packages").glob("*/src"))
        commit = subprocess.run(["git", "rev-parse", rev], cwd=ROOT, capture_output=True, text=True, check=True)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([*paths, os.environ.get("PYTHONPATH", "")])}
        env["LIBROBOT_GOLDEN_COMMIT"] = commit.stdout.strip()
        return subprocess.run([sys.executable, __file__, "--out", str(out)], env=env, check=False).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--from-commit", metavar="REV", help="write with the librobot code of this commit (e.g. HEAD)")
    args = parser.parse_args(argv)
    out = args.out.resolve()
    if args.from_commit:
        return from_commit(args.from_commit, out)
    import torch

    torch.set_num_threads(1)
    for name in ("store", "policy", "onnx", "checkpoint"):
        shutil.rmtree(out / name, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("*.expected.json"):
        stale.unlink()

    expected: dict[str, dict[str, Any]] = {}
    expected["store"] = write_store(out)
    expected["normalizer"] = write_normalizer(out, expected["store"]["stats"])
    expected["policy"] = write_policy(out)
    expected["onnx"] = write_onnx(out)
    expected["checkpoint"] = write_checkpoint(out)
    for name, values in expected.items():
        dump(out / f"{name}.expected.json", values)

    formats = {
        name: {k: v for k, v in values.items() if k in ("format", "format_version", "manifest_format_version",
                                                            "report_format", "report_version")}
        for name, values in expected.items()
    }  # fmt: skip
    files = {"store": "store", "normalizer": "normalizer.json", "policy": "policy", "onnx": "onnx"}
    files["checkpoint"] = "checkpoint"
    sizes = {name: tree_bytes(out / path) for name, path in files.items()}
    dump(
        out / "golden.json",
        {
            "written_by": "scripts/write_golden_artifacts.py",
            "python": sys.version.split()[0],
            "source": source(),
            "versions": package_versions(),
            "formats": formats,
            "artifacts": files,
            "bytes": sizes,
        },
    )
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"wrote {out}: {total / 1e6:.2f} MB ({', '.join(f'{k} {v / 1e3:.0f} kB' for k, v in sizes.items())})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
