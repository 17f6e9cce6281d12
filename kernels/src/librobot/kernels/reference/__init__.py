"""Pure-torch reference ops: the specification of every kernel and the fallback when no compiled
backend accepts an input."""

from librobot.kernels.reference.attention import attention, attention_mask, attention_with_prefix
from librobot.kernels.reference.sampling import (
    ddim_sample,
    ddim_step,
    ddpm_sample,
    ddpm_step,
    edm_euler_step,
    edm_heun_step,
    edm_sample,
    euler_step,
    flow_sample,
    heun_step,
)

__all__ = [
    "attention",
    "attention_mask",
    "attention_with_prefix",
    "ddim_sample",
    "ddim_step",
    "ddpm_sample",
    "ddpm_step",
    "edm_euler_step",
    "edm_heun_step",
    "edm_sample",
    "euler_step",
    "flow_sample",
    "heun_step",
]
