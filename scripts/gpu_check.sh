#!/usr/bin/env bash
# Everything in librobot-kernels that needs a CUDA GPU, in one command: build the CUDA backend
# for the GPU at hand, run the kernels tests (CUDA and Triton against the float64 reference, the
# CUDA-graph sampler, nvcc compile checks) and the GPU section of benchmarks/kernels.py.
#
# Meant for a GPU machine without network access whose python already holds torch, triton,
# pytest, numpy, scikit-build-core, pybind11, cmake and ninja: nothing is downloaded, the build
# runs without isolation, and librobot-core is used from the source tree.
#
#   OUT=/path/for/results bash scripts/gpu_check.sh        # default OUT: ./gpu-results
#
# Writes to $OUT: build.log, info.txt, pytest.log, pytest.xml, kernels_gpu.json; prints a summary
# last. Exit status: 0 all passed, 1 a step failed, 2 no CUDA device.
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
OUT=${OUT:-$ROOT/gpu-results}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONPATH="$ROOT/packages/librobot-core/src${PYTHONPATH:+:$PYTHONPATH}"

cap=$("$PY" -c "import torch; assert torch.cuda.is_available(); print('%d%d' % torch.cuda.get_device_capability())" 2>/dev/null) || {
  echo "gpu_check: no CUDA device visible to $PY (torch.cuda.is_available() is False)" >&2
  exit 2
}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/info.txt"

echo "== build (CUDAARCHS=${CUDAARCHS:-$cap})"
if ! CUDAARCHS=${CUDAARCHS:-$cap} LIBROBOT_KERNELS_CUDA=ON "$PY" -m pip install --no-deps --no-build-isolation \
  --no-index --force-reinstall ./kernels >"$OUT/build.log" 2>&1; then
  tail -n 40 "$OUT/build.log"
  echo "gpu_check: the CUDA build failed (full log: $OUT/build.log)" >&2
  exit 1
fi
# run from elsewhere so the installed build is imported, not kernels/src
(cd /tmp && "$PY" -m librobot.kernels.info) | tee -a "$OUT/info.txt"

echo "== tests"
"$PY" -m pytest tests/kernels -q -rs --junitxml="$OUT/pytest.xml" >"$OUT/pytest.log" 2>&1
tests_rc=$?
tail -n 15 "$OUT/pytest.log"

echo "== benchmark"
"$PY" benchmarks/kernels.py --sections gpu --out "$OUT/kernels_gpu.json" >"$OUT/bench.log" 2>&1
bench_rc=$?
[ $bench_rc -eq 0 ] || tail -n 20 "$OUT/bench.log"

"$PY" - "$OUT/kernels_gpu.json" <<'EOF'
import json, sys
try:
    gpu = json.load(open(sys.argv[1]))["gpu"]
except (OSError, ValueError, KeyError) as err:
    sys.exit(f"no benchmark results: {err}")
print("device:", gpu.get("device"))
for r in gpu.get("attention", []):
    if "unmeasured" in r:
        print(f"{r['backend']}: not measured ({r['unmeasured']})")
        continue
    print(f"{r['backend']:6} {r['dtype']:14} {r['case'][:24]:24} L={r['L']:5} D={r['D']:3}  "
          f"ours {r['ours_ms']:.3f} ms  ref {r['ref_ms']:.3f} ms  x{r['speedup']}")
for k, r in gpu.get("sampler", {}).items():
    print(f"graph sampler {k}: {r['ours_ms']:.3f} ms vs eager {r['ref_ms']:.3f} ms  x{r['speedup']}")
EOF
echo "tests rc=$tests_rc benchmark rc=$bench_rc (results in $OUT)"
[ $tests_rc -eq 0 ] && [ $bench_rc -eq 0 ]
