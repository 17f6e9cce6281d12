"""LibroBot VLA model zoo: components, encoders, action heads, VLM backbones, adapters and the VLA frameworks."""

__version__ = "0.1.0"
