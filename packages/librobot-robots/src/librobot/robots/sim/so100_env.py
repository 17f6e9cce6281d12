"""Simulated SO-100 (MuJoCo, our own model ``assets/so100_pick.xml``): pick up a cube and lift it.

The sim shares the real arm's spaces (``librobot.robots.so100``): action = joint position targets
(rad), state = joint positions and velocities, control at 30 Hz. Camera ``front`` (96×96 RGB).
Each reset draws the cube's position (within 23.5 cm of the base) and yaw and a slightly perturbed start pose from the seed.
Success: the cube is lifted at least 4 cm off the table.

``SO100PickExpert`` solves inverse kinematics on the same model (damped least squares on the
gripper site's position and a top-down orientation) and walks the joints toward each waypoint no
faster than the safety layer's rate limit: above the cube, down, close, lift.
"""

from __future__ import annotations

import math
from importlib import resources
from typing import Any

import numpy as np

from librobot.core.batch import ACTION, OBS_STATE, image_key
from librobot.core.errors import ConfigError
from librobot.core.extras import require
from librobot.core.specs import FeatureSpec
from librobot.robots.sim._mujoco import import_mujoco, make_renderer
from librobot.robots.so100 import so100_spec

gym = require("gymnasium", extra="librobot-robots[sim]", purpose="simulated environments")

HOME = np.array([0.0, -0.2, 1.3, 1.4, 0.0, 0.2])
CUBE_HALF = 0.015
LIFT_SUCCESS = 0.04  # m above its resting height
REACH = 0.235  # m from the base: the top-down grasp region (the wrist hits its limit further out)


class SO100PickCubeEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}
    default_expert = "so100-pick-cube"
    task = "pick up the red cube and lift it"

    def __init__(self, *, render: bool = True, image_size: int = 96, max_episode_steps: int = 300) -> None:
        self.mujoco = import_mujoco()
        path = resources.files("librobot.robots") / "assets" / "so100_pick.xml"
        self.model = self.mujoco.MjModel.from_xml_path(str(path))
        self.data = self.mujoco.MjData(self.model)
        self.name = "so100-pick-cube"
        self.spec_robot = so100_spec()
        self.fps = self.spec_robot.control_hz
        self.substeps = round(1.0 / (self.fps * self.model.opt.timestep))
        self.max_episode_steps = int(max_episode_steps)
        self.render_images = bool(render)
        self.image_size = int(image_size)
        self.cameras = ("front",) if render else ()
        self._renderer: Any = None
        self.cube_qpos = self.model.joint("cube").qposadr[0]
        a, s = self.spec_robot.action_space, self.spec_robot.state_space
        spaces = {
            OBS_STATE: gym.spaces.Box(s.low_array.astype(np.float32), s.high_array.astype(np.float32), dtype=np.float32)
        }
        if render:
            spaces[image_key("front")] = gym.spaces.Box(0, 255, (self.image_size, self.image_size, 3), np.uint8)
        self.observation_space = gym.spaces.Dict(spaces)
        self.action_space = gym.spaces.Box(
            a.low_array.astype(np.float32), a.high_array.astype(np.float32), dtype=np.float32
        )
        self._steps = 0

    def features(self) -> dict[str, FeatureSpec]:
        out = {
            OBS_STATE: self.spec_robot.state_space.to_feature(OBS_STATE),
            ACTION: self.spec_robot.action_space.to_feature(ACTION),
        }
        if self.render_images:
            out[image_key("front")] = FeatureSpec(
                image_key("front"), (3, self.image_size, self.image_size), dtype="uint8", kind="image"
            )
        return out

    def cube_pose(self) -> tuple[np.ndarray, float]:
        q = self.data.qpos[self.cube_qpos : self.cube_qpos + 7]
        w, x, y, z = q[3:]
        return q[:3].copy(), math.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))

    def _obs(self) -> dict[str, np.ndarray]:
        s = self.spec_robot.state_space
        state = np.clip(np.concatenate([self.data.qpos[:6], self.data.qvel[:6]]), s.low_array, s.high_array)
        obs = {OBS_STATE: state.astype(np.float32)}
        if self.render_images:
            if self._renderer is None:
                self._renderer = make_renderer(self.model, self.image_size, self.image_size)
            self._renderer.update_scene(self.data, camera="front")
            obs[image_key("front")] = self._renderer.render().copy()
        return obs

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict[str, np.ndarray], dict]:
        super().reset(seed=seed)
        rng = self.np_random
        self.mujoco.mj_resetData(self.model, self.data)
        self.data.qpos[:6] = HOME + rng.uniform(-0.05, 0.05, 6)
        yaw = float(rng.uniform(-math.pi / 4, math.pi / 4))
        xy = np.array([rng.uniform(0.14, 0.23), rng.uniform(-0.10, 0.10)])
        while np.hypot(*xy) > REACH:  # stay where a top-down grasp is within the joint limits
            xy = np.array([rng.uniform(0.14, 0.23), rng.uniform(-0.10, 0.10)])
        self.data.qpos[self.cube_qpos : self.cube_qpos + 7] = [
            *xy,
            CUBE_HALF,
            math.cos(yaw / 2),
            0,
            0,
            math.sin(yaw / 2),
        ]
        self.data.ctrl[:] = self.data.qpos[:6]
        self.mujoco.mj_forward(self.model, self.data)
        self._steps = 0
        return self._obs(), {"success": False}

    def step(self, action: np.ndarray) -> tuple[dict[str, np.ndarray], float, bool, bool, dict]:
        a = self.spec_robot.action_space.clip(np.nan_to_num(np.asarray(action, dtype=np.float64)))
        self.data.ctrl[:] = a
        for _ in range(self.substeps):
            self.mujoco.mj_step(self.model, self.data)
        self._steps += 1
        height = float(self.cube_pose()[0][2] - CUBE_HALF)
        success = height >= LIFT_SUCCESS
        info = {"success": success, "cube_height": height}
        return self._obs(), float(success), success, self._steps >= self.max_episode_steps and not success, info

    def render(self) -> np.ndarray | None:
        return self._obs().get(image_key("front"))

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None


