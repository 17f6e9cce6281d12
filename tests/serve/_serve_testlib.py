"""Real, small, deterministic policies, a simulated robot and a safety filter for the serve tests.

- ``LinearChunkPolicy``: chunk = reshape(M @ state + b) — linear in the observation; ``ramp`` makes
  chunk[k] = state + (k + 1)·δ, so on a position-controlled robot the commands form a known ramp.
- ``MixtureFlowPolicy``: a flow-matching policy with the *exact* velocity field of a two-mode
  Gaussian mixture over chunks (pass above or below an obstacle on the way to a goal). Each chunk
  picks a mode at random, so consecutive chunks disagree — the case real-time chunking is for.
- ``PointRobot``: a position-controlled robot whose state is the last command; records what it
  was sent and when (clock time).
- ``ClampRateFilter``: clamps to bounds and limits the change per call (the safety layer's API).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from librobot.core.batch import OBS_STATE
from librobot.core.interfaces import PolicyInterface
from librobot.core.specs import FeatureSpec
from librobot.serve.protocols import RealTimeChunkingPolicy
from librobot.serve.rtc import guided_velocity, pad_prefix


class LinearChunkPolicy(PolicyInterface):
    thread_safe = True

    def __init__(
        self, matrix: np.ndarray, bias: np.ndarray, horizon: int, action_dim: int, tasks: Sequence[str] | None = None
    ) -> None:
        self.m, self.b = np.asarray(matrix, np.float64), np.asarray(bias, np.float64)
        self.h, self.a = horizon, action_dim
        self.state_dim = self.m.shape[1]
        self.known_tasks = tuple(tasks) if tasks else None
        self.input_features = {OBS_STATE: FeatureSpec(OBS_STATE, (self.state_dim,), dtype="float32")}
        self.calls = 0
        self.batched_calls: list[int] = []
        self._lock = threading.Lock()

    @classmethod
    def ramp(cls, state_dim: int, delta: Sequence[float], horizon: int, **kw: Any) -> LinearChunkPolicy:
        delta = np.asarray(delta, np.float64)
        m = np.concatenate([np.eye(state_dim)] * horizon)
        b = np.concatenate([(k + 1) * delta for k in range(horizon)])
        return cls(m, b, horizon, state_dim, **kw)

    @classmethod
    def random(cls, state_dim: int, horizon: int, action_dim: int, seed: int = 0, **kw: Any) -> LinearChunkPolicy:
        rng = np.random.default_rng(seed)
        return cls(
            rng.normal(size=(horizon * action_dim, state_dim)),
            rng.normal(size=horizon * action_dim),
            horizon,
            action_dim,
            **kw,
        )

    @property
    def action_dim(self) -> int:
        return self.a

    @property
    def chunk_size(self) -> int:
        return self.h

    def predict_chunk(self, observation: Mapping[str, Any], task: str | None = None) -> np.ndarray:
        with self._lock:
            self.calls += 1
        state = np.asarray(observation[OBS_STATE], np.float64).reshape(-1)
        return (self.m @ state + self.b).reshape(self.h, self.a)

    def predict_chunks(self, observations: Mapping[str, np.ndarray], tasks: Sequence[str | None]) -> np.ndarray:
        with self._lock:
            self.batched_calls.append(len(tasks))
        states = np.asarray(observations[OBS_STATE], np.float64).reshape(len(tasks), -1)
        return (states @ self.m.T + self.b).reshape(len(tasks), self.h, self.a)


class MixtureFlowPolicy(RealTimeChunkingPolicy):
    """Chunks of 2-D actions (x, y): x advances toward ``goal``, y bumps by ±``bump`` (two modes)."""

    def __init__(
        self,
        horizon: int = 16,
        goal: float = 4.0,
        speed: float = 0.1,
        bump: float = 1.0,
        sigma: float = 0.02,
        steps: int = 10,
        seed: int = 0,
    ) -> None:
        self.h, self.goal, self.speed, self.bump, self.sigma, self.steps = horizon, goal, speed, bump, sigma, steps
        self.rng = np.random.default_rng(seed)
        self.calls = 0

    @property
    def action_dim(self) -> int:
        return 2

    @property
    def chunk_size(self) -> int:
        return self.h

    def modes(self, state: np.ndarray) -> np.ndarray:
        """The two mode means [2, H, 2] from the current position."""
        k = np.arange(1, self.h + 1)
        x = state[0] + self.speed * k
        phase = np.sin(np.pi * np.clip(x / self.goal, 0.0, 1.0))
        return np.stack([np.stack([x, s * self.bump * phase], -1) for s in (1.0, -1.0)])

    def velocity(self, x: np.ndarray, t: float, mus: np.ndarray) -> np.ndarray:
        """Exact E[ε − x₀ | x_t] for x₀ ~ ½N(μ₁, σ²I) + ½N(μ₂, σ²I), x_t = t·ε + (1−t)·x₀."""
        var = (1 - t) ** 2 * self.sigma**2 + t**2
        centred = x[None] - (1 - t) * mus
        logits = -(centred**2).sum(axis=(1, 2)) / (2 * var)
        post = np.exp(logits - logits.max())
        post /= post.sum()
        e_eps = t / var * centred
        e_x0 = mus + (1 - t) * self.sigma**2 / var * centred
        return np.tensordot(post, e_eps - e_x0, axes=1)

    def denoised_vjp(self, x: np.ndarray, t: float, mus: np.ndarray, e: np.ndarray) -> np.ndarray:
        """eᵀ ∂Â/∂x_t, exact: Â = E[x₀ | x_t] = Σ p_k m_k(x) with m_k = μ_k + c·(x − (1−t)μ_k)."""
        var = (1 - t) ** 2 * self.sigma**2 + t**2
        centred = x[None] - (1 - t) * mus
        logits = -(centred**2).sum(axis=(1, 2)) / (2 * var)
        post = np.exp(logits - logits.max())
        post /= post.sum()
        c = (1 - t) * self.sigma**2 / var
        grad_logits = -centred / var  # ∂ log N_k / ∂x
        mean_grad = np.tensordot(post, grad_logits, axes=1)
        e_dot_m = (e[None] * (mus + c * centred)).sum(axis=(1, 2))
        return c * e + np.tensordot(e_dot_m * post, grad_logits - mean_grad[None], axes=1)

    def predict_chunk(self, observation, task=None, *, prefix_actions=None, prefix_weights=None) -> np.ndarray:
        """Euler sampling; with a prefix, ΠGDM guidance at every step (exact VJP, as autograd would give)."""
        self.calls += 1
        mus = self.modes(np.asarray(observation[OBS_STATE], np.float64))
        x = self.rng.standard_normal((self.h, 2))
        pa = pw = None
        if prefix_actions is not None:
            pa, pw = pad_prefix(prefix_actions, prefix_weights, self.h)
            pa, pw = pa.astype(np.float64), pw.astype(np.float64)
        timesteps = np.linspace(1.0, 0.0, self.steps + 1)
        for t, t_next in itertools.pairwise(timesteps):
            v = self.velocity(x, t, mus)
            if pa is not None:
                v = guided_velocity(v, x, t, pa, pw, vjp=lambda e, x=x, t=t: self.denoised_vjp(x, t, mus, e))
            x = x + (t_next - t) * v
        return x


class PointRobot:
    """State = the last command; logs (clock time, command)."""

    def __init__(self, clock: Any, start: Sequence[float]) -> None:
        self.clock = clock
        self.pos = np.asarray(start, np.float64)
        self.sent: list[np.ndarray] = []
        self.times: list[float] = []

    def get_observation(self) -> dict[str, np.ndarray]:
        return {OBS_STATE: self.pos.copy()}

    def send_action(self, action: np.ndarray) -> None:
        self.pos = np.asarray(action, np.float64).copy()
        self.sent.append(self.pos.copy())
        self.times.append(self.clock.now())

    def safe_action(self) -> np.ndarray:
        return self.pos.copy()


class ClampRateFilter:
    def __init__(self, low: Sequence[float], high: Sequence[float], max_delta: float = np.inf) -> None:
        self.low, self.high, self.max_delta = np.asarray(low, float), np.asarray(high, float), max_delta
        self.last: np.ndarray | None = None
        self.calls: list[float] = []
        self.resets = 0

    def filter(self, action: np.ndarray, now: float) -> np.ndarray:
        self.calls.append(now)
        out = np.clip(action, self.low, self.high)
        if self.last is not None:
            out = np.clip(out, self.last - self.max_delta, self.last + self.max_delta)
        self.last = out
        return out

    def reset(self) -> None:
        self.last = None
        self.resets += 1


class ClockedPolicy(PolicyInterface):
    """Wraps a policy so each call takes ``latency`` seconds of (fake) clock time — blocking inference."""

    def __init__(self, policy: PolicyInterface, clock: Any, latency: float) -> None:
        self.policy, self.clock, self.latency = policy, clock, latency

    @property
    def action_dim(self) -> int:
        return self.policy.action_dim

    @property
    def chunk_size(self) -> int:
        return self.policy.chunk_size

    def predict_chunk(self, observation, task=None):
        self.clock.advance(self.latency)
        return self.policy.predict_chunk(observation, task)


# ---------------------------------------------------------------------------- ONNX test models
ONNX_H, ONNX_A, ONNX_S, ONNX_L = 8, 3, 5, 4
TASKS = {"pick up the cube": [3, 7, 1], "open the drawer": [5, 2], "push the button": [9]}


def make_tiny_flow_module(seed: int = 0):
    """A small flow-matching policy: state + image + task tokens condition an MLP velocity, 4 Euler
    steps from the noise input, RTC-guided by the prefix inputs (librobot.serve.rtc, inside the graph)."""
    import torch

    from librobot.serve.rtc import guided_velocity

    torch.manual_seed(seed)
    h, a, s = ONNX_H, ONNX_A, ONNX_S

    class TinyFlow(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = torch.nn.Embedding(16, 8)
            self.conv = torch.nn.Conv2d(3, 4, 3, stride=2)
            self.net = torch.nn.Sequential(
                torch.nn.Linear(s + 8 + 4 * 3 * 3 + h * a + 1, 64),
                torch.nn.GELU(),
                torch.nn.Linear(64, 64),
                torch.nn.GELU(),
                torch.nn.Linear(64, h * a),
            )

        def forward(self, state, image, task_ids, task_mask, noise, prefix_actions, prefix_weights):
            b = state.shape[0]
            mask = task_mask.unsqueeze(-1).to(state.dtype)
            text = (self.embed(task_ids) * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            vision = torch.relu(self.conv(image[:, 0])).reshape(b, -1)
            cond = torch.cat([state.reshape(b, -1), text, vision], -1)
            x = noise
            for i in range(4):
                t = 1.0 - i / 4
                v = self.net(torch.cat([cond, x.reshape(b, -1), torch.full((b, 1), t)], -1)).reshape(b, h, a)
                v = guided_velocity(v, x, t, prefix_actions, prefix_weights)
                x = x - 0.25 * v
            return x

    return TinyFlow().eval()


def export_tiny_flow(directory, seed: int = 0, normalization: bool = True):
    """Export TinyFlow with the dynamo exporter and write its sidecar; returns (module, directory)."""
    from pathlib import Path

    import torch

    from librobot.serve.sidecar import InputBinding, Normalizer, OnnxPolicySpec, save_sidecar, sha256_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    module = make_tiny_flow_module(seed)
    h, a, s, length = ONNX_H, ONNX_A, ONNX_S, ONNX_L
    names = ["state", "image", "task_ids", "task_mask", "noise", "prefix_actions", "prefix_weights"]
    example = (
        torch.randn(2, 1, s),
        torch.rand(2, 1, 3, 8, 8),
        torch.zeros(2, length, dtype=torch.int64),
        torch.ones(2, length, dtype=torch.int64),
        torch.randn(2, h, a),
        torch.zeros(2, h, a),
        torch.zeros(2, h),
    )
    batch = torch.export.Dim("batch", min=1, max=4096)
    torch.onnx.export(
        module,
        example,
        str(directory / "policy.onnx"),
        dynamo=True,
        external_data=False,
        input_names=names,
        output_names=["action"],
        dynamic_shapes={n: {0: batch} for n in names},
    )
    norm = {}
    if normalization:
        rng = np.random.default_rng(seed)
        norm = {
            "observation.state": Normalizer(
                "mean_std", {"mean": tuple(rng.normal(size=s)), "std": tuple(rng.uniform(0.5, 2, s))}
            ),
            "action": Normalizer("min_max", {"min": tuple(-rng.uniform(1, 3, a)), "max": tuple(rng.uniform(1, 3, a))}),
        }
    spec = OnnxPolicySpec(
        model="policy.onnx",
        model_sha256=sha256_file(directory / "policy.onnx"),
        chunk_size=h,
        action_dim=a,
        action_names=("x", "y", "gripper"),
        inputs=(
            InputBinding("observation.state", "state", (1, s)),
            InputBinding("observation.images.wrist", "image", (1, 3, 8, 8), kind="image"),
        ),
        output="action",
        normalization_in_graph=False,
        normalization=norm,
        noise={"onnx_name": "noise", "shape": [h, a], "distribution": "standard_normal"},
        task={"onnx_name": "task_ids", "mask_onnx_name": "task_mask", "length": length, "pad_id": 0, "table": TASKS},
        rtc={"prefix_actions": "prefix_actions", "prefix_weights": "prefix_weights"},
        producer={"test": "tiny flow"},
    )
    save_sidecar(directory / "policy.json", spec)
    return module, directory


def torch_reference(module, spec, obs: dict, tasks, noise, prefix_actions=None, prefix_weights=None) -> np.ndarray:
    """The torch module run with the sidecar's pre/post-processing done by hand in float64 numpy."""
    import torch

    b = len(tasks)
    state = obs["observation.state"].astype(np.float64)
    image = obs["observation.images.wrist"]
    image = image.astype(np.float64) / 255.0 if image.dtype == np.uint8 else image.astype(np.float64)
    norm_s, norm_a = spec.normalization.get("observation.state"), spec.normalization.get("action")
    if norm_s is not None:
        state = (state - np.array(norm_s.stats["mean"])) / np.array(norm_s.stats["std"])
    lo, hi = (
        (np.array(norm_a.stats["min"]), np.array(norm_a.stats["max"]))
        if norm_a is not None
        else (-np.ones(ONNX_A), np.ones(ONNX_A))
    )
    ids = np.zeros((b, ONNX_L), np.int64)
    mask = np.zeros((b, ONNX_L), np.int64)
    for i, t in enumerate(tasks):
        ids[i, : len(TASKS[t])], mask[i, : len(TASKS[t])] = TASKS[t], 1
    pa = np.zeros((b, ONNX_H, ONNX_A)) if prefix_actions is None else (2 * (prefix_actions - lo) / (hi - lo) - 1)
    pw = np.zeros((b, ONNX_H)) if prefix_weights is None else prefix_weights
    f32 = lambda x: torch.tensor(np.asarray(x), dtype=torch.float32)  # noqa: E731
    with torch.no_grad():
        out = (
            module(f32(state), f32(image), torch.tensor(ids), torch.tensor(mask), f32(noise), f32(pa), f32(pw))
            .double()
            .numpy()
        )
    return (out + 1) / 2 * (hi - lo) + lo


