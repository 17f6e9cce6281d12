"""Real-time chunking (RTC): generate the next chunk so that its first steps agree with the actions
that will execute while it is being computed, so chunk boundaries do not jerk.

Method (Black, Galliker & Levine 2025, "Real-Time Execution of Action Chunking Flow Policies"):
inference for chunk A' starts at step s from observation o_s while the previous chunk keeps
executing; by the time A' is ready, d steps (the inference delay) have run. Those d actions are
known in advance, so sampling A' is posed as *inpainting*: at every denoising step the velocity is
corrected toward the known prefix Y (pseudo-inverse guidance, ΠGDM)::

    Â = x_t − t · v(x_t, t)                         # the current estimate of the clean chunk
    e = W ⊙ (Y − Â)                                 # weighted disagreement with the prefix
    g = eᵀ ∂Â/∂x_t                                  # ≈ e when no VJP is given (see below)
    v' = v − min(β, (τ² + t²) / (τ t)) · g          # τ = 1 − t

W is a *soft* mask over the chunk's steps (``prefix_weights``): 1 on the d frozen steps, then an
exponential decay over the rest of the overlap (the remaining actions of the previous chunk), 0
after it; the decay keeps the new chunk close to the old plan beyond the frozen steps so it does
not switch mode, while letting it drift toward what the new observation says. β clips the
guidance weight, which diverges near pure noise: the paper uses 5; the default here is 10, which
followed the prefix more reliably on the bimodal test policy (tests/serve) with and without a VJP.

Time convention: that of ``librobot.kernels`` flow sampling, noise at t = 1 and data at t = 0
(x_t = t·ε + (1 − t)·x₀, v = dx/dt = ε − x₀, integrated with dt < 0). The paper's τ is 1 − t and its
velocity the negative of ours, hence the minus sign above.

Without a ``vjp`` the Jacobian ∂Â/∂x_t is taken as the identity: the correction then pulls the
denoised estimate toward the prefix (soft-masked inpainting), needs no autograd, and runs on numpy
and inside an exported ONNX graph. With ``vjp`` (e.g. ``torch.autograd.grad`` of Â) it is ΠGDM.
For diffusion heads predicting ε, ``inpaint_denoised`` applies the same soft mask to the x₀
estimate before the DDIM update re-derives ε from it.

Every function takes numpy arrays or torch tensors alike (only arithmetic and indexing).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from librobot.core.errors import SpecError

SCHEDULES = ("exp", "linear", "hard")


def prefix_weights(horizon: int, frozen: int, overlap: int, schedule: str = "exp") -> np.ndarray:
    """The soft mask W [horizon]: 1 on the first ``frozen`` steps, decaying until ``overlap``, then 0.

    ``frozen`` = d, the steps that execute during inference; ``overlap`` = the number of actions of
    the previous chunk still planned when inference starts (the prefix length). With the paper's
    exponential schedule, step i in [d, overlap) gets c·(eᶜ − 1)/(e − 1) with c = (overlap − i)/(overlap − d + 1).
    """
    if schedule not in SCHEDULES:
        raise SpecError(f"prefix weight schedule must be one of {SCHEDULES}, got {schedule!r}")
    if not 0 <= frozen <= overlap <= horizon or horizon < 1:
        raise SpecError(
            f"need 0 <= frozen <= overlap <= horizon, got frozen={frozen}, overlap={overlap}, horizon={horizon}"
        )
    w = np.zeros(horizon, dtype=np.float32)
    w[:frozen] = 1.0
    i = np.arange(frozen, overlap, dtype=np.float64)
    c = (overlap - i) / (overlap - frozen + 1)
    if schedule == "exp":
        w[frozen:overlap] = c * np.expm1(c) / (math.e - 1.0)
    elif schedule == "linear":
        w[frozen:overlap] = c
    return w


def pad_prefix(
    prefix_actions: np.ndarray, prefix_weights: np.ndarray | None, horizon: int
) -> tuple[np.ndarray, np.ndarray]:
    """Pad a prefix of K <= horizon steps to the full chunk (zero weight where nothing is known)."""
    actions = np.asarray(prefix_actions, dtype=np.float32)
    if actions.ndim != 2 or not 0 < actions.shape[0] <= horizon:
        raise SpecError(f"prefix_actions: expected [K, A] with 0 < K <= {horizon}, got shape {list(actions.shape)}")
    k = actions.shape[0]
    weights = np.ones(k, np.float32) if prefix_weights is None else np.asarray(prefix_weights, np.float32)
    if weights.shape not in ((k,), (horizon,)):
        raise SpecError(f"prefix_weights: expected shape [{k}] or [{horizon}], got {list(weights.shape)}")
    if not (np.isfinite(actions).all() and np.isfinite(weights).all()):
        raise SpecError("prefix_actions/prefix_weights: contain NaN or inf")
    if weights.min(initial=0.0) < 0.0 or weights.max(initial=0.0) > 1.0:
        raise SpecError("prefix_weights: must lie in [0, 1]")
    full_actions = np.zeros((horizon, actions.shape[1]), np.float32)
    full_actions[:k] = actions
    full_weights = np.zeros(horizon, np.float32)
    full_weights[:k] = weights[:k]
    return full_actions, full_weights


def guidance_scale(t: float, max_guidance: float = 10.0) -> float:
    """min(β, (1−τ)/(τ r²)) with r² = (1−τ)²/(τ² + (1−τ)²) and τ = 1 − t; β where it diverges."""
    tau = 1.0 - float(t)
    if tau <= 0.0 or t <= 0.0:
        return float(max_guidance)
    return float(min(max_guidance, (tau * tau + t * t) / (tau * t)))


def guided_velocity(
    velocity: Any,
    x_t: Any,
    t: float,
    prefix_actions: Any,
    prefix_weights: Any,
    *,
    max_guidance: float = 10.0,
    vjp: Callable[[Any], Any] | None = None,
) -> Any:
    """The RTC-corrected velocity at one flow step. Shapes: [..., H, A] with weights [..., H].

    ``prefix_actions``/``prefix_weights`` cover the whole chunk (``pad_prefix``); zero weights
    leave the velocity unchanged, so a batch may mix guided and free items.
    """
    denoised = x_t - t * velocity
    error = prefix_weights[..., None] * (prefix_actions - denoised)
    grad = error if vjp is None else vjp(error)
    return velocity - guidance_scale(t, max_guidance) * grad


def inpaint_denoised(denoised: Any, prefix_actions: Any, prefix_weights: Any) -> Any:
    """Soft inpainting of a clean-sample estimate: x̂₀ + W ⊙ (Y − x̂₀) (diffusion heads)."""
    return denoised + prefix_weights[..., None] * (prefix_actions - denoised)


def rtc_flow_sample(
    velocity_fn: Callable[[Any, float], Any],
    x: Any,
    timesteps: Sequence[float],
    prefix_actions: Any | None = None,
    prefix_weights: Any | None = None,
    *,
    max_guidance: float = 10.0,
) -> Any:
    """Euler integration of ``velocity_fn(x, t)`` over ``timesteps`` (1 → 0), RTC-guided with a prefix."""
    if len(timesteps) < 2:
        raise SpecError("rtc_flow_sample needs at least two timesteps")
    for t, t_next in itertools.pairwise(timesteps):
        v = velocity_fn(x, float(t))
        if prefix_actions is not None:
            v = guided_velocity(v, x, float(t), prefix_actions, prefix_weights, max_guidance=max_guidance)
        x = x + (float(t_next) - float(t)) * v
    return x
