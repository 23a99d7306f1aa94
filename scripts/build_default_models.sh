#!/usr/bin/env bash
# Regenerates the shipped default models in models/ with the project's own commands:
#   genpolicy collect  -> rosbag2 (MCAP) demonstrations from the MuJoCo sim over ROS 2
#   genpolicy train    -> one model directory per config in config/models/
# Usage: scripts/build_default_models.sh [WORK_DIR]   (needs `make install` first; ~1 h on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
GP=${GENPOLICY:-.venv/bin/genpolicy}
WORK=${1:-build/default_models}
EPISODES=${EPISODES:-200}
mkdir -p "$WORK"

if [ ! -f "$WORK/reach_bag/metadata.yaml" ]; then
  "$GP" collect --episodes "$EPISODES" --images --seed 1 --out "$WORK/reach_bag"
fi

train() {  # name, extra train args...
  local name=$1; shift
  "$GP" train --bag "$WORK/reach_bag" --config "config/models/$name.yaml" --out "$WORK/$name" --overwrite "$@"
  mkdir -p "models/$name"
  # Only what a user needs: the model (config.json + weights) and its training curve.
  cp "$WORK/$name/config.json" "$WORK/$name/model.safetensors" "models/$name/"
  cp "$WORK/$name/loss.png" "$WORK/$name/train_log.csv" "models/$name/" 2>/dev/null || true
}

train reach_flow
train reach_ddim
train reach_mse
train reach_image_flow --images
echo "default models written to models/: $(ls models)"
