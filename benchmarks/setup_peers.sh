#!/usr/bin/env bash
# Makes the two peer venvs that benchmarks/peers.py uses (both are gitignored):
#   benchmarks/.venv-rejax  rejax with gymnax < 1.0 (rejax unpacks gymnax's old 5-tuple step),
#                           on the same jax/jaxlib version as jaxpg's environment;
#   benchmarks/.venv-sb3    Stable-Baselines3 with a CPU build of PyTorch.
#
# Usage: bash benchmarks/setup_peers.sh [rejax] [sb3]     (default: both)
#
# Environment variables (defaults in brackets):
#   PYTHON          the interpreter for the venvs [python3]
#   JAX_VERSION     jax and jaxlib for the rejax venv [the version importable by $JAXPG_PYTHON,
#                   else pip's choice]
#   JAXPG_PYTHON    the Python with jaxpg installed, to read its jax version [python3]
#   REJAX_SPEC      [rejax==0.1.3]       GYMNAX_SPEC  [gymnax==0.0.9]
#   SB3_SPEC        [stable-baselines3==2.9.2]
#   TORCH_SPEC      [torch==2.13.0]; on a machine whose pip would pick a CUDA build, point pip at
#                   a CPU build with PIP_EXTRA_ARGS (e.g. an --index-url of CPU wheels)
#   PIP_EXTRA_ARGS  extra arguments for every pip install []
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
JAXPG_PYTHON=${JAXPG_PYTHON:-python3}
REJAX_SPEC=${REJAX_SPEC:-rejax==0.1.3}
GYMNAX_SPEC=${GYMNAX_SPEC:-gymnax==0.0.9}
SB3_SPEC=${SB3_SPEC:-stable-baselines3==2.9.2}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
PIP_EXTRA_ARGS=${PIP_EXTRA_ARGS:-}
if [ -z "${JAX_VERSION:-}" ]; then
  JAX_VERSION=$("$JAXPG_PYTHON" -c 'import importlib.metadata as m; print(m.version("jax"))' 2>/dev/null || true)
fi

targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(rejax sb3)

make_venv() {  # $1: folder
  if [ ! -x "$1/bin/python" ]; then
    "$PYTHON" -m venv "$1"
  fi
  "$1/bin/python" -m pip install -q --upgrade pip
}

for target in "${targets[@]}"; do
  case "$target" in
    rejax)
      make_venv .venv-rejax
      jax_pins=()
      if [ -n "$JAX_VERSION" ]; then jax_pins=("jax==$JAX_VERSION" "jaxlib==$JAX_VERSION"); fi
      # shellcheck disable=SC2086
      .venv-rejax/bin/python -m pip install -q $PIP_EXTRA_ARGS "$REJAX_SPEC" "$GYMNAX_SPEC" "${jax_pins[@]}"
      .venv-rejax/bin/python -c 'import importlib.metadata as m, rejax; print("rejax venv:", *(f"{p} {m.version(p)}" for p in ("rejax", "gymnax", "jax", "jaxlib")))'
      ;;
    sb3)
      make_venv .venv-sb3
      # torch first and alone, so that SB3's own "torch>=..." is already satisfied by it.
      # shellcheck disable=SC2086
      .venv-sb3/bin/python -m pip install -q $PIP_EXTRA_ARGS "$TORCH_SPEC"
      # shellcheck disable=SC2086
      .venv-sb3/bin/python -m pip install -q $PIP_EXTRA_ARGS "$SB3_SPEC" "$TORCH_SPEC"
      .venv-sb3/bin/python -c 'import stable_baselines3 as s, torch; print("sb3 venv: stable-baselines3", s.__version__, "torch", torch.__version__, "cuda", torch.cuda.is_available())'
      ;;
    *)
      echo "setup_peers.sh: unknown target '$target' (use rejax and/or sb3)" >&2
      exit 2
      ;;
  esac
done
