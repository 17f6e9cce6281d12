"""Helix-style framework: a slow "system 2" VLM emits latent tokens at a low rate; a fast "system 1"
visuomotor policy (own image encoder + state) runs at control rate on the latest latent."""

REGISTRY = {
    "name": "helix",
    "target": "model:HelixStyle",
    "aliases": ["helix_style"],
    "doc": "Helix-style: slow VLM latent (system 2) + fast visuomotor policy (system 1); HelixRunner steps both",
}


def __getattr__(name: str):  # lazy, so the manifest's import of REGISTRY stays torch-free
    if name == "HelixRunner":
        from librobot.models.frameworks.helix.runner import HelixRunner

        return HelixRunner
    if name == "HelixStyle":
        from librobot.models.frameworks.helix.model import HelixStyle

        return HelixStyle
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
