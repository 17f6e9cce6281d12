"""autoregressive action head: config.py (dataclass that builds it) and model.py."""
