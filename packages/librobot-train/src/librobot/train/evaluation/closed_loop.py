"""Closed-loop evaluation: roll a policy out in simulated tasks and count successes.

Several environments run in lockstep (vectorised). Each has its own serve ``PolicyRuntime``
(chunk execution, with the safety layer between policy and simulator, on simulated time); at
every tick the runtimes that need a new chunk send their observations to the policy in ONE
batched call, so a CPU evaluates many episodes per forward pass.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from librobot.core.errors import ConfigError, SpecError
from librobot.core.interfaces import PolicyInterface
from librobot.core.logging import get_logger, progress_enabled
from librobot.train.evaluation.episode_log import EpisodeLog

log = get_logger("train.eval")
EVAL_SEED = 1_000_000  # far from the seeds demonstrations are recorded with


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of a success rate (sound near 0% and 100%, unlike p ± 2σ)."""
    from librobot.robots.sim.api import wilson_interval as robots_wilson

    return robots_wilson(successes, n, z)


@dataclass
class EpisodeResult:
    env: str
    task: str
    seed: int
    success: bool
    length: int
    video: str | None = None
    max_reward: float | None = None  # the episode's best reward (LeRobot's avg_max_reward averages it)
    max_coverage: float | None = None  # tasks that report a coverage (PushT: block over target, 0-1)


@dataclass
class EnvSummary:
    env: str
    task: str
    episodes: int
    successes: int
    success_rate: float
    ci95: tuple[float, float]
    mean_length: float
    mean_max_reward: float | None = None
    mean_max_coverage: float | None = None


@dataclass
class ClosedLoopReport:
    results: list[EpisodeResult] = field(default_factory=list)
    seconds: float = 0.0
    env_steps: int = 0
    policy_calls: int = 0  # batched forward passes
    chunks: int = 0  # chunks computed (≥ policy_calls: several envs per pass)
    resumed_episodes: int = 0  # taken from an episode log, not run by this call
    mode: str = "sync"  # how chunks were executed: sync, or ensemble (ACT's temporal ensembling)

    def per_env(self) -> dict[str, EnvSummary]:
        out: dict[str, EnvSummary] = {}
        for env in dict.fromkeys(r.env for r in self.results):
            rows = [r for r in self.results if r.env == env]
            wins = sum(r.success for r in rows)
            out[env] = EnvSummary(
                env,
                rows[0].task,
                len(rows),
                wins,
                wins / len(rows),
                wilson_interval(wins, len(rows)),
                float(np.mean([r.length for r in rows])),
                _mean(r.max_reward for r in rows),
                _mean(r.max_coverage for r in rows),
            )
        return out

    @property
    def success_rate(self) -> float:
        return sum(r.success for r in self.results) / max(1, len(self.results))

    @property
    def ci95(self) -> tuple[float, float]:
        return wilson_interval(sum(r.success for r in self.results), len(self.results))

    def to_dict(self) -> dict[str, Any]:
        return {
            "success_rate": self.success_rate,
            "ci95": list(self.ci95),
            "episodes": len(self.results),
            "seconds": self.seconds,
            "env_steps": self.env_steps,
            "policy_calls": self.policy_calls,
            "chunks": self.chunks,
            "resumed_episodes": self.resumed_episodes,
            "per_env": {k: {**asdict(v), "ci95": list(v.ci95)} for k, v in self.per_env().items()},
            "results": [asdict(r) for r in self.results],
        }


def _mean(values: Any) -> float | None:
    known = [v for v in values if v is not None]
    return float(np.mean(known)) if known else None


class _PrecomputedChunk(PolicyInterface):
    """What each runtime calls: hands out the chunk the evaluator computed in the batched pass."""

    def __init__(self, action_dim: int, chunk_size: int, obs_horizon: int = 1) -> None:
        self._action_dim, self._chunk_size, self._obs_horizon = action_dim, chunk_size, obs_horizon
        self.chunk: np.ndarray | None = None

    @property
    def obs_horizon(self) -> int:
        return self._obs_horizon

    @property
    def action_dim(self) -> int:
        return self._action_dim

    @property
    def chunk_size(self) -> int:
        return self._chunk_size

    def predict_chunk(self, observation: Mapping[str, Any], task: str | None = None) -> np.ndarray:
        if self.chunk is None:
            raise RuntimeError("internal: the runtime asked for a chunk the evaluator did not compute")
        chunk, self.chunk = self.chunk, None
        return chunk


