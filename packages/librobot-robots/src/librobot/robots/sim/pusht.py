"""PushT (gym-pusht) as a LibroBot environment, with a planning scripted expert.

Observation: ``observation.state`` = the pusher's (x, y) in pixels of the 512×512 table, and
``observation.images.top`` (RGB uint8 96×96 by default), as in LeRobot's PushT datasets; with
``environment_state=True`` also ``observation.environment_state``, the block's pose (x, y, cos θ,
sin θ) under LeRobot's key: the privileged information a policy otherwise reads from the image. Action:
the pusher's target (x, y). Success: the T block covers more than 95% of the T target.

No expert ships with gym-pusht; ``PushTExpert`` is ours. It has privileged access to the block pose
and plans with a copy of the same pymunk physics: it scores candidate pushes (a contact point on
the T's outline × a push direction × a length) by simulating each from the current block pose,
picks the one that brings the block closest to the target pose, travels to its start along a path
that keeps clear of the block, and executes it; then it plans again.
"""

from __future__ import annotations

import heapq
import math
from typing import Any

import numpy as np

from librobot.core.batch import ACTION, OBS_STATE, image_key
from librobot.core.errors import ConfigError
from librobot.core.extras import require
from librobot.core.specs import FeatureSpec

OBS_ENV_STATE = "observation.environment_state"  # LeRobot's key for what the scene (not the robot) is in

EXTRA = "librobot-robots[pusht]"
gym = require("gymnasium", extra=EXTRA, purpose="simulated environments")

# The T outline in the block's local frame (counter-clockwise), as gym-pusht builds it (scale 30).
OUTLINE = np.array([(-60, 0), (60, 0), (60, 30), (15, 30), (15, 120), (-15, 120), (-15, 30), (-60, 30)], float)
AGENT_RADIUS = 15.0
DT, SUBSTEPS, KP, KV = 0.01, 10, 100.0, 20.0  # gym-pusht's PD pusher: 10 Hz actions, 100 Hz physics


class PushTEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}
    default_expert = "pusht"
    task = "push the T-shaped block onto the T-shaped target"

    def __init__(
        self,
        *,
        render: bool = True,
        image_size: int = 96,
        max_episode_steps: int = 300,
        environment_state: bool = False,
    ) -> None:
        require("pymunk", extra=EXTRA, purpose="PushT physics")
        envs = require("gym_pusht.envs.pusht", extra=EXTRA, purpose="the PushT task")
        self.environment_state = bool(environment_state)
        self.name = "pusht"
        self._env = envs.PushTEnv(obs_type="state", observation_width=image_size, observation_height=image_size)
        self.fps = float(self.metadata["render_fps"])
        self.max_episode_steps = int(max_episode_steps)
        self.render_images = bool(render)
        self.image_size = int(image_size)
        self.cameras = ("top",) if render else ()
        spaces = {OBS_STATE: gym.spaces.Box(0.0, 512.0, (2,), np.float32)}
        if self.environment_state:
            spaces[OBS_ENV_STATE] = gym.spaces.Box(-512.0, 512.0, (4,), np.float32)
        if render:
            spaces[image_key("top")] = gym.spaces.Box(0, 255, (self.image_size, self.image_size, 3), np.uint8)
        self.observation_space = gym.spaces.Dict(spaces)
        self.action_space = gym.spaces.Box(0.0, 512.0, (2,), np.float32)
        self._steps = 0

    def features(self) -> dict[str, FeatureSpec]:
        out = {
            OBS_STATE: FeatureSpec(
                OBS_STATE, (2,), names=("x", "y"), units=("px", "px"), low=(0.0, 0.0), high=(512.0, 512.0)
            ),
            ACTION: FeatureSpec(
                ACTION, (2,), names=("x", "y"), units=("px", "px"), low=(0.0, 0.0), high=(512.0, 512.0)
            ),
        }
        if self.environment_state:
            out[OBS_ENV_STATE] = FeatureSpec(
                OBS_ENV_STATE, (4,), names=("block_x", "block_y", "block_cos", "block_sin")
            )
        if self.render_images:
            out[image_key("top")] = FeatureSpec(
                image_key("top"), (3, self.image_size, self.image_size), dtype="uint8", kind="image"
            )
        return out

    @property
    def inner(self) -> Any:
        return self._env

    def _obs(self) -> dict[str, np.ndarray]:
        obs = {OBS_STATE: np.array(self._env.agent.position, dtype=np.float32)}
        if self.environment_state:
            block = self._env.block
            pose = [block.position[0], block.position[1], math.cos(block.angle), math.sin(block.angle)]
            obs[OBS_ENV_STATE] = np.array(pose, dtype=np.float32)
        if self.render_images:
            obs[image_key("top")] = np.ascontiguousarray(self._env._render())
        return obs

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict[str, np.ndarray], dict]:
        super().reset(seed=seed)
        _, info = self._env.reset(seed=seed, options=options)
        self._steps = 0
        return self._obs(), {"success": False, **info}

    def step(self, action: np.ndarray) -> tuple[dict[str, np.ndarray], float, bool, bool, dict]:
        a = np.clip(np.nan_to_num(np.asarray(action, dtype=np.float64), nan=256.0), 0.0, 512.0)
        _, reward, terminated, _, info = self._env.step(a)
        self._steps += 1
        info = dict(info)
        info["success"] = bool(info.pop("is_success"))
        return self._obs(), float(reward), bool(terminated), self._steps >= self.max_episode_steps, info

    def render(self) -> np.ndarray:
        return np.ascontiguousarray(self._env._render())

    def close(self) -> None:
        self._env.close()


