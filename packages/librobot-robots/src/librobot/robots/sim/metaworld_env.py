"""Meta-World v3 tasks as LibroBot environments, with their shipped scripted experts.

Each task runs the goal-observable Meta-World env with a new random object/goal placement per
reset (seeded by ``reset(seed=…)``). Observation: ``observation.state`` (Meta-World's 39-D vector:
hand xyz, gripper opening, two object poses, the previous frame of those, the goal) and, with
``render=True``, ``observation.images.<camera>`` (RGB uint8 [H, W, 3], 96×96 by default).
Action: 4-D in [-1, 1] (end-effector dx, dy, dz, gripper effort).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from librobot.core.batch import ACTION, OBS_STATE, image_key
from librobot.core.errors import ConfigError
from librobot.core.extras import require
from librobot.core.specs import FeatureSpec
from librobot.robots.sim._mujoco import camera_upside_down, import_mujoco, make_renderer
from librobot.robots.sim.metaworld_tasks import TASKS

EXTRA = "librobot-robots[metaworld]"
gym = require("gymnasium", extra=EXTRA, purpose="simulated environments")

STATE_NAMES = (
    ["hand_x", "hand_y", "hand_z", "gripper"]
    + [f"obj1_{k}" for k in ("x", "y", "z", "qw", "qx", "qy", "qz")]
    + [f"obj2_{k}" for k in ("x", "y", "z", "qw", "qx", "qy", "qz")]
)
STATE_NAMES = STATE_NAMES + [f"prev_{n}" for n in STATE_NAMES] + ["goal_x", "goal_y", "goal_z"]
ACTION_NAMES = ("dx", "dy", "dz", "grip")
ROBOT_STATE = 4  # hand x, y, z and the gripper opening: what the robot knows of itself
STATES = ("full", "robot")


class MetaWorldEnv(gym.Env):
    """One Meta-World task; ``task`` is our short name (``push``) or the v3 id (``push-v3``).

    ``state="full"``: Meta-World's 39-D observation, which holds the object and goal positions;
    ``state="robot"``: only the hand position and gripper opening, so the task's objects reach a
    policy through the camera alone (the expert still reads the full state)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 80}
    default_expert = "metaworld"

    def __init__(
        self,
        task: str,
        *,
        render: bool = True,
        image_size: int = 96,
        camera: str = "corner2",
        max_episode_steps: int | None = None,
        state: str = "full",
    ) -> None:
        short = task.removesuffix("-v3")
        if short not in TASKS:
            raise ConfigError(f"unknown Meta-World task '{task}'; known: {', '.join(sorted(TASKS))}")
        if state not in STATES:
            raise ConfigError(f"Meta-World state must be one of {STATES}, got {state!r}")
        self.state = state
        import_mujoco(EXTRA)
        metaworld = require("metaworld", extra=EXTRA, purpose="Meta-World tasks")
        self.name = f"metaworld-{short}"
        self.env_id, self.task = TASKS[short]
        cls = metaworld.ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE[f"{self.env_id}-goal-observable"]
        self._env = cls()
        # New object/goal placement on each reset, drawn from the env's seeded generator.
        self._env._freeze_rand_vec = False
        self._env.seeded_rand_vec = True
        self.max_episode_steps = int(max_episode_steps or self._env.max_path_length)
        self._env.max_path_length = self.max_episode_steps
        self.fps = float(self.metadata["render_fps"])
        self.render_images = bool(render)
        self.image_size = int(image_size)
        self.camera = camera
        if camera not in [self._env.model.camera(i).name for i in range(self._env.model.ncam)]:
            raise ConfigError(f"Meta-World has no camera '{camera}'; try corner, corner2, corner3, topview, gripperPOV")
        self.cameras = (camera,) if render else ()
        self._renderer: Any = None
        self._flip = camera_upside_down(self._env.model, camera)
        self.raw_obs = np.zeros(39)
        spaces = {OBS_STATE: gym.spaces.Box(-np.inf, np.inf, (len(self._state_names()),), np.float32)}
        if render:
            spaces[image_key(camera)] = gym.spaces.Box(0, 255, (self.image_size, self.image_size, 3), np.uint8)
        self.observation_space = gym.spaces.Dict(spaces)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)

    def features(self) -> dict[str, FeatureSpec]:
        out = {
            OBS_STATE: FeatureSpec(OBS_STATE, (len(self._state_names()),), names=self._state_names()),
            ACTION: FeatureSpec(ACTION, (4,), names=ACTION_NAMES, low=(-1.0,) * 4, high=(1.0,) * 4),
        }
        for cam in self.cameras:
            out[image_key(cam)] = FeatureSpec(
                image_key(cam), (3, self.image_size, self.image_size), dtype="uint8", kind="image"
            )
        return out

    def _state_names(self) -> tuple[str, ...]:
        return tuple(STATE_NAMES[:ROBOT_STATE] if self.state == "robot" else STATE_NAMES)

    def _obs(self) -> dict[str, np.ndarray]:
        raw = self.raw_obs[:ROBOT_STATE] if self.state == "robot" else self.raw_obs
        obs = {OBS_STATE: raw.astype(np.float32)}
        if self.render_images:
            if self._renderer is None:
                self._renderer = make_renderer(self._env.model, self.image_size, self.image_size)
            self._renderer.update_scene(self._env.data, camera=self.camera)
            img = self._renderer.render()
            obs[image_key(self.camera)] = np.ascontiguousarray(img[::-1, ::-1] if self._flip else img)
        return obs

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict[str, np.ndarray], dict]:
        super().reset(seed=seed)
        if seed is not None:
            self._env.seed(int(seed))
        self.raw_obs, info = self._env.reset()
        return self._obs(), dict(info)

    def step(self, action: np.ndarray) -> tuple[dict[str, np.ndarray], float, bool, bool, dict]:
        a = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        self.raw_obs, reward, _, truncated, info = self._env.step(a)
        info = dict(info)
        info["success"] = bool(info.get("success", 0.0))
        return self._obs(), float(reward), False, bool(truncated), info

    def render(self) -> np.ndarray | None:
        if not self.render_images:
            return None
        return self._obs()[image_key(self.camera)]

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
        self._env.close()


