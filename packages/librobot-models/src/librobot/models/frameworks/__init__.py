"""The VLA frameworks behind one API (``create_vla(name, vlm=..., action_dim=..., state_dim=...)``).

``create_vla``/``register_vla``/``list_vlas`` are re-exported here (and in ``.registry``) because
the seed documents import them from these paths; they are the ones in ``librobot.models``.
"""

from librobot.models import create_vla, list_vlas, register_vla

__all__ = ["create_vla", "list_vlas", "register_vla"]
