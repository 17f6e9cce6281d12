"""Triton kernels on CPU tensors under TRITON_INTERPRET=1 (float32/float16; the interpreter gets
bfloat16 tl.dot wrong). The variable must be set before triton is imported, so the checks run in a
fresh interpreter process that prints each case's max error against the float64 reference."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from librobot.core.extras import is_available

SCRIPT = r"""
import json, sys, torch
import librobot.kernels as K
from librobot.kernels import reference as R
from librobot.kernels._dispatch import get_backend
seed = int(sys.argv[1])
g = torch.Generator().manual_seed(seed)
errors = {}

def err(got, want):
    return float((got.double() - want).abs().max())  # NaN (an unwritten element) propagates

for dname, dt in (("float32", torch.float32), ("float16", torch.float16)):
    b, hq, hkv, lq, lk, d = 2, 4, 2, 7, 37, 16
    q = torch.randn(b, hq, lq, d, generator=g).to(dt)
    k, v = (torch.randn(b, hkv, lk, d, generator=g).to(dt) for _ in range(2))
    pad = torch.rand(b, lk, generator=g) > 0.4
    pad[1] = False
    cases = {"none": {}, "causal_window": {"causal": True, "window": 4},
             "blocks": {"q_blocks": torch.randint(0, 3, (b, lq), generator=g),
                        "kv_blocks": torch.randint(0, 3, (b, lk), generator=g)},
             "padding": {"key_padding_mask": pad}}
    for name, kw in cases.items():
        out = torch.full(q.shape, float("nan"), dtype=dt)
        K.attention(q, k, v, backend="triton", out=out, **kw)
        errors[f"attention/{name}/{dname}"] = err(out, R.attention(q.double(), k.double(), v.double(), **kw))
    q64 = torch.randn(1, 2, 5, 64, generator=g).to(dt)
    kp, vp = (torch.randn(1, 2, 19, 64, generator=g).to(dt) for _ in range(2))
    ppad = torch.rand(1, 19, generator=g) > 0.3
    out = torch.full(q64.shape, float("nan"), dtype=dt)
    K.attention_with_prefix(q64, q64, q64, kp, vp, prefix_padding_mask=ppad, causal=True, backend="triton", out=out)
    want = R.attention_with_prefix(q64.double(), q64.double(), q64.double(), kp.double(), vp.double(),
                                   prefix_padding_mask=ppad, causal=True)
    errors[f"prefix/{dname}"] = err(out, want)

    x, e, z, w = (torch.randn(3, 50, 32, generator=g).to(dt) for _ in range(4))
    dbl = lambda *a: [t.double() for t in a]
    steps = {
        "ddpm_clip": (lambda o: K.ddpm_step(x, e, z, acp_t=0.3, acp_prev=0.7, clip_sample=1.0, backend="triton", out=o),
                      lambda: R.ddpm_step(*dbl(x, e, z), acp_t=0.3, acp_prev=0.7, clip_sample=1.0)),
        "ddim_eta": (lambda o: K.ddim_step(x, e, z, acp_t=0.3, acp_prev=0.7, eta=0.6, backend="triton", out=o),
                     lambda: R.ddim_step(*dbl(x, e, z), acp_t=0.3, acp_prev=0.7, eta=0.6)),
        "euler": (lambda o: K.euler_step(x, e, -0.1, backend="triton", out=o), lambda: R.euler_step(*dbl(x, e), -0.1)),
        "heun": (lambda o: K.heun_step(x, e, z, -0.1, backend="triton", out=o), lambda: R.heun_step(*dbl(x, e, z), -0.1)),
        "edm_heun": (lambda o: K.edm_heun_step(x, e, z, w, 2.0, 0.5, backend="triton", out=o),
                     lambda: R.edm_heun_step(*dbl(x, e, z, w), 2.0, 0.5)),
    }
    for name, (fused, ref) in steps.items():
        out = torch.full(x.shape, float("nan"), dtype=dt)
        fused(out)
        errors[f"step/{name}/{dname}"] = err(out, ref())
    ox, os_ = torch.full(x.shape, float("nan"), dtype=dt), torch.full(x.shape, float("nan"), dtype=dt)
    K.edm_euler_step(x, e, 2.0, 0.5, backend="triton", out=(ox, os_))
    wx, ws = R.edm_euler_step(*dbl(x, e), 2.0, 0.5)
    errors[f"step/edm_euler/{dname}"] = max(err(ox, wx), err(os_, ws))

q = torch.randn(1, 2, 5, 16, dtype=torch.bfloat16)
from librobot.kernels._attention import AttentionCall
c = AttentionCall("attention", q, [(q, q)], causal=False, window=None, q_blocks=None, kv_blocks=None, key_padding=None,
                  pad_len=0, q_offset=None, scale=None, out=None, raw={})
print(json.dumps({"errors": errors, "bf16_reason": get_backend("triton").declines("attention", c)}))
"""

# max |error| allowed: values are O(1)-O(10); float16 attention also rounds P to float16 for tl.dot
BOUNDS = {"float32": 5e-5, "float16": 8e-3}


@pytest.mark.skipif(not is_available("triton"), reason="triton is not installed (the x86 dev/CI image has it)")
def test_triton_kernels_in_the_interpreter_match_float64_reference(seed):
    env = {k: v for k, v in os.environ.items() if k != "LIBROBOT_KERNELS_BACKEND"}
    env.update(TRITON_INTERPRET="1", OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SCRIPT), str(seed)], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(report["errors"]) == 2 * (4 + 1 + 6)
    for case, error in report["errors"].items():
        bound = BOUNDS[case.rsplit("/", 1)[1]] * (4 if case.startswith("step") else 1)
        assert error <= bound, f"seed={seed} {case}: max error {error} > {bound}"
    assert "interpreter computes bf16 tl.dot wrongly" in report["bf16_reason"]