class MetaWorldExpert:
    """Meta-World's own scripted policy for the task, fed the privileged 39-D state."""

    def __init__(self, env: MetaWorldEnv) -> None:
        if not isinstance(env, MetaWorldEnv):
            raise ConfigError(f"the metaworld expert drives MetaWorldEnv, got {type(env).__name__}")
        from metaworld.policies import ENV_POLICY_MAP

        self.env = env
        self.policy = ENV_POLICY_MAP[env.env_id]()

    def reset(self) -> None:
        pass  # the shipped policies are stateless

    def act(self, observation: Any) -> np.ndarray:
        import warnings

        with warnings.catch_warnings():  # they warn when a gain saturates; the env clips anyway
            warnings.simplefilter("ignore")
            return np.clip(self.policy.get_action(self.env.raw_obs), -1.0, 1.0).astype(np.float32)


def make(task: str, **kwargs: Any) -> MetaWorldEnv:
    return MetaWorldEnv(task, **kwargs)


def _factory(task: str) -> Any:
    def factory(
        *,
        render: bool = True,
        image_size: int = 96,
        camera: str = "corner2",
        max_episode_steps: int | None = None,
        state: str = "full",
    ) -> MetaWorldEnv:
        return MetaWorldEnv(
            task, render=render, image_size=image_size, camera=camera, max_episode_steps=max_episode_steps, state=state
        )

    factory.__name__ = factory.__qualname__ = f"make_{task.replace('-', '_')}"
    factory.__doc__ = f"Meta-World {TASKS[task][0]}: {TASKS[task][1]}"
    return factory


# One factory per task (``make_pick_place`` …), so each task is its own registry entry.
for _task in TASKS:
    globals()[f"make_{_task.replace('-', '_')}"] = _factory(_task)
del _task
