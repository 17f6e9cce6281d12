"""Run scripted experts in simulated environments: record demonstration episodes, measure success.

Torch-free and store-agnostic: ``record_episodes`` yields each episode as a dict of numpy arrays
under the batch contract's keys, for a dataset writer (librobot-data) to store::

    {"observation.state": float32 [T, S],
     "observation.images.<cam>": uint8 [T, H, W, C]   (or [T, C, H, W] with image_layout="CHW"),
     "action": float32 [T, A],
     "next.reward": float32 [T], "next.success": bool [T],
     "task": str, "fps": float, "success": bool,
     "episode_index": int, "seed": int, "env": str, "image_layout": "HWC" | "CHW"}

Frame t pairs the observation seen at step t with the action taken from it; an episode ends at
the first success, or after ``max_steps``.

Every environment here is a gymnasium env whose observations are dicts with those keys, and has
``task`` (the instruction), ``fps``, ``cameras``, ``max_episode_steps``, ``default_expert`` and
``features()``; ``info["success"]`` reports success each step. An expert is built as
``expert_factory(env)`` and has ``reset()`` and ``act(observation) -> action``; it may read the
simulator's privileged state through ``env`` (that is what makes it a scripted expert).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from librobot.core.batch import ACTION, OBS_IMAGES, OBS_STATE
from librobot.core.errors import ConfigError
from librobot.core.logging import track

IMAGE_LAYOUTS = ("HWC", "CHW")


@runtime_checkable
class Expert(Protocol):
    def reset(self) -> None: ...

    def act(self, observation: Mapping[str, np.ndarray]) -> np.ndarray: ...


def make_env(name: str, **kwargs: Any) -> Any:
    """A registered simulated environment (``librobot sim list`` shows them)."""
    from librobot.core.registry import get_registry

    return get_registry("env").create(name, **kwargs)


def make_expert(name: str, env: Any) -> Expert:
    from librobot.core.registry import get_registry

    return get_registry("expert").create(name, env)


def list_envs() -> list[str]:
    from librobot.core.registry import get_registry

    return get_registry("env").list()


def env_info(env: Any, **env_kwargs: Any) -> dict[str, Any]:
    """What a dataset writer needs before the first episode: features, fps, task, cameras.

    Feature specs follow the core convention (images as (C, H, W) uint8), whatever ``image_layout``
    the episodes are recorded with.
    """
    owns = isinstance(env, str)
    obj = make_env(env, **env_kwargs) if owns else env
    try:
        return {
            "features": obj.features(),
            "fps": float(obj.fps),
            "task": obj.task,
            "cameras": tuple(obj.cameras),
            "max_episode_steps": int(obj.max_episode_steps),
            "default_expert": obj.default_expert,
        }
    finally:
        if owns:
            obj.close()


def _resolve(env: Any, expert: str | Expert | None, env_kwargs: Mapping[str, Any]) -> tuple[Any, Expert, str, bool]:
    owns_env = isinstance(env, str)
    env_name = env if isinstance(env, str) else getattr(env, "name", type(env).__name__)
    if isinstance(env, str):
        env = make_env(env, **env_kwargs)
    elif env_kwargs:
        raise ConfigError("env_kwargs apply only when the env is given by name")
    if expert is None:
        expert = getattr(env, "default_expert", None)
        if expert is None:
            raise ConfigError(f"env '{env_name}' has no scripted expert; pass expert=<registered expert name>")
    if isinstance(expert, str):
        expert = make_expert(expert, env)
    return env, expert, env_name, owns_env


def run_episode(
    env: Any, expert: Expert, seed: int, *, max_steps: int | None = None, record: bool = True, image_layout: str = "HWC"
) -> dict[str, Any]:
    """One episode of ``expert`` in ``env`` from ``env.reset(seed=seed)``."""
    if image_layout not in IMAGE_LAYOUTS:
        raise ConfigError(f"image_layout must be one of {IMAGE_LAYOUTS}, got {image_layout!r}")
    limit = int(max_steps or env.max_episode_steps)
    obs, _ = env.reset(seed=seed)
    expert.reset()
    frames: dict[str, list[np.ndarray]] = {}
    actions, rewards, successes = [], [], []
    success = False
    for _ in range(limit):
        action = np.asarray(expert.act(obs), dtype=np.float32)
        if record:
            for key, value in obs.items():
                frames.setdefault(key, []).append(value)
            actions.append(action)
        obs, reward, terminated, truncated, info = env.step(action)
        success = bool(info.get("success", False))
        rewards.append(float(reward))
        successes.append(success)
        if success or terminated or truncated:
            break
    out: dict[str, Any] = {"success": success, "length": len(rewards), "seed": int(seed)}
    if record:
        for key, values in frames.items():
            stacked = np.stack(values)
            if key.startswith(OBS_IMAGES + ".") and image_layout == "CHW":
                stacked = np.ascontiguousarray(stacked.transpose(0, 3, 1, 2))
            out[key] = stacked.astype(np.float32) if key == OBS_STATE else stacked
        out[ACTION] = np.stack(actions)
        out["next.reward"] = np.asarray(rewards, dtype=np.float32)
        out["next.success"] = np.asarray(successes, dtype=bool)
        out["task"] = env.task
        out["fps"] = float(env.fps)
        out["image_layout"] = image_layout
    return out


def record_episodes(
    env: Any,
    episodes: int,
    *,
    expert: str | Expert | None = None,
    seed: int = 0,
    max_steps: int | None = None,
    image_layout: str = "HWC",
    only_successful: bool = False,
    max_attempts: int | None = None,
    **env_kwargs: Any,
) -> Iterator[dict[str, Any]]:
    """Yield ``episodes`` demonstration episodes (see the module docstring for their layout).

    ``env`` is a registered name (built with ``env_kwargs``, e.g. ``image_size=96``) or an env
    object. Episode i uses seed ``seed + attempt``; with ``only_successful`` failed attempts are
    skipped (up to ``max_attempts``, default 2 × episodes + 10) and the episode index stays dense.
    For a progress bar wrap the generator: ``track(record_episodes(...), total=episodes)``.
    """
    if episodes < 0:
        raise ConfigError(f"episodes must be >= 0, got {episodes}")
    env, expert_obj, env_name, owns_env = _resolve(env, expert, env_kwargs)
    attempts = max_attempts if max_attempts is not None else 2 * episodes + 10
    try:
        index = 0
        for attempt in range(attempts):
            if index >= episodes:
                break
            episode = run_episode(env, expert_obj, seed + attempt, max_steps=max_steps, image_layout=image_layout)
            if only_successful and not episode["success"]:
                continue
            episode["episode_index"] = index
            episode["env"] = env_name
            index += 1
            yield episode
        if index < episodes:
            raise RuntimeError(f"only {index} of {episodes} episodes of '{env_name}' succeeded in {attempts} attempts")
    finally:
        if owns_env:
            env.close()


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval for a success rate (sound near 0% and 100%, unlike p ± 2σ)."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class ExpertReport:
    env: str
    expert: str
    successes: list[bool] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def episodes(self) -> int:
        return len(self.successes)

    @property
    def success_rate(self) -> float:
        return sum(self.successes) / max(1, self.episodes)

    @property
    def ci95(self) -> tuple[float, float]:
        return wilson_interval(sum(self.successes), self.episodes)

    def to_dict(self) -> dict[str, Any]:
        lo, hi = self.ci95
        steps = sum(self.lengths)
        return {
            "env": self.env,
            "expert": self.expert,
            "episodes": self.episodes,
            "successes": sum(self.successes),
            "success_rate": round(self.success_rate, 4),
            "ci95": [round(lo, 4), round(hi, 4)],
            "mean_length": round(float(np.mean(self.lengths)), 1) if self.lengths else 0.0,
            "min_length": min(self.lengths, default=0),
            "max_length": max(self.lengths, default=0),
            "seconds": round(self.seconds, 2),
            "steps_per_s": round(steps / self.seconds, 1) if self.seconds else 0.0,
        }


def evaluate_expert(
    env: Any,
    episodes: int,
    *,
    expert: str | Expert | None = None,
    seed: int = 0,
    max_steps: int | None = None,
    progress: bool = False,
    on_episode: Callable[[int, dict[str, Any]], None] | None = None,
    **env_kwargs: Any,
) -> ExpertReport:
    """Success rate of the scripted expert over ``episodes`` seeds (no frames kept)."""
    if isinstance(env, str):
        env_kwargs.setdefault("render", False)  # success does not depend on pixels; skip rendering
    env, expert_obj, env_name, owns_env = _resolve(env, expert, env_kwargs)
    report = ExpertReport(
        env_name, expert if isinstance(expert, str) else getattr(env, "default_expert", type(expert_obj).__name__)
    )
    start = time.perf_counter()
    try:
        iterator = (
            track(range(episodes), total=episodes, description=f"expert on {env_name}") if progress else range(episodes)
        )
        for i in iterator:
            result = run_episode(env, expert_obj, seed + i, max_steps=max_steps, record=False)
            report.successes.append(result["success"])
            report.lengths.append(result["length"])
            if on_episode is not None:
                on_episode(i, result)
    finally:
        report.seconds = time.perf_counter() - start
        if owns_env:
            env.close()
    return report
