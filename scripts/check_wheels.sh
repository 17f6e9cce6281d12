#!/usr/bin/env bash
# Build a wheel of every package, then install each ALONE into a clean virtualenv (third-party
# dependencies from the index, our other packages from the wheels just built) and import it.
# This is what `pip install librobot-<x>` does for a user; torch stays pinned by constraints.txt.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export PIP_CONSTRAINT="$ROOT/constraints.txt" PIP_DISABLE_PIP_VERSION_CHECK=1 LIBROBOT_KERNELS_CUDA=OFF
quiet() { "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }

python3 -m venv "$WORK/build"
for pkg in "$ROOT"/packages/librobot-* "$ROOT/kernels"; do
  quiet "$WORK/build/bin/pip" wheel --quiet --no-deps --wheel-dir "$WORK/wheels" "$pkg"
done
ls "$WORK/wheels"

for wheel in "$WORK"/wheels/*.whl; do
  name=$(basename "$wheel" | cut -d- -f1 | tr _ -)
  module=librobot.${name#librobot-}
  venv="$WORK/venv-$name"
  python3 -m venv "$venv"
  quiet "$venv/bin/pip" install --quiet --find-links "$WORK/wheels" "$wheel"
  torch=$("$venv/bin/python" -c "import importlib.util as u; print('with torch' if u.find_spec('torch') else 'no torch')")
  "$venv/bin/python" -c "import $module, sys; print('$name', getattr($module, '__version__', '?'), 'imports; $torch;', 'torch loaded' if 'torch' in sys.modules else 'torch not loaded at import')"
  rm -rf "$venv"
done
