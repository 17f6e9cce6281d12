"""π0-style policy (Black et al. 2024).

The VLM runs over the prefix (images + instruction) and returns its per-layer keys/values
(``PrefixKV``). The prefix is bidirectional on every backbone, as in π0 (a prefix-LM): PaliGemma,
Florence-2 and the built-in backbones are so already, and the causal ones (Qwen2/2.5/3-VL,
InternVL, LLaVA, KosMos-2) are asked for it (``prefix_attention="bidirectional"``, a block mask over
their language model); ``Pi0Config.prefix_attention="native"`` keeps each backbone's own. A smaller
action expert (``expert.py``) runs over the suffix — one state token, then H noisy-action tokens
fused with the flow time by an MLP — and its layer i attends to the VLM's layer-i prefix
keys/values plus the suffix's own, under π0's block-wise mask:

    block 0 prefix   sees the whole prefix (bidirectionally unless "native"; never the suffix)
    block 1 state    sees prefix + state
    block 2 actions  see prefix + state + all actions (bidirectionally)

Training is flow matching (x_t = t·ε + (1 − t)·a, target velocity ε − a). Inference computes the
prefix cache once per observation, appends the state token's keys/values once (they do not
depend on the actions), and runs only the action tokens at each of the denoising steps;
``predict_action(..., cache_prefix=False)`` recomputes everything per step (the reference path).
``predict_action(..., guidance=fn)`` corrects the velocity at every step (real-time chunking:
``functools.partial(librobot.serve.rtc.guided_velocity, prefix_actions=..., prefix_weights=...)``).

The expert reads only the prefix keys/values, so the backbone's last-layer output half, final norm
and LM head can never get a gradient; they stay frozen (``unused.py``), as π0 never trains them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

import librobot.kernels as kernels
from librobot.core.errors import ConfigError, SpecError
from librobot.models.action_heads.base import masked_mean
from librobot.models.frameworks.base import AbstractVLA, run_vlm
from librobot.models.frameworks.inputs import VLAInputs
from librobot.models.frameworks.pi0.config import Pi0Config
from librobot.models.frameworks.pi0.expert import ActionExpert, ExpertCache, time_features

Guidance = Callable[[Tensor, Tensor, float], Tensor]  # (velocity, x_t, t) -> velocity, normalised units
_BETA_S = 0.999  # π0's time cutoff: t = 0.001 + 0.999 · Beta(1.5, 1)


class Pi0Style(AbstractVLA):
    config_class = Pi0Config
    registry_name = "pi0"
    config: Pi0Config

    def __init__(self, vlm=None, action_dim=None, state_dim=None, config=None, **options) -> None:
        super().__init__(vlm, action_dim, state_dim, config, **options)
        c = self.config
        layout = self.vlm.kv_layout
        modes = getattr(self.vlm, "prefix_attention_modes", (layout.prefix_attention,))
        if c.prefix_attention == "bidirectional" and "bidirectional" not in modes:
            raise ConfigError(
                f"Pi0Config.prefix_attention='bidirectional': the {type(self.vlm).__name__} backbone can only run "
                f"its prefix with {' or '.join(modes)} attention; set prefix_attention='native' to use it as it is"
            )
        width = c.expert_width or max(8, layout.hidden_size // 2)
        if width % 2:
            raise ConfigError(f"Pi0Config.expert_width must be even (sine/cosine time features), got {width}")
        self.expert = ActionExpert(
            layout, width, mlp=c.expert_mlp, mlp_ratio=c.expert_mlp_ratio, max_tokens=c.horizon + 1
        )
        self.state_proj = nn.Linear(c.state_dim, width) if c.state_dim else None
        self.action_in = nn.Linear(c.action_dim, width)
        # π0's action-time fusion: MLP(concat(W·a, φ(t))) per action token
        self.action_time_mlp = nn.Sequential(nn.Linear(2 * width, width), nn.SiLU(), nn.Linear(width, width))
        self.action_out = nn.Linear(width, c.action_dim)
        self._finish_init()

    def backbone_probe(self, vlm: nn.Module, image: Tensor) -> list[Tensor]:
        # the expert reads only the per-layer prefix keys/values
        kv = vlm(image, ["a"], return_kv=True, **self.prefix_options()).prefix_kv
        return [*kv.keys, *kv.values]

    def prefix_options(self) -> dict[str, str]:
        """Keyword arguments of the backbone's prefix pass: a bidirectional prefix asked of a backbone
        whose own is causal (nothing where it is bidirectional already, or with "native")."""
        if self.config.prefix_attention == "native" or self.vlm.kv_layout.prefix_attention == "bidirectional":
            return {}
        return {"prefix_attention": "bidirectional"}

    # ------------------------------------------------------------------ pieces
    @property
    def dtype(self) -> torch.dtype:
        return self.action_in.weight.dtype

    def prefix_cache(self, inputs: VLAInputs) -> ExpertCache:
        """The VLM's per-layer prefix keys/values for the observation (one backbone pass)."""
        kv = run_vlm(self, inputs, return_kv=True, **self.prefix_options()).prefix_kv
        if self.config.prefix_attention == "bidirectional" and kv.layout.prefix_attention != "bidirectional":
            raise SpecError(
                f"the {type(self.vlm).__name__} backbone returned a {kv.layout.prefix_attention} prefix where π0 "
                f"asked for a bidirectional one; it must honour forward(..., prefix_attention=...) or list only its "
                f"own mode in prefix_attention_modes"
            )
        return ExpertCache.from_prefix(kv, self.dtype)

    def state_tokens(self, inputs: VLAInputs) -> Tensor | None:
        if self.state_proj is None:
            return None
        return self.state_proj(inputs.current_state.to(self.dtype)).unsqueeze(1)

    def action_tokens(self, x_t: Tensor, t: Tensor) -> Tensor:
        a = self.action_in(x_t)
        tf = time_features(t, a.shape[-1]).to(a.dtype)[:, None].expand_as(a)
        return self.action_time_mlp(torch.cat([a, tf], dim=-1))

    def suffix_hidden(self, cache: ExpertCache, state: Tensor | None, actions: Tensor) -> Tensor:
        """The expert over [state; actions] in one pass under the block-wise mask → [B, 1 + H, W]."""
        if state is None:  # actions alone: prefix + each other, no mask needed
            out = self.expert(actions, cache)
            assert isinstance(out, Tensor)
            return out
        b, h = actions.shape[:2]
        own = torch.tensor([1] + [2] * h, device=actions.device).expand(b, -1)
        kv_blocks = torch.cat([torch.zeros(b, cache.length, dtype=torch.long, device=actions.device), own], dim=1)
        out = self.expert(torch.cat([state, actions], dim=1), cache, q_blocks=own, kv_blocks=kv_blocks)
        assert isinstance(out, Tensor)
        return out

    def velocity(self, cache: ExpertCache, state: Tensor | None, x_t: Tensor, t: Tensor) -> Tensor:
        """Predicted velocity [B, H, A] from the joint suffix pass (training and reference path)."""
        hidden = self.suffix_hidden(cache, state, self.action_tokens(x_t, t))
        return self.action_out(hidden[:, -x_t.shape[1] :])

    def _sample_time(self, b: int, like: Tensor) -> Tensor:
        u = torch.rand(b, device=like.device, dtype=like.dtype)
        if self.config.flow("time_sampling") == "uniform":
            return u
        return (1 - _BETA_S) + _BETA_S * u.pow(1 / 1.5)  # Beta(1.5, 1) by inverting its CDF u^1.5

    # ------------------------------------------------------------------ framework hooks
    def compute_loss(self, inputs: VLAInputs) -> dict[str, Tensor]:
        actions = inputs.actions.to(self.dtype)
        noise = torch.randn_like(actions)
        t = self._sample_time(actions.shape[0], actions)
        tt = t[:, None, None]
        x_t = tt * noise + (1 - tt) * actions
        v = self.velocity(self.prefix_cache(inputs), self.state_tokens(inputs), x_t, t)
        loss = masked_mean((v - (noise - actions)).pow(2), (~inputs.action_is_pad).float())
        return {"loss": loss, "velocity_mse": loss.detach()}

    def sample_actions(
        self,
        inputs: VLAInputs,
        generator: torch.Generator | None,
        noise: Tensor | None,
        cache_prefix: bool = True,
        guidance: Guidance | None = None,
    ) -> Tensor:
        """Flow-matching sampling. ``cache_prefix=False`` recomputes the VLM prefix (and the state
        block) at every denoising step instead of once — same result, for checking and timing.
        ``guidance(velocity, x_t, t)`` returns a corrected velocity at each step (flow time t from
        1 = noise to 0; actions in normalised units: ``self.normalizer.normalize("action", a)``)."""
        c = self.config
        b = inputs.batch_size
        shape = (b, c.horizon, c.action_dim)
        if noise is not None:
            if tuple(noise.shape) != shape:
                raise SpecError(f"noise must be [B, H, A] = {list(shape)}, got {list(noise.shape)}")
            x = noise.to(device=self.device, dtype=self.dtype)
        else:
            x = torch.randn(shape, generator=generator, device=self.device, dtype=self.dtype)
        velocity: Callable[[Tensor, float], Tensor]
        if cache_prefix:
            cache = self.prefix_cache(inputs)  # once per observation
            state = self.state_tokens(inputs)
            if state is not None:
                cache = self.expert.extend(cache, state)  # the state block, also once

            def velocity(x_t: Tensor, t: float) -> Tensor:
                hidden = self.expert(self.action_tokens(x_t, x_t.new_full((b,), t)), cache)
                assert isinstance(hidden, Tensor)
                return self.action_out(hidden)

        else:

            def velocity(x_t: Tensor, t: float) -> Tensor:  # reference: the whole model at every step
                return self.velocity(self.prefix_cache(inputs), self.state_tokens(inputs), x_t, x_t.new_full((b,), t))

        guide = guidance

        def guided(x_t: Tensor, t: float) -> Tensor:
            assert guide is not None
            return guide(velocity(x_t, t), x_t, t)

        steps = int(c.flow("num_inference_steps"))
        timesteps = [1.0 - i / steps for i in range(steps + 1)]
        return kernels.flow_sample(velocity if guide is None else guided, x, timesteps, method=c.flow("integrator"))