class SO100PickExpert:
    """Waypoints solved by IK on the sim's model, executed at the safety layer's joint-rate limit."""

    OPEN, CLOSED = 0.9, -0.17

    def __init__(self, env: SO100PickCubeEnv) -> None:
        if not isinstance(env, SO100PickCubeEnv):
            raise ConfigError(f"the SO-100 pick expert drives SO100PickCubeEnv, got {type(env).__name__}")
        self.env = env
        self.mujoco = env.mujoco
        self.scratch = self.mujoco.MjData(env.model)
        self.site = env.model.site("tcp").id
        self.max_step = 0.9 * env.spec_robot.max_delta  # stay inside the rate limit
        self.reset()

    def reset(self) -> None:
        self.phase, self.count, self.command = "above", 0, None

    def _fk(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        d = self.scratch
        d.qpos[:5] = q[:5]
        self.mujoco.mj_kinematics(self.env.model, d)
        return d.site_xpos[self.site].copy(), d.site_xmat[self.site].reshape(3, 3).copy()

    def ik(self, target: np.ndarray, yaw: float) -> np.ndarray | None:
        """Arm joints (5) putting the tool site at ``target`` pointing down (tilting up to 0.6 rad
        toward or away from the base when a joint limit demands it), jaw closing along ``yaw``
        (mod π/2, the cube's symmetry); None if unreachable.

        Analytic: pan toward the target, two-link solution for shoulder and elbow, the wrist
        completes the pitch, the roll turns the jaw; the tool site's small sideways offset is
        folded in by solving twice.
        """
        m = self.env.model
        lo, hi = m.jnt_range[:5, 0], m.jnt_range[:5, 1]
        z0 = m.body("pan").pos[2] + m.body("upper_arm").pos[2]
        l1, l2 = m.body("forearm").pos[2], m.body("wrist").pos[2]
        tcp_local = m.site_pos[self.site]
        l3 = m.body("hand").pos[2] + tcp_local[2]
        aim = np.array(target, dtype=float)
        error = math.inf
        jaw_goal: float | None = None  # fixed after the first pass so the offset folding converges
        for _ in range(10):
            pan = math.atan2(aim[1], aim[0])
            r, h = math.hypot(aim[0], aim[1]), aim[2]
            solution = None
            for tilt in sorted(np.linspace(-0.6, 0.6, 25), key=abs):
                pitch = math.pi - tilt  # tool axis angle from vertical-up, toward the front
                wr, wh = r - l3 * math.sin(pitch), h - l3 * math.cos(pitch) - z0
                c2 = (wr * wr + wh * wh - l1 * l1 - l2 * l2) / (2 * l1 * l2)
                if abs(c2) > 1:
                    continue
                t2 = math.acos(c2)
                t1 = math.atan2(wr, wh) - math.atan2(l2 * math.sin(t2), l1 + l2 * math.cos(t2))
                q = np.array([pan, t1, t2, pitch - t1 - t2, 0.0])
                if np.all(q[:4] >= lo[:4]) and np.all(q[:4] <= hi[:4]):
                    solution = q
                    break
            if solution is None:
                return None
            # Roll: the tool points down, so rolling by +a turns the jaw axis by -a in the world.
            _, rot = self._fk(solution)
            jaw = math.atan2(rot[1, 0], rot[0, 0])
            if jaw_goal is None:
                turn = min(
                    ((yaw + k * math.pi / 2 - jaw + math.pi) % (2 * math.pi) - math.pi for k in range(4)), key=abs
                )
                jaw_goal = jaw + turn
            solution[4] = -((jaw_goal - jaw + math.pi) % (2 * math.pi) - math.pi)
            pos, rot = self._fk(solution)
            aim = aim + (np.asarray(target) - pos)  # fold the site's offset (and any residual) back in
            error = float(np.linalg.norm(np.asarray(target) - pos))
            if error < 5e-4:
                break
        ok = error < 2e-3 and np.all(solution >= lo) and np.all(solution <= hi)
        return solution if ok else None

    def act(self, observation: Any) -> np.ndarray:
        env = self.env
        q = env.data.qpos[:6].copy()
        if self.command is None:
            self.command = q.copy()
        cube, cube_yaw = env.cube_pose()
        # The cube looks the same every 90°: grasp across the side closest to the arm's own heading.
        heading = math.atan2(cube[1], cube[0])
        yaw = cube_yaw + round((heading - cube_yaw) / (math.pi / 2)) * (math.pi / 2)
        grip = self.OPEN
        if self.phase == "above":
            goal = np.array([cube[0], cube[1], 0.065])
        elif self.phase == "down":
            goal = np.array([cube[0], cube[1], 0.022])
        elif self.phase == "close":
            goal, grip = np.array([cube[0], cube[1], 0.022]), self.CLOSED
        else:  # lift
            goal, grip = np.array([cube[0], cube[1], 0.14]), self.CLOSED
        if self.phase in ("close", "lift"):
            goal[:2] = env.data.site_xpos[self.site][:2]  # keep the hand where it closed
        arm = self.ik(goal, yaw)
        if arm is None:  # out of reach (the env only places cubes within reach, so this is a bug guard)
            arm = self.command[:5]
        target = np.append(arm, grip)
        self.command = self.command + np.clip(target - self.command, -self.max_step, self.max_step)
        tcp = env.data.site_xpos[self.site]
        self.count += 1
        reached = np.linalg.norm(tcp - goal) < 0.01 and np.abs(target - self.command).max() < 1e-6
        if self.phase == "above" and reached:
            self.phase, self.count = "down", 0
        elif self.phase == "down" and reached:
            self.phase, self.count = "close", 0
        elif self.phase == "close" and self.count > 12:
            self.phase, self.count = "lift", 0
        return self.command.astype(np.float32)
