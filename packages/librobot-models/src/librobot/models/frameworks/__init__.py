"""The VLA frameworks behind one API (``create_vla(name, vlm=..., action_dim=..., state_dim=...)``)."""
