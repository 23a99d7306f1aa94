#!/usr/bin/env bash
# GPU check in one call (about 10 minutes on a fresh machine with a fast network):
#   1. an environment with the `gpu` extra (torch-tensorrt, tensorrt, onnx) and the CUDA build of
#      torch that torch-tensorrt pins (installed by pip as its dependency), plus onnxruntime-gpu,
#      in a venv of its own (.venv-gpu) — never in `make install`'s venv;
#   2. nvidia-smi;
#   3. for each model: build every backend's engine (eager, cuda_graph, compile, tensorrt via
#      ONNX, torch_tensorrt, onnxruntime CUDA EP; fp32 and fp16), check parity against eager
#      fp32, time them interleaved; one table on stdout, JSON in --out.
#
# usage: scripts/gpu_check.sh [--out DIR] [--models a,b] [--venv DIR] [--no-install]
#                             [--dry-run] [--budget-s S] [-- extra gpu_check options]
#   --no-install  use $PYTHON (default python3) as it is (e.g. a machine that already has
#                 torch-tensorrt, or no network); --dry-run: environment + plan, no builds.
# Exit status: 0 all built backends match eager; 1 a backend failed or missed parity.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=gpu_check_out
MODELS=models/reach_flow,models/reach_ddim,models/reach_image_flow
VENV=.venv-gpu
INSTALL=1
DRY=()
BUDGET=420
PYTHON=${PYTHON:-python3}
EXTRA=()
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT=$2; shift 2 ;;
    --models) MODELS=$2; shift 2 ;;
    --venv) VENV=$2; shift 2 ;;
    --no-install) INSTALL=0; shift ;;
    --dry-run) DRY=(--dry-run); shift ;;
    --budget-s) BUDGET=$2; shift 2 ;;
    --) shift; EXTRA=("$@"); break ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

START=$(date +%s)
if [ "$INSTALL" = 1 ]; then
  if "$PYTHON" -c "import torch, torch_tensorrt, tensorrt; assert torch.cuda.is_available()" 2>/dev/null; then
    echo "== using $PYTHON: torch-tensorrt and a CUDA torch are already there"
  else
    echo "== installing the gpu extra into $VENV (torch-tensorrt pulls its pinned CUDA torch)"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet -e ".[gpu]" onnxruntime-gpu
    PYTHON="$VENV/bin/python"
  fi
fi
echo "== install took $(( $(date +%s) - START )) s"

if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv || true
else
  echo "nvidia-smi not found"
fi

mkdir -p "$OUT"
echo "== gpu check: models $MODELS, budget ${BUDGET} s for building"
status=0
"$PYTHON" -m genpolicy_ros.runtime.bench.backend_check --models "$MODELS" --budget-s "$BUDGET" \
  --json "$OUT/gpu_check.json" ${DRY[@]+"${DRY[@]}"} ${EXTRA[@]+"${EXTRA[@]}"} \
  2> >(tee "$OUT/gpu_check.log" >&2) || status=$?
echo "== done in $(( $(date +%s) - START )) s; report $OUT/gpu_check.json"
exit $status
