#!/usr/bin/env bash
# Regenerates the shipped default models in models/ with the project's own commands:
#   genpolicy collect  -> rosbag2 (MCAP) demonstrations from the MuJoCo sim over ROS 2
#   genpolicy train    -> one model directory per config in config/models/ (--task: the task's
#                         defaults; the model records observation.state_inputs and metadata.task)
# Usage: scripts/build_default_models.sh [WORK_DIR]   (needs `make install` first; ~1 h on 2 cores)
#
# ALOHA=1 also builds models/aloha_state_flow and models/aloha_state_ddim (ALOHA transfer-cube,
# state-based flow and DDIM; long and optional): 330 scripted demonstrations with DART noise
# (~5-18 min), then per model its training steps on one CPU thread (0.1-0.3 s per step on this
# 2-core machine: flow 25 000 steps ~0.7-2.1 h, DDIM 15 000 steps ~0.4-1.3 h) and the success
# curve of its checkpoints (50 ROS-free episodes each, ~1-2.5 min per checkpoint).
# ALOHA=only builds just those models. ALOHA_EPISODES / ALOHA_STEPS override the demonstrations (330)
# and the training steps (the config's) for a quick trial.
# ALOHA_IMAGE=1 also builds models/aloha_image_flow and models/aloha_image_ddim (image-based: top camera 96x128 + the 14 joints,
# the cube pose only as a training-only auxiliary target): 220 demonstrations with the camera (~3-6 s
# each), 1 000 steps teaching the camera encoder where the cube is (~2 min), 8 000 training steps on
# one CPU thread (~0.18 s per step: ~25 min), its success curve (50 ROS-free episodes per
# checkpoint, ~3-5 min each), per model. ALOHA_IMAGE=only builds just those models;
# ALOHA_IMAGE_EPISODES / ALOHA_IMAGE_STEPS override the demonstrations and the steps.
set -euo pipefail
cd "$(dirname "$0")/.."
GP=${GENPOLICY:-.venv/bin/genpolicy}
WORK=${1:-build/default_models}
EPISODES=${EPISODES:-200}
mkdir -p "$WORK"

if [ "${ALOHA:-0}" != only ] && [ "${ALOHA_IMAGE:-0}" != only ] && [ ! -f "$WORK/reach_bag/metadata.yaml" ]; then
  "$GP" collect --episodes "$EPISODES" --images --seed 1 --out "$WORK/reach_bag"
fi

if [ "${ALOHA:-0}" != only ] && [ "${ALOHA_IMAGE:-0}" != only ] && [ ! -f "$WORK/obstacle_data/dataset.json" ]; then
  # The obstacle variant's demonstrations are paired (each start shown in both modes),
  # which the sim node cannot do yet: recorded ROS-free from the same env and expert.
  "${PY:-.venv/bin/python}" -m genpolicy_ros.sim.collect_offline --obstacle --paired --episodes "$EPISODES" \
    --seed 0 --out "$WORK/obstacle_data"
fi

train() {  # name, extra train args...
  local name=$1; shift
  "$GP" train --task reach --bag "$WORK/reach_bag" --config "config/models/$name.yaml" --out "$WORK/$name" \
    --overwrite "$@"
  ship "$name"
}

train_obstacle() {  # name
  "$GP" train --task reach_obstacle --data "$WORK/obstacle_data" --config "config/models/$1.yaml" \
    --out "$WORK/$1" --overwrite
  ship "$1"
}

ship() {  # name
  local name=$1
  mkdir -p "models/$name"
  # Only what a user needs: the model (config.json + weights) and its training curve.
  cp "$WORK/$name/config.json" "$WORK/$name/model.safetensors" "models/$name/"
  cp "$WORK/$name/loss.png" "$WORK/$name/train_log.csv" "models/$name/" 2>/dev/null || true
}

build_aloha() {
  local data="$WORK/aloha_data" run
  if [ ! -f "$data/dataset.json" ]; then
    "${PY:-.venv/bin/python}" -m genpolicy_ros.sim.aloha.collect_offline --episodes "${ALOHA_EPISODES:-330}" \
      --noise-rad 0.01 --seed 0 \
      --out "$data" --no-progress
  fi
  local name
  for name in aloha_state_flow aloha_state_ddim; do
    run="$WORK/$name"
    OMP_NUM_THREADS=1 "$GP" train --task aloha_transfer_cube --data "$data" --config "config/models/$name.yaml" \
      --out "$run" --overwrite --no-progress ${ALOHA_STEPS:+--steps "$ALOHA_STEPS"}
    OMP_NUM_THREADS=1 "${PY:-.venv/bin/python}" -m genpolicy_ros.sim.aloha.success_curve --run "$run" --episodes 50 --seed 1
    ship "$name"
    cp "$run/success_curve.csv" "$run/success_curve.png" "models/$name/"
  done
}

build_aloha_image() {
  local data="$WORK/aloha_image_data" run name
  if [ ! -f "$data/dataset.json" ]; then
    "${PY:-.venv/bin/python}" -m genpolicy_ros.sim.aloha.collect_offline --episodes "${ALOHA_IMAGE_EPISODES:-220}" \
      --noise-rad 0.01 --seed 0 --images --cameras top --image-size 96 128 --out "$data" --no-progress
  fi
  for name in aloha_image_flow aloha_image_ddim; do
    run="$WORK/$name"
    # One step to create the run, the camera encoder taught where the cube is (pretrain_camera.py), then the rest.
    OMP_NUM_THREADS=1 "$GP" train --task aloha_transfer_cube --data "$data" --config "config/models/$name.yaml" \
      --out "$run" --images --overwrite --no-progress --stop-after 1 ${ALOHA_IMAGE_STEPS:+--steps "$ALOHA_IMAGE_STEPS"}
    OMP_NUM_THREADS=1 "${PY:-.venv/bin/python}" -m genpolicy_ros.sim.aloha.pretrain_camera --run "$run" --data "$data" \
      --steps 1000
    OMP_NUM_THREADS=1 "$GP" train --task aloha_transfer_cube --data "$data" --out "$run" --images --resume --no-progress
    OMP_NUM_THREADS=1 "${PY:-.venv/bin/python}" -m genpolicy_ros.sim.aloha.success_curve --run "$run" --episodes 50 \
      --seed 1
    ship "$name"
    cp "$run/success_curve.csv" "$run/success_curve.png" "models/$name/"
  done
}

if [ "${ALOHA:-0}" != only ] && [ "${ALOHA_IMAGE:-0}" != only ]; then
  train reach_flow
  train reach_ddim
  train reach_mse
  train reach_image_flow --images
  train_obstacle obstacle_flow
  train_obstacle obstacle_ddim
  train_obstacle obstacle_mse
fi
if [ "${ALOHA:-0}" != 0 ] && [ "${ALOHA_IMAGE:-0}" != only ]; then
  build_aloha
fi
if [ "${ALOHA_IMAGE:-0}" != 0 ]; then
  build_aloha_image
fi
echo "default models written to models/: $(ls models)"
