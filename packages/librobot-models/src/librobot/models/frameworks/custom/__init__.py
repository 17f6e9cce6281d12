"""Custom framework: any composition of a registered VLM, encoders (state, history, image), a fusion
and an action head, assembled from a config (a YAML file or keyword arguments) alone."""

REGISTRY = {
    "name": "custom",
    "target": "model:CustomVLA",
    "aliases": ["custom_vla"],
    "doc": "Custom: registered VLM + encoders + fusion + head, composed from config (see configs/custom/)",
}


def __getattr__(name: str):  # lazy, so the manifest's import of REGISTRY stays torch-free
    if name in ("vla_from_config", "load_custom_config"):
        from librobot.models.frameworks.custom import builder

        return getattr(builder, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
