"""LibroBot VLA data: zarr episode store, LeRobot/RLDS/HDF5/zarr readers and writers, sampling, transforms, statistics, tokenizers."""

__version__ = "0.1.0"
