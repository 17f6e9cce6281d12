"""Cameras: the synthetic camera's exact frames, OpenCV capture from a real video file, robots with cameras."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from librobot.robots import OpenCVCamera, SyntheticCamera, create_robot
from librobot.robots.drivers.cameras import CameraError


def test_synthetic_camera_frames_are_deterministic():
    cam = SyntheticCamera("wrist", 32, 48, seed=3)
    with pytest.raises(CameraError, match="not connected"):
        cam.read()
    cam.connect()
    f0, f1 = cam.read(), cam.read()
    assert f0.shape == (32, 48, 3) and f0.dtype == np.uint8
    side = 4
    assert (f0[0:side, 0:side] == 255).all() and (f1[0:side, 1 : 1 + side] == 255).all()
    assert f1[0, 0, 0] == 0  # the square moved one pixel right, uncovering the gradient
    other = SyntheticCamera("wrist", 32, 48, seed=3)
    other.connect()
    np.testing.assert_array_equal(other.read(), f0)


def test_opencv_camera_reads_and_resizes_a_real_video(tmp_path):
    path = str(tmp_path / "clip.avi")
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    colours_rgb = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    for rgb in colours_rgb:
        frame = np.zeros((48, 64, 3), np.uint8)
        frame[:] = rgb[::-1]  # OpenCV writes BGR
        writer.write(frame)
    writer.release()
    cam = OpenCVCamera("front", source=path, height=24, width=32)
    cam.connect()
    for rgb in colours_rgb:
        frame = cam.read()
        assert frame.shape == (24, 32, 3) and frame.dtype == np.uint8
        np.testing.assert_allclose(frame.reshape(-1, 3).mean(axis=0), rgb, atol=12)  # RGB order, JPEG-lossy
    with pytest.raises(CameraError, match="end of stream"):
        cam.read()
    cam.disconnect()
    with pytest.raises(CameraError, match="cannot open source"):
        OpenCVCamera("x", source=str(tmp_path / "missing.avi")).connect()


class _Still:
    def connect(self): ...
    def disconnect(self): ...
    def read_state(self):
        return np.zeros(12)

    def write_action(self, a): ...


def test_robot_observation_includes_camera_images():
    robot = create_robot("so100", cameras={"wrist": SyntheticCamera("wrist", 16, 20)})
    robot.backend = _Still()
    assert robot.cameras == ("wrist",)
    assert robot.spec.features()["observation.images.wrist"].shape == (3, 16, 20)
    with robot:
        obs = robot.get_observation()
    assert set(obs) == {"observation.state", "observation.images.wrist"}
    assert obs["observation.images.wrist"].shape == (16, 20, 3)
