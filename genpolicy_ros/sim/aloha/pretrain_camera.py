"""Warm start of an image model's camera encoder: teach it where the cube is before the policy
trains (models/aloha_image_flow, docs/aloha.md)::

    genpolicy train --task aloha_transfer_cube --data DATA --config config/models/aloha_image_flow.yaml \\
        --out RUN --images --stop-after 1
    python -m genpolicy_ros.sim.aloha.pretrain_camera --run RUN --data DATA --steps 1000
    genpolicy train --task aloha_transfer_cube --data DATA --out RUN --images --resume

Why: the scripted expert is planned from the cube pose, so after its first few rows the
joints (and the arms in the image) already tell where the cube is; the policy's losses
then hardly need the cube's pixels, and the encoder did not learn to find it in 6 000
steps (docs/aloha.md). Here the camera encoder plus a linear head regress the cube's
(x, y) from the frames of the first ``--rows`` rows of every episode (arms still near the
start pose), and the encoder's weights replace those of the run's newest checkpoint (raw
and EMA), which ``--resume`` then continues.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m genpolicy_ros.sim.aloha.pretrain_camera",
                                description=__doc__.split("\n")[0])
    p.add_argument("--run", required=True, metavar="DIR", help="training run with a checkpoint (--stop-after 1)")
    p.add_argument("--data", required=True, metavar="DIR", help="its episode data set (with the camera)")
    p.add_argument("--camera", default="top")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--rows", type=int, default=16, help="frames 0..rows-1 of every episode (default 16)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    import numpy as np
    import torch
    from safetensors.torch import load_file, save_file

    from ...core.config import PolicyConfig
    from ...core.policy import GenerativePolicy
    from ...data.episodes import EpisodeDataset
    from ...training.checkpoint_state import latest_checkpoint, read_trainer_state_json

    torch.manual_seed(args.seed)
    checkpoint = latest_checkpoint(Path(args.run))
    if checkpoint is None:
        print(f"pretrain_camera: no checkpoint in {args.run}", file=sys.stderr)
        return 1
    cfg = PolicyConfig.from_dict(read_trainer_state_json(checkpoint)["policy_config"])
    encoder = GenerativePolicy.from_config(cfg).encoder.camera_encoders[args.camera]  # fresh, same shapes
    data = EpisodeDataset(args.data)
    xy_at = [data.metadata.state_names.index(n) for n in ("cube_x", "cube_y")]
    frames, targets = [], []
    for ep in data:
        frames.append(ep.images[args.camera][:args.rows])  # [rows, H, W, 3] uint8
        targets.append(ep.state[:args.rows][:, xy_at])  # [rows, 2]
    frames = torch.from_numpy(np.concatenate(frames)).permute(0, 3, 1, 2)  # [N, 3, H, W] uint8
    targets = torch.from_numpy(np.concatenate(targets)).float()  # [N, 2]
    lo, hi = targets.min(0).values, targets.max(0).values
    y = (targets - lo) / (hi - lo).clamp_min(1e-6) * 2 - 1  # [N, 2] in [-1, 1]
    n_val = max(1, len(y) // 10)  # the last episodes' frames: held out
    head = torch.nn.Linear(encoder.config.feature_dim, 2)
    opt = torch.optim.Adam(list(encoder.parameters()) + list(head.parameters()), lr=args.lr)
    started = time.perf_counter()
    for step in range(1, args.steps + 1):
        idx = torch.randint(0, len(y) - n_val, (32,))
        loss = (head(encoder(frames[idx].float() / 255)) - y[idx]).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 200 == 0 or step == args.steps:
            with torch.no_grad():
                err = ((head(encoder(frames[-n_val:].float() / 255)) - y[-n_val:]).abs() * (hi - lo) / 2).mean(0)
            print(f"step {step}: held-out cube error x {100 * err[0]:.2f} cm, y {100 * err[1]:.2f} cm "
                  f"({time.perf_counter() - started:.0f} s)", flush=True)
    state_path = checkpoint / "trainer_state.safetensors"
    tensors = load_file(str(state_path))
    prefix = f"encoder.camera_encoders.{args.camera}."
    replaced = 0
    for name, value in encoder.state_dict().items():
        for root in ("model.", "ema.model."):
            key = root + prefix + name
            if key in tensors:
                tensors[key] = value.detach().clone().contiguous()
                replaced += 1
    if replaced == 0:
        print(f"pretrain_camera: no '{prefix}' weights in {state_path}", file=sys.stderr)
        return 1
    save_file(tensors, str(state_path))
    print(f"wrote the camera encoder ({replaced} tensors) into {state_path}; continue with genpolicy train --resume")
    return 0


if __name__ == "__main__":
    sys.exit(main())
