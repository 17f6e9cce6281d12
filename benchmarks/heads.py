"""Action-head inference benchmark: ``predict`` latency (batch 1 and 8, H = 50, A = 7 and 32) and
parameter counts of every registered head at its default config, on this machine's CPU.

Each head is timed twice in the same run: with the kernels dispatcher choosing the backend
("auto", what users get) and with the torch reference kernels forced (the reference figure).
Conditioning: VLM-like tokens [B, 64, 256] with a padding mask. Prints one JSON document.

    OMP_NUM_THREADS=1 MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=68719476736 \\
        MALLOC_TOP_PAD_=1073741824 python benchmarks/heads.py [--heads ddim,fast] [--repeats 5]

``--bimodal`` instead trains heads on the synthetic bimodal task (the learning tests' settings) and
prints each head's energy distance to held-out samples next to the true-sample and mode-average
references.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import torch

from librobot.core.registry import get_registry
from librobot.models import create_action_head
from librobot.models.action_heads import _manifest

COND_DIM, COND_TOKENS, HORIZON = 256, 64, 50
ALLOCATOR_VARS = ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "OMP_NUM_THREADS")


class _DCTTokenizer:
    """Stand-in for FAST when librobot-data's tokenizer is not registered: the same DCT +
    quantisation front end (no BPE merges), so token counts are an upper bound on FAST's."""

    def __new__(cls, *args, **kwargs):  # built lazily: the interface class is defined only when needed
        import numpy as np

        from librobot.core.interfaces import ActionTokenizerInterface

        def dct(n):
            k, i = np.arange(n)[:, None], np.arange(n)[None, :]
            m = np.sqrt(2.0 / n) * np.cos(np.pi * (i + 0.5) * k / n)
            m[0] /= np.sqrt(2.0)
            return m

        class DCT(ActionTokenizerInterface):
            vocab_size = 2 * 40 + 1

            def encode(self, actions):
                a = np.asarray(actions, dtype=np.float64)
                q = np.clip(np.rint(np.einsum("kh,nha->nka", dct(a.shape[1]), a) * 10), -40, 40).astype(int)
                out = []
                for chunk in q:
                    flat = chunk.reshape(-1)
                    nz = np.flatnonzero(flat)
                    out.append((flat[: (int(nz[-1]) + 1 if nz.size else 1)] + 40).tolist())
                return out

            def decode(self, tokens, horizon, action_dim):
                out = np.zeros((len(tokens), horizon, action_dim))
                for i, seq in enumerate(tokens):
                    flat = np.zeros(horizon * action_dim)
                    vals = np.asarray(list(seq)[: horizon * action_dim], dtype=float) - 40
                    flat[: vals.size] = vals
                    out[i] = dct(horizon).T @ (flat.reshape(horizon, action_dim) / 10)
                return out

            def to_dict(self):
                return {}

            @classmethod
            def from_dict(cls, state):
                return cls()

        return DCT()


def build(name: str, action_dim: int):
    kwargs = dict(action_dim=action_dim, horizon=HORIZON, cond_dim=COND_DIM)
    note = None
    if name == "fast":
        if "fast" in get_registry("tokenizer"):
            from librobot.models.action_heads.synthetic import ChunkTask

            # FAST must be fitted: BPE merges learned on smooth synthetic chunks of this shape
            _, chunks, _, _ = ChunkTask(horizon=HORIZON, action_dim=action_dim, num_conditions=64).sample(
                512, torch.Generator().manual_seed(0)
            )
            tok = get_registry("tokenizer").create("fast").fit(chunks.numpy())
            kwargs["tokenizer"] = tok
            kwargs["max_tokens"] = max(len(seq) for seq in tok.encode(chunks.numpy()))
            note = (
                f"librobot-data FAST (scale 10, vocab 1024) fitted on 512 synthetic smooth chunks; random weights never "
                f"emit EOS, so decoding runs to max_tokens = {kwargs['max_tokens']}, the longest fitted sequence"
            )
        else:
            kwargs["tokenizer"] = _DCTTokenizer()
            kwargs["max_tokens"] = HORIZON * action_dim
            note = "librobot-data FAST not registered: DCT+quantisation stand-in without BPE, decoding to H*A tokens"
    torch.manual_seed(0)
    head = create_action_head(name, **kwargs).eval()
    return head, note


def time_predict(head, batch: int, repeats: int) -> float:
    g = torch.Generator().manual_seed(0)
    cond = torch.randn(batch, COND_TOKENS, COND_DIM, generator=g)
    mask = torch.ones(batch, COND_TOKENS, dtype=torch.bool)
    mask[:, COND_TOKENS - 8 :] = False  # some padding, as real VLM batches have
    kwargs = {"temperature": 1.0} if hasattr(head, "generate") else {}
    head.predict(cond, cond_mask=mask, generator=g, **kwargs)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        head.predict(cond, cond_mask=mask, generator=g, **kwargs)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