class SimClock:
    """Simulated time of one environment: advances one control period per step."""

    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t

    def sleep_until(self, t: float) -> None:
        self.t = max(self.t, t)


def sim_safety_layer(env: Any, clock: SimClock) -> Any:
    """The robots safety layer for a simulated env: its action box, no rate limit beyond one full
    range per tick (the experts the policy imitates may move that fast), safe state at the centre."""
    from librobot.core.specs import BoxSpace
    from librobot.robots.safety import SafetyLayer
    from librobot.robots.spec import RobotSpec

    low = np.asarray(env.action_space.low, dtype=np.float64)
    high = np.asarray(env.action_space.high, dtype=np.float64)
    names = tuple(f"a{i}" for i in range(len(low)))
    spec = RobotSpec(
        name=getattr(env, "name", "sim"),
        action_space=BoxSpace(names, tuple(low), tuple(high)),
        state_space=BoxSpace(("s",), (-1e9,), (1e9,)),  # not used by the action filter
        control_hz=float(env.fps),
        max_rate=tuple((high - low) * float(env.fps)),
        safe_action=tuple(np.clip(0.0, low, high)),
    )
    # The watchdog runs on simulated time: a slow policy call does not stall a simulator.
    return SafetyLayer(spec, clock=clock.now, watchdog_timeout=1e9)


@dataclass
class _Slot:
    """One of the lockstep environments and the episode it is running."""

    env: Any = None
    env_key: tuple[str, bool] | None = None  # (env name, renders video) of ``env``
    runtime: Any = None
    proxy: Any = None
    clock: SimClock | None = None
    job: tuple[str, int, bool] | None = None  # (env, seed, record video)
    observation: dict[str, Any] | None = None
    steps: int = 0
    limit: int = 0
    max_reward: float = float("-inf")
    max_coverage: float | None = None
    frames: list[np.ndarray] = field(default_factory=list)


