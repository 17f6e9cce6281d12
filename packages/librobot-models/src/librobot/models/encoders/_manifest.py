"""Torch-free registry entries for encoders (category "encoder") and fusion modules ("fusion")."""

from __future__ import annotations

from librobot.core.registry import get_registry

_P = "librobot.models.encoders"

ENCODERS: tuple[tuple[str, str, tuple[str, ...], str], ...] = (
    ("mlp_state", f"{_P}.state:MLPStateEncoder", ("state_mlp", "mlp_encoder"), "MLP state encoder"),
    ("transformer_state", f"{_P}.state:TransformerStateEncoder", ("state_transformer",), "Transformer state encoder"),
    ("lstm_history", f"{_P}.history:LSTMHistoryEncoder", ("history_lstm", "lstm"), "LSTM history encoder"),
    (
        "transformer_history",
        f"{_P}.history:TransformerHistoryEncoder",
        ("history_transformer",),
        "Transformer history encoder",
    ),
    (
        "perceiver_resampler",
        f"{_P}.perceiver:PerceiverResampler",
        ("perceiver", "resampler"),
        "Flamingo perceiver resampler",
    ),
    ("resnet18", f"{_P}.image:resnet18", ("resnet18_image",), "ResNet-18-style image encoder (no torchvision)"),
    ("resnet", f"{_P}.image:ResNetEncoder", ("resnet_encoder",), "ResNet image encoder with configurable depth"),
    ("vit", f"{_P}.image:ViTEncoder", ("vit_encoder",), "Vision transformer image encoder"),
    ("attention_fusion", f"{_P}.fusion:CrossAttentionFusion", ("cross_attention_fusion",), "Cross-attention fusion"),
    ("film_fusion", f"{_P}.fusion:FiLMFusion", (), "FiLM fusion"),
)

FUSION: tuple[tuple[str, str, tuple[str, ...], str], ...] = (
    (
        "cross_attention",
        f"{_P}.fusion:CrossAttentionFusion",
        ("attention", "attention_fusion"),
        "Cross-attention fusion",
    ),
    ("film", f"{_P}.fusion:FiLMFusion", ("film_fusion",), "FiLM fusion"),
)


def register() -> None:
    for category, entries in (("encoder", ENCODERS), ("fusion", FUSION)):
        registry = get_registry(category)
        for name, target, aliases, doc in entries:
            registry.register_lazy(name, target, aliases=aliases, doc=doc, source="librobot-models")
