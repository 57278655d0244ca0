#!/usr/bin/env bash
# MinAtar at the published budget: PPO (jaxpg.presets.ppo_minatar) on Asterix, Breakout, Freeway
# and SpaceInvaders, 10M env steps, SEEDS seeds vmapped (default 8: the median and interquartile
# mean need them), 64 evaluation episodes per seed, each of SETTINGS (default: "purejaxrl
# gymnax-blines", jaxpg.presets.MINATAR_SETTINGS) with the flattened MLP and with the MinAtar
# paper's conv torso. One learning.py process per settings, network and game, each writing
# minatar_<settings>_<network>_<game>.json/.md under OUT_DIR.
#
#   bash benchmarks/minatar_10m.sh OUT_DIR [DEADLINE_S]
#   SEEDS=3 SETTINGS=gymnax-blines bash benchmarks/minatar_10m.sh OUT_DIR
#
# DEADLINE_S (default: none) stops starting runs once that many seconds have passed, and bounds
# each run by what is left (a run cut short writes nothing and is reported as missing).
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:?usage: bash benchmarks/minatar_10m.sh OUT_DIR [DEADLINE_S]}"
. benchmarks/device_env.sh  # the wheels in .whl/, if any, and this checkout on PYTHONPATH
deadline="${2:-0}"
seeds="${SEEDS:-8}"
mkdir -p "$out"
for settings in ${SETTINGS:-purejaxrl gymnax-blines}; do
  for network in mlp cnn; do
    for game in Breakout Asterix Freeway SpaceInvaders; do
      name="minatar_${settings}_${network}_${game}"
      left=$(( deadline > 0 ? deadline - SECONDS : 86400 ))
      if (( left < 20 )); then echo "skipped $name: deadline" >&2; continue; fi
      timeout "$left" python3 benchmarks/learning.py --envs "$game-MinAtar" --seeds "$seeds" \
        --total-timesteps 10000000 --eval-episodes 64 --network "$network" \
        --settings "$settings" --no-plot --out-dir "$out" --name "$name" \
        || echo "missing $name (exit $?)" >&2
    done
  done
done
