"""MuJoCo import and offscreen rendering settings shared by the MuJoCo-based environments."""

from __future__ import annotations

import os
import sys
from typing import Any

from librobot.core.errors import ConfigError
from librobot.core.extras import require


def import_mujoco(extra: str = "librobot-robots[sim]") -> Any:
    """Import mujoco (headless EGL was chosen when ``librobot.robots.sim`` was imported); OSMesa,
    when asked for, also needs PyOpenGL told before the import."""
    if os.environ.get("MUJOCO_GL") == "osmesa":
        os.environ.setdefault("PYOPENGL_PLATFORM", "osmesa")
    return require("mujoco", extra=extra, purpose="MuJoCo simulation")


def _load_triton_before_software_gl() -> None:
    """Mesa's software GL (llvmpipe) loads its own LLVM; Triton, loading its bundled LLVM after
    that, segfaults the process (torch imports Triton on first use of torch.export/compile, so an
    evaluation with videos followed by an ONNX export crashed). Loaded first, both work."""
    import importlib.util

    if os.environ.get("MUJOCO_GL", "").lower() in ("egl", "osmesa") and "triton" not in sys.modules:
        if importlib.util.find_spec("triton") is not None:
            import triton  # noqa: F401


def make_renderer(model: Any, height: int, width: int) -> Any:
    """An offscreen renderer; shadows and multisampling off first (5-15x faster in software GL)."""
    mujoco = import_mujoco()
    _load_triton_before_software_gl()
    model.light_castshadow[:] = 0
    model.vis.quality.offsamples = 0
    model.vis.global_.offwidth = max(int(model.vis.global_.offwidth), width)
    model.vis.global_.offheight = max(int(model.vis.global_.offheight), height)
    try:
        return mujoco.Renderer(model, height=height, width=width)
    except Exception as exc:
        from librobot.robots import sim

        if sim.GL_CHOSEN_AFTER_MUJOCO_IMPORT:  # MUJOCO_GL was set after mujoco chose its backend
            raise ConfigError(
                "MuJoCo was imported (by metaworld or your code) before MUJOCO_GL was set, so it cannot "
                "render without a display: run with MUJOCO_GL=egl (or osmesa) in the environment, or "
                "import librobot.robots.sim before mujoco/metaworld"
            ) from exc
        raise


def camera_upside_down(model: Any, camera: str) -> bool:
    """True when the camera's up axis points down (some Meta-World cameras): the image needs a 180° turn."""
    cam_id = model.camera(camera).id
    return bool(model.cam_mat0[cam_id].reshape(3, 3)[2, 1] < 0)