def _wrap(a: float) -> float:
    return (a + math.pi) % (2 * math.pi) - math.pi


class PushTExpert:
    """Sampling-based planner over pushes, using the simulator's own physics (see module docstring)."""

    def __init__(self, env: PushTEnv, *, spacing: float = 15.0) -> None:
        if not isinstance(env, PushTEnv):
            raise ConfigError(f"the pusht expert drives PushTEnv, got {type(env).__name__}")
        import pymunk
        import shapely.geometry as sg

        self.env, self._pymunk, self._sg = env, pymunk, sg
        self.contacts = self._contacts(spacing)
        self.plan: list[np.ndarray] = []

    @staticmethod
    def _contacts(spacing: float) -> list[tuple[np.ndarray, np.ndarray]]:
        """(point, outward normal) samples along the outline, local frame, away from the corners."""
        out = []
        for p, q in zip(OUTLINE, np.roll(OUTLINE, -1, axis=0)):
            d = q - p
            length = float(np.hypot(*d))
            normal = np.array([d[1], -d[0]]) / length
            n = max(1, int(length // spacing))
            for t in (np.arange(n) + 0.5) / n:
                out.append((p + t * d, normal))
        return out

    def reset(self) -> None:
        self.plan = []

    # ------------------------------------------------------------------ geometry
    def _pose(self) -> tuple[np.ndarray, float]:
        b = self.env.inner.block
        return np.array(b.position), float(b.angle)

    def _error(self, pos: np.ndarray, angle: float) -> float:
        goal = self.env.inner.goal_pose
        return float(np.hypot(*(pos - goal[:2])) + 80.0 * abs(_wrap(angle - goal[2])))

    def _block_polys(self) -> list[Any]:
        b = self.env.inner.block
        return [self._sg.Polygon([b.local_to_world(v) for v in s.get_vertices()]) for s in b.shapes]

    # ------------------------------------------------------------------ simulation
    def _simulate_push(self, start: np.ndarray, targets: list[np.ndarray]) -> tuple[np.ndarray, float]:
        """The block pose after the pusher, at rest at ``start``, follows ``targets``.

        A fresh space per rollout built with gym-pusht's own constructors: reusing one would carry
        cached contacts from the previous rollout into the next and break determinism.
        """
        inner = self.env.inner
        space = self._pymunk.Space()
        space.gravity, space.damping = (0, 0), 0.0
        space.add(
            *[
                type(inner).add_segment(space, a, b, 2)
                for a, b in (((5, 506), (5, 5)), ((5, 5), (506, 5)), ((506, 5), (506, 506)), ((5, 506), (506, 506)))
            ]
        )
        agent = type(inner).add_circle(space, tuple(start), AGENT_RADIUS)
        block, _ = type(inner).add_tee(space, (256, 300), 0)
        block.angle = inner.block.angle  # angle first: setting it rotates about the centre of gravity
        block.position = inner.block.position
        for target in targets:
            tx, ty = float(target[0]), float(target[1])
            for _ in range(SUBSTEPS):
                px, py = agent.position
                vx, vy = agent.velocity
                agent.velocity = (vx + (KP * (tx - px) - KV * vx) * DT, vy + (KP * (ty - py) - KV * vy) * DT)
                space.step(DT)
        return np.array(block.position), float(block.angle)

    def _pushes(self) -> list[tuple[float, np.ndarray, np.ndarray, list[np.ndarray]]]:
        """Every candidate push that improves the pose: (error after it, start, outward normal at
        the contact, push targets), each simulated from the current block pose."""
        pos, angle = self._pose()
        current = self._error(pos, angle)
        block = self.env.inner.block
        polys = self._block_polys()
        scale = float(np.clip(current, 6.0, 60.0))
        lengths = (0.4 * scale, scale) if current > 12 else (3.0, 6.0, 10.0)
        found = []
        for point, normal in self.contacts:
            c = np.array(block.local_to_world(tuple(point)))
            n = np.array(self._pymunk.Vec2d(*normal).rotated(block.angle))
            start = c + n * (AGENT_RADIUS + 3.0)
            if not (20 < start[0] < 492 and 20 < start[1] < 492):
                continue
            if any(p.distance(self._sg.Point(*start)) < AGENT_RADIUS + 1.0 for p in polys):
                continue  # the start would overlap the other bar of the T
            for turn in (-0.4, 0.0, 0.4):
                c_, s_ = math.cos(turn), math.sin(turn)
                d = -np.array([c_ * n[0] - s_ * n[1], s_ * n[0] + c_ * n[1]])
                for length in lengths:
                    steps = max(1, math.ceil(length / 8.0))
                    targets = [start + d * (length * (k + 1) / steps + 3.0) for k in range(steps)] + [
                        start + d * (length + 3.0)
                    ]
                    new_pos, new_angle = self._simulate_push(start, targets)
                    cost = self._error(new_pos, new_angle)
                    if cost < current - 0.2:
                        found.append((cost, start, n, targets))
        return found

    def _best_push(self) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]] | None:
        """(start, outward normal at the contact, push targets) of the best push, or None."""
        pushes = self._pushes()
        if not pushes:
            return None
        _, start, normal, targets = min(pushes, key=lambda p: p[0])
        return start, normal, targets

    def _path(self, start: np.ndarray, goal: np.ndarray) -> list[np.ndarray]:
        """Waypoints from ``start`` to ``goal`` keeping the pusher clear of the block (visibility graph)."""
        polys = self._block_polys()
        clear = AGENT_RADIUS + 6.0
        centre = np.array(self.env.inner.block.local_to_world((0, 45)))
        prefix: list[np.ndarray] = []
        here = self._sg.Point(*start)
        gap = min(p.distance(here) for p in polys)
        if gap < clear:  # touching the block (after a push, or at reset): first step straight away from it
            from shapely.ops import nearest_points

            nearest = min((nearest_points(p, here)[0] for p in polys), key=lambda q: q.distance(here))
            away = start - np.array(nearest.coords[0]) if gap > 1e-6 else start - centre
            start = np.clip(start + away / max(1e-6, float(np.hypot(*away))) * (clear + 6.0 - gap), 22, 490)
            prefix = [start]
        ring = [
            centre + 125.0 * np.array([math.cos(a), math.sin(a)])
            for a in np.linspace(0, 2 * math.pi, 24, endpoint=False)
        ]
        nodes = [start, goal] + [np.clip(p, 22, 490) for p in ring]

        def free(a: np.ndarray, b: np.ndarray) -> bool:
            seg = self._sg.LineString([tuple(a), tuple(b)]) if np.any(a != b) else self._sg.Point(*a)
            return all(seg.distance(p) >= clear for p in polys)

        dist = {0: 0.0}
        prev: dict[int, int] = {}
        queue = [(0.0, 0)]
        done = set()
        while queue:
            d, i = heapq.heappop(queue)
            if i in done:
                continue
            done.add(i)
            if i == 1:
                break
            for j in range(len(nodes)):
                if j in done or not free(nodes[i], nodes[j]):
                    continue
                nd = d + float(np.hypot(*(nodes[j] - nodes[i])))
                if nd < dist.get(j, math.inf):
                    dist[j], prev[j] = nd, i
                    heapq.heappush(queue, (nd, j))
        if 1 not in prev:
            return [*prefix, goal]  # no clear path found: go straight (the next plan corrects any disturbance)
        path, i = [], 1
        while i != 0:
            path.append(nodes[i])
            i = prev[i]
        return prefix + path[::-1]

    def _plan(self) -> list[np.ndarray]:
        push = self._best_push()
        here = np.array(self.env.inner.agent.position)
        if push is None:  # no push helps: back off and look again from elsewhere
            return [here + (here - self._pose()[0]) * 0.2]
        start, normal, targets = push
        approach = start + normal * 20.0  # clear of the block; the last leg runs in along the contact normal
        plan: list[np.ndarray] = []
        prev = here
        for waypoint in self._path(here, approach):
            seg = waypoint - prev
            n = max(1, math.ceil(float(np.hypot(*seg)) / 25.0))
            plan += [prev + seg * (k + 1) / n for k in range(n)]
            prev = waypoint
        plan += [start] * 4  # come in along the normal and settle at rest, as the planner assumed
        back = targets[-1] - start
        retreat = targets[-1] - back / max(1e-6, float(np.hypot(*back))) * 25.0  # break contact the way it came
        return plan + targets + [retreat, retreat]

    def act(self, observation: Any) -> np.ndarray:
        if not self.plan:
            self.plan = self._plan()
        return np.asarray(self.plan.pop(0), dtype=np.float32)
