"""Gymnasium environment: one dig-and-dump cycle with the planar wheel loader.

Each reset draws a site from the seed: the loader at the origin facing roughly +x, a gravel pile
12-16 m ahead, and a truck 11-14 m to one side. Success: at least half a bucket delivered into
the truck. A crash into the truck ends the episode as a failure. Observation: the wheel loader's
22-D state and a 96×96 top-down camera (``observation.images.top``); action: its 6-D command in
robot units (see ``librobot.robots.wheel_loader``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from librobot.core.batch import ACTION, OBS_STATE, image_key
from librobot.core.extras import require
from librobot.core.specs import FeatureSpec
from librobot.robots.drivers.can_layout import ACTION_SIGNALS
from librobot.robots.sim.raster import Canvas
from librobot.robots.sim.wheel_loader_model import (
    BUCKET_WIDTH,
    LF,
    LIP_LEN,
    LR,
    TRUCK_SIZE,
    Site,
    WheelLoaderModel,
)
from librobot.robots.wheel_loader import wheel_loader_spec

gym = require("gymnasium", extra="librobot-robots[sim]", purpose="simulated environments")

SUCCESS_FILL = 0.5  # bucket capacities delivered
VIEW_METRES = 40.0


class WheelLoaderDigDumpEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}
    default_expert = "wheel-loader-dig-dump"
    task = "dig a bucket of gravel from the pile and dump it into the truck"

    def __init__(self, *, render: bool = True, image_size: int = 96, max_episode_steps: int = 2400) -> None:
        self.name = "wheel-loader-dig-dump"
        self.spec_robot = wheel_loader_spec()
        self.fps = self.spec_robot.control_hz
        self.dt = 1.0 / self.fps
        self.max_episode_steps = int(max_episode_steps)
        self.render_images = bool(render)
        self.image_size = int(image_size)
        self.cameras = ("top",) if render else ()
        a, s = self.spec_robot.action_space, self.spec_robot.state_space
        spaces = {
            OBS_STATE: gym.spaces.Box(s.low_array.astype(np.float32), s.high_array.astype(np.float32), dtype=np.float32)
        }
        if render:
            spaces[image_key("top")] = gym.spaces.Box(0, 255, (self.image_size, self.image_size, 3), np.uint8)
        self.observation_space = gym.spaces.Dict(spaces)
        self.action_space = gym.spaces.Box(
            a.low_array.astype(np.float32), a.high_array.astype(np.float32), dtype=np.float32
        )
        self.model: WheelLoaderModel | None = None
        self._steps = 0

    def features(self) -> dict[str, FeatureSpec]:
        out = {
            OBS_STATE: self.spec_robot.state_space.to_feature(OBS_STATE),
            ACTION: self.spec_robot.action_space.to_feature(ACTION),
        }
        if self.render_images:
            out[image_key("top")] = FeatureSpec(
                image_key("top"), (3, self.image_size, self.image_size), dtype="uint8", kind="image"
            )
        return out

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict[str, np.ndarray], dict]:
        super().reset(seed=seed)
        rng = self.np_random
        yaw0 = float(rng.uniform(-0.3, 0.3))
        pile_dir = yaw0 + float(rng.uniform(-0.25, 0.25))
        pile_xy = float(rng.uniform(12.0, 16.0)) * np.array([math.cos(pile_dir), math.sin(pile_dir)])
        side = 1.0 if rng.uniform() < 0.5 else -1.0
        fwd, left = np.array([math.cos(yaw0), math.sin(yaw0)]), np.array([-math.sin(yaw0), math.cos(yaw0)])
        truck_xy = float(rng.uniform(3.0, 6.0)) * fwd + side * float(rng.uniform(11.0, 14.0)) * left
        site = Site(pile_xy, 4.0, 2.5, truck_xy, yaw0 + float(rng.uniform(-0.2, 0.2)))
        self.model = WheelLoaderModel(site, yaw=yaw0)
        self._steps = 0
        return self._obs(), self._info()

    def step(self, action: np.ndarray) -> tuple[dict[str, np.ndarray], float, bool, bool, dict]:
        assert self.model is not None, "call reset() first"
        a = self.spec_robot.action_space.clip(np.nan_to_num(np.asarray(action, dtype=np.float64)))
        self.model.set_command(dict(zip(ACTION_SIGNALS, a)))
        before = self.model.dumped
        self.model.step(self.dt)
        self._steps += 1
        info = self._info()
        reward = float(self.model.dumped - before)
        terminated = info["success"] or self.model.crashed
        truncated = self._steps >= self.max_episode_steps and not terminated
        return self._obs(), reward, bool(terminated), bool(truncated), info

    def _info(self) -> dict[str, Any]:
        m = self.model
        assert m is not None
        return {
            "success": m.dumped >= SUCCESS_FILL and not m.crashed,
            "fill": m.fill,
            "dumped": m.dumped,
            "spilled": m.spilled,
            "crashed": m.crashed,
        }

    def _obs(self) -> dict[str, np.ndarray]:
        assert self.model is not None
        state = np.clip(
            self.model.state_vector(), self.spec_robot.state_space.low_array, self.spec_robot.state_space.high_array
        )
        obs = {OBS_STATE: state.astype(np.float32)}
        if self.render_images:
            obs[image_key("top")] = self.render()
        return obs

    def render(self) -> np.ndarray:
        """Top-down view centred between the pile and the truck; the bucket darkens as it fills."""
        m = self.model
        assert m is not None
        centre = (m.site.pile_xy + m.site.truck_xy) / 2
        cv = Canvas(self.image_size, centre, VIEW_METRES, background=(196, 178, 140))
        cv.disc(m.site.pile_xy, m.site.pile_radius, (120, 90, 60))
        cv.disc(m.site.pile_xy, m.site.pile_radius * 0.5, (100, 72, 45))
        cv.box(m.site.truck_xy, m.site.truck_yaw, TRUCK_SIZE[0], TRUCK_SIZE[1], (230, 190, 30))
        bed = min(1.0, m.dumped)
        cv.box(
            m.site.truck_xy, m.site.truck_yaw, TRUCK_SIZE[0] * 0.85, TRUCK_SIZE[1] * 0.7 * max(0.05, bed), (110, 80, 50)
        )
        rear_c = m.joint() - 0.5 * LR * np.array([math.cos(m.rear_yaw()), math.sin(m.rear_yaw())])
        cv.box(rear_c, m.rear_yaw(), LR + 1.6, 2.5, (200, 150, 0))
        cv.box(m.front_axle() - 0.3 * LF * m.heading_vec(), m.yaw, LF + 0.6, 2.4, (240, 180, 0))
        pivot_d, pivot_h = m.bucket_pivot()
        shade = int(170 - 110 * m.fill)
        lift = int(min(60, max(0, 15 * pivot_h)))  # a raised bucket is drawn lighter
        cv.box(
            m.to_world(pivot_d + 0.5 * LIP_LEN),
            m.yaw,
            LIP_LEN,
            BUCKET_WIDTH,
            (shade + lift, shade + lift, shade + lift),
        )
        return cv.image
