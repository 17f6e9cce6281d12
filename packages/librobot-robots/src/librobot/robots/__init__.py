"""LibroBot VLA robots: robot definitions, safety layer, drivers and simulated tasks (torch-free, for the edge)."""

__version__ = "0.1.0"
