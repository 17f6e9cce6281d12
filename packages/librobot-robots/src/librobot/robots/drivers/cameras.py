"""Cameras: OpenCV capture (device index, device path, video file or stream URL) and a synthetic
camera that needs no hardware. Both return RGB uint8 frames [H, W, 3]."""

from __future__ import annotations

from typing import Any

import numpy as np

from librobot.core.errors import ConfigError, LibroBotError
from librobot.core.extras import require


class CameraError(LibroBotError, OSError):
    """A camera could not be opened or returned no frame."""


class SyntheticCamera:
    """Deterministic frames: a colour gradient with a bright square that moves one pixel per frame.

    Frame ``k`` depends only on (seed, k), so tests can check exact pixels.
    """

    def __init__(self, name: str = "synthetic", height: int = 96, width: int = 96, *, seed: int = 0) -> None:
        if height < 8 or width < 8:
            raise ConfigError(f"synthetic camera '{name}': need at least 8x8 pixels, got {height}x{width}")
        self.name, self.height, self.width = name, int(height), int(width)
        rng = np.random.default_rng(seed)
        self._tint = rng.integers(0, 256, size=3)
        yy, xx = np.mgrid[0 : self.height, 0 : self.width]
        self._base = np.stack(
            [
                xx * 255 // max(1, self.width - 1),
                yy * 255 // max(1, self.height - 1),
                np.full_like(xx, int(self._tint[2])),
            ],
            axis=-1,
        ).astype(np.uint8)
        self.frame_index = 0
        self._open = False

    def connect(self) -> None:
        self._open = True

    def disconnect(self) -> None:
        self._open = False

    def square_origin(self, k: int) -> tuple[int, int]:
        side = max(2, min(self.height, self.width) // 8)
        return (k // (self.width - side)) % (self.height - side), k % (self.width - side)

    def read(self) -> np.ndarray:
        if not self._open:
            raise CameraError(f"camera '{self.name}' is not connected; call connect() first")
        frame = self._base.copy()
        side = max(2, min(self.height, self.width) // 8)
        r, c = self.square_origin(self.frame_index)
        frame[r : r + side, c : c + side] = 255
        self.frame_index += 1
        return frame


class OpenCVCamera:
    """A camera read through OpenCV: ``source`` is a device index, a /dev/video path, a file or a URL.

    Frames are converted BGR → RGB and resized to (height, width) when the device delivers another
    size (many webcams ignore the requested resolution).
    """

    def __init__(
        self, name: str = "front", source: int | str = 0, height: int = 480, width: int = 640, fps: float | None = None
    ) -> None:
        self.name, self.source, self.height, self.width, self.fps = name, source, int(height), int(width), fps
        self._cap: Any = None
        self._cv2: Any = None

    def connect(self) -> None:
        cv2 = require("cv2", extra="librobot-robots[camera]", purpose="reading cameras through OpenCV")
        cap = cv2.VideoCapture(self.source)
        if not cap.isOpened():
            raise CameraError(
                f"camera '{self.name}': OpenCV cannot open source {self.source!r}; check the index/path and permissions"
            )
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        if self.fps:
            cap.set(cv2.CAP_PROP_FPS, self.fps)
        self._cap, self._cv2 = cap, cv2

    def read(self) -> np.ndarray:
        if self._cap is None:
            raise CameraError(f"camera '{self.name}' is not connected; call connect() first")
        ok, frame = self._cap.read()
        if not ok or frame is None:
            raise CameraError(
                f"camera '{self.name}': no frame from {self.source!r} (device unplugged or end of stream)"
            )
        if frame.shape[:2] != (self.height, self.width):
            frame = self._cv2.resize(frame, (self.width, self.height), interpolation=self._cv2.INTER_AREA)
        return self._cv2.cvtColor(frame, self._cv2.COLOR_BGR2RGB)

    def disconnect(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