DIT = dict(hidden_dim=64, depth=2, num_heads=4, cross_attention=False)
# (label, head name, config, training steps, predict kwargs): the settings of tests/models/heads/test_head_learning.py
BIMODAL_RUNS = [
    (
        "diffusion/ddim",
        "diffusion",
        dict(DIT, num_train_timesteps=100, num_inference_steps=10),
        250,
        {"sampler": "ddim"},
    ),
    (
        "diffusion/ddpm",
        "diffusion",
        dict(DIT, num_train_timesteps=100, num_inference_steps=10),
        250,
        {"sampler": "ddpm"},
    ),
    ("edm/heun", "edm", dict(DIT, num_inference_steps=10), 250, {}),
    ("flow_matching/euler", "flow_matching", dict(DIT, num_inference_steps=10), 250, {}),
    ("flow_matching/heun", "flow_matching", dict(DIT, num_inference_steps=10), 250, {"integrator": "heun"}),
    ("ot_cfm/euler", "ot_cfm", dict(DIT, num_inference_steps=10), 400, {}),
    ("autoregressive/T=1", "autoregressive", dict(hidden_dim=64, depth=2, num_heads=4, temperature=1.0), 250, {}),
    ("hybrid/T=1", "hybrid", dict(hidden_dim=128, num_bins=8), 250, {}),
    ("mlp_oft/l1", "mlp_oft", dict(hidden_dim=64, num_blocks=1), 200, {}),
    ("mlp_oft/mse", "mlp_oft", dict(hidden_dim=64, num_blocks=1, loss="mse"), 200, {}),
    ("act/z=0", "act", dict(hidden_dim=64, num_heads=4, encoder_depth=1, decoder_depth=1, latent_dim=8), 250, {}),
    (
        "act/z~prior",
        "act",
        dict(hidden_dim=64, num_heads=4, encoder_depth=1, decoder_depth=1, latent_dim=8),
        250,
        {"sample_latent": True},
    ),
]


def bimodal_report(n: int = 200) -> dict:
    """Energy distance to held-out samples on the bimodal task, next to its references."""
    from librobot.models.action_heads.synthetic import ChunkTask, energy_distance, fit, reference_distances

    task = ChunkTask(bimodal=True, num_conditions=4, horizon=8, action_dim=2)
    trained: dict = {}
    rows = []
    for label, name, config, steps, predict_kw in BIMODAL_RUNS:
        key = (name, json.dumps(config, sort_keys=True), steps)
        if key not in trained:
            torch.manual_seed(0)
            head = create_action_head(name, action_dim=2, horizon=8, cond_dim=task.cond_dim, **config)
            start = time.perf_counter()
            losses = fit(head, task, steps=steps, batch_size=64, lr=3e-3)
            trained[key] = (head, time.perf_counter() - start, losses)
        head, train_s, losses = trained[key]
        g = torch.Generator().manual_seed(1234)
        pred = head.predict(task.conds.repeat_interleave(n, dim=0), generator=g, **predict_kw).view(4, n, 8, 2)
        per = []
        for k in range(4):
            _, held_out, _, _ = task.sample(n, g, k)
            ref = reference_distances(task, k, n, g)
            per.append(
                {
                    "ed": energy_distance(pred[k], held_out),
                    **ref,
                    "first_mode": float(task.nearest_mode(pred[k], k).float().mean()),
                }
            )
        mean = {key2: round(sum(r[key2] for r in per) / 4, 4) for key2 in ("ed", "true", "average", "one_mode")}
        rows.append(
            {
                "head": label,
                "train_steps": steps,
                "train_s": round(train_s, 1),
                "final_loss": round(sum(losses[-10:]) / 10, 4),
                **mean,
                "ed_over_average": round(mean["ed"] / mean["average"], 3),
                "first_mode_fraction": [round(r["first_mode"], 3) for r in per],
            }
        )
        print(f"{label}: {rows[-1]}", file=sys.stderr, flush=True)
    return {
        "task": "4 conditionings x 2 modes, H=8, A=2, noise 0.02; n=200 samples per conditioning",
        "bound": "ed < 0.1 * average (mode weights within 0.34..0.66 for sharp samples)",
        "rows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heads", default=",".join(name for name, *_ in _manifest.ENTRIES))
    parser.add_argument("--action-dims", default="7,32")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--bimodal",
        action="store_true",
        help="instead of latency: train heads on the bimodal task and report energy distances",
    )
    args = parser.parse_args()
    if args.bimodal:
        print(json.dumps({"benchmark": "action_head_bimodal", **bimodal_report()}, indent=2))
        return
    import librobot.kernels as kernels

    results = []
    for name in args.heads.split(","):
        for action_dim in (int(a) for a in args.action_dims.split(",")):
            head, note = build(name, action_dim)
            row = {
                "head": name,
                "action_dim": action_dim,
                "horizon": HORIZON,
                "parameters": sum(p.numel() for p in head.parameters()),
                "predict_ms": {},
            }
            if note:
                row["note"] = note
            for backend in ("auto", "reference"):
                if backend == "reference":
                    os.environ["LIBROBOT_KERNELS_BACKEND"] = "reference"
                else:
                    os.environ.pop("LIBROBOT_KERNELS_BACKEND", None)
                for b in (int(x) for x in args.batches.split(",")):
                    row["predict_ms"][f"{backend}_b{b}"] = round(time_predict(head, b, args.repeats), 2)
            os.environ.pop("LIBROBOT_KERNELS_BACKEND", None)
            results.append(row)
            print(f"{name} A={action_dim}: {row['predict_ms']}", file=sys.stderr, flush=True)
    backends = kernels.available_backends() if hasattr(kernels, "available_backends") else {}
    doc = {
        "benchmark": "action_head_predict",
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
        },
        "environment": {k: os.environ.get(k) for k in ALLOCATOR_VARS},
        "kernels_backends": backends,
        "conditioning": {"tokens": COND_TOKENS, "cond_dim": COND_DIM, "padding_tokens": 8},
        "timing": f"median of {args.repeats} predict calls after one warm-up; 'reference' forces LIBROBOT_KERNELS_BACKEND=reference",
        "results": results,
    }
    print(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
