"""librobot-robots stays torch-free: importing it, resolving its manifest and building every robot,
env and expert imports no torch (checked in a fresh interpreter)."""

from __future__ import annotations

import json
import subprocess
import sys

CODE = r"""
import json, sys
import librobot.robots as R
light = sorted(m for m in ("torch", "gymnasium", "mujoco", "serial", "can", "cv2", "metaworld") if m in sys.modules)
for name in R.__all__:
    getattr(R, name)
from librobot.core.registry import get_registry
resolved = {}
for cat in ("robot", "env", "expert", "driver"):
    ours = [e for e in get_registry(cat).entries() if (e.target or "").startswith("librobot.robots.")]
    for e in ours:
        get_registry(cat).get(e.name)  # imports the target: a typo in the manifest fails here
    resolved[cat] = len(ours)
robots = {n: R.create_robot(n).spec.action_dim for n in R.list_robots()}
envs = {}
for name in R.list_envs():
    env = R.make_env(name, render=False)
    expert = R.make_expert(get_registry("env").entry(name).meta["expert"], env)
    envs[name] = expert is not None
    env.close()
for name in ("metaworld-push", "so100-pick-cube", "pusht", "wheel-loader-dig-dump"):
    env = R.make_env(name, render=True)
    obs, _ = env.reset(seed=0)
    env.step(env.action_space.sample())
    env.close()
print(json.dumps({"light": light, "resolved": resolved, "robots": robots, "envs": len(envs), "torch": "torch" in sys.modules}))
"""


def test_import_and_every_robot_env_and_expert_import_no_torch():
    result = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["light"] == []  # `import librobot.robots` loads no simulator, hardware library or torch
    assert report["torch"] is False
    assert report["robots"] == {"humanoid": 23, "so100_arm": 6, "wheel_loader": 6}
    assert report["resolved"] == {"robot": 3, "env": 53, "expert": 5, "driver": 6}
    assert report["envs"] == 53
