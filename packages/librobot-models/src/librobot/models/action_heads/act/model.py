"""ACT head: a conditional VAE over action chunks with transformer encoder and decoder.

Training: the encoder reads [CLS, pooled conditioning, action tokens] and outputs q(z | a, c);
the decoder maps (z, conditioning tokens) to the chunk through learned per-step queries; loss =
reconstruction (L1) + β·KL(q ‖ N(0, I)). Inference: z = 0, the prior mean (ACT's choice, a
deterministic chunk), or a draw from the prior with ``sample_latent=True``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from librobot.models.action_heads.act.config import ACTConfig
from librobot.models.action_heads.base import ActionHeadBase, Conditioning, masked_mean
from librobot.models.components.positional import sinusoidal_embedding
from librobot.models.components.transformer import Transformer


class ACTHead(ActionHeadBase):
    config_class = ACTConfig
    config: ACTConfig

    def __init__(self, config: ACTConfig | dict | None = None, **overrides) -> None:
        super().__init__(config, **overrides)
        c = self.config
        d = c.hidden_dim
        block = dict(mlp=c.mlp, dropout=c.dropout)
        # CVAE encoder
        self.enc_cls = nn.Parameter(torch.randn(1, 1, d) * 0.02)
        self.enc_cond = nn.Linear(c.cond_dim, d)
        self.enc_action = nn.Linear(c.action_dim, d)
        # learned positions/queries start sinusoidal: distinct per step from the first update
        self.enc_pos = nn.Parameter(
            sinusoidal_embedding(torch.arange(c.horizon + 2, dtype=torch.float32), d).unsqueeze(0)
        )
        self.encoder = Transformer(d, c.encoder_depth, c.num_heads, **block)
        self.to_latent = nn.Linear(d, 2 * c.latent_dim)
        # decoder
        self.mem_cond = nn.Linear(c.cond_dim, d)
        self.mem_latent = nn.Linear(c.latent_dim, d)
        self.mem_type = nn.Parameter(torch.randn(1, 2, d) * 0.02)  # latent vs conditioning token
        self.queries = nn.Parameter(sinusoidal_embedding(torch.arange(c.horizon, dtype=torch.float32), d).unsqueeze(0))
        self.decoder = Transformer(d, c.decoder_depth, c.num_heads, cross_attention=True, **block)
        self.out = nn.Linear(d, c.action_dim)

    def encode(self, c: Conditioning, actions: Tensor, valid: Tensor | None) -> tuple[Tensor, Tensor]:
        """q(z | actions, cond): (mu, logvar), each [B, latent_dim]."""
        b = c.batch_size
        tokens = (
            torch.cat(
                [self.enc_cls.expand(b, -1, -1), self.enc_cond(c.pooled).unsqueeze(1), self.enc_action(actions)], dim=1
            )
            + self.enc_pos
        )
        mask = None
        if valid is not None:  # padded steps are hidden from the encoder
            mask = torch.cat([torch.ones(b, 2, dtype=torch.bool, device=actions.device), valid > 0], dim=1)
        h = self.encoder(tokens, key_padding_mask=mask)
        mu, logvar = self.to_latent(h[:, 0]).chunk(2, dim=-1)
        return mu, logvar.clamp(-10, 10)

    def decode(self, c: Conditioning, z: Tensor) -> Tensor:
        b = c.batch_size
        memory = torch.cat(
            [self.mem_latent(z).unsqueeze(1) + self.mem_type[:, :1], self.mem_cond(c.tokens) + self.mem_type[:, 1:]],
            dim=1,
        )
        mask = None
        if c.mask is not None:
            mask = torch.cat([torch.ones(b, 1, dtype=torch.bool, device=z.device), c.mask], dim=1)
        h = self.decoder(self.queries.expand(b, -1, -1), context=memory, context_mask=mask)
        return self.out(h)

    def forward(
        self,
        cond: Tensor,
        actions: Tensor,
        *,
        cond_mask: Tensor | None = None,
        action_is_pad: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> dict[str, Tensor]:
        c, valid = self._prep(cond, cond_mask, actions, action_is_pad)
        mu, logvar = self.encode(c, actions, valid)
        eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device=mu.device)
        pred = self.decode(c, mu + (0.5 * logvar).exp() * eps)
        err = (pred - actions).abs() if self.config.loss == "l1" else (pred - actions).pow(2)
        recon = masked_mean(err, valid)
        kl = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp())).sum(dim=-1).mean()
        return {"loss": recon + self.config.kl_weight * kl, "recon": recon.detach(), "kl": kl.detach()}

    @torch.no_grad()
    def predict(
        self,
        cond: Tensor,
        *,
        cond_mask: Tensor | None = None,
        generator: torch.Generator | None = None,
        noise: Tensor | None = None,
        sample_latent: bool = False,
    ) -> Tensor:
        """z = 0 (prior mean), or ``noise`` [B, latent_dim] / a prior draw with ``sample_latent``."""
        c = self.condition(cond, cond_mask)
        shape = (c.batch_size, self.config.latent_dim)
        if noise is not None:
            if tuple(noise.shape) != shape:
                from librobot.core.errors import SpecError

                raise SpecError(f"ACT noise is the latent z: expected {list(shape)}, got {list(noise.shape)}")
            z = noise.to(c.pooled.dtype)
        elif sample_latent:
            z = torch.randn(shape, generator=generator, dtype=c.pooled.dtype, device=c.pooled.device)
        else:
            z = torch.zeros(shape, dtype=c.pooled.dtype, device=c.pooled.device)
        return self.decode(c, z)
