"""librobot vs LeRobot 0.6.1 at LeRobot's own model sizes, in one run on this machine: chunk latency
at batch 1 and training step at batch 8 for ACT, Diffusion Policy (Conv1D U-Net) and pi0 (PaliGemma
3B + 300M expert), librobot in fp32 and in its default inference precision (``auto``: bf16 where
the CPU multiplies bf16 natively), LeRobot in fp32 and, for pi0, its own bf16 setting. Each row's
reduced-precision action error is measured against fp32 on the same inputs; a roofline measures
the machine's matmul peak per dtype in the same run and places the pi0 prefix pass against it.

    python benchmarks/vs_lerobot_speed.py [--sections roofline,act,diffusion,pi0] [--out results.json]
        [--lerobot-python /tmp/peer-lerobot/venv/bin/python] [--repeats 5]

Each model runs in its own subprocess, one after the other (a full-size pi0 needs ~15 GB), with the
same threads and allocator settings on both sides. Random weights (latency does not depend on
them); layers initialised to zero get small random values so the chunks, and the errors, are not
trivially zero. LeRobot's side is benchmarks/peers/lerobot_speed.py.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import emit_json, timed  # noqa: E402

# benchmarks/kernels.py would shadow the `kernels` package transformers imports: drop this folder
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
ALLOCATOR = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "68719476736", "MALLOC_TOP_PAD_": "1073741824"}
PEER_PYTHON = "/tmp/peer-lerobot/venv/bin/python"


# ----------------------------------------------------------------------------- librobot workers
def _torch():
    import torch

    return torch


def _give_zero_layers_values(model) -> None:
    torch = _torch()
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for param in model.parameters():
            if param.is_floating_point() and not param.any():
                param.copy_(torch.randn(param.shape, generator=g) * 0.02)


def _relative_error(fast, reference) -> float:
    fast, reference = fast.double(), reference.double()
    return float((fast - reference).norm() / reference.norm())


def _train_step(model, batch: dict, precision: str):
    torch = _torch()
    from librobot.models.components.precision import DTYPES
    from librobot.train.optim import adamw

    # the trainer's AdamW (fused where it can be), LeRobot's lr and weight decay
    optimizer = adamw([{"params": [p for p in model.parameters() if p.requires_grad]}], lr=1e-5, weight_decay=1e-4)
    dtype = DTYPES[precision]

    def step() -> None:
        with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
            loss = model(batch)["loss"]
        loss.float().backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def _inference_rows(model, run, repeats: int, warmup: int) -> dict:
    """Chunk latency in fp32 and in ``auto``, and auto's relative error against fp32."""
    import copy

    from librobot.models.components.precision import InferencePrecision

    torch = _torch()
    rows = {}
    reference = None
    fast_model = copy.deepcopy(model)
    for name, target in (("fp32", model), ("auto", fast_model)):
        precision = InferencePrecision(name)
        precision.prepare(target)

        def call(target=target, precision=precision):
            with torch.no_grad(), precision.autocast():
                return run(target)

        rows[name] = {"precision": precision.name, **timed(call, repeats, warmup)}
        out = call()
        if reference is None:
            reference = out
        else:
            rows[name]["relative_error_vs_fp32"] = round(_relative_error(out, reference), 5)
    del fast_model
    return rows


def worker_act(repeats: int) -> dict:
    torch = _torch()
    from librobot.models import create_vla, create_vlm

    torch.manual_seed(0)
    vlm = create_vlm("librobot-tiny-vlm", dim=64, depth=1)  # never run: ACT reads its own ResNet-18
    model = create_vla(
        "act", vlm=vlm, action_dim=6, state_dim=6, horizon=100, features="resnet18", hidden_dim=512,
        feedforward_dim=3200, num_heads=8, cvae_layers=4, encoder_layers=4, decoder_layers=1, latent_dim=32,
    )  # fmt: skip
    _give_zero_layers_values(model)
    g = torch.Generator().manual_seed(0)
    batch = {
        "observation.images.cam": torch.rand(8, 1, 3, 96, 96, generator=g),
        "observation.state": torch.randn(8, 1, 6, generator=g),
        "task": [""] * 8,
        "action": torch.randn(8, 100, 6, generator=g),
        "action_is_pad": torch.zeros(8, 100, dtype=torch.bool),
    }
    out = {"params_trainable": sum(p.numel() for p in model.parameters() if p.requires_grad), "chunk": 100}
    model.train()
    out["train_step"] = {p: timed(_train_step(model, batch, p), repeats, 2) for p in ("fp32", "bf16")}
    model.eval()
    image, state = torch.rand(1, 3, 96, 96, generator=g), torch.randn(1, 6, generator=g)
    out["chunk_b1"] = _inference_rows(model, lambda m: m.predict_action(image, [""], state), 3 * repeats, 3)
    return out


