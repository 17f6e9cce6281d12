"""librobot-kernels: attention and diffusion/flow sampling ops with one public API.

Models call only these names. Every op has a pure-torch reference in ``librobot.kernels.reference``
(the specification); faster backends must match it.
"""

from librobot.kernels.reference import (
    attention,
    attention_with_prefix,
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

__version__ = "0.1.0"

__all__ = [
    "attention",
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
