#!/usr/bin/env bash
# PureJaxRL's ppo.py beside jaxpg on an accelerator, in one process, alternating
# (benchmarks/purejaxrl_speed.py; benchmarks/README.md, "Peers on an accelerator"):
#
#   bash benchmarks/device_peers.sh OUT_DIR PUREJAXRL_DIR [purejaxrl_speed.py options]
#
# PUREJAXRL_DIR is a PureJaxRL checkout's purejaxrl/ folder (ppo.py, wrappers.py), carried to
# the machine; nothing of it is in this repository. The wheels in .whl/ must hold gymnax and
# PureJaxRL's distrax with TensorFlow Probability (benchmarks/README.md lists them).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:?usage: bash benchmarks/device_peers.sh OUT_DIR PUREJAXRL_DIR [options]}"
purejaxrl="${2:?usage: bash benchmarks/device_peers.sh OUT_DIR PUREJAXRL_DIR [options]}"
shift 2
. benchmarks/device_env.sh
exec python3 benchmarks/purejaxrl_speed.py --purejaxrl "$purejaxrl" --out-dir "$out" "$@"
