"""Triton kernels (imported only when triton is importable; see backends/triton.py).

Whether they run compiled (CUDA tensors) or in Triton's interpreter (CPU tensors, for tests) is
fixed when this package is imported: TRITON_INTERPRET=1 must be set before that.
"""

import os

import triton

try:
    INTERPRET = bool(triton.knobs.runtime.interpret)
except AttributeError:  # older triton without knobs
    INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"
