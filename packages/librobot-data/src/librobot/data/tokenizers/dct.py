"""Orthonormal DCT-II along one axis, as a cached matrix product (horizons are short)."""

from __future__ import annotations

import functools

import numpy as np


@functools.lru_cache(maxsize=32)
def dct_matrix(n: int) -> np.ndarray:
    """D with D @ x the orthonormal DCT-II of x (D @ D.T = I, so D.T is the inverse)."""
    k = np.arange(n)[:, None]
    t = np.arange(n)[None, :]
    matrix = np.sqrt(2.0 / n) * np.cos(np.pi * (2 * t + 1) * k / (2 * n))
    matrix[0] /= np.sqrt(2.0)
    matrix.setflags(write=False)
    return matrix


def dct(x: np.ndarray, axis: int = 0) -> np.ndarray:
    x = np.moveaxis(np.asarray(x, dtype=np.float64), axis, 0)
    return np.moveaxis(np.tensordot(dct_matrix(x.shape[0]), x, axes=1), 0, axis)


def idct(c: np.ndarray, axis: int = 0) -> np.ndarray:
    c = np.moveaxis(np.asarray(c, dtype=np.float64), axis, 0)
    return np.moveaxis(np.tensordot(dct_matrix(c.shape[0]).T, c, axes=1), 0, axis)
