"""Backends behind the dispatcher: reference (torch), cpu (C++/OpenMP), cuda, triton.

Each is a ``librobot.kernels._dispatch.Backend``; they are created lazily by ``get_backend``.
"""
