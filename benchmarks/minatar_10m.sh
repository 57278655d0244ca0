#!/usr/bin/env bash
# MinAtar at the published budget: PPO (jaxpg.presets.ppo_minatar) on Asterix, Breakout, Freeway
# and SpaceInvaders, 10M env steps, 3 seeds vmapped, 64 evaluation episodes per seed, with the
# flattened MLP (gymnax-blines' 2x256) and the MinAtar paper's conv torso. One learning.py
# process per game and network, each writing minatar_<network>_<game>.json/.md under OUT_DIR.
#
#   bash benchmarks/minatar_10m.sh OUT_DIR [DEADLINE_S]
#
# DEADLINE_S (default: none) stops starting runs once that many seconds have passed, and bounds
# each run by what is left (a run cut short writes nothing and is reported as missing).
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:?usage: bash benchmarks/minatar_10m.sh OUT_DIR [DEADLINE_S]}"
deadline="${2:-0}"
mkdir -p "$out"
for network in mlp cnn; do
  for game in Asterix Breakout Freeway SpaceInvaders; do
    name="minatar_${network}_${game}"
    left=$(( deadline > 0 ? deadline - SECONDS : 86400 ))
    if (( left < 20 )); then echo "skipped $name: deadline" >&2; continue; fi
    timeout "$left" python3 benchmarks/learning.py --envs "$game-MinAtar" --seeds 3 \
      --total-timesteps 10000000 --eval-episodes 64 --network "$network" --no-plot \
      --out-dir "$out" --name "$name" || echo "missing $name (exit $?)" >&2
  done
done
