"""Recording scripted-expert demonstrations into the episode store (``librobot sim record``).

The simulators and experts live in librobot-robots (torch-free), the store in librobot-data; this
module joins them. Several environments may go into one dataset (a multi-task set: each episode
keeps its own instruction), and the dataset appears only when complete: it is written beside the
destination and renamed into place, so an interrupted recording leaves nothing half-written.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from librobot.core.errors import ConfigError
from librobot.core.logging import get_logger, track

log = get_logger("train.record")
# Keys of a recorded episode that describe it rather than hold per-frame data.
EPISODE_METADATA = ("task", "fps", "success", "episode_index", "seed", "env", "image_layout", "length")


@dataclass
class RecordSummary:
    path: Path
    episodes: int = 0
    frames: int = 0
    per_env: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def expand_envs(patterns: Sequence[str]) -> list[str]:
    """Registered env names matching the given names or globs ("metaworld-*"), in order, once each."""
    from librobot.core.registry import get_registry

    registry = get_registry("env")
    known = registry.list()
    names: list[str] = []
    for pattern in patterns:
        matched = (
            [n for n in known if fnmatch.fnmatch(n, pattern)]
            if any(c in pattern for c in "*?[")
            else [registry.canonical(pattern)]
        )
        if not matched:
            raise ConfigError(f"no registered env matches '{pattern}' (see `librobot sim list`)")
        names += [n for n in matched if n not in names]
    return names


def _frames_of(episode: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in episode.items() if k not in EPISODE_METADATA}


def record_dataset(
    envs: str | Sequence[str],
    episodes: int,
    out: str | Path,
    *,
    seed: int = 0,
    only_successful: bool = True,
    overwrite: bool = False,
    max_steps: int | None = None,
    env_kwargs: Mapping[str, Any] | None = None,
    expert: str | None = None,
) -> RecordSummary:
    """Record ``episodes`` expert episodes of every env in ``envs`` into a new store at ``out``
    (``expert``: a registered expert name instead of each env's default one)."""
    from librobot.data import EpisodeWriter
    from librobot.robots.sim.api import env_info, record_episodes

    names = expand_envs([envs] if isinstance(envs, str) else list(envs))
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; pass --overwrite to replace it")
    staging = out.parent / f".{out.name}.recording-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    kwargs = dict(env_kwargs or {})
    infos = [env_info(name, **kwargs) for name in names]
    fps = {info["fps"] for info in infos}
    if len(fps) > 1:
        raise ConfigError(f"the envs run at different rates {sorted(fps)}; record them into separate datasets")
    summary = RecordSummary(path=out)
    start = time.perf_counter()
    try:
        # the envs' element names (action dx/dy/dz/grip, state x/y...) travel with the data
        element_names = {k: spec.names for k, spec in infos[0]["features"].items() if spec.names}
        with EpisodeWriter(staging, fps=fps.pop(), names=element_names, robot_type=names[0].split("-")[0]) as writer:
            total = episodes * len(names)

            def stream() -> Iterable[dict[str, Any]]:
                for i, name in enumerate(names):
                    # Seeds differ per env so multi-task sets do not share initial conditions.
                    yield from record_episodes(
                        name,
                        episodes,
                        seed=seed + 100_000 * i,
                        only_successful=only_successful,
                        max_steps=max_steps,
                        expert=expert,
                        **kwargs,
                    )

            for episode in track(stream(), total=total, description="recording"):
                writer.add_episode(_frames_of(episode), task=episode["task"])
                summary.episodes += 1
                summary.frames += len(episode["action"])
                summary.per_env[episode["env"]] = summary.per_env.get(episode["env"], 0) + 1
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    except KeyboardInterrupt:
        # The writer committed every finished episode (and dropped the one in progress): an
        # interrupted hour of recording keeps what it recorded instead of deleting it.
        if summary.episodes == 0 or out.exists():
            shutil.rmtree(staging, ignore_errors=True)
            raise
        os.replace(staging, out)
        log.warning(
            "interrupted: kept the %d finished episodes (of %d asked) in %s; record more into another folder "
            "and train on both, or start over with --overwrite",
            summary.episodes,
            episodes * len(names),
            out,
        )
        raise
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    summary.seconds = time.perf_counter() - start
    log.info("recorded %d episodes (%d frames) of %d env(s) into %s", summary.episodes, summary.frames, len(names), out)
    return summary
