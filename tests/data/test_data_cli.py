"""`librobot data ...` commands, the lazy manifest, and what importing the package costs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from librobot.core.cli import main
from librobot.core.registry import get_registry
from librobot.data._manifest import _DATASETS, _FORMATS, _TOKENIZERS, _TRANSFORMS


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["data", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_convert_info_stats_view(store_path, tmp_path, capsys):
    dst = tmp_path / "lr"
    code, out, _ = run_cli(capsys, "convert", str(store_path), str(dst), "--to", "lerobot-v2.1", "-o", "video=lossless")
    assert code == 0 and "lerobot-v2.1, 3 episodes, 27 frames" in out and "written" in out
    code, out, _ = run_cli(capsys, "convert", str(store_path), str(dst), "--to", "lerobot-v2.1", "-o", "video=lossless")
    assert code == 0 and "up to date" in out
    code, out, _ = run_cli(capsys, "info", str(dst), "--json")
    info = json.loads(out)
    assert code == 0 and (info["format"], info["num_episodes"], info["num_frames"], info["fps"]) == (
        "lerobot-v2.1",
        3,
        27,
        10.0,
    )
    assert info["features"]["observation.images.top"]["shape"] == [3, 32, 32] and info["bytes_on_disk"] > 0
    code, out, _ = run_cli(capsys, "stats", str(dst), "--keys", "action", "--json")
    streamed = json.loads(out)["action"]
    stored = json.loads((store_path / "stats.json").read_text())["action"]
    assert code == 0 and streamed["count"] == 27
    assert streamed["mean"] == pytest.approx(stored["mean"], abs=1e-12) and streamed["q99"] == pytest.approx(
        stored["q99"], abs=1e-12
    )
    code, out, _ = run_cli(capsys, "view", str(store_path), "--episode", "1", "--out", str(tmp_path / "view"))
    page = (tmp_path / "view" / "index.html").read_text()
    assert code == 0 and "9 frames at 10 fps" in page and "open the drawer | close the drawer" in page
    for name in ("action", "observation.state", "observation.images.top", "observation.images.wrist"):
        png = (tmp_path / "view" / f"{name}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000


def test_errors_are_reported_without_traceback(tmp_path, capsys):
    # (only the last line: other packages' commands may log their own load problems before it)
    code, _, err = run_cli(capsys, "info", str(tmp_path / "nothing"))
    assert code == 2 and err.strip().splitlines()[-1] == f"librobot data: error: {tmp_path / 'nothing'} does not exist"
    code, _, err = run_cli(capsys, "convert", str(tmp_path), str(tmp_path / "x"), "--to", "parquet")
    assert code == 2 and err.strip().splitlines()[-1].startswith(
        "librobot data: error: unknown dataset_format 'parquet'"
    )


def test_every_manifest_entry_resolves():
    for category, entries in (
        ("dataset_format", _FORMATS),
        ("dataset", _DATASETS),
        ("transform", _TRANSFORMS),
        ("tokenizer", _TOKENIZERS),
    ):
        registry = get_registry(category)
        for name, *_ in entries:
            assert callable(registry.get(name)), (category, name)


def test_import_and_recording_stay_torch_free(tmp_path):
    code = f"""
import sys, json, numpy as np
import librobot.data as data
names = data.list_datasets()
from librobot.data import EpisodeWriter, EpisodeStore
from librobot.core.registry import get_registry
with EpisodeWriter({str(tmp_path / "rec")!r}, fps=30, robot_type="sim") as w:
    w.start_episode("reach")
    for t in range(4):
        w.add_frame({{"observation.state": np.zeros(3), "observation.images.cam": np.zeros((8, 8, 3), np.uint8), "action": np.ones(2)}})
    w.end_episode()
fast = get_registry("tokenizer").create("fast", scale=10).fit(np.random.default_rng(0).uniform(-1, 1, (20, 4, 2)))
bins = get_registry("tokenizer").create("uniform-bins")
fast.decode(fast.encode(np.zeros((1, 4, 2))), 4, 2)
print(json.dumps({{"torch": "torch" in sys.modules, "frames": EpisodeStore({str(tmp_path / "rec")!r}).num_frames, "names": names}}))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["torch"] is False and report["frames"] == 4
    assert {name for name, *_ in _DATASETS} <= set(report["names"])  # other packages may add more
