"""RT-2-style framework: actions written into the VLM's own vocabulary as reserved token ids,
decoded autoregressively with the KV cache (constrained to action ids) and detokenised."""

REGISTRY = {
    "name": "rt2",
    "target": "model:RT2Style",
    "aliases": ["rt2_style", "rt-2"],
    "doc": "RT-2-style: actions as reserved VLM vocabulary tokens (uniform bins or FAST), constrained KV-cached decoding",
}