def worker_diffusion(repeats: int) -> dict:
    torch = _torch()
    from librobot.models import create_vla, create_vlm

    torch.manual_seed(0)
    components = {  # configs/custom/diffusion_policy.yaml at Diffusion Policy's U-Net size
        "image_encoder": {"name": "resnet18", "norm": "group", "pool": "spatial_softmax", "num_keypoints": 32},
        "state_encoder": "mlp_state",
        "head": {"name": "diffusion", "denoiser": "unet", "unet_down_dims": [512, 1024, 2048], "sampler": "ddim",
                 "num_inference_steps": 10, "num_train_timesteps": 100},
    }  # fmt: skip
    model = create_vla(
        "custom", vlm=create_vlm("librobot-tiny-vlm", dim=64, depth=1), action_dim=2, state_dim=2, horizon=16,
        n_obs_steps=2, hidden_dim=128, freeze_vlm=True, vlm_inputs="text", image_history=True, components=components,
    )  # fmt: skip
    _give_zero_layers_values(model)
    g = torch.Generator().manual_seed(0)
    batch = {
        "observation.images.cam": torch.rand(8, 2, 3, 96, 96, generator=g),
        "observation.state": torch.randn(8, 2, 2, generator=g),
        "task": ["push the T"] * 8,
        "action": torch.randn(8, 16, 2, generator=g).clamp(-1, 1),
        "action_is_pad": torch.zeros(8, 16, dtype=torch.bool),
    }
    head = model.head
    out = {
        "params_trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "unet_params": sum(p.numel() for p in head.denoiser.parameters()),
        "horizon": 16,
        "steps": 10,
    }
    model.train()
    out["train_step"] = {p: timed(_train_step(model, batch, p), repeats, 2) for p in ("fp32", "bf16")}
    model.eval()
    images = {"cam": torch.rand(1, 2, 3, 96, 96, generator=g)}
    state = torch.randn(1, 2, 2, generator=g)
    noise = torch.randn(1, 16, 2, generator=g)
    run = lambda m: m.predict_action(images, ["push the T"], state, noise=noise)  # noqa: E731
    out["chunk_b1"] = _inference_rows(model, run, 2 * repeats, 2)
    return out


PI0_PREFIX_TOKENS = 304  # LeRobot's pi0: 256 image tokens + its tokenizer's padded 48
WORDS = "pick up the red block and place it in the bowl then push the green cup to the left".split()


def _task_of_length(vlm, tokens: int) -> str:
    """An instruction whose prompt (one image, instruction, special tokens) is ``tokens`` long or
    just over, so both sides run prefixes of the same length."""
    words: list[str] = []
    for _ in range(4 * tokens):  # the backbone may cap the instruction's length: then its longest
        words.append(WORDS[len(words) % len(WORDS)])
        if int(vlm.tokenize([" ".join(words)], 1)[1].sum()) >= tokens:
            break
    return " ".join(words)


