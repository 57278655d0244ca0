#!/usr/bin/env bash
# The accelerator suite in one command (benchmarks/device_suite.py; see benchmarks/README.md):
#
#   bash benchmarks/device_suite.sh OUT_DIR [device_suite.py options]
#
# On a machine that already has jax (with its GPU or TPU plugin), flax, optax, chex, orbax,
# matplotlib, tqdm and seaborn but not gymnax: put the wheels of gymnax, gymnasium and
# farama-notifications in .whl/ at the repository root (benchmarks/README.md says how); they are
# installed into /tmp/jaxpg-site, without dependencies and without the network. jaxpg itself is
# imported from this checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:?usage: bash benchmarks/device_suite.sh OUT_DIR [options]}"
shift
. benchmarks/device_env.sh
exec python3 benchmarks/device_suite.py "$out" "$@"
