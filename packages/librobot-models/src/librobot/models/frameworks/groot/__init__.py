"""GR00T-style framework: frozen VLM tokens + a state encoder that bypasses the VLM, feeding a
DiT action head trained with flow matching."""

REGISTRY = {
    "name": "groot",
    "target": "model:GR00TStyle",
    "aliases": ["groot_style", "gr00t"],
    "doc": "GR00T-style: frozen VLM + state encoder + flow-matching DiT head",
}
