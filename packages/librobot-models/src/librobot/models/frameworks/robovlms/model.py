"""RoboVLMs-style policy (Li et al. 2024, "Towards Generalist Robot Policies"; seed 003).

1. Per-step features: every frame of the observation history goes through the VLM with the
   instruction (frames batched as B·T samples). A learnable [ACT] embedding is appended after the
   prompt and its final hidden state is the step's feature (``step_feature="act_token"``, RoboVLMs'
   policy-head formulation), or the masked mean of the hidden states (``"pooled"``). The step's
   proprioception, when given, is projected and added.
2. History: a registered history encoder ("lstm_history" / "transformer_history", causal) fuses the
   T steps; its per-step outputs are the fused sequence and its last step the fused vector.
3. Decoder: the registered RoboVLMs decoders — "fc_decoder" on the fused vector, "lstm_decoder" or
   "gpt_decoder" on the sequence — predict the chunk [B, H, A].
Action space: continuous (the decoders' pose MSE + gripper BCE) or discrete (each coordinate in one
of ``num_bins`` uniform bins over [-1, 1]; the decoder emits A·num_bins logits per step, trained with
cross-entropy, decoded to bin centres).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from librobot.core.errors import SpecError
from librobot.models import create_action_head, create_encoder
from librobot.models.action_heads.autoregressive.tokenizers import UniformBins
from librobot.models.frameworks.base import AbstractVLA, backbone_frozen
from librobot.models.frameworks.inputs import VLAInputs
from librobot.models.frameworks.robovlms.config import RoboVLMsConfig

HISTORY = {"lstm": "lstm_history", "transformer": "transformer_history"}


class RoboVLMsPolicy(AbstractVLA):
    config_class = RoboVLMsConfig
    registry_name = "robovlms"

    def __init__(self, vlm=None, action_dim=None, state_dim=None, config=None, **options) -> None:
        super().__init__(vlm, action_dim, state_dim, config, **options)
        c: RoboVLMsConfig = self.config
        width, d = self.vlm.get_embedding_dim(), c.history_dim
        self.act_token = nn.Parameter(torch.randn(1, 1, width) * 0.02) if c.step_feature == "act_token" else None
        self.state_in = nn.Linear(c.state_dim, width) if c.state_dim else None
        if c.history == "none":
            self.history, self.step_proj = None, nn.Linear(width, d)
        else:
            extra = {"max_len": max(256, c.n_obs_steps)} if c.history == "transformer" else {}
            self.history = create_encoder(HISTORY[c.history], input_dim=width, output_dim=d, hidden_dim=d, **extra)
        self.discrete = c.action_space == "discrete"
        self.bins = UniformBins(c.num_bins)
        out_dim = c.action_dim * c.num_bins if self.discrete else c.action_dim
        self.head = create_action_head(
            f"{c.decoder}_decoder",
            **{
                "action_dim": out_dim,
                "horizon": c.horizon,
                "cond_dim": d,
                "gripper_dims": list(c.gripper_dims),
                "gripper_weight": c.gripper_weight,
                **c.head,
            },
        )
        self._finish_init()

    # ------------------------------------------------------------------ features
    def step_features(self, inputs: VLAInputs) -> Tensor:
        """One feature per history step [B, T, D] (T = the latest ``n_obs_steps`` frames given)."""
        b, views, state = inputs.batch_size, inputs.views, inputs.state
        lengths = {v.shape[1] for v in views or []}
        if len(lengths) > 1:
            raise SpecError(
                f"cameras have different history lengths {sorted(lengths)}; give every camera the same T_obs"
            )
        available = lengths.pop() if views else (state.shape[1] if state is not None else 1)
        t = min(self.config.n_obs_steps, available)
        if state is not None and state.shape[1] < t:
            raise SpecError(
                f"observation.state has {state.shape[1]} history steps but the images have {available}; give both the same T_obs"
            )
        frames = None if views is None else [v[:, -t:].flatten(0, 1) for v in views]
        text = [s for s in inputs.text for _ in range(t)]  # sample-major, like the frames
        suffix = None if self.act_token is None else self.act_token.expand(b * t, -1, -1)
        if suffix is None and backbone_frozen(self.vlm):  # nothing of ours flows through the VLM
            with torch.no_grad():
                out = self.vlm(frames, text)
        else:
            out = self.vlm(frames, text, suffix_embeds=suffix)
        if suffix is not None:
            feats = out.hidden_states[:, -1]
        else:
            w = out.attention_mask.to(out.hidden_states.dtype).unsqueeze(-1)
            feats = (out.hidden_states * w).sum(1) / w.sum(1)
        feats = feats.view(b, t, -1).to(self._dtype)
        if self.state_in is not None:
            feats = feats + self.state_in(state[:, -t:])
        return feats

    @property
    def _dtype(self) -> torch.dtype:
        return next(self.head.parameters()).dtype

    def conditioning(self, inputs: VLAInputs) -> Tensor:
        feats = self.step_features(inputs)
        seq = self.step_proj(feats) if self.history is None else self.history(feats, return_sequence=True)
        # FC reads one fused vector (the causal history's last step); LSTM/GPT read the sequence
        if self.config.decoder == "fc" and self.history is not None:
            return seq[:, -1]
        return seq

    # ------------------------------------------------------------------ loss / sampling
    def _logits(self, cond: Tensor) -> Tensor:
        c = self.config
        raw = self.head.raw(self.head.condition(cond))
        return raw.view(raw.shape[0], c.horizon, c.action_dim, c.num_bins)

    def compute_loss(self, inputs: VLAInputs) -> dict[str, Tensor]:
        cond = self.conditioning(inputs)
        if not self.discrete:
            return self.head(cond, inputs.actions, action_is_pad=inputs.action_is_pad)
        logits = self._logits(cond)
        targets = self.bins.encode(inputs.actions).view(inputs.actions.shape)
        ce = F.cross_entropy(logits.flatten(0, 2).float(), targets.flatten(), reduction="none").view_as(targets)
        w = (~inputs.action_is_pad).to(ce.dtype).unsqueeze(-1).expand_as(ce)
        loss = (ce * w).sum() / w.sum().clamp_min(1.0)
        accuracy = ((logits.argmax(-1) == targets).to(w.dtype) * w).sum() / w.sum().clamp_min(1.0)
        return {"loss": loss, "ce": loss.detach(), "bin_accuracy": accuracy.detach()}

    def sample_actions(self, inputs: VLAInputs, generator: torch.Generator | None, noise: Tensor | None) -> Tensor:
        if noise is not None:
            raise SpecError("the RoboVLMs-style policy is deterministic and takes no noise")
        cond = self.conditioning(inputs)
        if not self.discrete:
            return self.head.predict(cond)
        c = self.config
        return self.bins.decode(self._logits(cond).argmax(-1).flatten(1), c.horizon, c.action_dim)