def write_linear_onnx(
    directory,
    state_dim: int = 6,
    horizon: int = 4,
    action_dim: int = 2,
    seed: int = 0,
    fixed_batch: bool = False,
    normalization=None,
):
    """A linear chunk policy as a hand-built ONNX graph (no torch): action = reshape(state @ W + b)."""
    from pathlib import Path

    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from librobot.serve.sidecar import InputBinding, OnnxPolicySpec, save_sidecar, sha256_file

    rng = np.random.default_rng(seed)
    w = rng.normal(size=(state_dim, horizon * action_dim)).astype(np.float32)
    b = rng.normal(size=horizon * action_dim).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Reshape", ["state", "flat_shape"], ["flat"]),
            helper.make_node("Gemm", ["flat", "W", "b"], ["y"]),
            helper.make_node("Reshape", ["y", "out_shape"], ["action"]),
        ],
        "linear_policy",
        [helper.make_tensor_value_info("state", TensorProto.FLOAT, [1 if fixed_batch else "batch", 1, state_dim])],
        [
            helper.make_tensor_value_info(
                "action", TensorProto.FLOAT, [1 if fixed_batch else "batch", horizon, action_dim]
            )
        ],
        [
            numpy_helper.from_array(w, "W"),
            numpy_helper.from_array(b, "b"),
            numpy_helper.from_array(np.array([-1, state_dim], np.int64), "flat_shape"),
            numpy_helper.from_array(np.array([-1, horizon, action_dim], np.int64), "out_shape"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(directory / "policy.onnx"))
    spec = OnnxPolicySpec(
        model="policy.onnx",
        model_sha256=sha256_file(directory / "policy.onnx"),
        chunk_size=horizon,
        action_dim=action_dim,
        inputs=(InputBinding("observation.state", "state", (1, state_dim)),),
        batch=1 if fixed_batch else "dynamic",
        normalization_in_graph=normalization is None,
        normalization=normalization or {},
    )
    save_sidecar(directory / "policy.json", spec)
    return w, b
