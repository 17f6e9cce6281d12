"""An interrupted recording keeps the episodes it finished (the store commits one at a time), and a
store left without statistics is a named error at training time until they are written."""

import json

import numpy as np
import pytest

import librobot.robots.sim.api as sim_api
from librobot.core.cli import main
from librobot.core.errors import ConfigError
from librobot.data.dataset import StoreDataset
from librobot.data.store import EpisodeStore
from librobot.train.record import record_dataset
from librobot.train.vla import build_vla

pytestmark = pytest.mark.torch


def test_ctrl_c_keeps_the_finished_episodes_in_a_valid_store(tmp_path, monkeypatch):
    real = sim_api.record_episodes

    def interrupted_after_two(*args, **kwargs):
        for count, episode in enumerate(real(*args, **kwargs)):
            if count == 2:
                raise KeyboardInterrupt  # as Ctrl-C lands while the third episode is being recorded
            yield episode

    monkeypatch.setattr(sim_api, "record_episodes", interrupted_after_two)
    out = tmp_path / "demos"
    with pytest.raises(KeyboardInterrupt):
        record_dataset(["metaworld-reach"], 5, out, env_kwargs={"render": False})
    store = EpisodeStore(out)
    assert store.num_episodes == 2 and store.num_frames > 2
    assert not list(tmp_path.glob(".demos.recording-*"))  # no staging folder left behind
    monkeypatch.setattr(sim_api, "record_episodes", lambda *a, **k: iter(()))
    with pytest.raises(FileExistsError, match="already exists"):  # the kept episodes are not overwritten silently
        record_dataset(["metaworld-reach"], 5, out, env_kwargs={"render": False})


def test_a_store_without_statistics_is_a_named_error_until_they_are_written(tmp_path, capsys):
    out = tmp_path / "killed"
    record_dataset(["metaworld-reach"], 2, out, env_kwargs={"render": False})
    (out / "stats.json").unlink()  # what a recording killed with SIGKILL leaves: episodes, no statistics
    (out / "stats_state.json").unlink()
    data = StoreDataset(out, action_horizon=4)
    with pytest.raises(ConfigError, match=r"has no statistics.*librobot data stats .*killed --write"):
        build_vla(data, framework="act")
    assert main(["data", "stats", str(out), "--write", "--keys", "action"]) == 0
    assert "action  (count" in capsys.readouterr().out
    model = build_vla(StoreDataset(out, action_horizon=4), framework="act")  # normalised in robot units again
    action = json.loads((out / "stats.json").read_text())["action"]
    normalised = model.normalizer.state()["features"]["action"]
    assert normalised["mode"] == "q01_q99"
    np.testing.assert_allclose(normalised["center"], (np.add(action["q01"], action["q99"])) / 2, rtol=1e-6)
