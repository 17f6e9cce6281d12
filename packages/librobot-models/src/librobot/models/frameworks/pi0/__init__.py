"""π0-style framework: a VLM prefix and a smaller action expert sharing attention with it under a
block-wise mask, trained by flow matching; the prefix KV cache is computed once per observation and
reused at every denoising step."""

REGISTRY = {
    "name": "pi0",
    "target": "model:Pi0Style",
    "aliases": ["pi0_style", "π0", "pi_zero"],
    "doc": "π0-style: VLM prefix + action expert (shared block-wise attention), flow matching, cached prefix",
}