def _stack(observations: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> dict[str, np.ndarray]:
    return {k: np.stack([np.asarray(o[k]) for o in observations]) for k in keys}


def _frame(observation: Mapping[str, Any], env: Any) -> np.ndarray | None:
    for key in sorted(observation):
        if key.startswith("observation.images."):
            frame = np.asarray(observation[key])
            return frame.transpose(1, 2, 0) if frame.shape[0] in (1, 3) and frame.shape[-1] not in (1, 3) else frame
    render = getattr(env, "render", None)
    return render() if callable(render) else None


def evaluate_closed_loop(
    policy: PolicyInterface,
    envs: str | Sequence[str],
    episodes: int,
    *,
    num_envs: int = 8,
    seed: int = EVAL_SEED,
    n_action_steps: int | None = None,
    max_steps: int | None = None,
    env_kwargs: Mapping[str, Any] | None = None,
    videos_per_env: int = 0,
    video_dir: str | Path | None = None,
    episode_log: str | Path | None = None,
    resume: bool = False,
    mode: str = "auto",
) -> ClosedLoopReport:
    """Run ``episodes`` episodes of each env; ``policy`` may batch (``predict_chunks``) or not.

    ``n_action_steps`` actions of each chunk run before the next inference (default: the whole
    chunk). The first ``videos_per_env`` episodes of each env are rendered to mp4 in ``video_dir``.
    ``episode_log``: a JSONL file that gets each episode as it finishes; with ``resume`` the
    episodes already there are kept and only the missing ones run (see ``episode_log``).
    ``mode``: how chunks are executed, ``sync`` or ``ensemble`` (a chunk every step, ACT's temporal
    ensembling); ``auto`` follows the policy (``execution``), else ``sync``.
    """
    from librobot.robots.sim.api import make_env
    from librobot.serve.protocols import obs_horizon, supports_batch
    from librobot.serve.runtime import PolicyRuntime, RuntimeConfig
    from librobot.train.record import expand_envs

    names = expand_envs([envs] if isinstance(envs, str) else list(envs))
    if episodes < 1 or num_envs < 1:
        raise ConfigError(f"need episodes >= 1 and num_envs >= 1, got {episodes} and {num_envs}")
    if videos_per_env and video_dir is None:
        raise ConfigError("videos_per_env > 0 needs a video_dir")
    kwargs = dict(env_kwargs or {})
    jobs = [(name, seed + 10_000 * i + k, k < videos_per_env) for i, name in enumerate(names) for k in range(episodes)]
    batched = supports_batch(policy)
    runtime_config = RuntimeConfig.for_policy(policy, 1.0, mode, n_action_steps=n_action_steps)
    if runtime_config.mode not in ("sync", "ensemble"):  # async modes need a wall clock, not a sim step
        raise ConfigError(f"closed-loop evaluation runs mode 'sync' or 'ensemble' (or 'auto'), got {mode!r}")
    report = ClosedLoopReport(mode=runtime_config.mode)
    log_file = None
    if episode_log is not None:
        settings = dict(
            envs=names,
            episodes=episodes,
            seed=seed,
            n_action_steps=n_action_steps,
            # sync logs were written before the option existed: they stay resumable
            **(
                {"mode": runtime_config.mode, "ensemble_coeff": runtime_config.ensemble_coeff}
                if runtime_config.mode != "sync"
                else {}
            ),
            max_steps=max_steps,
            env_kwargs=kwargs,
            videos_per_env=videos_per_env,
        )
        log_file = EpisodeLog(episode_log, settings)
        jobs = _take_logged_episodes(log_file, resume, report, jobs)
    earlier_seconds = report.seconds
    slots = [_Slot() for _ in range(min(num_envs, len(jobs)))]
    started = time.perf_counter()
    queue = list(reversed(jobs))
    bar = _Progress(len(jobs))

    def close_env(slot: _Slot) -> None:
        if slot.env is not None:
            slot.env.close()
        slot.env, slot.env_key = None, None

    def start(slot: _Slot) -> bool:
        if not queue:
            slot.job = None
            close_env(slot)
            return False
        name, episode_seed, video = queue.pop()
        # One open environment per slot: jobs come task by task, so a slot that moves on never
        # needs its previous one again (a rendering environment holds ~160 MB; keeping one per
        # slot per task ran a 6-task, 25-slot evaluation out of memory).
        if slot.env_key != (name, video):
            close_env(slot)
            # rendering is slow on a CPU: only video episodes render unless asked
            slot.env = make_env(name, **({**kwargs, "render": True} if video else kwargs))
            slot.env_key = (name, video)
        slot.job = (name, episode_seed, video)
        slot.clock = SimClock()
        slot.proxy = _PrecomputedChunk(policy.action_dim, policy.chunk_size, obs_horizon(policy))
        config = replace(runtime_config, control_hz=float(slot.env.fps))
        slot.runtime = PolicyRuntime(
            slot.proxy, sim_safety_layer(slot.env, slot.clock), config, clock=slot.clock, task=slot.env.task
        )
        slot.observation, _ = slot.env.reset(seed=episode_seed)
        slot.steps, slot.limit = 0, int(max_steps or slot.env.max_episode_steps)
        slot.max_reward, slot.max_coverage = float("-inf"), None
        slot.frames = []
        return True

    def finish(slot: _Slot, success: bool) -> None:
        name, episode_seed, video = slot.job  # type: ignore[misc]
        path = None
        if video and slot.frames:
            from librobot.train.evaluation.video import write_video

            path = str(write_video(Path(video_dir) / f"{name}_seed{episode_seed}.mp4", slot.frames, fps=slot.env.fps))
        result = EpisodeResult(
            name, slot.env.task, episode_seed, success, slot.steps, path, slot.max_reward, slot.max_coverage
        )
        report.results.append(result)
        if log_file is not None:
            totals = dict(
                seconds=earlier_seconds + time.perf_counter() - started,
                env_steps=report.env_steps,
                policy_calls=report.policy_calls,
                chunks=report.chunks,
            )
            log_file.append({"episode": asdict(result), "totals": totals})
        bar.advance(success)

    try:
        for slot in slots:
            start(slot)
        while any(s.job for s in slots):
            active = [s for s in slots if s.job]
            needing = [s for s in active if s.runtime.needs_inference]
            if needing:
                observations = [s.runtime.policy_input(s.observation) for s in needing]
                # Video episodes render images the others lack: a batch carries the keys all of them have.
                keys = sorted(set.intersection(*(set(o) for o in observations)))
                keys = [k for k in keys if k.startswith("observation.")]
                tasks = [s.env.task for s in needing]
                if batched:
                    chunks = np.asarray(policy.predict_chunks(_stack(observations, keys), tasks))  # type: ignore[attr-defined]
                    report.policy_calls += 1
                else:
                    chunks = np.stack([policy.predict_chunk(o, t) for o, t in zip(observations, tasks)])
                    report.policy_calls += len(needing)
                if chunks.shape[0] != len(needing) or not np.isfinite(chunks).all():
                    raise SpecError(
                        f"the policy returned {chunks.shape} chunks with non-finite values for {len(needing)} requests"
                    )
                report.chunks += len(needing)
                for s, chunk in zip(needing, chunks):
                    s.proxy.chunk = chunk
            for s in active:
                if s.job and s.job[2]:
                    frame = _frame(s.observation, s.env)
                    if frame is not None:
                        s.frames.append(np.asarray(frame))
                action = s.runtime.step(s.observation)
                s.observation, reward, terminated, truncated, info = s.env.step(action.astype(np.float32))
                s.max_reward = max(s.max_reward, float(reward))
                if "coverage" in info:
                    s.max_coverage = max(s.max_coverage or 0.0, float(info["coverage"]))
                s.clock.t += 1.0 / float(s.env.fps)
                s.steps += 1
                report.env_steps += 1
                success = bool(info.get("success", False))
                if success or terminated or truncated or s.steps >= s.limit:
                    finish(s, success)
                    start(s)
    finally:
        bar.close()
        for slot in slots:
            close_env(slot)
        if log_file is not None:
            log_file.close()
    report.seconds = earlier_seconds + time.perf_counter() - started
    report.results.sort(key=lambda r: (names.index(r.env), r.seed))
    return report


def _take_logged_episodes(log_file: EpisodeLog, resume: bool, report: ClosedLoopReport, jobs: list) -> list:
    """When resuming, move the episodes ``log_file`` holds (and its totals) into ``report``; else
    start the log anew. Returns the jobs still to run."""
    done, totals = log_file.load() if resume else ([], {})
    if not done:
        log_file.start_new()
        return jobs
    report.results = [EpisodeResult(**r) for r in done]
    report.resumed_episodes = len(done)
    report.env_steps, report.policy_calls = int(totals["env_steps"]), int(totals["policy_calls"])
    report.chunks, report.seconds = int(totals["chunks"]), float(totals["seconds"])
    finished = {(r.env, r.seed) for r in report.results}
    left = [job for job in jobs if job[:2] not in finished]
    log.info("%s: %d episodes already done, %d to run", log_file.path, len(done), len(left))
    return left


class _Progress:
    """A rich progress bar with the running success rate (quiet when progress is off)."""

    def __init__(self, total: int) -> None:
        self.wins = self.done = 0
        self._bar = None
        if progress_enabled():
            from rich.progress import Progress

            self._bar = Progress(transient=False)
            self._task = self._bar.add_task("evaluating", total=total)
            self._bar.start()

    def advance(self, success: bool) -> None:
        self.done += 1
        self.wins += success
        if self._bar is not None:
            rate = self.wins / self.done
            self._bar.update(self._task, advance=1, description=f"evaluating: {rate:.0%} success")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


def summary_lines(report: ClosedLoopReport) -> list[str]:
    """A table of success rates with their 95% intervals, one line per env plus the mean."""
    lines = []
    for env, s in report.per_env().items():
        coverage = f"  mean max coverage {s.mean_max_coverage:.3f}" if s.mean_max_coverage is not None else ""
        lines.append(
            f"{env:<34} {s.successes:>3}/{s.episodes:<3} {s.success_rate:6.1%}  "
            f"[{s.ci95[0]:.0%}, {s.ci95[1]:.0%}]  mean length {s.mean_length:.0f}{coverage}"
        )
    lo, hi = report.ci95
    lines.append(
        f"{'all':<34} {sum(r.success for r in report.results):>3}/{len(report.results):<3} "
        f"{report.success_rate:6.1%}  [{lo:.0%}, {hi:.0%}]  ({report.seconds:.0f} s, "
        f"{report.env_steps / max(report.seconds, 1e-9):.0f} env steps/s, {report.chunks} chunks in "
        f"{report.policy_calls} policy calls, mode {report.mode})"
    )
    return lines
