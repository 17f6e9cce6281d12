"""Simulated environments (gymnasium) with scripted experts, and the torch-free recording API.

Environments and experts are registered lazily in the core registry (categories ``env`` and
``expert``); each module imports its simulator (MuJoCo, Meta-World, gym-pusht) only when used.
See ``librobot.robots.sim.api`` for recording episodes and measuring expert success.
"""
