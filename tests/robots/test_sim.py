"""Simulated environments, scripted experts and the recording API (a few short episodes each)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from librobot.core.errors import ConfigError, UnknownComponentError
from librobot.robots import env_info, evaluate_expert, make_env, make_expert, record_episodes
from librobot.robots.sim.api import run_episode, wilson_interval
from librobot.robots.sim.wheel_loader_model import LF, LR, Site, WheelLoaderModel
from librobot.robots.so100 import so100_spec


def test_wilson_interval_values():
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_interval(10, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)
    assert wilson_interval(49, 50) == pytest.approx((0.8950, 0.9965), abs=1e-4)


# ------------------------------------------------------------------------------ wheel loader model
def _model(**kw):
    return WheelLoaderModel(Site(np.array([100.0, 0.0]), 4.0, 2.5, np.array([0.0, 100.0]), 0.0), **kw)


def test_articulated_kinematics_turn_at_the_textbook_rate():
    m = _model()
    gamma = 0.4
    m.set_command({"throttle": 0.5, "steering": gamma, "boom": 0, "bucket": 0, "brake": 0, "gear": 1})
    for _ in range(200):  # 10 s: articulation settles, speed builds
        m.step(0.05)
    t = m.telemetry()
    assert t["articulation"] == pytest.approx(gamma, abs=1e-3) and t["vx"] > 1.0
    expected = t["vx"] * math.sin(gamma) / (LF * math.cos(gamma) + LR)
    assert t["yaw_rate"] == pytest.approx(expected, rel=1e-2)


def test_transmission_brakes_and_hydraulics_respect_their_limits():
    m = _model()
    m.set_command({"throttle": 1.0, "steering": 0, "boom": 1.0, "bucket": -1.0, "brake": 0, "gear": 1})
    for _ in range(200):
        m.step(0.05)
    assert 3.0 < m.v < 7.0  # traction falls off toward the working gear's top speed
    assert m.boom == pytest.approx(0.85) and m.bucket == pytest.approx(-1.0)  # stopped at the cylinder ends
    m.set_command({"throttle": 1.0, "steering": 0, "boom": 0, "bucket": 0, "brake": 0, "gear": -1})
    m.step(0.05)
    assert m.gear_engaged == 0.0  # no reverse at speed
    m.set_command({"throttle": 0, "steering": 0, "boom": 0, "bucket": 0, "brake": 1.0, "gear": 0})
    for _ in range(60):
        m.step(0.05)
    assert m.v == 0.0  # braked to a stop, never pushed backwards
    with pytest.raises(ValueError, match="non-finite"):
        m.set_command({"throttle": np.nan, "steering": 0, "boom": 0, "bucket": 0, "brake": 0, "gear": 0})


def test_wheel_loader_env_is_seeded_and_the_expert_completes_a_cycle():
    env = make_env("wheel-loader-dig-dump", render=True)
    a, _ = env.reset(seed=4)
    b, _ = env.reset(seed=4)
    c, _ = env.reset(seed=5)
    np.testing.assert_array_equal(a["observation.images.top"], b["observation.images.top"])
    assert not np.array_equal(a["observation.images.top"], c["observation.images.top"])
    assert a["observation.state"].shape == (22,) and a["observation.images.top"].shape == (96, 96, 3)
    env.close()
    report = evaluate_expert("wheel-loader-dig-dump", 2, seed=10)
    assert report.successes == [True, True] and all(400 < n < 1500 for n in report.lengths)


def test_record_episodes_layout_for_the_data_store():
    episodes = list(record_episodes("wheel-loader-dig-dump", 1, seed=3))
    (ep,) = episodes
    t = ep["action"].shape[0]
    assert ep["success"] is True and ep["episode_index"] == 0 and ep["seed"] == 3
    assert ep["task"] == "dig a bucket of gravel from the pile and dump it into the truck" and ep["fps"] == 20.0
    assert ep["observation.state"].shape == (t, 22) and ep["observation.state"].dtype == np.float32
    assert ep["observation.images.top"].shape == (t, 96, 96, 3) and ep["observation.images.top"].dtype == np.uint8
    assert ep["action"].shape == (t, 6) and ep["action"].dtype == np.float32
    assert ep["next.success"][-1] and not ep["next.success"][:-1].any() and ep["image_layout"] == "HWC"
    # The recorded actions replay the episode exactly (the env is deterministic given the seed).
    env = make_env("wheel-loader-dig-dump", render=False)
    obs, _ = env.reset(seed=3)
    for k in range(t):
        np.testing.assert_array_equal(obs["observation.state"], ep["observation.state"][k])
        obs, _, _, _, info = env.step(ep["action"][k])
    assert info["success"]
    info = env_info("wheel-loader-dig-dump")
    assert info["fps"] == 20.0 and info["cameras"] == ("top",) and info["default_expert"] == "wheel-loader-dig-dump"
    assert info["features"]["observation.images.top"].shape == (3, 96, 96)  # specs are (C, H, W), as in core
    assert info["features"]["action"].names == ("throttle", "steering", "boom", "bucket", "brake", "gear")
    chw = next(record_episodes("wheel-loader-dig-dump", 1, seed=3, max_steps=5, image_layout="CHW"))
    assert chw["observation.images.top"].shape == (5, 3, 96, 96) and chw["success"] is False
    np.testing.assert_array_equal(chw["observation.images.top"][2], ep["observation.images.top"][2].transpose(2, 0, 1))


def test_only_successful_skips_failures_and_keeps_indices_dense():
    # With a 31-step limit seed 0 (33 steps) fails, seeds 1 and 2 (30 steps) succeed.
    eps = list(
        record_episodes("so100-pick-cube", 2, seed=0, max_steps=31, only_successful=True, max_attempts=6, render=False)
    )
    assert [(e["episode_index"], e["seed"]) for e in eps] == [(0, 1), (1, 2)] and all(e["success"] for e in eps)
    with pytest.raises(RuntimeError, match="only 0 of 1 episodes"):
        list(record_episodes("so100-pick-cube", 1, max_steps=3, only_successful=True, max_attempts=2, render=False))


# ------------------------------------------------------------------------------ Meta-World
@pytest.mark.parametrize("task", ["reach", "push", "drawer-close"])
def test_metaworld_expert_solves_the_task(task):
    report = evaluate_expert(f"metaworld-{task}", 1, seed=0)
    assert report.successes == [True] and report.lengths[0] < 300


def test_metaworld_observations_and_seeding():
    env = make_env("pick-place-v3")  # the Meta-World id works as an alias
    assert env.task == "pick up the puck and place it at the goal position" and env.fps == 80
    a, _ = env.reset(seed=1)
    b, _ = env.reset(seed=1)
    c, _ = env.reset(seed=2)
    assert a["observation.state"].shape == (39,) and a["observation.images.corner2"].shape == (96, 96, 3)
    np.testing.assert_array_equal(a["observation.state"], b["observation.state"])
    assert not np.allclose(a["observation.state"][-3:], c["observation.state"][-3:])  # a new goal
    ep = run_episode(env, make_expert("metaworld", env), seed=1)
    images = ep["observation.images.corner2"]
    assert ep["success"] and images.dtype == np.uint8 and np.abs(images[-1].astype(int) - images[0]).mean() > 1.0
    env.close()


def test_metaworld_robot_state_hides_objects_and_goal_and_the_expert_still_solves():
    full, robot = make_env("metaworld-push", render=False), make_env("metaworld-push", render=False, state="robot")
    a, _ = full.reset(seed=4)
    b, _ = robot.reset(seed=4)
    assert b["observation.state"].shape == (4,) and robot.features()["observation.state"].names == (
        "hand_x", "hand_y", "hand_z", "gripper",
    )  # fmt: skip
    np.testing.assert_array_equal(b["observation.state"], a["observation.state"][:4])
    assert run_episode(robot, make_expert("metaworld", robot), seed=4)["success"]  # it reads the full state
    with pytest.raises(ConfigError, match="state must be one of"):
        make_env("metaworld-push", render=False, state="objects")
    full.close(), robot.close()


def test_metaworld_camera_orientation_is_corrected():
    from librobot.robots.sim._mujoco import camera_upside_down

    env = make_env("metaworld-reach", render=False)
    model = env._env.model
    assert camera_upside_down(model, "corner2") and not camera_upside_down(model, "topview")
    env.close()


# ------------------------------------------------------------------------------ PushT and SO-100
def test_pusht_expert_pushes_the_t_home():
    report = evaluate_expert("pusht", 1, seed=3)
    assert report.successes == [True]
    env = make_env("pusht")
    obs, _ = env.reset(seed=0)
    assert obs["observation.state"].shape == (2,) and obs["observation.images.top"].shape == (96, 96, 3)
    env.close()
    full = make_env("pusht", render=False, environment_state=True)  # + the block's pose (LeRobot's key)
    obs, _ = full.reset(seed=0)
    block = full.inner.block
    expected = [*block.position, np.cos(block.angle), np.sin(block.angle)]
    np.testing.assert_allclose(obs["observation.environment_state"], np.asarray(expected, np.float32), rtol=1e-6)
    np.testing.assert_array_equal(obs["observation.state"], np.asarray(full.inner.agent.position, np.float32))
    assert full.features()["observation.environment_state"].names == ("block_x", "block_y", "block_cos", "block_sin")
    full.close()


def _pusht_trace(env, expert, seed, steps):
    """(agent position, block position, block angle, action) of ``steps`` expert steps."""
    obs, _ = env.reset(seed=seed)
    expert.reset()
    trace = []
    for _ in range(steps):
        inner = env.inner
        state = (tuple(inner.agent.position), tuple(inner.block.position), float(inner.block.angle))
        action = expert.act(obs)
        trace.append((*state, action))
        obs, *_ = env.step(action)
    return trace


def _replay_actions(env, expert, trace):
    """The actions a fresh ``expert`` takes in each traced state, placed into ``env`` directly."""
    env.reset(seed=0)
    actions = []
    for agent, block_pos, angle, _ in trace:
        inner = env.inner
        inner.agent.position = agent
        inner.block.angle = angle  # angle first: setting it rotates about the centre of gravity
        inner.block.position = block_pos
        expert.reset()
        actions.append(expert.act(None))
    return actions


def test_the_reactive_pusht_expert_acts_on_the_state_alone_and_solves_the_task():
    """What makes it imitable: the same state gives the same action, whatever came before (the
    planning expert's actions depend on how far into its plan it is, so a replay differs)."""
    env, other = make_env("pusht", render=False), make_env("pusht", render=False)
    trace = _pusht_trace(env, make_expert("pusht-reactive", env), seed=503, steps=40)
    replayed = _replay_actions(other, make_expert("pusht-reactive", other), trace)
    np.testing.assert_allclose(np.stack(replayed), np.stack([t[3] for t in trace]), atol=1e-3)
    planned = _pusht_trace(env, make_expert("pusht", env), seed=503, steps=40)
    replanned = _replay_actions(other, make_expert("pusht", other), planned)
    assert np.abs(np.stack(replanned) - np.stack([t[3] for t in planned])).max() > 10.0
    episode = run_episode(env, make_expert("pusht-reactive", env), 503)
    assert episode["success"] and len(episode["action"]) < 300
    env.close(), other.close()


def test_so100_sim_shares_the_real_arms_spaces_and_its_expert_lifts_the_cube():
    env = make_env("so100-pick-cube")
    spec = so100_spec()
    np.testing.assert_array_equal(env.action_space.high, spec.action_space.high_array.astype(np.float32))
    assert [env.model.joint(i).name for i in range(6)] == list(spec.action_space.names)
    expert = make_expert("so100-pick-cube", env)
    env.reset(seed=7)
    cube, yaw = env.cube_pose()
    q = expert.ik(np.array([cube[0], cube[1], 0.05]), yaw)
    pos, rot = expert._fk(q)
    assert np.linalg.norm(pos - [cube[0], cube[1], 0.05]) < 2e-3 and rot[2, 2] < -0.9  # pointing down
    ep = run_episode(env, expert, seed=7)
    assert ep["success"] and ep["observation.images.front"].shape[1:] == (96, 96, 3)
    steps = np.abs(np.diff(ep["action"], axis=0))
    assert (steps <= spec.max_delta + 1e-6).all()  # the expert stays inside the safety layer's rate bound
    env.close()


def test_experts_refuse_the_wrong_env_and_unknown_names_suggest_matches():
    env = make_env("wheel-loader-dig-dump", render=False)
    with pytest.raises(ConfigError, match="drives MetaWorldEnv"):
        make_expert("metaworld", env)
    with pytest.raises(UnknownComponentError, match="Did you mean: metaworld-push"):
        make_env("metaworld-pusj")


def test_cli_sim_list_and_expert(capsys):
    from librobot.core.cli import main

    assert main(["sim", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    names = {r["env"] for r in rows}
    assert {"metaworld-reach", "pusht", "wheel-loader-dig-dump", "so100-pick-cube"} <= names and len(rows) >= 53
    assert main(["sim", "expert", "--env", "so100-*", "--episodes", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    (report,) = out["reports"]
    assert report["env"] == "so100-pick-cube" and report["successes"] == 2 and report["ci95"] == [0.3424, 1.0]
    assert main(["sim", "expert", "--env", "so100-pick-cube", "--episodes", "1"]) == 0
    assert "success 1/1 = 100.0% (95% CI 20.7-100.0%)" in capsys.readouterr().out
    assert main(["sim", "expert", "--env", "nosuch-*", "--episodes", "1"]) == 2
    assert "no environment matches" in capsys.readouterr().err


def test_triton_loads_after_software_gl_rendering():
    """Rendering (Mesa llvmpipe) then importing Triton (as torch.export/compile do) used to segfault."""
    import importlib.util
    import subprocess
    import sys

    if importlib.util.find_spec("triton") is None:
        return  # the edge tier has no Triton, hence nothing to clash with
    code = (
        "from librobot.robots.sim.api import make_env\n"
        "env = make_env('metaworld-reach', render=True, image_size=32)\n"
        "obs, _ = env.reset(seed=0)\n"
        "assert obs['observation.images.corner2'].std() > 0\n"
        "import triton\n"
        "print('ok', flush=True)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-2000:]


@pytest.mark.parametrize("first", ["mujoco", "librobot.robots.sim"])
def test_headless_rendering_when_mujoco_is_imported_first_or_not(first):
    """MuJoCo fixes its GL backend at import: imported before MUJOCO_GL is chosen, rendering cannot
    work headless and the error says how to fix it; importing librobot.robots.sim first just works."""
    import os
    import subprocess
    import sys

    code = (
        f"import {first}\n"
        "from librobot.robots.sim.api import make_env\n"
        "env = make_env('metaworld-reach', render=True, image_size=32)\n"
        "try:\n"
        "    obs, _ = env.reset(seed=0)\n"
        "    print('rendered', float(obs['observation.images.corner2'].std()) > 0, flush=True)\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc, flush=True)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "PYOPENGL_PLATFORM", "DISPLAY")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    if first == "mujoco":
        assert "ConfigError" in out.stdout and "MUJOCO_GL=egl" in out.stdout, out.stdout + out.stderr[-2000:]
    else:
        assert "rendered True" in out.stdout, out.stdout + out.stderr[-2000:]