def worker_pi0(repeats: int) -> dict:
    torch = _torch()
    from torch.utils.flop_counter import FlopCounterMode

    from librobot.models import create_vla, create_vlm
    from librobot.models.components.precision import InferencePrecision

    torch.manual_seed(0)
    t0 = time.perf_counter()
    model = create_vla(
        "pi0", vlm=create_vlm("paligemma-3b"), action_dim=6, state_dim=6, horizon=50, expert_width=1024,
        num_inference_steps=10,
    ).eval()  # fmt: skip
    build_s = time.perf_counter() - t0
    g = torch.Generator().manual_seed(0)
    image, state = torch.rand(1, 3, 224, 224, generator=g), torch.randn(1, 6, generator=g)
    noise = torch.randn(1, 50, 6, generator=g)
    task = _task_of_length(model.vlm, PI0_PREFIX_TOKENS)
    inputs = model.prepare(image, [task], state)
    out = {"params": sum(p.numel() for p in model.parameters()), "build_s": round(build_s, 1), "chunk": 50, "steps": 10}
    reference = None
    for name in ("fp32", "auto"):  # in place: the fp32 rows first, then the same weights cast
        precision = InferencePrecision(name)
        precision.prepare(model)

        def chunk(precision=precision):
            with torch.no_grad(), precision.autocast():
                return model.predict_action(image, [task], state, noise=noise)

        def prefix(precision=precision):
            with torch.no_grad(), precision.autocast():
                return model.prefix_cache(inputs)

        row = {"precision": precision.name, **timed(chunk, repeats, 1)}
        row["prefix"] = timed(prefix, repeats, 1)
        counter = FlopCounterMode(display=False)
        with counter:
            cache = prefix()
        row["prefix_gflop"] = round(counter.get_total_flops() / 1e9, 1)
        row["prefix_tokens"] = int(cache.length)
        counter = FlopCounterMode(display=False)
        with counter:
            result = chunk()
        row["chunk_gflop"] = round(counter.get_total_flops() / 1e9, 1)
        if reference is None:
            reference = result
        else:
            row["relative_error_vs_fp32"] = round(_relative_error(result, reference), 5)
        out[name] = row
    return out


def worker_roofline() -> dict:
    """The best matmul throughput this process reaches per dtype, over square products and the
    pi0 prefix's own shapes (273-512 tokens x 2048 wide x the 16384-wide MLP)."""
    torch = _torch()
    shapes = ((2048, 2048, 2048), (4096, 4096, 4096), (512, 2048, 16384), (2048, 2048, 16384), (8192, 8192, 2048))
    out = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        best = 0.0
        for m, k, n in shapes:
            a, b = torch.randn(m, k).to(dtype), torch.randn(k, n).to(dtype)
            for _ in range(2):
                a @ b
            reps = max(2, int(4e10 / (m * k * n)))
            t0 = time.perf_counter()
            for _ in range(reps):
                a @ b
            best = max(best, 2 * m * k * n * reps / (time.perf_counter() - t0) / 1e9)
        out[f"{name}_gflops"] = round(best, 1)
    return out


# ----------------------------------------------------------------------------- report
def _ms(row: dict | None) -> float | None:
    return None if not row or "median_ms" not in row else float(row["median_ms"])


def _cell(value: float | None, unit: str = "ms") -> str:
    if value is None:
        return "n/a"
    return f"{value / 1e3:.2f} s" if unit == "ms" and value >= 1e4 else f"{value:,.0f} {unit}"


