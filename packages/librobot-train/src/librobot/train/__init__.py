"""LibroBot VLA training: one trainer from a laptop to many GPUs, exact resume, closed-loop evaluation, the demo."""

__version__ = "0.1.0"
