"""Torch-free registry entries for action heads (category "action_head"), with the seeds' names."""

from __future__ import annotations

from librobot.core.registry import get_registry

_P = "librobot.models.action_heads"

ENTRIES: tuple[tuple[str, str, tuple[str, ...], str], ...] = (
    ("mlp_oft", f"{_P}.mlp.model:MLPHead", ("mlp", "oft", "mlp_head"), "Parallel chunk MLP, L1 (OpenVLA-OFT)"),
    (
        "act",
        f"{_P}.act.model:ACTHead",
        ("transformer_act", "transformer", "cvae"),
        "ACT: transformer CVAE with KL term",
    ),
    (
        "autoregressive",
        f"{_P}.autoregressive.model:AutoregressiveHead",
        ("ar", "uniform_tokens", "rt2_tokens"),
        "Autoregressive 256-bin action tokens (RT-2/OpenVLA)",
    ),
    (
        "fast",
        f"{_P}.autoregressive.model:fast_head",
        ("autoregressive_fast", "fast_tokens"),
        "Autoregressive FAST tokens (DCT + BPE; tokenizer from librobot-data)",
    ),
    (
        "diffusion",
        f"{_P}.diffusion.model:DiffusionHead",
        ("diffusion_transformer", "dit"),
        "DiT diffusion head (epsilon/EDM)",
    ),
    ("ddpm", f"{_P}.diffusion.model:ddpm_head", (), "Diffusion head, ancestral DDPM sampling"),
    ("ddim", f"{_P}.diffusion.model:ddim_head", (), "Diffusion head, DDIM sampling"),
    ("edm", f"{_P}.diffusion.model:edm_head", (), "Diffusion head, EDM formulation"),
    (
        "flow_matching",
        f"{_P}.flow_matching.model:FlowMatchingHead",
        ("rectified_flow", "flow"),
        "Flow matching (rectified flow)",
    ),
    (
        "ot_cfm",
        f"{_P}.flow_matching.model:ot_cfm_head",
        ("otcfm", "optimal_transport_cfm"),
        "OT-CFM: minibatch optimal-transport coupling",
    ),
    ("fc_decoder", f"{_P}.robovlms.model:FCDecoderHead", ("fc",), "RoboVLMs FC decoder (pose MSE + gripper BCE)"),
    ("lstm_decoder", f"{_P}.robovlms.model:LSTMDecoderHead", (), "RoboVLMs LSTM decoder over the history"),
    ("gpt_decoder", f"{_P}.robovlms.model:GPTDecoderHead", ("gpt",), "RoboVLMs GPT-style decoder"),
    (
        "hybrid",
        f"{_P}.hybrid.model:HybridHead",
        ("bet", "discrete_continuous"),
        "Discrete coarse bins + continuous offsets (BeT-style)",
    ),
)


def register() -> None:
    registry = get_registry("action_head")
    for name, target, aliases, doc in ENTRIES:
        registry.register_lazy(name, target, aliases=aliases, doc=doc, source="librobot-models")
