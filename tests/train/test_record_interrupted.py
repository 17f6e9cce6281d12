"""An interrupted recording keeps the episodes it finished (the store commits one at a time)."""

import pytest

import librobot.robots.sim.api as sim_api
from librobot.data.store import EpisodeStore
from librobot.train.record import record_dataset

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
