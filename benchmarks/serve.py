"""Serving benchmark: prints one JSON document.

1. Inference: a small flow-matching action head (state → 10 Euler steps of an MLP velocity → a
   16×6 chunk, noise as an input), torch eager vs onnxruntime fp32 vs onnxruntime dynamic int8, on
   this CPU, one thread, batch 1 and 32; int8's action error against fp32 on the same noise.
2. Load: `librobot serve --onnx` of that policy in its own process on 127.0.0.1, REST and gRPC,
   per-request and with dynamic batching; N requests at concurrency C from the Python clients
   (threads, in this process): throughput, client p50/p99, failures, server-side latency/batches.
3. Frameworks: every registered framework (default config, the built-in tiny VLM at its default
   size, wheel-loader dims: state 22, action 6, one 64x64 camera) exported whole with
   `librobot.serve.export` and timed at batch 1: torch eager `predict_action` vs onnxruntime, with
   1 and 2 threads each (target: onnxruntime >= 1.5x faster), and dynamic int8's speed-up and
   action error against fp32 on the same noise.

    python benchmarks/serve.py [--requests 5000] [--concurrency 32] [--iters 300]
        [--sections inference load frameworks] [--frameworks pi0 act ...] [--framework-iters 30]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import torch

from librobot.serve.client import GrpcPolicyClient, RestPolicyClient, RetryPolicy
from librobot.serve.onnx_policy import OnnxPolicy
from librobot.serve.quantize import compare_policies, quantize_int8
from librobot.serve.sidecar import InputBinding, OnnxPolicySpec, save_sidecar, sha256_file

S, H, A, WIDTH, STEPS = 22, 16, 6, 256, 10  # wheel-loader-sized state and action


class FlowHead(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(S + H * A + 1, WIDTH),
            torch.nn.GELU(),
            torch.nn.Linear(WIDTH, WIDTH),
            torch.nn.GELU(),
            torch.nn.Linear(WIDTH, H * A),
        )

    def forward(self, state: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        b = state.shape[0]
        x = noise
        for i in range(STEPS):
            t = 1.0 - i / STEPS
            v = self.net(torch.cat([state.reshape(b, -1), x.reshape(b, -1), torch.full((b, 1), t)], -1)).reshape(
                b, H, A
            )
            x = x - v / STEPS
        return x


def export(directory: Path) -> FlowHead:
    torch.manual_seed(0)
    model = FlowHead().eval()
    batch = torch.export.Dim("batch", min=1, max=4096)
    with contextlib.redirect_stdout(sys.stderr):  # the exporter's progress lines would corrupt the JSON
        torch.onnx.export(
            model, (torch.randn(2, 1, S), torch.randn(2, H, A)), str(directory / "policy.onnx"), dynamo=True, external_data=False,
            input_names=["state", "noise"], output_names=["action"], dynamic_shapes={"state": {0: batch}, "noise": {0: batch}},
        )  # fmt: skip
    spec = OnnxPolicySpec(
        model="policy.onnx", model_sha256=sha256_file(directory / "policy.onnx"), chunk_size=H, action_dim=A,
        inputs=(InputBinding("observation.state", "state", (1, S)),), noise={"onnx_name": "noise", "shape": [H, A]},
    )  # fmt: skip
    save_sidecar(directory / "policy.json", spec)
    return model


def timed(fn, iters: int) -> dict[str, float]:
    for _ in range(max(5, iters // 20)):
        fn()
    samples = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    ms = np.array(samples) * 1e3
    return {"p50_ms": float(np.median(ms)), "p90_ms": float(np.percentile(ms, 90)), "mean_ms": float(ms.mean())}


def inference_bench(directory: Path, model: FlowHead, iters: int) -> dict:
    torch.set_num_threads(1)
    fp32 = OnnxPolicy(directory, intra_op_threads=1)
    quantize_int8(directory, directory / "int8")
    int8 = OnnxPolicy(directory / "int8", intra_op_threads=1)
    rng = np.random.default_rng(0)
    out: dict = {}
    for batch in (1, 32):
        out[f"batch_{batch}"] = _compare(model, fp32, int8, rng, batch, iters)
    obs = {"observation.state": rng.normal(size=(256, 1, S)).astype(np.float32)}
    out["int8_error_vs_fp32"] = compare_policies(fp32, int8, obs, [None] * 256)
    out["model_bytes"] = {
        "fp32": (directory / "policy.onnx").stat().st_size,
        "int8": (directory / "int8" / "policy.onnx").stat().st_size,
    }
    return out


def _compare(
    model: FlowHead, fp32: OnnxPolicy, int8: OnnxPolicy, rng: np.random.Generator, batch: int, iters: int
) -> dict:
    state = rng.normal(size=(batch, 1, S)).astype(np.float32)
    noise = rng.standard_normal((batch, H, A), dtype=np.float32)
    ts, tn = torch.from_numpy(state), torch.from_numpy(noise)
    feeds = {"state": state, "noise": noise}
    with torch.inference_mode():
        eager = timed(lambda: model(ts, tn), iters)
        parity = float(np.abs(model(ts, tn).numpy() - fp32.session.run(["action"], feeds)[0]).max())
    ort32 = timed(lambda: fp32.session.run(["action"], feeds), iters)
    ort8 = timed(lambda: int8.session.run(["action"], feeds), iters)
    policy_call = timed(lambda: fp32.predict_chunks({"observation.state": state}, [None] * batch, noise=noise), iters)
    return {
        "torch_eager": eager,
        "onnxruntime_fp32": ort32,
        "onnxruntime_int8": ort8,
        "onnx_policy_predict_chunks_fp32": policy_call,
        "speedup_ort_fp32_vs_eager": eager["p50_ms"] / ort32["p50_ms"],
        "speedup_int8_vs_ort_fp32": ort32["p50_ms"] / ort8["p50_ms"],
        "max_abs_diff_ort_fp32_vs_torch": parity,
    }


def start_server(directory: Path, batch: int, transport: str) -> tuple[subprocess.Popen, str]:
    """`librobot serve` in its own process serving one transport; returns it and its address."""
    ports = ["--port", "0"] if transport == "rest" else ["--no-rest", "--grpc-port", "0"]
    batching = ["--max-batch-size", str(batch), "--batch-timeout-ms", "1"]
    cmd = [sys.executable, "-m", "librobot.core", "serve", "--onnx", str(directory), *ports, *batching]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    address = None
    for line in proc.stderr:
        if m := re.search(r"serving \S+ on (?:grpc://)?(\S+)", line):
            address = m.group(1)
            break
    if address is None:
        raise RuntimeError(f"`{' '.join(cmd)}` did not start")
    threading.Thread(target=proc.stderr.read, daemon=True).start()  # keep draining its log
    return proc, address


def load_test(client, n: int, concurrency: int) -> dict:
    rng = np.random.default_rng(1)
    states = rng.normal(size=(64, S)).astype(np.float32)
    latencies, failures, lock = [], [], threading.Lock()

    def one(i: int) -> None:
        t = time.perf_counter()
        try:
            client.predict_chunk({"observation.state": states[i % 64]})
        except Exception as exc:  # counted and reported
            with lock:
                failures.append(repr(exc))
            return
        with lock:
            latencies.append(time.perf_counter() - t)

    client.predict_chunk({"observation.state": states[0]})  # connect
    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(n)))
    elapsed = time.perf_counter() - start
    ms = np.array(latencies) * 1e3
    server = client.metrics()
    return {
        "requests": n, "concurrency": concurrency, "failures": len(failures), "first_failures": failures[:3],
        "retries": client.retried, "throughput_rps": n / elapsed,
        "client_p50_ms": float(np.percentile(ms, 50)), "client_p99_ms": float(np.percentile(ms, 99)),
        "server_p50_ms": server["latency"]["p50_ms"], "server_p99_ms": server["latency"]["p99_ms"],
        "server_batch_sizes": server["batch_sizes"],
    }  # fmt: skip


def framework_bench(names: list[str], iters: int) -> dict:
    """Per framework: export, then torch eager vs onnxruntime fp32/int8 latency at 1 and 2 threads."""
    from librobot.models import create_vla
    from librobot.serve.export import export_policy
    from librobot.serve.export.api import policy_batch
    from librobot.serve.export.graph import graph_inputs, random_inputs

    out: dict = {}
    for name in names:
        torch.manual_seed(0)
        model = create_vla(name, action_dim=A, state_dim=S, cameras=["front"]).eval()
        with torch.no_grad():  # heads zero-init their output layers: unperturbed, every chunk is the
            for p in model.parameters():  # same constant and parity/int8 errors would read 0
                p.add_(0.05 * torch.randn_like(p))
        entry: dict = {"parameters": model.get_num_parameters(), "horizon": model.horizon}
        with tempfile.TemporaryDirectory() as tmp:
            try:
                t = time.perf_counter()
                result = export_policy(model, Path(tmp) / "fp32", tasks=["load the bucket"])
                entry["export_s"] = time.perf_counter() - t
            except Exception as exc:  # reported, not hidden: the other frameworks still run
                out[name] = {**entry, "export_error": f"{type(exc).__name__}: {exc}"}
                continue
            layout = result.layout
            entry["parity_max_abs_normalized"] = result.report["parity_fp32_vs_torch"]["max_abs_normalized"]
            entry["noise_input"], entry["onnx_bytes"] = layout.noise, (result.path / "policy.onnx").stat().st_size
            quantize_int8(result.path, Path(tmp) / "int8")
            entry["int8_bytes"] = (Path(tmp) / "int8" / "policy.onnx").stat().st_size
            rng = np.random.default_rng(0)
            noise = rng.standard_normal((1, layout.horizon, layout.action_dim)).astype(np.float32)
            feeds = graph_inputs(layout, random_inputs(layout, rng), "load the bucket", noise)
            images = {c: torch.from_numpy(feeds[f"image_{c}"]) for c in layout.cameras}
            state, tn = torch.from_numpy(feeds["state"]), torch.from_numpy(noise)
            kwargs = {"noise": tn} if layout.noise else {}
            for threads in (1, 2):
                torch.set_num_threads(threads)
                with torch.inference_mode():
                    call = functools.partial(model.predict_action, images, ["load the bucket"], state, **kwargs)
                    eager = timed(call, iters)
                row = {"torch_eager": eager}
                for precision in ("fp32", "int8"):
                    policy = OnnxPolicy(Path(tmp) / precision, intra_op_threads=threads)
                    names_in = {i.name for i in policy.session.get_inputs()}
                    fed = {k: v for k, v in feeds.items() if k in names_in}
                    row[f"onnxruntime_{precision}"] = timed(lambda p=policy, f=fed: p.session.run(["action"], f), iters)
                row["speedup_ort_fp32_vs_eager"] = eager["p50_ms"] / row["onnxruntime_fp32"]["p50_ms"]
                row["target_1_5x_met"] = row["speedup_ort_fp32_vs_eager"] >= 1.5
                row["speedup_int8_vs_ort_fp32"] = row["onnxruntime_fp32"]["p50_ms"] / row["onnxruntime_int8"]["p50_ms"]
                entry[f"threads_{threads}"] = row
            torch.set_num_threads(1)
            obs, tasks = policy_batch(layout, rng, 16)  # tasks from the table: the one instruction
            entry["int8_error_vs_fp32"] = compare_policies(
                OnnxPolicy(Path(tmp) / "fp32"), OnnxPolicy(Path(tmp) / "int8"), obs, tasks
            )
        out[name] = entry
        print(f"[frameworks] {name}: {json.dumps(_short(entry))}", file=sys.stderr, flush=True)
    return out


def _short(entry: dict) -> dict:
    return {k: round(entry[f"threads_{k}"]["speedup_ort_fp32_vs_eager"], 2) for k in (1, 2) if f"threads_{k}" in entry}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--iters", type=int, default=300)
    parser.add_argument("--sections", nargs="+", default=["inference", "load", "frameworks"],
                        choices=["inference", "load", "frameworks"])  # fmt: skip
    parser.add_argument("--frameworks", nargs="+", help="registered framework names (default: all)")
    parser.add_argument("--framework-iters", type=int, default=30)
    args = parser.parse_args()
    result: dict = {
        "benchmark": "serve",
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "load_average_at_start": os.getloadavg(),
        },
        "settings": {
            k: os.environ.get(k)
            for k in ("OMP_NUM_THREADS", "MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")
        },
        "model": {
            "kind": "flow-matching MLP head",
            "state_dim": S,
            "chunk": [H, A],
            "width": WIDTH,
            "denoising_steps": STEPS,
        },
    }
    if "frameworks" in args.sections:
        from librobot.models import list_vlas

        names = args.frameworks or list_vlas()
        result["frameworks_model"] = {
            "vlm": "librobot-tiny-vlm (default size)", "state_dim": S, "action_dim": A, "cameras": ["front"],
            "batch": 1, "tasks": ["load the bucket"], "configs": "each framework's defaults",
        }  # fmt: skip
        result["frameworks"] = framework_bench(names, args.framework_iters)
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        model = export(directory)
        if "inference" in args.sections:
            result["inference"] = inference_bench(directory, model, args.iters)
        result["load"] = {}
        retry = RetryPolicy(retries=3, backoff_s=0.05)
        for batch in (1, 16) if "load" in args.sections else ():
            for transport in ("rest", "grpc"):
                proc, address = start_server(directory, batch, transport)
                try:
                    client = (RestPolicyClient if transport == "rest" else GrpcPolicyClient)(
                        address, retry=retry, timeout_s=30
                    )
                    key = f"{transport}_{'batched_16' if batch > 1 else 'per_request'}"
                    result["load"][key] = load_test(client, args.requests, args.concurrency)
                finally:
                    proc.terminate()
                    proc.wait(timeout=30)
    result["load_average_at_end"] = os.getloadavg()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
