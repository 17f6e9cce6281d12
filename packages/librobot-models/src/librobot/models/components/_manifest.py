"""Torch-free registry entries for the building blocks (category "component")."""

from __future__ import annotations

from librobot.core.registry import get_registry

_P = "librobot.models.components"

ENTRIES: tuple[tuple[str, str, tuple[str, ...], str], ...] = (
    (
        "attention",
        f"{_P}.attention:Attention",
        ("multi_head_attention", "mha"),
        "Multi-head attention (self/cross, GQA, RoPE, ALiBi, KV cache) over librobot.kernels",
    ),
    ("standard_attention", f"{_P}.attention:standard_attention", (), "Attention via the kernels' reference op"),
    (
        "flash_attention",
        f"{_P}.attention:flash_attention",
        ("flash",),
        "Attention via the kernels dispatcher (fastest backend)",
    ),
    (
        "sliding_window_attention",
        f"{_P}.attention:sliding_window_attention",
        ("sliding_window",),
        "Causal sliding-window attention",
    ),
    (
        "block_wise_attention",
        f"{_P}.attention:block_wise_attention",
        ("blockwise_attention", "prefix_lm_attention"),
        "Block-wise (prefix-LM) attention",
    ),
    ("attention_pool", f"{_P}.attention:AttentionPool", (), "Learned queries pooling a token sequence"),
    ("rmsnorm", f"{_P}.normalization:RMSNorm", ("rms_norm",), "RMSNorm"),
    ("layernorm", f"{_P}.normalization:LayerNorm", ("layer_norm",), "LayerNorm"),
    ("groupnorm", f"{_P}.normalization:GroupNorm", ("group_norm",), "GroupNorm (channel-first or channel-last)"),
    (
        "sinusoidal",
        f"{_P}.positional:SinusoidalPositionalEmbedding",
        ("sinusoidal_positional",),
        "Fixed sinusoidal positions",
    ),
    ("learned_positional", f"{_P}.positional:LearnedPositionalEmbedding", (), "Learned position table"),
    ("rope", f"{_P}.positional:RotaryEmbedding", ("rotary",), "Rotary position embedding"),
    ("alibi", f"{_P}.positional:ALiBi", (), "ALiBi slopes and reference bias"),
    ("timestep_embedding", f"{_P}.positional:TimestepEmbedding", (), "Sinusoidal + MLP diffusion/flow time embedding"),
    ("mlp", f"{_P}.mlp:MLP", (), "Multi-layer perceptron"),
    ("feed_forward", f"{_P}.mlp:FeedForward", ("ffn",), "Transformer feed-forward (gelu/relu/silu/swiglu/geglu)"),
    ("swiglu", f"{_P}.mlp:SwiGLU", (), "SwiGLU gated activation"),
    ("geglu", f"{_P}.mlp:GeGLU", (), "GeGLU gated activation"),
    ("film", f"{_P}.conditioning:FiLM", (), "FiLM conditioning layer"),
    ("adaln", f"{_P}.conditioning:AdaLNModulation", ("adaptive_layernorm", "adaln_zero"), "adaLN-Zero modulation"),
    (
        "transformer_block",
        f"{_P}.transformer:TransformerBlock",
        ("dit_block",),
        "Pre-norm block: self-attn, cross-attn, FF, adaLN",
    ),
    ("transformer", f"{_P}.transformer:Transformer", (), "Stack of transformer blocks"),
)


def register() -> None:
    registry = get_registry("component")
    for name, target, aliases, doc in ENTRIES:
        registry.register_lazy(name, target, aliases=aliases, doc=doc, source="librobot-models")
