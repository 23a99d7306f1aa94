#!/usr/bin/env bash
# Load a LeRobotDataset written by `genpolicy convert --to lerobot` with LeRobot's own
# LeRobotDataset class (not part of `make test`: it downloads lerobot and its data-set deps).
#
#   scripts/check_with_lerobot.sh DATASET_DIR [CAMERA_KEY]
#
# A throwaway venv (deleted afterwards) sees this project's .venv (torch CPU, pyarrow, av, pandas)
# through a .pth file and gets lerobot==0.4.4 with --no-deps plus `datasets` and
# `huggingface_hub` at the versions lerobot pins. lerobot's own pins (torch<2.11 …) would pull
# CUDA torch, and the PyPI torchvision/torchcodec wheels need CUDA torch, so: a stand-in
# `torchvision` module (only imported by LeRobot's data-set code) and LeRobot's video decoder
# swapped for a PyAV one with the same contract (frames at the query timestamps LeRobot
# computes, within LeRobot's tolerance_s, else an error). Everything else is LeRobot's code.
set -euo pipefail
DATASET=$(realpath "$1")
CAMERA=${2:-}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
python3 -m venv "$WORK/venv"
SITE=$("$WORK/venv/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
"$ROOT/.venv/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])" > "$SITE/project.pth"
"$WORK/venv/bin/pip" install -q --no-deps lerobot==0.4.4 accelerate
"$WORK/venv/bin/pip" install -q "datasets>=4,<5" "huggingface_hub>=0.34.2,<0.36"
mkdir -p "$SITE/torchvision/transforms"
echo "from . import transforms  # noqa: F401  (stand-in, see scripts/check_with_lerobot.sh)" > "$SITE/torchvision/__init__.py"
cat > "$SITE/torchvision/transforms/__init__.py" <<'EOF'
import numpy as np
import torch


class ToTensor:
    def __call__(self, pic):
        arr = np.asarray(pic, dtype=np.uint8)
        arr = arr[:, :, None] if arr.ndim == 2 else arr
        return torch.from_numpy(arr.copy()).permute(2, 0, 1).float() / 255.0
EOF
"$WORK/venv/bin/python" - "$DATASET" "$CAMERA" <<'EOF'
import sys

import av
import numpy as np
import torch

import lerobot.datasets.lerobot_dataset as lds

root, camera = sys.argv[1], sys.argv[2]


def pyav_decode(video_path, timestamps, tolerance_s, backend=None):
    with av.open(str(video_path)) as c:
        frames = [(float(f.time), f.to_ndarray(format="rgb24")) for f in c.decode(c.streams.video[0])]
    times = np.array([t for t, _ in frames])
    out = []
    for q in timestamps:
        k = int(np.argmin(np.abs(times - q)))
        if abs(times[k] - q) >= tolerance_s:
            raise RuntimeError(f"{video_path}: no frame within {tolerance_s} s of {q} (nearest {times[k]})")
        out.append(torch.from_numpy(frames[k][1]).permute(2, 0, 1).float() / 255.0)
    return torch.stack(out)


lds.decode_video_frames = pyav_decode
delta = {"action": [0.0, 0.05, 0.1]}
if camera:
    delta[camera] = [-0.05, 0.0]
ds = lds.LeRobotDataset("local/genpolicy_check", root=root, delta_timestamps=delta)
print(ds)
print(f"frames {len(ds)}, episodes {ds.num_episodes}, fps {ds.fps}, tolerance_s {ds.tolerance_s}")
for idx in (0, len(ds) // 2, len(ds) - 1):
    item = ds[idx]
    print(idx, {k: (tuple(v.shape) if hasattr(v, "shape") else v) for k, v in item.items()})
print("stats:", sorted(ds.meta.stats), "tasks:", list(ds.meta.tasks.index))
print("LeRobot loaded the data set")
EOF
