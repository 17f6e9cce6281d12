"""A tiny numpy rasteriser for top-down views (discs and rotated boxes), no graphics library."""

from __future__ import annotations

import math

import numpy as np


class Canvas:
    """``size``×``size`` RGB image showing ``metres`` of the world around ``centre`` (x right, y up)."""

    def __init__(self, size: int, centre: np.ndarray, metres: float, background: tuple[int, int, int]) -> None:
        self.size = size
        self.image = np.empty((size, size, 3), dtype=np.uint8)
        self.image[:] = background
        scale = metres / size
        cols = (np.arange(size) + 0.5) * scale - metres / 2 + float(centre[0])
        rows = metres / 2 - (np.arange(size) + 0.5) * scale + float(centre[1])
        self.px, self.py = np.meshgrid(cols, rows)  # world coordinates of each pixel centre

    def disc(self, centre: np.ndarray, radius: float, colour: tuple[int, int, int]) -> None:
        mask = (self.px - centre[0]) ** 2 + (self.py - centre[1]) ** 2 <= radius * radius
        self.image[mask] = colour

    def box(self, centre: np.ndarray, yaw: float, length: float, width: float, colour: tuple[int, int, int]) -> None:
        c, s = math.cos(yaw), math.sin(yaw)
        dx, dy = self.px - centre[0], self.py - centre[1]
        mask = (np.abs(c * dx + s * dy) <= length / 2) & (np.abs(-s * dx + c * dy) <= width / 2)
        self.image[mask] = colour
