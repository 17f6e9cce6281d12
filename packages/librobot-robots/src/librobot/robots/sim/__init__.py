"""Simulated environments (gymnasium) with scripted experts, and the torch-free recording API.

Environments and experts are registered lazily in the core registry (categories ``env`` and
``expert``); each module imports its simulator (MuJoCo, Meta-World, gym-pusht) only when used.
See ``librobot.robots.sim.api`` for recording episodes and measuring expert success.
"""

import os as _os
import sys as _sys

# headless Linux: MuJoCo must be told to render through EGL before anything imports it (it picks
# its GL backend at import; if something imported it first, the renderer's error says so)
GL_CHOSEN_AFTER_MUJOCO_IMPORT = False
if _sys.platform.startswith("linux") and not _os.environ.get("DISPLAY"):
    GL_CHOSEN_AFTER_MUJOCO_IMPORT = "mujoco" in _sys.modules and "MUJOCO_GL" not in _os.environ
    _os.environ.setdefault("MUJOCO_GL", "egl")
