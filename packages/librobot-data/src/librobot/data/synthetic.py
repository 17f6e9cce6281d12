"""Small deterministic demonstration episodes for tests, benchmarks and demos.

States follow smooth random sinusoids, actions are the next state mixed linearly (what a
position-controlled arm records). Each camera pans over its own textured scene as the state moves,
with a red block tracking the state and sensor noise on top: the frames carry detail, motion and
noise, so they compress and encode like camera footage rather than like flat synthetic images.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from librobot.core.batch import ACTION, OBS_STATE, image_key
from librobot.data.episode import Episode

DEFAULT_TASKS = ("pick up the red cube", "open the drawer", "push the button")


def _texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A cluttered-looking scene: value noise at four scales, bilinearly upsampled, in 20..220."""
    img = np.zeros((h, w, 3), np.float32)
    for cells, amp in ((4, 1.0), (16, 0.5), (48, 0.25), (128, 0.12)):
        gh, gw = max(2, h * cells // 256), max(2, w * cells // 256)
        grid = rng.uniform(0, 1, (gh, gw, 3)).astype(np.float32)
        ys, xs = np.linspace(0, gh - 1, h), np.linspace(0, gw - 1, w)
        y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
        y1, x1 = np.minimum(y0 + 1, gh - 1), np.minimum(x0 + 1, gw - 1)
        fy, fx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
        top = grid[y0][:, x0] * (1 - fx) + grid[y0][:, x1] * fx
        bottom = grid[y1][:, x0] * (1 - fx) + grid[y1][:, x1] * fx
        img += amp * (top * (1 - fy) + bottom * fy)
    return 20 + 200 * img / img.max()


def _camera_frames(rng: np.random.Generator, state: np.ndarray, size: tuple[int, int], scene: np.ndarray) -> np.ndarray:
    """The camera pans over ``scene`` with the state; a red block moves with it; sensor noise on top."""
    h, w = size
    my, mx = scene.shape[0] - h, scene.shape[1] - w
    frames = np.empty((len(state), h, w, 3), dtype=np.uint8)
    side = max(2, min(h, w) // 5)
    for t, s in enumerate(state):
        dy = int((0.5 + 0.5 * np.tanh(s[-1])) * my)
        dx = int((0.5 + 0.5 * np.tanh(s[len(s) // 2])) * mx)
        img = scene[dy : dy + h, dx : dx + w].copy()
        cy = int((0.5 + 0.4 * np.tanh(s[0])) * (h - side))
        cx = int((0.5 + 0.4 * np.tanh(s[1 % len(s)])) * (w - side))
        img[cy : cy + side, cx : cx + side] = (230, 60, 50)
        frames[t] = np.clip(img + rng.normal(0, 2.0, img.shape), 0, 255).round().astype(np.uint8)
    return frames


def synthetic_episodes(
    num_episodes: int = 3,
    *,
    lengths: Sequence[int] | None = None,
    cameras: Sequence[str] = ("top", "wrist"),
    image_size: tuple[int, int] = (32, 32),
    state_dim: int = 4,
    action_dim: int = 3,
    tasks: Sequence[str] = DEFAULT_TASKS,
    fps: float = 10.0,
    seed: int = 0,
) -> list[Episode]:
    """``num_episodes`` episodes with two cameras (by default), states, actions and tasks."""
    rng = np.random.default_rng(seed)
    lengths = list(lengths) if lengths is not None else [int(rng.integers(6, 12)) for _ in range(num_episodes)]
    if len(lengths) != num_episodes:
        raise ValueError(f"lengths has {len(lengths)} entries for {num_episodes} episodes")
    h, w = image_size
    scenes = [_texture(rng, h + max(4, h // 4), w + max(4, w // 4)) for _ in cameras]  # one scene per camera
    episodes = []
    for e, length in enumerate(lengths):
        t = np.arange(length + 1, dtype=np.float64) / fps
        freq = rng.uniform(0.2, 1.0, state_dim)
        phase = rng.uniform(0, 2 * np.pi, state_dim)
        amp = rng.uniform(0.5, 2.0, state_dim)
        traj = (amp * np.sin(2 * np.pi * freq * t[:, None] + phase)).astype(np.float32)
        state = traj[:-1]
        mix = rng.normal(0, 1, (state_dim, action_dim)).astype(np.float32) / np.sqrt(state_dim)
        action = traj[1:] @ mix
        frames: dict[str, np.ndarray] = {OBS_STATE: state, ACTION: action.astype(np.float32)}
        for camera, scene in zip(cameras, scenes):
            frames[image_key(camera)] = _camera_frames(rng, state, image_size, scene)
        episodes.append(Episode(frames=frames, task=tasks[e % len(tasks)], fps=fps))
    return episodes
