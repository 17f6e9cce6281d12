"""Octo-style framework: one block-wise causal transformer over task tokens, a history window of
observation tokens and per-frame readout tokens, with a diffusion head on the readouts."""

REGISTRY = {
    "name": "octo",
    "target": "model:OctoStyle",
    "aliases": ["octo_style"],
    "doc": "Octo-style: block-wise transformer over task, observation-history and readout tokens; diffusion head",
}