def markdown(doc: dict) -> str:
    """The results table: each librobot figure next to LeRobot's from the same run, with the ratio."""
    cpu = doc["cpu"]
    lines = [
        "# librobot vs LeRobot 0.6.1: speed at LeRobot's model sizes",
        "",
        f"CPU: {cpu['model']}, {doc['nproc']} cores, torch threads {doc['threads']}, ISA: {' '.join(cpu['isa'])}; "
        f"librobot's `auto` precision here: {cpu['auto_precision']}. torch {doc['torch']}, started {doc['started']}.",
        "",
        f"Command: `{doc['command']}`",
        "",
        "| model | figure | LeRobot fp32 | LeRobot reduced | librobot fp32 | librobot default (auto) | auto / LeRobot fp32 | auto's error vs fp32 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    results = doc["results"]
    for section in ("act", "diffusion", "pi0"):
        entry = results.get(section)
        if not entry:
            continue
        ours, peer = entry.get("librobot", {}), entry.get("lerobot", {})
        if section == "pi0":
            rows = [("chunk b1", ours.get("fp32"), ours.get("auto"), peer.get("chunk_b1"),
                     entry.get("lerobot_bf16", {}).get("chunk_b1"))]  # fmt: skip
        else:
            chunk = ours.get("chunk_b1", {})
            train = ours.get("train_step", {})
            rows = [
                ("chunk b1", chunk.get("fp32"), chunk.get("auto"), peer.get("chunk_b1"), None),
                ("train step b8", train.get("fp32"), train.get("bf16"), peer.get("train_step"), None),
            ]
        for figure, fp32, auto, peer_fp32, peer_low in rows:
            ratio = _ms(auto) / _ms(peer_fp32) if _ms(auto) and _ms(peer_fp32) else None
            error = (auto or {}).get("relative_error_vs_fp32")
            lines.append(
                f"| {section} | {figure} | {_cell(_ms(peer_fp32))} | {_cell(_ms(peer_low))} | {_cell(_ms(fp32))} | "
                f"{_cell(_ms(auto))} | {'n/a' if ratio is None else f'{ratio:.2f}'} | "
                f"{'-' if error is None else f'{100 * error:.2f}%'} |"
            )
    roof = results.get("roofline", {})
    pi0 = results.get("pi0", {}).get("librobot", {})
    if roof and pi0:
        lines += ["", "Roofline (matmul peak measured in this run over square and pi0-prefix-shaped products):", ""]
        lines += [
            "| precision | matmul peak | pi0 prefix | prefix FLOPs | achieved | of peak |",
            "|---|---|---|---|---|---|",
        ]
        for name in ("fp32", "auto"):
            row = pi0.get(name)
            if not row or "prefix" not in row:
                continue
            peak = roof.get(f"{row['precision']}_gflops")
            achieved = row["prefix_gflop"] / (row["prefix"]["median_ms"] / 1e3)
            share = f"{100 * achieved / peak:.0f}%" if peak else "n/a"
            lines.append(
                f"| {row['precision']} | {peak} GFLOP/s | {_cell(row['prefix']['median_ms'])} | "
                f"{row['prefix_gflop']} GFLOP ({row['prefix_tokens']} tokens) | {achieved:.0f} GFLOP/s | {share} |"
            )
    return "\n".join(lines) + "\n"


WORKERS = {"act": worker_act, "diffusion": worker_diffusion, "pi0": worker_pi0}


# ----------------------------------------------------------------------------- orchestration
def _run(command: list[str], env: dict) -> dict:
    t0 = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=HERE.parent)
    if done.returncode != 0:
        return {"status": "FAILED", "returncode": done.returncode, "stderr_tail": done.stderr[-2000:]}
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["wall_s"] = round(time.perf_counter() - t0, 1)
    return result


def cpu_description() -> dict:
    from librobot.core.hardware import cpu_info, resolve_precision

    cpu = cpu_info()
    return {"model": cpu.model, "isa": cpu.isa, "auto_precision": resolve_precision("auto", cpu=cpu)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sections", default="roofline,act,diffusion,pi0")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--lerobot-python", default=PEER_PYTHON)
    parser.add_argument("--out", default=None)
    parser.add_argument("--markdown", default=None, help="also write the results table there")
    parser.add_argument("--from-json", default=None, help="only render --markdown from an earlier --out")
    parser.add_argument("--worker", choices=[*WORKERS, "roofline"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.from_json:
        doc = json.loads(Path(args.from_json).read_text())
        Path(args.markdown or "/dev/stdout").write_text(markdown(doc))
        return
    if args.worker:
        result = worker_roofline() if args.worker == "roofline" else WORKERS[args.worker](args.repeats)
        print(json.dumps({"side": "librobot", **result}), flush=True)
        return
    env = {**os.environ, **ALLOCATOR}
    torch = _torch()
    doc: dict = {
        "benchmark": "vs_lerobot_speed",
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cpu": cpu_description(),
        "nproc": os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "allocator": ALLOCATOR,
        "command": " ".join(sys.argv),
        "results": {},
    }
    ours = [sys.executable, str(HERE / "vs_lerobot_speed.py"), "--repeats", str(args.repeats), "--worker"]
    peer = [args.lerobot_python, str(HERE / "peers" / "lerobot_speed.py"), "--repeats", str(args.repeats)]
    for section in [s for s in args.sections.split(",") if s]:
        print(f"[vs_lerobot_speed] {section} ...", file=sys.stderr, flush=True)
        if section == "roofline":
            doc["results"]["roofline"] = _run([*ours, "roofline"], env)
            continue
        entry = {"librobot": _run([*ours, section], env), "lerobot": _run([*peer, "--section", section], env)}
        if section == "pi0":
            entry["lerobot_bf16"] = _run([*peer, "--section", "pi0", "--pi0-dtype", "bfloat16"], env)
        doc["results"][section] = entry
    emit_json(doc, args.out)
    if args.markdown:
        Path(args.markdown).write_text(markdown(doc))


if __name__ == "__main__":
    main()
